"""Atomic, streaming downloads: a temp file beside the destination, size-checked, then renamed.

Either the destination holds the whole file or it does not exist; a crash, a short body or a cancellation
leaves no partial file behind. Memory stays flat: the body is written chunk by chunk through aiofiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path

import aiofiles
import aiofiles.os
import aiohttp

from kie_async.errors import KieDownloadError

CHUNK_SIZE = 1 << 20


def temp_path_for(dest: Path) -> Path:
    """A unique hidden temp name in the destination's folder, so the final rename stays on one filesystem."""
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")


async def stream_response_to_file(response: aiohttp.ClientResponse, dest: Path) -> int:
    """Write ``response``'s body to ``dest`` atomically and return the byte count."""
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    tmp = temp_path_for(dest)
    expected = response.content_length
    written = 0
    try:
        async with aiofiles.open(tmp, "wb") as fh:
            # The socket hands over ~64 KB at a time; batching to ~1 MB saves a thread hop per small chunk.
            pending = bytearray()
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                pending += chunk
                if len(pending) >= CHUNK_SIZE:
                    await fh.write(bytes(pending))
                    written += len(pending)
                    pending.clear()
            if pending:
                await fh.write(bytes(pending))
                written += len(pending)
            await fh.flush()
            await asyncio.to_thread(os.fsync, fh.fileno())
        if expected is not None and written != expected:
            raise KieDownloadError(f"download of {dest.name} got {written} bytes, expected {expected}")
        await aiofiles.os.replace(tmp, dest)
    except BaseException:
        # Includes CancelledError: shield the cleanup so a cancelled download still removes its temp file.
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.shield(asyncio.to_thread(_unlink_quietly, tmp))
        raise
    return written


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
