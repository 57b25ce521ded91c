"""Crash-safe append-only JSON-lines files, shared by the artifact index and the batch journal.

An append is one ``write`` of one complete line under an exclusive ``flock`` on a side lock file (released
by the kernel if the holder dies), followed by ``fsync``. A writer killed mid-line leaves a torn tail; the
next append seals it with a newline first so it can never glue itself onto a good line, and readers skip it
and say so. Everything here blocks: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class JsonlLines(BaseModel):
    """Complete lines (1-based numbers) and a torn last line if the file did not end with a newline."""

    model_config = ConfigDict(frozen=True)

    lines: list[tuple[int, bytes]]
    torn_tail: bytes | None = None
    torn_line_number: int | None = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_fd(fd: int, exclusive: bool) -> None:
        # Windows has no shared flock; an exclusive byte-range lock on byte 0 serialises everyone.
        del exclusive
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue  # LK_LOCK gives up after ~10 s; keep waiting like flock would
else:
    import fcntl

    def _lock_fd(fd: int, exclusive: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)


@contextlib.contextmanager
def locked(lock_file: Path, *, exclusive: bool) -> Iterator[None]:
    """Cross-process lock on ``lock_file`` (created if missing; released by the kernel if the holder dies)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_fd(fd, exclusive)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def append_line(path: Path, line: bytes, *, lock_file: Path | None = None, fsync: bool = True) -> None:
    """Append exactly one newline-terminated line, atomically with respect to other appenders."""
    if not line.endswith(b"\n") or b"\n" in line[:-1]:
        raise ValueError("a JSON-lines record must be exactly one newline-terminated line")
    with locked(lock_file or path.with_name(path.name + ".lock"), exclusive=True):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                os.lseek(fd, size - 1, os.SEEK_SET)  # O_APPEND still sends the write to the end
                if os.read(fd, 1) != b"\n":
                    line = b"\n" + line  # seal a torn line left by a crashed writer
            _write_all(fd, line)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)


def split_lines(data: bytes, first_number: int = 1) -> JsonlLines:
    """Split file content into complete non-blank lines and a possibly torn tail."""
    cut = data.rfind(b"\n") + 1
    lines = [(first_number + i, raw) for i, raw in enumerate(data[:cut].split(b"\n")[:-1]) if raw.strip()]
    tail = data[cut:]
    if not tail.strip():
        return JsonlLines(lines=lines)
    return JsonlLines(lines=lines, torn_tail=tail, torn_line_number=first_number + data[:cut].count(b"\n"))


def read_lines(path: Path) -> JsonlLines:
    """Read a JSON-lines file (missing file = empty)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JsonlLines(lines=[])
    return split_lines(data)
