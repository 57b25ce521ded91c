"""Sweeping what crashed writers left in ``<root>/.tmp``: half-assembled run folders and staged downloads.

Staging folders carry their owner in the name (``<stem>.<host>-<pid>.<hex>``). One whose owner is a dead
process on this machine can go at once; anything else (another host's, or an old-style name without a host)
only once it is older than any live writer could be. Blocking: call through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from kie_async.artifacts.layout import DOWNLOADS_DIRNAME, STAGING_NAME, host_tag, tmp_dir


class StagingSweep(BaseModel):
    """What a sweep found under ``.tmp`` (paths relative to it)."""

    removed: list[str] = Field(default_factory=list, description="left by dead processes (or too old); deleted")
    kept: list[str] = Field(default_factory=list, description="owned by a live process, or not old enough to judge")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # pragma: no cover - os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _owner_dead(name: str) -> bool:
    match = STAGING_NAME.match(name)
    if match is None or match["host"] != host_tag():
        return False
    return not _pid_alive(int(match["pid"]))


def staging_entries(root: Path) -> list[Path]:
    """Every staging folder under ``.tmp`` (run folders being assembled and staged downloads)."""
    base = tmp_dir(root)
    found: list[Path] = []
    for folder in (base, base / DOWNLOADS_DIRNAME):
        if not folder.is_dir():
            continue
        found += [p for p in folder.iterdir() if p.name != DOWNLOADS_DIRNAME and STAGING_NAME.match(p.name)]
    return sorted(found)


def sweep_staging(root: Path, *, older_than: float | None = None) -> StagingSweep:
    """Delete staging left by dead processes on this host, and (with ``older_than``) anything that old."""
    cutoff = None if older_than is None else time.time() - older_than
    report = StagingSweep()
    base = tmp_dir(root)
    for entry in staging_entries(root):
        name = entry.relative_to(base).as_posix()
        try:
            too_old = cutoff is not None and entry.stat().st_mtime < cutoff
        except OSError:
            continue  # removed meanwhile by its owner
        if too_old or _owner_dead(entry.name):
            with contextlib.suppress(OSError):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                report.removed.append(name)
                continue
        report.kept.append(name)
    return report
