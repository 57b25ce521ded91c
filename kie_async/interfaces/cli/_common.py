"""What several subcommands share: argument checks that refuse a bad value before a session, an emulator or a
purchase starts. Cheap to import (no rich, no settings): ``validate`` and ``estimate`` use it. Where settings come
from (real Kie.ai or the embedded emulator) is in ``_live``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kie_async.core.errors import KieInputError
from kie_async.core.folders import folder_problem
from kie_async.core.limits import number_problem

OUTPUT_DIR_ENV = "KIE_OUTPUT_DIR"


OFFLINE_STATE_DIRNAME = "emulator-state"
"""``OUT/emulator-state``: the offline account (balance, tasks, uploads) that ``--offline`` commands share."""


def add_offline_flag(parser: argparse.ArgumentParser, *, help: str | None = None, state: bool = True) -> None:
    """``--offline`` and (``state``: for commands that buy or read the account) ``--offline-state DIR``."""
    kept = f"; its account (balance, tasks, files) is kept in OUT/{OFFLINE_STATE_DIRNAME} for the next command"
    parser.add_argument(
        "--offline",
        action="store_true",
        help=help
        or "run against the embedded local emulator instead of the real Kie.ai (no key, no credits)"
        + (kept if state else ""),
    )
    if not state:
        return
    parser.add_argument(
        "--offline-state",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"keep the offline account in DIR instead of OUT/{OFFLINE_STATE_DIRNAME} (implies --offline)",
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


def offline_state_dir(args: argparse.Namespace, root: Path | None = None) -> Path | None:
    """Where this command's offline account lives (``--offline-state``, else ``ROOT/emulator-state``), or
    ``None`` when it runs against the real service."""
    named: Path | None = getattr(args, "offline_state", None)
    if named is not None:
        return check_folder_arg(named, "--offline-state")
    if not getattr(args, "offline", False):
        return None
    return check_folder_arg((root or default_output_dir()) / OFFLINE_STATE_DIRNAME, "--offline-state")
