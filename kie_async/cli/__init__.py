"""The ``kie-async`` command line: one argparse tree, each subcommand group in its own module."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from kie_async._version import __version__
from kie_async.cli import _artifacts_cmd, _core_cmd, _emulator_cmd, _models_cmd, _run_cmd
from kie_async.errors import KieError

_GROUPS = (_core_cmd, _run_cmd, _emulator_cmd, _models_cmd, _artifacts_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kie-async",
        description="Asyncio SDK for Kie.ai: validate, price and gate requests before they spend credits.",
    )
    parser.add_argument("--version", action="version", version=f"kie-async {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in _GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        result = handler(args)
        code: int = asyncio.run(result) if asyncio.iscoroutine(result) else result
    except KieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `kie-async ... | head` closed our stdout: not an error worth a traceback.
        sys.stderr.close()
        return 141
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
