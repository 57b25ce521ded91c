"""``kie-async --version``: the SDK and Python at once; ``--version --details`` adds what a bug report needs.

The short form runs before anything else is imported (no argparse, aiohttp or libvips), so scripts that check
the version pay little more than the interpreter's start-up.
"""

from __future__ import annotations

import sys

from kie_async._version import __version__

VERSION_FLAGS = ("--version", "-V")
DETAILS_FLAG = "--details"


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


def _python_line() -> str:
    version = ".".join(str(part) for part in sys.version_info[:3])
    implementation = {"cpython": "CPython", "pypy": "PyPy"}.get(sys.implementation.name, sys.implementation.name)
    return f"Python {version} ({implementation}, {sys.platform})"


def short_version_report() -> str:
    """The SDK and Python versions, without importing aiohttp or libvips."""
    return f"kie-async {__version__}\n{_python_line()}"


def version_report() -> str:
    """Everything a bug report needs: the SDK, Python, aiohttp and libvips versions."""
    import aiohttp  # only here: the short report must not pay for it

    return "\n".join(
        [f"kie-async {__version__}", _python_line(), f"aiohttp {aiohttp.__version__}", f"libvips {libvips_version()}"]
    )


def version_request(argv: list[str]) -> str | None:
    """The report ``argv`` asks for (``--version``, maybe with ``--details``, and nothing else), else ``None``."""
    flags = set(argv)
    if not flags & set(VERSION_FLAGS) or not flags <= {*VERSION_FLAGS, DETAILS_FLAG}:
        return None
    return version_report() if DETAILS_FLAG in flags else short_version_report()
