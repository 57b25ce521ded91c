"""The one place that decides whether and when a failed request is tried again.

Two kinds of call: idempotent reads (status, credits, download URL, downloads, uploads) retry on 429, 5xx,
resets, timeouts and broken download bodies (short, long, not the output); ``createTask`` spends credits, so
it retries only when the request provably never reached the server (connect failure) or was refused before
any work (429). Everything else after the body was sent would risk paying twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from kie_async.core.errors import (
    KieAPIStatusError,
    KieConnectionError,
    KieDownloadError,
    KieError,
    KieRateLimitError,
    KieResponseShapeError,
    KieTimeoutError,
    is_retryable_code,
)
from kie_async.core.logs import attempt_number
from kie_async.core.settings import RetrySettings
from kie_async.core.telemetry import retry_reason

T = TypeVar("T")
log = logging.getLogger("kie_async.wire.retry")

Sleep = Callable[[float], Awaitable[None]]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None  # "inf" / "nan" are garbage, not advice
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """Whether ``exc`` may be retried; ``idempotent=False`` is the no-double-spend rule for createTask."""
    if isinstance(exc, KieRateLimitError):
        return True  # refused before any work, for reads and createTask alike
    if isinstance(exc, KieConnectionError):
        return idempotent or not exc.request_sent
    if isinstance(exc, KieTimeoutError):
        return idempotent or not exc.request_sent
    if isinstance(exc, KieResponseShapeError):
        return idempotent  # an unreadable answer to a read; for createTask it may hide a created task
    if isinstance(exc, KieAPIStatusError):
        return idempotent and is_retryable_code(exc.code)
    if isinstance(exc, KieDownloadError):
        # A short, long or wrong body is a fault of that one response; a hopeless URL stays hopeless.
        return idempotent and exc.retryable
    return False


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter that defers to the server's ``Retry-After``."""

    settings: RetrySettings = field(default_factory=RetrySettings)
    rng: random.Random = field(default_factory=random.Random)
    sleep: Sleep = asyncio.sleep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number ``attempt`` (0-based).

        A ``Retry-After`` above ``max_retry_after`` is waited in full only with ``over_retry_after_cap="wait"``;
        with the default ``"raise"`` :meth:`run` never gets here with one (it raises instead).
        """
        s = self.settings
        if retry_after is not None:
            # The server said when; add a little jitter so a fan-out does not return in lockstep.
            wait = retry_after if s.over_retry_after_cap == "wait" else min(retry_after, s.max_retry_after)
            return wait + self.rng.uniform(0, min(1.0, s.initial_backoff))
        base = min(s.initial_backoff * (s.multiplier**attempt), s.max_backoff)
        return base * (1 - s.jitter * self.rng.random())

    async def run(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        what: str,
        max_retries: int | None = None,
        on_retry: Callable[[int, KieError, float], None] | None = None,
    ) -> T:
        """Run ``op`` until it succeeds, a non-retryable error occurs, or retries run out."""
        limit = self.settings.max_retries if max_retries is None else max_retries
        attempt = 0
        reason: str | None = None
        while True:
            token = attempt_number.set(attempt + 1)
            why = retry_reason.set(reason)  # the span of the next attempt says why it is one
            try:
                return await op()
            except KieError as exc:
                if attempt >= limit or not is_retryable(exc, idempotent=idempotent):
                    raise
                retry_after = exc.retry_after if isinstance(exc, KieAPIStatusError) else None
                if self._too_long(retry_after):
                    assert isinstance(exc, KieAPIStatusError)
                    exc.with_hint(
                        f"Kie.ai asked to wait {retry_after:.0f}s before retrying, above max_retry_after "
                        f"({self.settings.max_retry_after:g}s), so the SDK did not sleep through it: retry after "
                        "error.retry_after seconds, or set RetrySettings(over_retry_after_cap='wait')"
                    )
                    raise
                wait = self.delay(attempt, retry_after)
                log.info("%s failed (%s); retry %d/%d in %.2fs", what, type(exc).__name__, attempt + 1, limit, wait)
                if on_retry is not None:
                    on_retry(attempt, exc, wait)
                await self.sleep(wait)
                attempt += 1
                reason = type(exc).__name__
            finally:
                attempt_number.reset(token)
                retry_reason.reset(why)

    def _too_long(self, retry_after: float | None) -> bool:
        s = self.settings
        return retry_after is not None and retry_after > s.max_retry_after and s.over_retry_after_cap == "raise"
