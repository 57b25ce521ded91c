"""This machine's memory of the shared ledgers it has joined: how a process that starts after Redis lost its
data knows the data was lost, instead of taking an empty store for a new account.

A shared ledger (the batch journals and the request index in Redis) carries an *epoch*: a random id made when
the ledger is first created, and again when an operator re-seeds it (``kie-async ledger recover``). Every
process that joins a ledger writes its epoch here, one small file per store and namespace under the user's
state folder (``$KIE_STATE_DIR``, else ``$XDG_STATE_HOME/kie-async``, else ``~/.local/state/kie-async``;
``%LOCALAPPDATA%\\kie-async`` on Windows). A store with no epoch, or a freshly created one that is not the one
remembered, is a lost ledger: buying stops with ``JournalLostError`` until it is re-seeded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from kie_async.core.state_dir import STATE_DIR_ENV, state_dir

__all__ = ["STATE_DIR_ENV", "remember_epoch", "remembered_epoch", "state_dir"]


def _witness_path(url: str, namespace: str) -> Path:
    parts = urlsplit(url)
    where = f"{parts.hostname or parts.path}:{parts.port or ''}{parts.path if parts.hostname else ''}|{namespace}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:20]
    return state_dir() / "ledgers" / f"{digest}.json"


def remembered_epoch(url: str, namespace: str) -> str | None:
    """The ledger epoch this machine last joined on that store and namespace, if any."""
    try:
        data = json.loads(_witness_path(url, namespace).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    epoch = data.get("epoch") if isinstance(data, dict) else None
    return epoch if isinstance(epoch, str) and epoch else None


def remember_epoch(url: str, namespace: str, epoch: str, shown_url: str) -> None:
    """Note ``epoch`` as the ledger this machine is on (atomic replace; a failure is only logged by callers)."""
    path = _witness_path(url, namespace)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"epoch": epoch, "store": shown_url, "namespace": namespace}), encoding="utf-8")
    os.replace(tmp, path)
