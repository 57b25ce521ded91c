"""Core subcommands: ``demo`` (the offline end-to-end tour) and ``credits``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from kie_async.artifacts.settings import ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.interfaces.cli._common import (
    add_json_flag,
    add_offline_flag,
    check_folder_arg,
    default_output_dir,
)
from kie_async.interfaces.cli._live import console, resolve_settings, settings_for
from kie_async.pipeline.run import PipelineHooks, PipelineOptions, StageOutcome, run_pipeline
from kie_async.session import KieSession


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    demo = sub.add_parser(
        "demo",
        help="offline tour: embedded emulator, credits, one image through the whole pipeline, a run folder",
    )
    demo.add_argument("--out", type=Path, default=None, help="output folder (default $KIE_OUTPUT_DIR or ./outputs)")
    demo.add_argument("--prompt", default="A lighthouse on a cliff at dawn, watercolor", help="image prompt")
    add_json_flag(demo)
    demo.set_defaults(handler=_demo)

    credits = sub.add_parser("credits", help="show the account's remaining credits")
    add_offline_flag(credits)
    add_json_flag(credits)
    credits.set_defaults(handler=_credits)


async def _credits(args: argparse.Namespace) -> int:
    async with settings_for(args) as settings, KieSession(settings) as kie:
        balance = await kie.get_credits()
    if args.json:
        print(json.dumps({"credits": balance.credits, "usd": balance.usd}))
    else:
        console.print(f"credits: [bold]{balance.credits:g}[/bold] (≈ ${balance.usd:.2f})")
    return 0


def _demo(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    # Resolve the folder before the loop starts, so the printed path is absolute and the loop never blocks.
    return _demo_async(args, check_folder_arg(args.out or default_output_dir(), "--out"))


async def _demo_async(args: argparse.Namespace, out_dir: Path) -> int:
    def say(text: str) -> None:
        if not args.json:  # --json: only the JSON document on stdout
            console.print(text)

    say("[bold]kie-async demo[/bold]: everything runs against the embedded emulator (no key, no credits)")
    request = RawUserRequest(
        model_key="nano-banana-2", prompt=args.prompt, options={"aspect_ratio": "1:1", "output_format": "png"}
    )
    options = PipelineOptions(artifacts=ArtifactSettings(root=out_dir))

    def show(stage: StageOutcome) -> None:
        if stage.status != "running":
            say(f"  {stage.name:<10} {stage.status:<8} {stage.seconds:6.2f}s {stage.detail or ''}")

    async with resolve_settings(True, generation_seconds=1.0) as settings, KieSession(settings) as kie:
        say(f"emulator at {settings.base_url} (uploads at {settings.upload_base_url})")
        before = await kie.get_credits()
        say(f"credits before: {before.credits:g}")
        result = await run_pipeline(request, kie, options=options, hooks=PipelineHooks(on_stage=show))
        after = await kie.get_credits()
    if args.json:
        print(
            json.dumps(
                {
                    "status": result.status,
                    "credits_before": before.credits,
                    "credits_after": after.credits,
                    "run_dir": result.run_dir,
                    "outputs": [str(o.path) for o in result.outputs],
                    "error": result.error,
                },
                indent=2,
            )
        )
        return 0 if result.succeeded and result.outputs else 1
    say(f"credits after: {after.credits:g} (charged {before.credits - after.credits:g})")
    if not result.succeeded or not result.outputs:
        console.print(f"[red]demo failed[/red]: {result.status} {result.error or ''}")
        return 1
    console.print(f"run folder: {result.run_dir}")
    print(f"image: {result.outputs[0].path}")
    return 0
