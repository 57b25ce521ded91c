"""What several subcommands share: where settings come from (real Kie.ai or the embedded emulator)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from rich.console import Console

from kie_async.settings import KieSettings, PollSettings

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

OUTPUT_DIR_ENV = "KIE_OUTPUT_DIR"


def add_offline_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline",
        action="store_true",
        help="run against the embedded local emulator instead of the real Kie.ai (no key, no credits)",
    )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def default_output_dir() -> Path:
    """``$KIE_OUTPUT_DIR`` or ``./outputs``: where runs land unless ``--out`` says otherwise."""
    return Path(os.environ.get(OUTPUT_DIR_ENV) or "outputs")


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
