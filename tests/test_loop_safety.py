"""One KieSession across event loops: reopened cleanly in a new loop once closed, a typed error while open elsewhere.

Each ``asyncio.run()`` makes a new loop. These tests run their loops in a worker thread so the emulator keeps
serving from the test's own loop meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from kie_async import KieSession
from kie_async.core.settings import RateLimitSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieConfigError

# 30 reads against 20 per second: the read limiter's lock gets waiters, which is what bound it to the first loop.
READS = RateLimitSettings(reads_per_second=20.0, create_per_window=20, create_window_seconds=1.0)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05, create_rate_limit=20, create_rate_window=1.0)


def in_new_loops(*coros: Callable[[], Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run each coroutine function in its own ``asyncio.run()``, one after the other; exceptions are returned."""
    results: list[Any] = []
    for make in coros:
        try:
            results.append(asyncio.run(make()))
        except Exception as exc:
            results.append(exc)
    return results


async def test_closed_session_reopens_in_a_second_asyncio_run(emulator: KieEmulator) -> None:
    kie = KieSession(emulator.settings(rate_limit=READS))

    async def thirty_reads() -> list[float]:
        async with kie:
            balances = await asyncio.gather(*(kie.get_credits() for _ in range(30)))
        return [balance.credits for balance in balances]

    first, second = await asyncio.to_thread(in_new_loops, thirty_reads, thirty_reads)
    assert first == second == [emulator.credits()] * 30
    assert emulator.stats.requests["credit"] == 60
    assert "closed" in repr(kie)


async def test_session_left_open_by_an_ended_loop_raises_then_can_be_closed_and_reused(emulator: KieEmulator) -> None:
    kie = KieSession(emulator.settings(rate_limit=READS))

    async def open_and_read() -> float:
        await kie.open()  # never closed: asyncio.run() ends with the pool still open
        return (await kie.get_credits()).credits

    async def read() -> float:
        return (await kie.get_credits()).credits

    async def reopen() -> float:
        async with kie:
            return (await kie.get_credits()).credits

    async def close_then_reopen() -> float:
        await kie.close()  # the old loop has ended: its pool is let go of
        return await reopen()

    opened, wrong, reopened_while_open, fixed = await asyncio.to_thread(
        in_new_loops, open_and_read, read, reopen, close_then_reopen
    )
    assert opened == emulator.credits()
    for error in (wrong, reopened_while_open):
        assert isinstance(error, KieConfigError), error
        assert "opened in another" in str(error) and "has ended" in str(error)
        assert "await kie.close()" in error.hint and "\n" not in str(error)
    assert fixed == emulator.credits()
    assert emulator.stats.requests["credit"] == 2  # the refused calls sent nothing


async def test_session_open_in_a_running_loop_refuses_another_loop(emulator: KieEmulator) -> None:
    async with KieSession(emulator.settings(rate_limit=READS)) as kie:
        fast = kie.with_options(max_retries=0)

        async def read() -> float:
            return (await kie.get_credits()).credits

        async def read_through_view() -> float:
            return (await fast.get_credits()).credits

        async def download() -> object:
            return await kie.download(emulator.base_url + "/files/x.png", "unused.png")

        async def close() -> None:
            await kie.close()

        results = await asyncio.to_thread(in_new_loops, read, read_through_view, download, close)
        for error in results:
            assert isinstance(error, KieConfigError), error
            assert "is still running" in str(error)
        # The session still works in its own loop, and was not closed by the refused close().
        assert (await kie.get_credits()).credits == emulator.credits()
        assert emulator.stats.requests.get("credit") == 1


async def test_rate_window_carries_over_to_the_next_loop(emulator: KieEmulator) -> None:
    """20 createTask calls just before a loop ended still count in the next one: no 429 from the emulator."""
    kie = KieSession(emulator.settings(rate_limit=READS))

    def submit(n: int) -> Callable[[], Coroutine[Any, Any, list[str]]]:
        async def run() -> list[str]:
            async with kie:
                created = await asyncio.gather(
                    *(kie.create_task(model="nano-banana-2", input={"prompt": f"fox {i}"}) for i in range(n))
                )
            return [task.task_id for task in created]

        return run

    first, second = await asyncio.to_thread(in_new_loops, submit(20), submit(5))
    assert len(set(first) | set(second)) == 25
    assert emulator.stats.rate_limited == 0
    assert kie.stats.rate_limited == 0


async def test_shared_coordination_reconnects_in_each_loop(emulator: KieEmulator, redis_url: str) -> None:
    kie = KieSession(emulator.settings(rate_limit=READS, coordination_url=redis_url))

    async def thirty_reads() -> str:
        async with kie:
            await asyncio.gather(*(kie.get_credits() for _ in range(30)))
            return kie.coordinator.kind

    async def open_and_read() -> str:
        await kie.open()
        await kie.get_credits()
        return kie.coordinator.kind

    async def close_then_read() -> str:
        await kie.close()  # the ended loop's Redis connections are let go of, not awaited
        return await thirty_reads()

    kinds = await asyncio.to_thread(in_new_loops, thirty_reads, open_and_read, close_then_read)
    assert kinds == ["redis", "redis", "redis"]
    assert kie.coordinator.kind == "local"
    assert emulator.stats.requests["credit"] == 61


async def test_waiters_left_by_a_loop_that_was_never_cleaned_up_do_not_break_the_next(emulator: KieEmulator) -> None:
    """A loop closed with a wait_for_task still pending (no asyncio.run cleanup) leaves a waiter behind."""
    kie = KieSession(emulator.settings(rate_limit=READS))
    task_id: list[str] = []
    waiting: list[asyncio.Task[object]] = []

    def abandon_a_loop() -> None:
        loop = asyncio.new_event_loop()

        async def start_waiting() -> None:
            await kie.open()
            created = await kie.create_task(model="nano-banana-2", input={"prompt": "fox"})
            task_id.append(created.task_id)
            emulator.task(created.task_id).duration = 60.0  # type: ignore[union-attr]
            waiting.append(loop.create_task(kie.wait_for_task(created.task_id)))
            await asyncio.sleep(0.1)  # the waiter is now parked on its event

        loop.run_until_complete(start_waiting())
        loop.close()  # no cancellation, no close(): the waiter's event belongs to a dead loop

    def reuse() -> None:
        async def run() -> bool:
            await kie.close()
            async with kie:
                return kie.notify_task_update(task_id[0])

        assert asyncio.run(run()) is False  # nothing left to wake, and no RuntimeError from the dead loop

    await asyncio.to_thread(abandon_a_loop)
    await asyncio.to_thread(reuse)
