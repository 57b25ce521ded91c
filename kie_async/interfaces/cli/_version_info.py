"""``kie-async --version``: what a bug report needs, the SDK and the versions of what it runs on."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import aiohttp

from kie_async._version import __version__


def libvips_version() -> str:
    """``8.18.7 (pyvips 3.2.0)``, or why libvips could not be loaded (derivatives need it; the rest does not)."""
    try:
        import pyvips
    except Exception as exc:  # pyvips raises OSError, ImportError or its own Error when libvips is missing
        return f"not available ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'})"
    try:
        found = ".".join(str(pyvips.version(part)) for part in range(3))
    except Exception as exc:
        return f"unknown ({type(exc).__name__}; pyvips {pyvips.__version__})"
    return f"{found} (pyvips {pyvips.__version__})"


def version_report() -> str:
    return "\n".join(
        [
            f"kie-async {__version__}",
            f"Python {platform.python_version()} ({platform.python_implementation()}, {sys.platform})",
            f"aiohttp {aiohttp.__version__}",
            f"libvips {libvips_version()}",
        ]
    )


class VersionAction(argparse.Action):
    """Print :func:`version_report` and exit 0 (argparse's own version action prints one string)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the kie-async, Python, aiohttp and libvips versions and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> NoReturn:
        print(version_report())
        parser.exit(0)
