"""Atomic, streaming downloads: a temp file beside the destination, size- and content-checked, then renamed.

Either the destination holds the whole, verified file or it does not exist; a crash, a short body, a body that
is not the expected media (an HTML error page or an empty answer with status 200) or a cancellation leaves no
file behind.

Why a writer thread per download: handing every ~1 MiB of body to a thread pool (aiofiles, ``to_thread``)
wakes the loop and passes the GIL back and forth per hand-off, which doubled the loop thread's work against
a loop that simply wrote on itself. Here the loop only appends the chunks aiohttp already holds to a list
(no copy) and, every :data:`BATCH_BYTES`, puts the list on a queue; one thread owns the raw descriptor and
does everything blocking: ``mkdir``, ``open``, ``write``, the sha256 (OpenSSL releases the GIL), ``fsync``,
the size and content checks and the rename. The loop is woken only when the thread is more than
:data:`MAX_QUEUED_BYTES` behind (so memory stays flat whatever the file size) and once at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yarl
from pydantic import BaseModel, ConfigDict

from kie_async.core.errors import (
    KieDownloadContentError,
    KieDownloadError,
    KieDownloadTooLargeError,
    KieDownloadURLError,
)
from kie_async.core.media_sniff import HEAD_BYTES, MediaKind, SniffedMedia, check_media, sniff_head
from kie_async.core.settings import OutputKind
from kie_async.core.tokens import name_token

CHUNK_SIZE = 1 << 20
BATCH_BYTES = 1 << 20
"""Body bytes gathered on the loop before one hand-off to the writer thread. Measured on 256 MiB: 1 MiB used
~40% less CPU than 4 MiB (the batch is still in cache when the thread hashes and writes it) and no more than
256 KiB (fewer hand-offs); see ``benchmarks/README.md``."""
MAX_QUEUED_BYTES = 4 * BATCH_BYTES
"""How far the writer may fall behind before the loop waits for it: the bound on buffered body in memory."""
FALLBACK_EXTENSION = "bin"
"""Extension for a body whose content names no known format (only without ``expect_kind``)."""
_FILE_MODE = 0o666  # like open(): the umask decides


class StreamedFile(BaseModel):
    """A body safely on disk: where it landed, how big it is, its sha256 and what its content is."""

    model_config = ConfigDict(frozen=True)

    path: Path
    bytes_written: int
    sha256: str
    sniffed: SniffedMedia


def temp_path_for(dest: Path) -> Path:
    """A unique hidden temp name in the destination's folder, so the final rename stays on one filesystem."""
    return dest.with_name(f".{dest.name}.{name_token(6)}.part")


def check_download_url(url: str) -> None:
    """Refuse, before any request, a URL that no retry can ever fetch (not http(s), no host, unparsable)."""
    shown = url if len(url) <= 200 else url[:200] + "…"
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        raise KieDownloadURLError(f"{shown!r} cannot be downloaded: not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        scheme = f"a {parsed.scheme}: URL" if parsed.scheme else "not an absolute URL"
        raise KieDownloadURLError(f"{shown!r} cannot be downloaded: {scheme}, only http(s) is fetched")
    if not parsed.host:
        raise KieDownloadURLError(f"{shown!r} cannot be downloaded: the URL has no host")


_ABORT = object()

WRITER_THREADS = 64
"""Writer threads kept for reuse. A download holds one for its whole body, so this bounds downloads writing at
once across all sessions (a session's ``max_concurrent_downloads`` is far lower by default); a download beyond
it waits with at most :data:`MAX_QUEUED_BYTES` buffered until a thread is free."""


class _WriterThreads:
    """Reused daemon threads for download writers.

    Reused: ``Thread.start()`` blocks its caller (the event loop) until the new thread has taken the GIL, which
    under load measured ~1.7 ms of loop stall per download, and creating and ending a thread per download cost
    ~2 ms of CPU each. Daemon, unlike ``ThreadPoolExecutor``'s (which interpreter exit joins): a program that
    exits in the middle of a download, its loop thread frozen, must not wait for a body that never comes.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._threads = 0
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle thread takes it
                spawn = False
            else:
                spawn = self._threads < self._limit  # else it waits for the next thread to finish
                self._threads += spawn
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._work, name="kie-download-writer", daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            with contextlib.suppress(BaseException):  # a writer reports its own errors; the thread stays
                job()
            with self._lock:
                self._idle += 1


_writers = _WriterThreads(WRITER_THREADS)


def _reset_after_fork() -> None:
    global _writers
    _writers = _WriterThreads(WRITER_THREADS)  # the parent's threads do not exist in a forked child


os.register_at_fork(after_in_child=_reset_after_fork)


class _Finish:
    """The last queue item: run ``finalize(tmp, written, head)`` in the writer thread after fsync and close."""

    def __init__(self, finalize: Callable[[Path, int, bytes], StreamedFile]) -> None:
        self.finalize = finalize


class _FileWriter:
    """One thread owning one temp file; the loop talks to it through a queue and two futures."""

    def __init__(self, dest: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.dest = dest
        self.tmp = temp_path_for(dest)
        self._loop = loop
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._room: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.done: asyncio.Future[StreamedFile | None] = loop.create_future()
        self._digest = hashlib.sha256()
        self._head = bytearray()
        self._written = 0
        _writers.submit(self._run)

    # -- loop side ----------------------------------------------------------------------------------------

    async def put(self, chunks: list[bytes], size: int) -> None:
        """Queue a batch; wait only when the thread is more than :data:`MAX_QUEUED_BYTES` behind."""
        with self._lock:
            if self._error is not None:
                raise self._error
            self._queued += size
            self._queue.put(chunks)
            if self._queued <= MAX_QUEUED_BYTES:
                return
            room = self._room = self._loop.create_future()
        await room

    def finish(self, finalize: Callable[[Path, int, bytes], StreamedFile]) -> None:
        self._queue.put(_Finish(finalize))

    def abort(self) -> None:
        """Stop writing and remove the temp file (in the thread); ``done`` resolves when it is gone."""
        self._queue.put(_ABORT)

    # -- writer thread ------------------------------------------------------------------------------------

    def _notify(
        self, future: asyncio.Future[Any] | None, result: Any = None, error: BaseException | None = None
    ) -> None:
        if future is None:
            return

        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(settle)

    def _run(self) -> None:
        fd: int | None = None
        outcome: StreamedFile | None = None
        error: BaseException | None = None
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), _FILE_MODE)
            while True:
                try:
                    item = self._queue.get(timeout=1.0)
                except queue.Empty:
                    # A loop that closed without cancelling the download will never send the rest: give the
                    # reused thread back instead of waiting for it forever.
                    item = _ABORT if self._loop.is_closed() else None
                if item is None:
                    continue
                if item is _ABORT:
                    break
                if isinstance(item, _Finish):
                    os.fsync(fd)
                    os.close(fd)
                    fd = None
                    outcome = item.finalize(self.tmp, self._written, bytes(self._head))
                    break
                self._write(fd, item)
        except BaseException as exc:  # disk full, permission, a failed check: report it, keep no file
            error = exc
            with self._lock:
                self._error = exc
                room, self._room = self._room, None
            self._notify(room, error=exc)  # a loop waiting for room stops reading and aborts
        finally:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if outcome is None:  # aborted or failed: the temp file must not outlive the call
                with contextlib.suppress(OSError):
                    self.tmp.unlink()
            # Only now: whoever awaits ``done`` may look at the folder and must find no temp file.
            self._notify(self.done, outcome, error)

    def _write(self, fd: int, chunks: list[bytes]) -> None:
        # One buffer per batch: one hash update and one write release and retake the GIL twice per batch
        # instead of twice per socket read (~256 KiB); measured, that per-chunk GIL traffic cost more CPU
        # than the copy (see benchmarks/README.md).
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._digest.update(data)
        if len(self._head) < HEAD_BYTES:
            self._head += data[: HEAD_BYTES - len(self._head)]
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        size = len(data)
        self._written += size
        with self._lock:
            self._queued -= size
            room = None
            if self._room is not None and self._queued <= MAX_QUEUED_BYTES // 2:
                room, self._room = self._room, None
        self._notify(room)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


DEFAULT_MAX_OUTPUT_BYTES: dict[OutputKind, int] = {
    "image": 256 << 20,
    "audio": 1 << 30,
    "video": 16 << 30,
    "other": 4 << 30,
}
"""Size caps by output kind: far above any real output, low enough that an endless body stops long before a disk
fills. ``KieSettings.max_output_bytes`` overrides them per kind."""


def output_cap(kind: MediaKind | None, caps: Mapping[OutputKind, int] | None = None) -> int:
    """The size cap for an output of ``kind`` (``other`` when the kind is not known)."""
    table: dict[OutputKind, int] = {**DEFAULT_MAX_OUTPUT_BYTES, **(caps or {})}
    return table[kind or "other"]


def _too_large(dest: Path, cap: int, what: str) -> KieDownloadTooLargeError:
    return KieDownloadTooLargeError(f"download of {dest.name}: {what} passes the {cap:,}-byte cap for this output")


async def stream_response_to_file(
    response: aiohttp.ClientResponse,
    dest: Path,
    *,
    expect_kind: MediaKind | None = None,
    name_from_content: bool = False,
    max_bytes: int | None = None,
) -> StreamedFile:
    """Write ``response``'s body to ``dest`` atomically and describe what landed.

    With ``expect_kind`` the body must be non-empty media of that kind whose header reads, else
    :class:`KieDownloadContentError` (retryable) and no file. With ``name_from_content`` the final name takes
    the extension of the sniffed content (``dest.with_suffix``), never the server's. A body longer than
    ``max_bytes`` (default: the cap for ``expect_kind``) stops with :class:`KieDownloadTooLargeError` and no file.
    """
    cap = max_bytes if max_bytes is not None else output_cap(expect_kind)
    expected = response.content_length
    if expected is not None and expected > cap:
        raise _too_large(dest, cap, f"the announced {expected:,} bytes")
    status = response.status
    said = response.headers.get("Content-Type")
    writer = _FileWriter(dest, asyncio.get_running_loop())

    def finalize(tmp: Path, written: int, head: bytes) -> StreamedFile:
        """Blocking, in the writer thread, after fsync: size check, content check, then the atomic rename."""
        if expected is not None and written != expected:
            raise KieDownloadError(f"download of {dest.name} got {written} bytes, expected {expected}")
        sniffed = sniff_head(head)
        if expect_kind is not None:
            check = check_media(tmp, expect_kind)
            if check.problem is not None:
                raise KieDownloadContentError(
                    f"download of {dest.name}: the file host answered HTTP {status}"
                    + (f" ({said})" if said else "")
                    + f", but the body {check.problem.message}"
                )
        final = dest.with_suffix(f".{sniffed.extension or FALLBACK_EXTENSION}") if name_from_content else dest
        os.replace(tmp, final)
        return StreamedFile(path=final, bytes_written=written, sha256=writer.sha256, sniffed=sniffed)

    try:
        batch: list[bytes] = []
        size = 0
        total = 0
        async for chunk in response.content.iter_any():
            batch.append(chunk)
            size += len(chunk)
            total += len(chunk)
            if total > cap:
                raise _too_large(dest, cap, "the body")
            if size >= BATCH_BYTES:
                await writer.put(batch, size)
                batch, size = [], 0
        if batch:
            await writer.put(batch, size)
        writer.finish(finalize)
        saved = await writer.done
    except BaseException:
        # Includes CancelledError: the thread removes the temp file; wait for it (shielded) so no file outlives
        # the call. A second cancellation only stops the wait, not the clean-up.
        writer.abort()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(writer.done)
        raise
    assert saved is not None
    return saved
