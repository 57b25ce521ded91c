"""The ``kie-async`` command line: one argparse tree, each subcommand group in its own module.

Exit codes: 0 done; 1 the command ran but something did not succeed (a run failed, a request is not
submittable, an estimate is blocked), or kie-async itself hit a bug (``error: internal error: ...``);
2 the command stopped on an error it names (a bad argument, file or setting, or an error from the service);
130 interrupted. A user never sees a traceback, only one ``error: ...`` line; ``KIE_ASYNC_TRACEBACK=1``
adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Sequence

from pydantic import ValidationError

from kie_async.core.errors import KieError
from kie_async.interfaces.cli import (
    _agents_cmd,
    _artifacts_cmd,
    _callbacks_cmd,
    _core_cmd,
    _emulator_cmd,
    _ledger_cmd,
    _models_cmd,
    _run_cmd,
)
from kie_async.interfaces.cli._version_info import VersionAction

_GROUPS = (_core_cmd, _run_cmd, _callbacks_cmd, _emulator_cmd, _models_cmd, _artifacts_cmd, _agents_cmd, _ledger_cmd)
TRACEBACK_ENV = "KIE_ASYNC_TRACEBACK"
_REPORT_HINT = (
    f"this is a bug in kie-async: please report it with the command you ran ({TRACEBACK_ENV}=1 shows the traceback)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kie-async",
        description="Asyncio SDK for Kie.ai: validate, price and gate requests before they spend credits.",
    )
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in _GROUPS:
        group.register(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _describe_validation(exc: ValidationError) -> str:
    """A pydantic error (e.g. a bad ``KIE_BASE_URL``) as one line: model, field, reason."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "value"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid {exc.title}: {field}: {first['msg']}{more}"


def _describe_os_error(exc: OSError) -> str:
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def _leaf(exc: BaseException) -> BaseException:
    """The one real error inside (nested) exception groups of a single member, e.g. from a TaskGroup."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def report_error(exc: Exception) -> int:
    """Print ``exc`` as one ``error:`` line and return the exit code (2 refused, 1 a bug in kie-async).

    ``ValueError`` and ``OSError`` count as refusals: from a command they come from what the user passed
    (a path, a setting, a number). Anything else is a bug: it is named as one, never silently dropped.
    """
    leaf = _leaf(exc)
    code = 2
    if isinstance(leaf, KieError):
        message = str(leaf)
    elif isinstance(leaf, ValidationError):
        message = _describe_validation(leaf)
    elif isinstance(leaf, OSError):
        message = _describe_os_error(leaf)
    elif isinstance(leaf, ValueError):
        message = str(leaf) or type(leaf).__name__
    else:
        code = 1
        message = f"internal error: {type(leaf).__name__}: {leaf} — {_REPORT_HINT}"
    print(f"error: {_one_line(message)}", file=sys.stderr)
    if os.environ.get(TRACEBACK_ENV, "").lower() in ("1", "true", "yes"):
        traceback.print_exception(exc, file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits 2 here, naming the option
    handler = args.handler
    try:
        result = handler(args)
        code: int = asyncio.run(result) if asyncio.iscoroutine(result) else result
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `kie-async ... | head` closed our stdout: not an error worth a traceback.
        sys.stderr.close()
        return 141
    except Exception as exc:
        return report_error(exc)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
