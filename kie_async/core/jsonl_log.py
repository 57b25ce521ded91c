"""Crash-safe append-only JSON-lines files, shared by the artifact index and the batch journal.

An append is one ``write`` of one complete line under an exclusive ``flock`` on a side lock file (released
by the kernel if the holder dies), followed by ``fsync``. A writer killed mid-line leaves a torn tail; the
next append seals it with a newline first so it can never glue itself onto a good line, and readers skip it
and say so. Everything here blocks: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
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


_CUT_OFF = ("Unterminated string", "Expecting")


def is_torn_write(raw: bytes) -> bool:
    """Whether ``raw`` is a record cut off by a crash mid-append: UTF-8 JSON that stops before it closes.

    Such a line is sealed by the next append and stays in the middle of the file; it is harmless (its record's
    step never happened). A line that is not UTF-8 (a file re-encoded as UTF-16), or that breaks before its
    end (a hand edit), is damage, and readers that must not guess (the journal) refuse it.
    """
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False
    if not text.startswith("{"):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Unterminated string"):
            return True  # the open string runs to the end of the line: cut off inside it
        return exc.msg.startswith(_CUT_OFF) and exc.pos >= len(text)
    return False  # it parses: whatever is wrong with it, it was not cut off


def read_lines(path: Path) -> JsonlLines:
    """Read a JSON-lines file (missing file = empty)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JsonlLines(lines=[])
    return split_lines(data)
