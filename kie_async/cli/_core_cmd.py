"""Core subcommands: ``demo`` (the offline end-to-end tour) and ``credits``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from kie_async.api_models import TaskState
from kie_async.cli._common import (
    add_json_flag,
    add_offline_flag,
    console,
    default_output_dir,
    resolve_settings,
)
from kie_async.polling import TaskProgress
from kie_async.session import KieSession


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    demo = sub.add_parser(
        "demo",
        help="offline tour: start the embedded emulator, check credits, generate one image, download it",
    )
    demo.add_argument("--out", type=Path, default=None, help="output folder (default $KIE_OUTPUT_DIR or ./outputs)")
    demo.add_argument("--prompt", default="A lighthouse on a cliff at dawn, watercolor", help="image prompt")
    demo.set_defaults(handler=_demo)

    credits = sub.add_parser("credits", help="show the account's remaining credits")
    add_offline_flag(credits)
    add_json_flag(credits)
    credits.set_defaults(handler=_credits)


async def _credits(args: argparse.Namespace) -> int:
    async with resolve_settings(args.offline) as settings, KieSession(settings) as kie:
        balance = await kie.get_credits()
    if args.json:
        print(json.dumps({"credits": balance.credits, "usd": balance.usd}))
    else:
        console.print(f"credits: [bold]{balance.credits:g}[/bold] (≈ ${balance.usd:.2f})")
    return 0


def _demo(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    # Resolve the folder before the loop starts, so the printed path is absolute and the loop never blocks.
    return _demo_async(args, (args.out or default_output_dir()).absolute())


async def _demo_async(args: argparse.Namespace, out_dir: Path) -> int:
    console.print("[bold]kie-async demo[/bold]: everything runs against the embedded emulator (no key, no credits)")
    async with resolve_settings(True, generation_seconds=1.0) as settings, KieSession(settings) as kie:
        console.print(f"emulator at {settings.base_url} (uploads at {settings.upload_base_url})")
        balance = await kie.get_credits()
        console.print(f"1. credits: {balance.credits:g}")
        created = await kie.create_task(
            model="nano-banana-2",
            input={"prompt": args.prompt, "aspect_ratio": "1:1", "resolution": "1K", "output_format": "png"},
        )
        console.print(f"2. submitted nano-banana-2 task {created.task_id}")

        def show(progress: TaskProgress) -> None:
            if progress.state is not TaskState.SUCCESS:
                console.print(f"   … {progress.state.value} ({progress.elapsed:.1f}s)")

        record = await kie.wait_for_task(created.task_id, on_progress=show, timeout=60)
        console.print(f"3. task finished: {record.state.value}")
        url = record.output_urls[0]
        dest = out_dir / "demo" / f"{created.task_id}.png"
        result = await kie.download(url, dest)
        after = await kie.get_credits()
    console.print(f"4. downloaded {result.bytes_written} bytes; credits now {after.credits:g}")
    console.print(f"image: {result.destination_path}")
    return 0
