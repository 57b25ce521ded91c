"""Where things live under an artifacts root, in one place so writer, index and queries agree.

<root>/index.jsonl         append-only, one JSON line per run event
<root>/index.lock          flock target; never replaced, so a rebuild can swap index.jsonl safely
<root>/runs/<run_id>/      one folder per run (run.json, inputs/, outputs/, derivatives/)
<root>/.tmp/               runs being assembled; renamed into runs/ only when complete
<root>/emulator-state/     the account ``--offline`` commands share (kie_async.emulator.persist)
<root>/gallery.html        ``kie-async artifacts gallery`` (kie_async.artifacts.gallery)
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from pathlib import Path

from kie_async.core.tokens import name_token

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
STAGING_NAME = re.compile(r"^(?P<stem>.+)\.(?:(?P<host>[0-9a-f]{6})-)?(?P<pid>\d+)\.[0-9a-f]{8}$")
"""How staging folders in ``.tmp`` are named: ``<stem>.<host>-<pid>.<8 hex>`` (older: ``<stem>.<pid>.<8 hex>``)."""
DOWNLOADS_DIRNAME = "downloads"
"""``.tmp/downloads/<task_id>.<host>-<pid>.<8 hex>``: outputs being fetched before they join a run folder."""


@functools.cache
def host_tag() -> str:
    """A short, stable tag of this machine, so a sweep never judges another host's pids (computed once)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def staging_name(stem: str) -> str:
    """``<stem>.<host>-<pid>.<8 hex>``: whose staging folder this is, for the sweep after a crash."""
    return f"{stem}.{host_tag()}-{os.getpid()}.{name_token(4)}"
