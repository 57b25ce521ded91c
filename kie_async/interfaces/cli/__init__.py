"""The ``kie-async`` command line: one argparse tree, each subcommand group in its own module.

Exit codes: 0 done; 1 the command ran but something did not succeed (a run failed, a request is not
submittable, an estimate is blocked), or kie-async itself hit a bug (``error: internal error: ...``);
2 the command stopped on an error it names (a bad argument, file or setting, or an error from the service);
130 interrupted. A user never sees a traceback, only one ``error: ...`` line; ``KIE_ASYNC_TRACEBACK=1``
adds the traceback.

Start-up is kept short: ``kie-async --version`` imports nothing but this package's version; any other call
loads the parser (``_main``) and only the module of the command it runs (``_commands.COMMANDS``).
"""

from __future__ import annotations

import importlib
import sys

from kie_async.interfaces.cli._commands import MAIN_MODULE
from kie_async.interfaces.cli._version_info import version_request

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing is a third of what `--version` costs
if TYPE_CHECKING:
    from collections.abc import Sequence

_LAZY = ("build_parser", "report_error", "TRACEBACK_ENV")
"""Names of the parser module that this package hands out on first use (``from kie_async.interfaces.cli import
build_parser``), so importing the package stays as cheap as ``--version``."""


PYDANTIC_PLUGINS_ENV = "PYDANTIC_DISABLE_PLUGINS"
PLUGINS_OFF_BY_US_ENV = "KIE_ASYNC_PLUGINS_OFF"
"""Set beside ``PYDANTIC_DISABLE_PLUGINS`` when the command line turned plugins off, so a command that hands the
process over to the user's own code (``kie-async worker``) gives them back."""


def plugins_env_for_user_code(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` without the plugin switch this command line set for itself (the user's own setting stays)."""
    if environ.get(PLUGINS_OFF_BY_US_ENV) != "1":
        return dict(environ)
    return {k: v for k, v in environ.items() if k not in (PYDANTIC_PLUGINS_ENV, PLUGINS_OFF_BY_US_ENV)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kie-async`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Run as a program (no ``argv``), pydantic plugins are off unless ``PYDANTIC_DISABLE_PLUGINS`` is set (to
    anything, even empty): looking them up scans every installed distribution's entry points when the first model
    is built, up to a fifth of a ``kie-async validate`` in a large environment, for instrumentation a command line
    does not use.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    report = version_request(args)
    if report is not None:
        print(report)
        return 0
    if argv is None:
        import os

        if PYDANTIC_PLUGINS_ENV not in os.environ:
            os.environ[PYDANTIC_PLUGINS_ENV] = "__all__"
            os.environ[PLUGINS_OFF_BY_US_ENV] = "1"
    code: int = importlib.import_module(MAIN_MODULE).main(args)
    return code


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(MAIN_MODULE), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
