"""Where blocking work runs: one pool for file I/O, apart from asyncio's default executor and the CPU pool.

Each run hands ~18 pieces of work to threads. When they all shared asyncio's default executor, sub-millisecond
stages queued for 50–800 ms behind fsyncs and multi-MB copies of other runs. Now file work (copies, hard
links, hashing files, fsync, renames, index and journal appends) goes to :func:`run_file_io`'s pool, libvips
encodes to the bounded derivative pool (``kie_async.artifacts.derivatives``), each download body to its own
writer thread (``kie_async.wire.download``), and pure stages that take well under a millisecond (normalize,
validate without local files) run inline on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

FILE_IO_WORKERS = min(16, (os.cpu_count() or 1) + 4)
"""File I/O mostly waits on the disk, so a few more threads than cores; the bound keeps fsync storms sane."""

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def file_io_pool() -> ThreadPoolExecutor:
    """The process-wide file I/O pool (created on first use; threads are reused across event loops)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=FILE_IO_WORKERS, thread_name_prefix="kie-file-io")
        return _pool


async def run_file_io(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Like :func:`asyncio.to_thread` (context variables included), on the file I/O pool."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(file_io_pool(), call)
