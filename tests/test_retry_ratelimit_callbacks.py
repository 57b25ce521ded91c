"""Backoff arithmetic, Retry-After parsing, the limiters' guarantees, the poll schedule and callback signatures."""

from __future__ import annotations

import asyncio
import base64
import calendar
import hashlib
import hmac
import random
import time

import pytest

from kie_async.core.settings import PollSettings, RetrySettings
from kie_async.errors import (
    KieCallbackVerificationError,
    KieConnectionError,
    KieRateLimitError,
    KieServerError,
    KieTimeoutError,
    KieValidationError,
)
from kie_async.wire.callbacks import sign_callback, verify_callback_signature
from kie_async.wire.polling import poll_interval
from kie_async.wire.rate_limit import SlidingWindowLimiter, TokenBucket
from kie_async.wire.retry import RetryPolicy, is_retryable, parse_retry_after


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("  1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1_800_000_000.0
    at_eight = float(calendar.timegm((2027, 1, 15, 8, 0, 0)))
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:10 GMT", now=at_eight) == pytest.approx(10.0)
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now=now) == 0.0


def test_backoff_grows_caps_and_jitters() -> None:
    policy = RetryPolicy(RetrySettings(initial_backoff=1, max_backoff=8, multiplier=2, jitter=0.5), random.Random(1))
    delays = [[policy.delay(a) for _ in range(200)] for a in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    for attempt, samples in enumerate(delays):
        assert all(ceilings[attempt] * 0.5 <= d <= ceilings[attempt] for d in samples)
        assert len({round(d, 6) for d in samples}) > 100  # jittered, not lockstep


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(RetrySettings(initial_backoff=0.2, max_retry_after=30))
    assert 12 <= policy.delay(0, retry_after=12) <= 12.2
    assert 30 <= policy.delay(5, retry_after=500) <= 30.2


@pytest.mark.parametrize(
    ("exc", "read", "create"),
    [
        (KieRateLimitError("x", code=429), True, True),
        (KieServerError("x", code=500), True, False),
        (KieServerError("x", code=501), False, False),
        (KieValidationError("x", code=422), False, False),
        (KieConnectionError("x", request_sent=False), True, True),
        (KieConnectionError("x", request_sent=True), True, False),
        (KieTimeoutError("x", request_sent=False), True, True),
        (KieTimeoutError("x"), True, False),
    ],
)
def test_retry_decisions(exc: Exception, read: bool, create: bool) -> None:
    assert is_retryable(exc, idempotent=True) is read
    assert is_retryable(exc, idempotent=False) is create


async def test_sliding_window_never_exceeds_limit() -> None:
    limiter = SlidingWindowLimiter(5, 0.2, margin=0.0)
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(16)))
    stamps.sort()
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.2 - 1e-3, f"6 acquisitions inside one window at {i}"
    # and it does not over-throttle: 16 permits need 3 full windows, not many more
    assert stamps[-1] - stamps[0] < 0.2 * 3 + 0.15


async def test_sliding_window_penalty_holds_everyone_back() -> None:
    limiter = SlidingWindowLimiter(100, 1.0)
    limiter.penalize(0.15)
    start = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - start >= 0.14


async def test_token_bucket_rate() -> None:
    bucket = TokenBucket(rate=50, capacity=5)
    start = time.monotonic()
    for _ in range(15):
        await bucket.acquire()
    # 5 from the burst, 10 more at 50/s need at least 0.2 s
    assert time.monotonic() - start >= 0.19


def test_poll_schedule_fast_then_slow() -> None:
    settings = PollSettings()
    rng = random.Random(0)
    assert 2.25 <= poll_interval(0, settings, rng) <= 2.75
    assert 6.75 <= poll_interval(60, settings, rng) <= 8.25
    assert 18 <= poll_interval(600, settings, rng) <= 22


def test_signature_matches_documented_rule() -> None:
    expected = base64.b64encode(hmac.new(b"k3y", b"task123.1769670760", hashlib.sha256).digest()).decode()
    assert sign_callback("task123", 1769670760, "k3y") == expected
    assert len(expected) == 44 and not all(c in "0123456789abcdef" for c in expected)  # base64, not hex


def test_verify_accepts_fresh_valid_signature() -> None:
    ts = int(time.time())
    verify_callback_signature("t1", str(ts), sign_callback("t1", ts, "key"), "key")


@pytest.mark.parametrize(
    ("task", "ts_offset", "key", "match"),
    [
        ("t2", 0, "key", "does not match"),  # signature for another task
        ("t1", 0, "other", "does not match"),  # forged with the wrong key
        ("t1", -3600, "key", "stale"),  # replayed an hour later
    ],
)
def test_verify_rejects_forged_and_stale(task: str, ts_offset: int, key: str, match: str) -> None:
    now = time.time()
    ts = int(now) + ts_offset
    signature = sign_callback("t1", ts, "key" if match == "stale" else key)
    with pytest.raises(KieCallbackVerificationError, match=match):
        verify_callback_signature(task, ts, signature, "key", now=now)


def test_verify_rejects_missing_headers() -> None:
    with pytest.raises(KieCallbackVerificationError, match="no signature"):
        verify_callback_signature("t1", None, None, "key")
    with pytest.raises(KieCallbackVerificationError, match="Unix seconds"):
        verify_callback_signature("t1", "yesterday", "abc", "key")


async def test_sliding_window_counts_from_the_answer_not_the_send() -> None:
    """A request that sat 0.15 s in a busy pool reached the server late: its window starts when it is answered."""
    limiter = SlidingWindowLimiter(1, 0.2, margin=0.0)
    async with limiter.slot():
        await asyncio.sleep(0.15)
        answered = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - answered >= 0.2 - 1e-3
