"""The parser and the dispatcher behind ``kie-async`` (see the package docstring for exit codes).

Only the module of the command being run is imported (``_commands.COMMANDS``): the other commands appear in
``--help`` as one line each, and a mistyped command gets a "did you mean".
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import traceback
import types
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from kie_async.core.errors import KieAuthenticationError, KieError
from kie_async.interfaces.cli._commands import COMMANDS, all_modules, module_of
from kie_async.interfaces.cli._version_info import DETAILS_FLAG, short_version_report, version_report

TRACEBACK_ENV = "KIE_ASYNC_TRACEBACK"
_REPORT_HINT = (
    f"this is a bug in kie-async: please report it with the command you ran ({TRACEBACK_ENV}=1 shows the traceback)"
)


class VersionAction(argparse.Action):
    """Print the version report and exit 0 (``main`` answers a bare ``--version`` before building the parser)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help", f"print the kie-async and Python versions and exit ({DETAILS_FLAG}: also aiohttp and libvips)"
        )
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> NoReturn:
        print(version_report() if DETAILS_FLAG in sys.argv[1:] else short_version_report())
        parser.exit(0)


class _Parser(argparse.ArgumentParser):
    """argparse, plus a "did you mean" for a mistyped option, said by the (sub)command that has the options."""

    def parse_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            leaf = _leaf_parser(self, parsed)
            options = [option for action in leaf._actions for option in action.option_strings]
            hints = []
            for extra in extras:
                close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=2, cutoff=0.6)
                if extra.startswith("-") and close:
                    hints.append(f"{extra}: did you mean {' or '.join(close)}?")
            leaf.error(f"unrecognized arguments: {' '.join(extras)}" + ("; " + "; ".join(hints) if hints else ""))
        return parsed


def _leaf_parser(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``parsed`` names: where its options are."""
    while True:
        found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not found or getattr(parsed, str(found[0].dest), None) not in found[0].choices:
            return parser
        parser = found[0].choices[getattr(parsed, str(found[0].dest))]


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), or ``None``."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole tree (every subcommand module imported), or with ``command`` only that command's module.

    The other commands are then one-line placeholders, enough for ``--help`` and for argparse to know them.
    """
    return _parser_with(all_modules() if command is None else [module_of(command)])


def _parser_with(modules: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kie-async",
        description="Asyncio SDK for Kie.ai: validate, price and gate requests before they spend credits.",
    )
    parser.add_argument("--version", "-V", action=VersionAction)
    parser.add_argument(
        DETAILS_FLAG,
        action="store_true",
        help="with --version: also the aiohttp and libvips versions (what a bug report needs)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    for name, (_, help_text) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_text)
    # --help lists the commands in the table's order, whichever module registered its commands first
    sub._choices_actions.sort(key=lambda action: list(COMMANDS).index(action.dest))
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
    if isinstance(leaf, KieAuthenticationError):  # the CLI's spelling of the fix: the variable, and --offline
        message = (
            f"the API key in KIE_API_KEY was refused ({leaf.message}) — {leaf.hint}; or try the command "
            "with --offline (the embedded emulator: nothing spent)"
        )
    elif isinstance(leaf, KieError):
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


def _unknown_command(parser: argparse.ArgumentParser, word: str) -> NoReturn:
    close = difflib.get_close_matches(word, COMMANDS, n=3, cutoff=0.6)
    advice = f"did you mean {' or '.join(close)}?" if close else "see `kie-async --help` for the commands"
    parser.error(f"unknown command {word!r}: {advice}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    if command is not None and command not in COMMANDS:
        _unknown_command(_parser_with([]), command)
    parser = build_parser(command) if command is not None else _parser_with([])  # --help: the table alone
    args = parser.parse_args(argv)  # a usage error exits 2 here, naming the option
    handler = args.handler
    try:
        result = handler(args)
        if isinstance(result, types.CoroutineType):
            import asyncio  # here, not above: validate, estimate and models never start a loop

            result = asyncio.run(result)
        code: int = result
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
