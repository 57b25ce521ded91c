"""An exclusive, non-blocking "one owner at a time" lock on a file, with the holder named.

Two processes running one batch journal would each see the same requests as "not yet submitted" and buy
them twice. The kernel releases the lock when its holder dies (even by SIGKILL), so a crash never leaves a
stale lock; the holder's pid, host and start time sit in the lock file so the refused process can say who
holds it. Everything here blocks briefly: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from kie_async.core.errors import KieJournalBusyError


class LockHolder(BaseModel):
    pid: int
    host: str
    since: datetime

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since.isoformat(timespec='seconds')}"


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False


def _read_holder(path: Path) -> LockHolder | None:
    try:
        return LockHolder.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None  # being written right now, or an old format: the message just says less


class OwnerLock:
    """Held from :meth:`acquire` to :meth:`release`; refuses a second holder at once instead of waiting."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def __repr__(self) -> str:
        return f"OwnerLock({str(self.path)!r}, held={self._fd is not None})"

    @classmethod
    def acquire(cls, path: Path, *, what: str) -> OwnerLock:
        """Take the lock or raise :class:`KieJournalBusyError` naming the holder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            holder = _read_holder(path)
            who = holder.describe() if holder else "another process"
            raise KieJournalBusyError(
                f"{what} is in use by {who}",
                hint="wait for that run to finish (or stop it), or give this run its own journal file; "
                "one journal has one owner at a time so no request is bought twice",
            )
        holder = LockHolder(pid=os.getpid(), host=socket.gethostname(), since=datetime.now(UTC))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(holder.model_dump(mode="json")).encode())
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing releases the lock; the file stays (removing it would race a new holder)
