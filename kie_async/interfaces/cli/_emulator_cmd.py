"""``kie-async emulator``: run the local Kie.ai in the foreground so other processes can talk to it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from kie_async.core.errors import KieInputError
from kie_async.emulator import DEFAULT_API_KEY, EmulatorConfig, KieEmulator
from kie_async.interfaces.cli._common import check_folder_arg, count_arg, credits_arg, number_arg, seconds_arg

_port_arg = number_arg(minimum=0, maximum=65535, integer=True)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    parser = sub.add_parser(
        "emulator",
        help="run a local Kie.ai emulator (no key, no network) until Ctrl-C",
        description="Serve the Kie.ai market and upload APIs on loopback for offline development.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port_arg, default=8787, help="market API port (default: 8787; 0 = any free)")
    parser.add_argument("--upload-port", type=_port_arg, default=None, help="upload API port (default: port + 1)")
    parser.add_argument(
        "--generation-seconds",
        type=number_arg(minimum=0.0),
        default=3.0,
        help="seconds from createTask to success (default: 3)",
    )
    parser.add_argument("--credits", type=credits_arg, default=5000.0, help="starting balance (default: 5000)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help=f"accepted key (default: {DEFAULT_API_KEY})")
    parser.add_argument("--rate-limit", type=count_arg, default=20, help="createTask calls per window (default: 20)")
    parser.add_argument("--rate-window", type=seconds_arg, default=10.0, help="rate window in seconds (default: 10)")
    parser.add_argument("--webhook-hmac-key", default=None, help="sign callbacks with this key")
    parser.add_argument("--http-errors", action="store_true", help="send error codes as HTTP statuses too")
    parser.add_argument(
        "--callback-any-host",
        action="store_true",
        help="allow callBackUrl hosts other than loopback (e.g. a tunnel to your webhook)",
    )
    parser.add_argument(
        "--image-size",
        type=number_arg(minimum=8, maximum=8192, integer=True),
        default=256,
        help="long edge of generated images, 8-8192 (default: 256)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the account (balance, tasks, uploads) in DIR, shared with `--offline-state DIR` "
        "commands and kept after Ctrl-C (default: in memory)",
    )
    parser.set_defaults(handler=run_emulator)


def _config(args: argparse.Namespace) -> EmulatorConfig:
    upload_port = args.upload_port
    if upload_port is None:
        upload_port = args.port + 1 if args.port else 0
    if upload_port > 65535:
        raise KieInputError(
            f"--port {args.port} leaves no room for the upload port (port + 1)",
            hint="pass --upload-port, or a lower --port",
        )
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        upload_port=upload_port,
        generation_seconds=args.generation_seconds,
        credits=args.credits,
        api_key=args.api_key,
        create_rate_limit=args.rate_limit,
        create_rate_window=args.rate_window,
        webhook_hmac_key=args.webhook_hmac_key,
        http_errors=args.http_errors,
        image_long_edge=args.image_size,
        callback_any_host=args.callback_any_host,
        state_dir=check_folder_arg(args.state, "--state") if args.state is not None else None,
    )


async def run_emulator(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows; there asyncio.run turns Ctrl-C into KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    async with KieEmulator(_config(args)) as emu:
        # The key is a throwaway emulator key, printed on purpose so clients can be pointed at it.
        print("Kie.ai emulator running (Ctrl-C to stop)")
        print(f"  market API : {emu.base_url}")
        print(f"  upload API : {emu.upload_base_url}")
        print(f"  API key    : {emu.api_key}")
        print(f"  control    : {emu.base_url}/_emulator/stats, POST {emu.base_url}/_emulator/faults")
        print("Point the SDK at it with:")
        print(
            f"  export KIE_BASE_URL={emu.base_url} KIE_UPLOAD_BASE_URL={emu.upload_base_url} KIE_API_KEY={emu.api_key}",
            flush=True,
        )
        await stop.wait()
        print("stopping emulator", flush=True)
    return 0
