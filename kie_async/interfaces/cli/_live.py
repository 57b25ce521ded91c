"""What the commands that talk to Kie.ai (or the embedded emulator) share: settings and rich consoles."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from rich.console import Console

from kie_async.core.errors import KieConfigError
from kie_async.core.settings import KieSettings, PollSettings
from kie_async.interfaces.cli._common import offline_state_dir

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


API_KEY_ENV = "KIE_API_KEY"
ALLOW_LIVE_ENV = "KIE_ALLOW_LIVE"


def check_live_settings(settings: KieSettings) -> None:
    """Refuse the real Kie.ai in the command line's own words, the fix that spends nothing first.

    The session would refuse too, in the library's words (``KieSettings(allow_live=True)``); a command line user
    needs the variable to set and ``--offline``, and with no key at all the missing key is the first thing to say.
    """
    if not settings.is_live:
        return  # an emulator or another local service: no key or opt-in needed
    if not settings.key_value():
        raise KieConfigError(
            f"no Kie.ai API key: {API_KEY_ENV} is not set",
            hint=f"try the same command with --offline first (the embedded emulator: no key, no credits); for "
            f"the real Kie.ai, export {API_KEY_ENV}=... (kie.ai → API keys) and {ALLOW_LIVE_ENV}=1 (it spends "
            "credits)",
        )
    if not settings.allow_live:
        raise KieConfigError(
            f"not calling the real Kie.ai (it spends credits) without {ALLOW_LIVE_ENV}=1",
            hint=f"the same command with --offline runs against the embedded emulator and spends nothing; "
            f"export {ALLOW_LIVE_ENV}=1 to use the real Kie.ai with {API_KEY_ENV}",
        )


def settings_for(
    args: argparse.Namespace, root: Path | None = None, *, generation_seconds: float = 1.5, check_live: bool = True
) -> contextlib.AbstractAsyncContextManager[KieSettings]:
    """:func:`resolve_settings` for a command's ``--offline``/``--offline-state`` and its output root."""
    state = offline_state_dir(args, root)
    return resolve_settings(
        state is not None, generation_seconds=generation_seconds, check_live=check_live, state_dir=state
    )


@contextlib.asynccontextmanager
async def resolve_settings(
    offline: bool, *, generation_seconds: float = 1.5, check_live: bool = True, state_dir: Path | None = None
) -> AsyncIterator[KieSettings]:
    """Yield settings for the real service (from ``KIE_*``) or for an emulator started for this command.

    ``check_live=False``: a server whose tools refuse one by one (``mcp``: its offline tools need no key).
    With ``state_dir`` the emulator's account is the one kept there (see ``kie_async.emulator.persist``).
    """
    if not offline:
        settings = KieSettings.from_env()
        if check_live:
            check_live_settings(settings)
        yield settings
        return
    from kie_async.emulator import EmulatorConfig, KieEmulator

    async with KieEmulator(EmulatorConfig(generation_seconds=generation_seconds, state_dir=state_dir)) as emulator:
        # Poll the local emulator quickly; the real service gets Kie.ai's recommended schedule.
        yield emulator.settings(poll=PollSettings(schedule=((float("inf"), 0.25),)))
