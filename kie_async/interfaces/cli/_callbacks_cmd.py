"""``kie-async receive-callbacks``: a standing callback receiver that settles a batch journal.

A batch started with ``run-batch --callback-url URL`` puts a correlation token on every task's callback.
When a createTask answer was lost (a reset, a kill mid-send), the task's callback is the only way to learn
which task the request bought; this receiver confirms the token against ``recordInfo`` and appends the task
to the journal, so the next ``run-batch`` resumes it instead of leaving it uncertain. It outlives the batch
on purpose: callbacks arrive when tasks finish, which may be after the batch process is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

from kie_async.interfaces.callback_receiver import add_callback_route
from kie_async.interfaces.cli._common import add_offline_flag, check_file_arg, default_output_dir, number_arg
from kie_async.interfaces.cli._live import settings_for
from kie_async.session import KieSession

HMAC_ENV = "KIE_WEBHOOK_HMAC_KEY"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    parser = sub.add_parser(
        "receive-callbacks",
        help="receive Kie.ai callbacks and settle a batch journal's uncertain requests (until Ctrl-C)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--journal", type=Path, required=True, help="the batch journal to settle")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=number_arg(minimum=0, maximum=65535, integer=True),
        default=8790,
        help="port (default: 8790; 0 = any free)",
    )
    parser.add_argument("--path", default="/kie/callback", help="URL path (default: /kie/callback)")
    parser.add_argument(
        "--public-url",
        default=None,
        help="the URL Kie.ai reaches this receiver at (a tunnel), printed instead of the local one",
    )
    add_offline_flag(
        parser,
        help="confirm tokens against the embedded emulator, with the offline account the batch "
        "used (OUT/emulator-state, OUT being the folder that holds the journal's journals/ folder)",
    )
    parser.set_defaults(handler=_receive)


def _receive(args: argparse.Namespace) -> Any:
    journal = check_file_arg(args.journal, "--journal")
    path = args.path if args.path.startswith("/") else f"/{args.path}"
    return _serve(args, journal, path)


def _output_root(journal: Path) -> Path:
    """``OUT`` for ``OUT/journals/FILE.jsonl`` (where run-batch keeps journals), else the default output root."""
    return journal.parent.parent if journal.parent.name == "journals" else default_output_dir()


async def _serve(args: argparse.Namespace, journal: Path, path: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    hmac_key = os.environ.get(HMAC_ENV) or None
    async with settings_for(args, _output_root(journal)) as settings, KieSession(settings) as kie:
        app = web.Application()
        receiver = add_callback_route(app, kie, path, hmac_key=hmac_key, journal=journal)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, args.host, args.port)
            await site.start()
            host, port = runner.addresses[0][:2]
            shown_host = f"[{host}]" if ":" in str(host) else host
            print(f"callback url: {args.public_url or f'http://{shown_host}:{port}{path}'}", flush=True)
            print(
                f"journal: {journal}" + ("" if hmac_key else f" (signatures NOT checked: set {HMAC_ENV})"), flush=True
            )
            await stop.wait()
        finally:
            await runner.cleanup()
        print(
            f"stopped: {receiver.stats.accepted} accepted, {receiver.stats.settled} settled in the journal, "
            f"{receiver.stats.rejected} rejected",
            flush=True,
        )
    return 0
