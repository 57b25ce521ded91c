"""The user's state folder for kie-async: what this machine remembers between runs (the purchase ledger, the
epochs of shared ledgers it joined). ``$KIE_STATE_DIR`` overrides the platform's convention."""

from __future__ import annotations

import os
import sys
from pathlib import Path

STATE_DIR_ENV = "KIE_STATE_DIR"


def state_dir() -> Path:
    """``$KIE_STATE_DIR``, else ``$XDG_STATE_HOME/kie-async`` (``~/.local/state/kie-async``) on Linux,
    ``~/Library/Application Support/kie-async`` on macOS, ``%LOCALAPPDATA%\\kie-async`` on Windows."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "kie-async"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "kie-async"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kie-async"
