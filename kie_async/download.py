"""Atomic, streaming downloads: a temp file beside the destination, size- and content-checked, then renamed.

Either the destination holds the whole, verified file or it does not exist; a crash, a short body, a body that
is not the expected media (an HTML error page or an empty answer with status 200) or a cancellation leaves no
file behind. Memory stays flat: the body is written chunk by chunk, and the sha256 is computed in the same
worker-thread call that writes each chunk, so hashing never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

import aiohttp
import yarl
from pydantic import BaseModel, ConfigDict

from kie_async.errors import KieDownloadContentError, KieDownloadError, KieDownloadURLError
from kie_async.media_sniff import HEAD_BYTES, MediaKind, SniffedMedia, check_media, sniff_head

CHUNK_SIZE = 1 << 20
FALLBACK_EXTENSION = "bin"
"""Extension for a body whose content names no known format (only without ``expect_kind``)."""


class StreamedFile(BaseModel):
    """A body safely on disk: where it landed, how big it is, its sha256 and what its content is."""

    model_config = ConfigDict(frozen=True)

    path: Path
    bytes_written: int
    sha256: str
    sniffed: SniffedMedia


def temp_path_for(dest: Path) -> Path:
    """A unique hidden temp name in the destination's folder, so the final rename stays on one filesystem."""
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")


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


async def stream_response_to_file(
    response: aiohttp.ClientResponse,
    dest: Path,
    *,
    expect_kind: MediaKind | None = None,
    name_from_content: bool = False,
) -> StreamedFile:
    """Write ``response``'s body to ``dest`` atomically and describe what landed.

    With ``expect_kind`` the body must be non-empty media of that kind whose header reads, else
    :class:`KieDownloadContentError` (retryable) and no file. With ``name_from_content`` the final name takes
    the extension of the sniffed content (``dest.with_suffix``), never the server's.
    """
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    tmp = temp_path_for(dest)
    expected = response.content_length
    digest = hashlib.sha256()
    head = bytearray()
    written = 0
    handle: BinaryIO | None = None
    try:
        handle = await asyncio.to_thread(tmp.open, "wb")
        # The socket hands over ~64 KB at a time; batching to ~1 MB saves a thread hop per small chunk.
        pending = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            pending += chunk
            if len(pending) >= CHUNK_SIZE:
                written += await asyncio.to_thread(_write, handle, digest, bytes(pending))
                pending.clear()
        if pending:
            written += await asyncio.to_thread(_write, handle, digest, bytes(pending))
        await asyncio.to_thread(_finish, handle)
        handle = None
        if expected is not None and written != expected:
            raise KieDownloadError(f"download of {dest.name} got {written} bytes, expected {expected}")
        sniffed = sniff_head(bytes(head))
        if expect_kind is not None:
            check = await asyncio.to_thread(check_media, tmp, expect_kind)
            if check.problem is not None:
                said = response.headers.get("Content-Type")
                raise KieDownloadContentError(
                    f"download of {dest.name}: the file host answered HTTP {response.status}"
                    + (f" ({said})" if said else "")
                    + f", but the body {check.problem.message}"
                )
        final = dest.with_suffix(f".{sniffed.extension or FALLBACK_EXTENSION}") if name_from_content else dest
        await asyncio.to_thread(os.replace, tmp, final)
    except BaseException:
        # Includes CancelledError: shield the cleanup so a cancelled download still removes its temp file.
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.shield(asyncio.to_thread(_discard, handle, tmp))
        raise
    return StreamedFile(path=final, bytes_written=written, sha256=digest.hexdigest(), sniffed=sniffed)


def _write(handle: BinaryIO, digest: hashlib._Hash, data: bytes) -> int:
    handle.write(data)
    digest.update(data)
    return len(data)


def _finish(handle: BinaryIO) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()


def _discard(handle: BinaryIO | None, path: Path) -> None:
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
