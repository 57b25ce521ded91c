"""Where things live under an artifacts root, in one place so writer, index and queries agree.

    <root>/index.jsonl         append-only, one JSON line per run event
    <root>/index.lock          flock target; never replaced, so a rebuild can swap index.jsonl safely
    <root>/runs/<run_id>/      one folder per run (run.json, inputs/, outputs/, derivatives/)
    <root>/.tmp/               runs being assembled; renamed into runs/ only when complete
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_ROOT_ENV = "KIE_OUTPUT_DIR"  # the same knob the CLI uses for downloads
DEFAULT_ROOT = Path("outputs")
INDEX_FILENAME = "index.jsonl"
LOCK_FILENAME = "index.lock"
RUNS_DIRNAME = "runs"
TMP_DIRNAME = ".tmp"


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The artifacts root: explicit argument, else ``$KIE_OUTPUT_DIR``, else ``./outputs``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(DEFAULT_ROOT_ENV)
    return Path(env) if env else DEFAULT_ROOT


def index_path(root: Path) -> Path:
    return root / INDEX_FILENAME


def lock_path(root: Path) -> Path:
    return root / LOCK_FILENAME


def runs_dir(root: Path) -> Path:
    return root / RUNS_DIRNAME


def tmp_dir(root: Path) -> Path:
    return root / TMP_DIRNAME

MANIFEST_FILENAME_GLOB = "*/run.json"
STAGING_NAME = re.compile(r"^.+\.\d+\.[0-9a-f]{8}$")
"""How the writer names a run folder under assembly in ``.tmp``: ``<run_id>.<pid>.<8 hex>``."""
