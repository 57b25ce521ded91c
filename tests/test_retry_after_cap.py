"""A Retry-After above ``max_retry_after``: raise at once (default) or wait the full time (a setting)."""

from __future__ import annotations

import pytest

from kie_async import KieSession
from kie_async.core.settings import PollSettings, RetrySettings
from kie_async.emulator import KieEmulator
from kie_async.errors import KieRateLimitError, KieTimeoutError
from kie_async.wire.retry import RetryPolicy, parse_retry_after


class RecordedSleep:
    """Stands in for asyncio.sleep in the retry policy: records each wait, returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_long_retry_after_raises_at_once_with_retry_after(emulator: KieEmulator) -> None:
    sleep = RecordedSleep()
    settings = emulator.settings()
    async with KieSession(settings, retry_policy=RetryPolicy(settings.retry, sleep=sleep)) as kie:
        emulator.faults.add("credit", "rate_limit", count=1, retry_after=300)
        with pytest.raises(KieRateLimitError) as caught:
            await kie.get_credits()
    error = caught.value
    assert error.retry_after == 300
    assert sleep.waits == []  # not shortened to the 60 s cap and retried: raised
    assert emulator.stats.requests["credit"] == 1
    assert "300s" in str(error) and "max_retry_after" in str(error) and "over_retry_after_cap" in error.hint
    assert "\n" not in str(error)


async def test_wait_setting_sleeps_the_full_retry_after(emulator: KieEmulator) -> None:
    sleep = RecordedSleep()
    settings = emulator.settings(retry=RetrySettings(over_retry_after_cap="wait"))
    async with KieSession(settings, retry_policy=RetryPolicy(settings.retry, sleep=sleep)) as kie:
        emulator.faults.add("credit", "rate_limit", count=1, retry_after=300)
        assert (await kie.get_credits()).credits == emulator.credits()
    assert len(sleep.waits) == 1 and 300 <= sleep.waits[0] <= 301
    assert emulator.stats.requests["credit"] == 2


async def test_retry_after_within_the_cap_is_waited_and_retried(emulator: KieEmulator) -> None:
    sleep = RecordedSleep()
    settings = emulator.settings()
    async with KieSession(settings, retry_policy=RetryPolicy(settings.retry, sleep=sleep)) as kie:
        emulator.faults.add("credit", "rate_limit", count=1, retry_after=45)
        assert (await kie.get_credits()).credits == emulator.credits()
    assert len(sleep.waits) == 1 and 45 <= sleep.waits[0] <= 46


async def test_create_task_over_the_cap_raises_and_buys_nothing(emulator: KieEmulator) -> None:
    sleep = RecordedSleep()
    settings = emulator.settings()
    async with KieSession(settings, retry_policy=RetryPolicy(settings.retry, sleep=sleep)) as kie:
        emulator.faults.add("createTask", "rate_limit", count=1, retry_after=120)
        with pytest.raises(KieRateLimitError) as caught:
            await kie.create_task(model="nano-banana-2", input={"prompt": "fox"})
    assert caught.value.retry_after == 120 and sleep.waits == []
    assert emulator.stats.tasks_created == 0


async def test_waiting_on_a_task_respects_a_long_retry_after(emulator: KieEmulator) -> None:
    """A status read refused for 300 s is not re-asked every poll interval until the wait's deadline."""
    async with KieSession(emulator.settings()) as kie:
        created = await kie.create_task(model="nano-banana-2", input={"prompt": "fox"})
        emulator.faults.add("recordInfo", "rate_limit", count=None, retry_after=300)
        fast = PollSettings(schedule=((float("inf"), 0.05),), timeout=0.8)
        with pytest.raises(KieTimeoutError) as caught:
            await kie.wait_for_task(created.task_id, poll=fast)
    assert "status unreadable" in str(caught.value)
    # One read at the start and one at the deadline; every 0.05 s would have been about 16.
    assert emulator.stats.rate_limited == 2


@pytest.mark.parametrize("garbage", ["inf", "nan", "-inf", "1e400"])
def test_a_retry_after_that_is_not_a_finite_number_is_ignored(garbage: str) -> None:
    assert parse_retry_after(garbage) is None


async def test_an_infinite_retry_after_never_makes_the_session_wait_forever(emulator: KieEmulator) -> None:
    sleep = RecordedSleep()
    settings = emulator.settings(retry=RetrySettings(over_retry_after_cap="wait"))
    async with KieSession(settings, retry_policy=RetryPolicy(settings.retry, sleep=sleep)) as kie:
        emulator.faults.add("credit", "server_error", count=1, status=503)
        assert (await kie.get_credits()).credits == emulator.credits()
    assert len(sleep.waits) == 1 and sleep.waits[0] < 1  # the ordinary backoff
