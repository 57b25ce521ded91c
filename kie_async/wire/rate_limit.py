"""Client-side rate limiting, so a fan-out of hundreds of tasks produces no 429 storm.

Kie.ai admits 20 createTask calls per 10 s per account and drops (does not queue) the rest. A classic token
bucket with capacity 20 refilling at 2/s would let 40 through in some 10 s window, so submissions use an
exact sliding window instead; reads use a token bucket (their limit is softer and unconfirmed).

Both outlive an event loop: a session may be closed in one ``asyncio.run()`` and reopened in the next, and
the account's window must carry over (20 calls just before the loop ended still count). Their counts are
plain numbers; only the lock that orders waiters is an asyncio object, so it is built in the loop that uses it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable


class _LoopLock:
    """An ``asyncio.Lock`` for whichever loop is running: a new one when the loop changed.

    A lock that once had a waiter is bound to that loop for good and fails in the next one with a raw
    ``RuntimeError``. Only one loop uses a limiter at a time (the session refuses a second one), so a fresh
    lock per loop keeps the FIFO order without carrying a dead loop's binding along.
    """

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock


class SlidingWindowLimiter:
    """At most ``limit`` acquisitions in any ``window`` seconds (plus a margin for network jitter)."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        # The server counts arrival times, which jitter after our send times; widen the window a little.
        self.window = window * (1 + margin)
        self._clock = clock
        self._stamps: collections.deque[float] = collections.deque()
        self._blocked_until = 0.0
        self._lock = _LoopLock()

    def __repr__(self) -> str:
        return f"SlidingWindowLimiter(limit={self.limit}, window={self.window:.2f}s)"

    async def acquire(self) -> float:
        """Wait for a slot and return its stamp (pass it to :meth:`restamp` once the request is answered)."""
        async with self._lock.get():  # FIFO: waiters are served in arrival order
            while True:
                now = self._clock()
                if now < self._blocked_until:
                    await asyncio.sleep(self._blocked_until - now)
                    continue
                while self._stamps and now - self._stamps[0] >= self.window:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return now
                await asyncio.sleep(self.window - (now - self._stamps[0]))

    def restamp(self, stamp: float) -> None:
        """Move a slot's stamp to now, when the request has been answered.

        The server counts a request when it *arrives*, which can be well after the slot was taken (a full
        connection pool, a busy loop). Arrival lies between the two stamps, so counting the window from the
        answer is the safe bound.
        """
        try:
            self._stamps.remove(stamp)
        except ValueError:
            return  # already aged out of the window
        self._stamps.append(self._clock())  # every other stamp is <= now, so the deque stays sorted

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with limiter.slot():`` around one request: acquire before, restamp after."""
        stamp = await self.acquire()
        try:
            yield
        finally:
            self.restamp(stamp)

    def penalize(self, seconds: float) -> None:
        """After a 429, hold every submitter back for ``seconds`` (the server's ``Retry-After``)."""
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, bursts up to ``capacity``."""

    def __init__(self, rate: float, capacity: float | None = None, *, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = _LoopLock()

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}/s, capacity={self.capacity})"

    async def acquire(self) -> None:
        async with self._lock.get():
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
