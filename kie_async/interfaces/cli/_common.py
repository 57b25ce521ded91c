"""What several subcommands share: where settings come from (real Kie.ai or the embedded emulator), and
argument checks that refuse a bad value before a session, an emulator or a purchase starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from kie_async.artifacts.layout import folder_problem
from kie_async.core.errors import KieInputError
from kie_async.core.limits import number_problem
from kie_async.core.settings import KieSettings, PollSettings

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


def number_arg(
    *, minimum: float, strict: bool = False, maximum: float | None = None, integer: bool = False
) -> Callable[[str], float | int]:
    """An argparse ``type=`` for a number in range, with the library's rules (``_limits.number_problem``).

    argparse turns the ``ArgumentTypeError`` into ``kie-async CMD: error: argument --NAME: ...`` and exit 2,
    so ``--budget nan`` or ``--wait-timeout -1`` never reaches a session, let alone a purchase.
    """

    def parse(text: str) -> float | int:
        value: float | int
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        problem = number_problem(
            value, minimum=minimum, strict=strict, maximum=maximum, integer=integer, shown=repr(text)
        )
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


credits_arg = number_arg(minimum=0.0)
"""Credits (a budget, a balance): finite, >= 0."""
seconds_arg = number_arg(minimum=0.0, strict=True)
"""A timeout or a window in seconds: finite, > 0."""
count_arg = number_arg(minimum=1, integer=True)
"""How many (concurrency, a limit): a whole number >= 1."""


def check_folder_arg(path: Path, option: str) -> Path:
    """Refuse a folder argument that is a file (or lies under one) before anything starts; returns it absolute.

    Found late, this was a ``NotADirectoryError`` traceback from the download stage, after the task was bought.
    """
    path = path.absolute()
    problem = folder_problem(path)
    if problem is not None:
        raise KieInputError(f"{option} {path}: {problem}", hint=f"give {option} a folder you can write to")
    return path


def check_file_arg(path: Path, option: str) -> Path:
    """A file the command will create or append to: not a folder, and its folder creatable; returns it absolute."""
    path = path.absolute()
    if path.is_dir():
        raise KieInputError(f"{option} {path} is a folder, not a file", hint=f"give {option} a file name")
    check_folder_arg(path.parent, option)
    return path


class NotStandardJSONError(ValueError):
    """``NaN``/``Infinity`` in JSON text: Python's parser takes them, JSON (and every money gate) does not."""


def _refuse_constant(name: str) -> Any:
    raise NotStandardJSONError(f"{name} is not valid JSON: write a finite number")


def strict_json(text: str) -> Any:
    """``json.loads`` without the non-standard ``NaN``/``Infinity``; raises ``ValueError`` with a short reason.

    Deeply nested input ends in ``RecursionError`` inside the parser: reported as a ``ValueError`` too.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None


def json_kind(value: Any) -> str:
    """How a JSON value reads in an error message: 'a list', 'a string', 'null'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


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
