"""Wait for a condition, not for a wall-clock margin: a busy 2-core machine makes every margin too short.

``await until(lambda: stats.x == 1, "the callback")`` returns as soon as the condition holds and fails, naming
what it waited for, only after a generous timeout (a test that waited forever would hide what went wrong).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

TIMEOUT = 60.0


async def until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.01)
