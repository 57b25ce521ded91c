"""What the commands that talk to Kie.ai (or the embedded emulator) share: settings and rich consoles."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from rich.console import Console

from kie_async.core.settings import KieSettings, PollSettings

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.asynccontextmanager
async def resolve_settings(offline: bool, *, generation_seconds: float = 1.5) -> AsyncIterator[KieSettings]:
    """Yield settings for the real service (from ``KIE_*``) or for an emulator started for this command."""
    if not offline:
        yield KieSettings.from_env()
        return
    from kie_async.emulator import EmulatorConfig, KieEmulator

    async with KieEmulator(EmulatorConfig(generation_seconds=generation_seconds)) as emulator:
        # Poll the local emulator quickly; the real service gets Kie.ai's recommended schedule.
        yield emulator.settings(poll=PollSettings(schedule=((float("inf"), 0.25),)))
