"""The part of a session that belongs to one event loop, and the check that it is used from that loop.

``asyncio`` primitives and aiohttp pools work only in the loop they first ran in. A script that calls
``asyncio.run()`` twice, a notebook cell, or a framework that starts its own loop each make a new loop, and
a session reused across them used to fail deep inside with ``RuntimeError: ... bound to a different event
loop``. So a session builds its loop-bound state (pool, transfer slots) in ``open()``, inside the running
loop, remembers that loop, and refuses any other with a :class:`KieConfigError` that says what to do. A
closed session reopens cleanly in a new loop; the rate limits (plain numbers) carry over.
"""

from __future__ import annotations

import asyncio

from kie_async.core.errors import KieConfigError
from kie_async.core.settings import KieSettings

_ONE_LOOP_HINT = (
    "open the session inside the loop that uses it (`async with KieSession(...) as kie:` inside the coroutine "
    "that asyncio.run() runs), or `await kie.close()` before that loop ends and open it again in the new one"
)


class LoopState:
    """What a session builds in the loop that opened it (the transfer slots), and that loop."""

    def __init__(self, settings: KieSettings) -> None:
        self.loop = asyncio.get_running_loop()
        self.upload_slots = asyncio.Semaphore(settings.max_concurrent_uploads)
        self.download_slots = asyncio.Semaphore(settings.max_concurrent_downloads)

    def check(self, action: str) -> None:
        """Raise :class:`KieConfigError` unless the running loop is the one the session was opened in."""
        if running_loop() is not self.loop:
            raise wrong_loop_error(action, opened_loop_closed=self.loop.is_closed())


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def wrong_loop_error(action: str, *, opened_loop_closed: bool) -> KieConfigError:
    state = "has ended (a finished asyncio.run()?)" if opened_loop_closed else "is still running"
    return KieConfigError(
        f"KieSession cannot {action} from this event loop: it was opened in another one, which {state}",
        hint=_ONE_LOOP_HINT,
    )


def not_open_error() -> KieConfigError:
    return KieConfigError(
        "KieSession is not open", hint="use `async with KieSession(settings) as kie:` or await kie.open()"
    )
