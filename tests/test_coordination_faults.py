"""Redis going away mid-run, with a real redis-server stopped and restarted under live sessions.

The server runs without persistence (``--save "" --appendonly no``), the worst case: a restart loses every key.
What must hold anyway: no ``createTask`` while Redis cannot be asked (spending fails closed), reads and waits
carry on, the batch completes once Redis is back with exactly one task per request, and what the account
shares (the createTask window, a 429's pause, callbacks, a batch budget) is still shared after the restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from kie_async import RawUserRequest, run_many
from kie_async.coordination.ledger_seed import reseed_ledger
from kie_async.coordination.redis_coordinator import RedisCoordinator
from kie_async.coordination.redis_journal import JournalLostError
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.callback_receiver import add_callback_route
from tests import redis_server as redis_server_module
from tests.conftest import serve_app
from tests.redis_server import RedisServer
from tests.test_coordination import opts, session


def restart(server: RedisServer) -> None:
    """Stop and start the server on the same port: every key is gone, every client connection dropped."""
    server.stop()
    server.start()


def creates(emulator: KieEmulator) -> int:
    return emulator.stats.requests.get("createTask", 0)


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for ``condition`` (a test that waits forever would hide what went wrong)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_missing_redis_server_is_a_failure_when_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``.ci/run`` sets KIE_REQUIRE_REDIS=1: there a missing redis-server must fail the tests, not skip them."""
    monkeypatch.setattr(redis_server_module.shutil, "which", lambda name: None)
    monkeypatch.setenv(redis_server_module.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y redis-server"):
        RedisServer(tmp_path)
    monkeypatch.delenv(redis_server_module.REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y redis-server"):
        RedisServer(tmp_path)


async def test_redis_restarted_mid_batch_holds_submits_keeps_reads_and_completes(
    redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    config = EmulatorConfig(generation_seconds=0.4, create_rate_limit=5, create_rate_window=1.0)
    limits = RateLimitSettings(create_per_window=5, create_window_seconds=1.0, reads_per_second=1000)
    requests = [RawUserRequest(model_key="nano-banana-2", prompt=f"restart {i}") for i in range(20)]
    async with KieEmulator(config) as emulator, session(emulator, redis_url, rate_limit=limits) as kie:
        batch = asyncio.create_task(run_many(requests, kie, options=opts(tmp_path)))
        await until(lambda: creates(emulator) >= 5, "the first burst")  # the other 15 are queued
        redis_server.stop()
        try:
            await asyncio.sleep(0.2)  # a request granted its slot just before the stop may still land
            at_stop, succeeded_at_stop = creates(emulator), emulator.stats.tasks_succeeded
            started = time.monotonic()
            credits = await asyncio.wait_for(kie.get_credits(), timeout=2)  # reads do not wait for Redis
            read_seconds = time.monotonic() - started
            await asyncio.sleep(2.0)
            before_restart = creates(emulator)
            succeeded_while_down = emulator.stats.tasks_succeeded - succeeded_at_stop
            assert not batch.done()
        finally:
            redis_server.start()
        results = await asyncio.wait_for(batch, timeout=60)
    assert before_restart == at_stop, f"{before_restart - at_stop} createTask sent while Redis was down"
    assert credits.credits > 0 and read_seconds < 1.0, f"a read took {read_seconds:.2f}s while Redis was down"
    assert succeeded_while_down >= 1  # the submitted tasks' waiters kept polling and finished during the outage
    assert all(r.succeeded for r in results), [r.status for r in results]
    assert len({r.task_id for r in results}) == 20 and emulator.stats.tasks_created == 20
    assert creates(emulator) == 20 and emulator.stats.rate_limited == 0


async def test_the_window_is_still_shared_after_a_restart(redis_server: RedisServer, redis_url: str) -> None:
    """A restart empties the window; the sessions put back what they sent, so nobody bursts past the limit."""
    config = EmulatorConfig(generation_seconds=0.05, create_rate_limit=5, create_rate_window=3.0)
    limits = RateLimitSettings(create_per_window=5, create_window_seconds=3.0, reads_per_second=1000)
    no_retry = RetrySettings(max_retries=0)  # a 429 would surface as an error instead of being retried away
    async with KieEmulator(config) as emulator:
        a = session(emulator, redis_url, rate_limit=limits, retry=no_retry)
        b = session(emulator, redis_url, rate_limit=limits, retry=no_retry)
        async with a, b:
            started = time.monotonic()
            await asyncio.gather(*(a.create_task(model="nano-banana-2", input={"prompt": f"a{i}"}) for i in range(5)))
            restart(redis_server)
            await asyncio.gather(*(b.create_task(model="nano-banana-2", input={"prompt": f"b{i}"}) for i in range(5)))
            wall = time.monotonic() - started
    assert emulator.stats.rate_limited == 0 and emulator.stats.tasks_created == 10
    assert wall >= 2.9, f"the second burst went out {wall:.2f}s after the first (window 3 s)"


async def test_a_429_pause_outlives_a_restart(redis_server: RedisServer, emulator: KieEmulator, redis_url: str) -> None:
    emulator.faults.add("createTask", "rate_limit", retry_after=3)
    async with session(emulator, redis_url) as a, session(emulator, redis_url) as b:
        first = asyncio.create_task(a.create_task(model="nano-banana-2", input={"prompt": "a"}))
        await until(lambda: emulator.stats.rate_limited > 0, "the 429")
        paused_at = time.monotonic()
        restart(redis_server)
        await b.create_task(model="nano-banana-2", input={"prompt": "b"})
        waited = time.monotonic() - paused_at
        await first
    assert waited >= 2.7, f"session b submitted {waited:.2f}s after a's 429 (Retry-After 3), across a restart"
    assert emulator.stats.rate_limited == 1 and emulator.stats.tasks_created == 2


async def test_a_429_pause_after_a_restart_is_shared(
    redis_server: RedisServer, emulator: KieEmulator, redis_url: str
) -> None:
    async with session(emulator, redis_url) as a, session(emulator, redis_url) as b:
        restart(redis_server)
        emulator.faults.add("createTask", "rate_limit", retry_after=2)
        first = asyncio.create_task(a.create_task(model="nano-banana-2", input={"prompt": "a"}))
        await until(lambda: emulator.stats.rate_limited > 0, "the 429")
        paused_at = time.monotonic()
        await asyncio.sleep(0.3)  # a has read its 429 and set the shared pause (not a race this test is about)
        await b.create_task(model="nano-banana-2", input={"prompt": "b"})
        waited = time.monotonic() - paused_at
        await first
    assert waited >= 1.7 and emulator.stats.rate_limited == 1 and emulator.stats.tasks_created == 2


SLOW_SAFETY = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0, callback_safety_interval=60.0)


async def test_callbacks_still_cross_workers_after_a_restart(redis_server: RedisServer, redis_url: str) -> None:
    config = EmulatorConfig(generation_seconds=0.3, webhook_hmac_key="restart-key")
    async with KieEmulator(config) as emulator:
        receiver_worker = session(emulator, redis_url, poll=SLOW_SAFETY)
        waiting_worker = session(emulator, redis_url, poll=SLOW_SAFETY)
        async with receiver_worker, waiting_worker:
            app = web.Application()
            add_callback_route(app, receiver_worker, "/cb", hmac_key="restart-key")
            async with serve_app(app) as base:
                restart(redis_server)
                await asyncio.sleep(1.5)  # the listeners reconnect on their own (no request needed)
                for round_ in range(2):
                    created = await waiting_worker.create_task(
                        model="nano-banana-2", input={"prompt": f"after restart {round_}"}, callback_url=f"{base}/cb"
                    )
                    started = time.monotonic()
                    record = await waiting_worker.wait_for_task(created.task_id, callback_driven=True, timeout=10)
                    assert record.has_usable_result and time.monotonic() - started < 2  # not the 60 s safety poll
        assert emulator.stats.callbacks_delivered == 2


async def test_a_callback_lost_while_redis_was_down_is_caught_up_when_it_returns(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Published while Redis was away, the callback never reached the other worker: its waiters re-read at once
    when the channel is back, instead of sleeping until the 60 s safety poll."""
    config = EmulatorConfig(generation_seconds=1.0, webhook_hmac_key="lost-key")
    async with KieEmulator(config) as emulator:
        receiver_worker = session(emulator, redis_url, poll=SLOW_SAFETY)
        waiting_worker = session(emulator, redis_url, poll=SLOW_SAFETY)
        async with receiver_worker, waiting_worker:
            app = web.Application()
            add_callback_route(app, receiver_worker, "/cb", hmac_key="lost-key")
            async with serve_app(app) as base:
                created = await waiting_worker.create_task(
                    model="nano-banana-2", input={"prompt": "lost"}, callback_url=f"{base}/cb"
                )
                waiting = asyncio.create_task(
                    waiting_worker.wait_for_task(created.task_id, callback_driven=True, timeout=20)
                )
                redis_server.stop()
                try:
                    await until(lambda: emulator.stats.callbacks_delivered > 0, "the callback")
                    await asyncio.sleep(0.3)
                    assert not waiting.done()  # the callback could not be published to the other worker
                finally:
                    redis_server.start()
                back = time.monotonic()
                record = await asyncio.wait_for(waiting, timeout=15)
                caught_up = time.monotonic() - back
    assert record.has_usable_result and caught_up < 5, f"caught up {caught_up:.1f}s after Redis returned"


async def test_a_shared_budget_survives_a_restart(
    redis_server: RedisServer, emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    """Without persistence the budget's counters vanish with the server; the live sessions put back what they
    spent, so the batch still stops at its cap (it never becomes unlimited). The batch's journal vanished too:
    nothing is bought until the ledger is re-seeded (``kie-async ledger recover``)."""
    async with session(emulator, redis_url) as a, session(emulator, redis_url) as b:
        first = [RawUserRequest(model_key="nano-banana-2", prompt=f"before {i}") for i in range(3)]
        done = await run_many(first, a, budget_credits=40, options=opts(tmp_path / "a"), batch_id="restart-batch")
        assert all(r.succeeded for r in done) and emulator.stats.credits_spent == 24
        restart(redis_server)
        later = [RawUserRequest(model_key="nano-banana-2", prompt=f"after {i}") for i in range(5)]
        with pytest.raises(JournalLostError):
            await run_many(later, b, budget_credits=40, options=opts(tmp_path / "b"), batch_id="restart-batch")
        assert emulator.stats.credits_spent == 24
        assert isinstance(b.coordinator, RedisCoordinator)
        await reseed_ledger(b.coordinator, [])  # the operator re-seeds (nothing to put back here)
        results = await run_many(later, b, budget_credits=40, options=opts(tmp_path / "b"), batch_id="restart-batch")
    assert sum(r.succeeded for r in results) == 2 and sum(r.status == "over_budget" for r in results) == 3
    assert emulator.stats.credits_spent == 40
