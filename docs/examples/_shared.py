"""What every example shares: ``--offline`` starts an embedded emulator; without it, settings come from ``KIE_*``.

Offline runs need no key and spend nothing. Live runs use ``KieSettings.from_env()``, so they need
``KIE_API_KEY`` and the explicit opt-in ``KIE_ALLOW_LIVE=1``; without the opt-in ``KieSession`` refuses to
start and the example prints why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from kie_async import KieError, KieSession, KieSettings, PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator

GENERATION_SECONDS_ENV = "KIE_EXAMPLES_GENERATION_SECONDS"


def make_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--offline", action="store_true", help="run against an embedded emulator (no key, no credits spent)"
    )
    return parser


@contextlib.asynccontextmanager
async def open_session(offline: bool) -> AsyncIterator[KieSession]:
    """An open session: on an embedded emulator (offline) or on the account in ``KIE_*`` (live, opted in)."""
    if not offline:
        async with KieSession(KieSettings.from_env()) as kie:
            yield kie
        return
    # The emulator finishes a task in KIE_EXAMPLES_GENERATION_SECONDS (default 1 s); polling is tuned to match.
    seconds = float(os.environ.get(GENERATION_SECONDS_ENV, "1.0"))
    async with KieEmulator(EmulatorConfig(generation_seconds=seconds)) as emulator:
        print(f"offline: embedded Kie.ai emulator at {emulator.base_url}")
        fast_poll = PollSettings(schedule=((float("inf"), min(0.25, seconds)),))
        async with KieSession(emulator.settings(poll=fast_poll)) as kie:
            yield kie


def run(main: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> None:
    """Run ``main(args)``; a ``KieError`` becomes one readable line and exit code 2."""
    try:
        code = asyncio.run(main(args))
    except KieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
