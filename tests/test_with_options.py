"""``kie.with_options(...)``: other per-call defaults over the same pool, limiters, caches and coordination."""

from __future__ import annotations

import asyncio

import pytest

from kie_async import KieSession
from kie_async.core.settings import KieSettings, PollSettings, RateLimitSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieInputError, KieServerError, KieTimeoutError

# The emulator's limit scaled down 10x in time (20 per 1 s), and the SDK told the same.
SCALED = RateLimitSettings(create_per_window=20, create_window_seconds=1.0, reads_per_second=100.0)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05, create_rate_limit=20, create_rate_window=1.0)


async def submit(kie: KieSession, n: int, tag: str) -> list[str]:
    created = await asyncio.gather(
        *(kie.create_task(model="nano-banana-2", input={"prompt": f"{tag} {i}"}) for i in range(n))
    )
    return [task.task_id for task in created]


async def test_two_views_together_keep_the_account_limit(emulator: KieEmulator) -> None:
    async with KieSession(emulator.settings(rate_limit=SCALED)) as kie:
        fast = kie.with_options(timeout=5, max_retries=0)
        patient = kie.with_options(poll=PollSettings(timeout=60))
        first, second = await asyncio.gather(submit(fast, 25, "fast"), submit(patient, 25, "patient"))
    assert len(set(first) | set(second)) == 50
    assert emulator.stats.rate_limited == 0  # one shared window: nothing was sent over the limit
    assert kie.stats.requests["createTask"] == 50  # and the views counted into the session's own stats


async def test_two_sessions_would_not_keep_it(emulator: KieEmulator) -> None:
    """The control: what with_options avoids. Two sessions have two windows and pass 20 per window together."""
    async with (
        KieSession(emulator.settings(rate_limit=SCALED)) as one,
        KieSession(emulator.settings(rate_limit=SCALED)) as two,
    ):
        await asyncio.gather(submit(one, 20, "one"), submit(two, 20, "two"))
    assert emulator.stats.rate_limited > 0


async def test_closing_a_view_leaves_the_pool_open(emulator: KieEmulator) -> None:
    kie = KieSession(emulator.settings())
    early = kie.with_options(max_retries=1)  # made before the pool exists: it sees the one opened later
    async with kie:
        async with kie.with_options(timeout=10) as view:
            assert (await view.get_credits()).credits == emulator.credits()
        await early.close()
        assert not kie.http.closed
        assert (await early.get_credits()).credits == emulator.credits()
        assert (await kie.get_credits()).credits == emulator.credits()
        assert kie.with_options(timeout=1).with_options(max_retries=0).stats is kie.stats  # a view of a view
    assert "closed" in repr(kie)


async def test_options_apply_to_the_view_only(emulator: KieEmulator) -> None:
    async with KieSession(emulator.settings()) as kie:
        no_retries = kie.with_options(max_retries=0)
        emulator.faults.add("credit", "server_error", count=1, status=503)
        with pytest.raises(KieServerError):
            await no_retries.get_credits()
        emulator.faults.add("credit", "server_error", count=1, status=503)
        assert (await kie.get_credits()).credits == emulator.credits()  # the session itself retried
        assert kie.stats.retries == 1

        short = kie.with_options(timeout=0.2)
        emulator.faults.add("credit", "latency", count=1, delay=0.6)
        with pytest.raises(KieTimeoutError):
            await short.with_options(max_retries=0).get_credits()
        assert short.settings.request_timeout == 0.2 and kie.settings.request_timeout == 60

        quick_poll = kie.with_options(poll=PollSettings(schedule=((float("inf"), 0.05),), timeout=0.2))
        task = await kie.create_task(model="nano-banana-2", input={"prompt": "slow"})
        emulator.task(task.task_id).duration = 30.0  # type: ignore[union-attr]
        with pytest.raises(KieTimeoutError):
            await quick_poll.wait_for_task(task.task_id)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"max_retries": 99}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"poll": 5}, "poll"),
    ],
)
def test_unusable_options_are_refused_by_name(options: dict[str, object], named: str) -> None:
    kie = KieSession(KieSettings(api_key="k", base_url="http://127.0.0.1:9", upload_base_url="http://127.0.0.1:9"))
    with pytest.raises(KieInputError) as caught:
        kie.with_options(**options)  # type: ignore[arg-type]
    assert named in str(caught.value)
