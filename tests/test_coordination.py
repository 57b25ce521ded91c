"""Sessions sharing one account through a real Redis: the createTask window, a 429's pause, callbacks, budgets,
uploads, and what happens when Redis is unreachable or goes away mid-run.

Each test runs two sessions with their own coordinators (own Redis connections) on one emulator key, which is
what two worker processes are to Redis. The multi-process figures are in benchmarks/bench_coordination.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from kie_async import KieSession, RawUserRequest, run_many
from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.coordination import account_namespace
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieCoordinationError
from kie_async.interfaces.callback_receiver import add_callback_route
from kie_async.pipeline.run import PipelineOptions
from tests.conftest import serve_app
from tests.redis_server import RedisServer

FAST = {
    "poll": PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0, callback_safety_interval=60.0),
    "retry": RetrySettings(max_retries=4, initial_backoff=0.02, max_backoff=0.1),
}


def session(emulator: KieEmulator, redis_url: str | None, **overrides: Any) -> KieSession:
    values: dict[str, Any] = {**FAST, **overrides}
    if redis_url is not None:
        values["coordination_url"] = redis_url
    return KieSession(emulator.settings(**values))


def opts(root: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts)


async def test_unreachable_redis_is_a_typed_error_naming_the_url_without_credentials(
    emulator: KieEmulator, redis_server: RedisServer
) -> None:
    closed = f"redis://admin:s3cret-pw@127.0.0.1:{redis_server.port + 1}/0"
    with pytest.raises(KieCoordinationError) as caught:
        async with session(emulator, closed):
            pass
    text = str(caught.value)
    assert f"127.0.0.1:{redis_server.port + 1}" in text and "s3cret" not in text and "admin" not in text
    assert emulator.stats.requests.get("createTask", 0) == 0


async def test_a_url_that_is_not_redis_is_refused(emulator: KieEmulator) -> None:
    with pytest.raises(KieCoordinationError.__mro__[1]) as caught:  # KieConfigError
        async with session(emulator, "http://127.0.0.1:1/"):
            pass
    assert "not a Redis URL" in str(caught.value)


def test_the_namespace_hashes_the_key() -> None:
    ns = account_namespace("super-secret-key", "prod:")
    assert ns.startswith("prod:kie:") and "super-secret-key" not in ns
    assert ns != account_namespace("another-key", "prod:")


async def _burst(kie: KieSession, count: int, tag: str) -> None:
    await asyncio.gather(
        *(kie.create_task(model="nano-banana-2", input={"prompt": f"{tag} {i}"}) for i in range(count))
    )


@pytest.mark.parametrize("shared", [True, False], ids=["coordinated", "control"])
async def test_two_sessions_share_one_create_window(redis_url: str, shared: bool) -> None:
    config = EmulatorConfig(generation_seconds=0.05, create_rate_limit=6, create_rate_window=1.5)
    limits = RateLimitSettings(create_per_window=6, create_window_seconds=1.5, reads_per_second=1000)
    async with KieEmulator(config) as emulator:
        url = redis_url if shared else None
        no_retry = RetrySettings(max_retries=0)
        async with (
            session(emulator, url, rate_limit=limits, retry=no_retry) as a,
            session(emulator, url, rate_limit=limits, retry=no_retry) as b,
        ):
            started = time.monotonic()
            outcomes = await asyncio.gather(_burst(a, 6, "a"), _burst(b, 6, "b"), return_exceptions=True)
            wall = time.monotonic() - started
    if shared:
        assert outcomes == [None, None] and emulator.stats.rate_limited == 0
        assert emulator.stats.tasks_created == 12 and wall >= 1.4  # the second six waited for the window
    else:
        assert emulator.stats.rate_limited > 0  # each session alone allows 6: together they overrun the account


async def test_a_429_seen_by_one_session_pauses_the_others(emulator: KieEmulator, redis_url: str) -> None:
    emulator.faults.add("createTask", "rate_limit", retry_after=2)
    async with session(emulator, redis_url) as a, session(emulator, redis_url) as b:
        first = asyncio.create_task(a.create_task(model="nano-banana-2", input={"prompt": "a"}))
        while emulator.stats.rate_limited == 0:
            await asyncio.sleep(0.01)
        paused_at = time.monotonic()
        await b.create_task(model="nano-banana-2", input={"prompt": "b"})
        waited = time.monotonic() - paused_at
        await first
    assert waited >= 1.7, f"session b submitted {waited:.2f}s after a's 429 (Retry-After 2)"
    assert emulator.stats.rate_limited == 1 and emulator.stats.tasks_created == 2


@pytest.mark.parametrize("shared", [True, False], ids=["coordinated", "control"])
async def test_a_callback_received_by_one_worker_wakes_the_waiter_in_another(redis_url: str, shared: bool) -> None:
    config = EmulatorConfig(generation_seconds=0.3, webhook_hmac_key="fan-in-key")
    async with KieEmulator(config) as emulator:
        url = redis_url if shared else None
        async with session(emulator, url) as receiver_worker, session(emulator, url) as waiting_worker:
            app = web.Application()
            add_callback_route(app, receiver_worker, "/cb", hmac_key="fan-in-key")
            async with serve_app(app) as base:
                created = await waiting_worker.create_task(
                    model="nano-banana-2", input={"prompt": "fan in"}, callback_url=f"{base}/cb"
                )
                started = time.monotonic()
                if shared:
                    record = await waiting_worker.wait_for_task(created.task_id, callback_driven=True, timeout=10)
                    assert record.has_usable_result and time.monotonic() - started < 3  # safety poll is 60 s
                    async with aioredis.from_url(redis_url) as store:  # untraced: no wait announced for span links
                        assert not [key async for key in store.scan_iter(match="*waiting*")]
                else:  # nobody told this worker: it learns only at its next poll (here the 2 s deadline's)
                    await waiting_worker.wait_for_task(created.task_id, callback_driven=True, timeout=2)
                    assert time.monotonic() - started >= 1.9
        assert emulator.stats.callbacks_delivered == 1


async def test_one_budget_for_a_batch_split_over_sessions(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    async with session(emulator, redis_url) as a, session(emulator, redis_url) as b:
        requests_a = [RawUserRequest(model_key="nano-banana-2", prompt=f"budget a {i}") for i in range(5)]
        requests_b = [RawUserRequest(model_key="nano-banana-2", prompt=f"budget b {i}") for i in range(5)]
        results = await asyncio.gather(
            run_many(requests_a, a, budget_credits=40, options=opts(tmp_path / "a"), batch_id="shared-batch"),
            run_many(requests_b, b, budget_credits=40, options=opts(tmp_path / "b"), batch_id="shared-batch"),
        )
    flat = [r for batch in results for r in batch]
    assert sum(r.succeeded for r in flat) == 5 and sum(r.status == "over_budget" for r in flat) == 5
    assert emulator.stats.credits_spent <= 40


async def test_an_upload_is_reused_by_another_session(emulator: KieEmulator, redis_url: str, tmp_path: Path) -> None:
    import pyvips

    image = tmp_path / "in.png"
    pyvips.Image.black(64, 64).write_to_file(str(image))
    request = RawUserRequest(model_key="nano-banana-2", prompt="edit it", images=[str(image)])
    async with session(emulator, redis_url) as a, session(emulator, redis_url) as b:
        first = await run_many([request], a, options=opts(tmp_path / "a"))
        second = await run_many([request], b, options=opts(tmp_path / "b"))
    assert first[0].succeeded and second[0].succeeded
    assert second[0].prepared is not None and second[0].prepared.uploads[0].action == "reused"
    assert sum(v for k, v in emulator.stats.requests.items() if "upload" in k) == 1


async def test_no_createtask_while_redis_is_down_and_the_run_continues_when_it_is_back(
    emulator: KieEmulator, redis_server: RedisServer, redis_url: str
) -> None:
    async with session(emulator, redis_url) as kie:
        redis_server.stop()
        try:
            submit = asyncio.create_task(kie.create_task(model="nano-banana-2", input={"prompt": "held"}))
            await asyncio.sleep(1.5)
            assert not submit.done() and emulator.stats.requests.get("createTask", 0) == 0  # fail closed
            assert (await kie.get_credits()).credits > 0  # reads keep working
        finally:
            redis_server.start()
        created = await asyncio.wait_for(submit, timeout=30)
    assert created.task_id and emulator.stats.tasks_created == 1


async def test_a_session_closed_and_reopened_connects_again(emulator: KieEmulator, redis_url: str) -> None:
    kie = session(emulator, redis_url)
    for _ in range(2):
        async with kie:
            assert kie.coordinator.kind == "redis"
            await kie.create_task(model="nano-banana-2", input={"prompt": "reopen"})
        assert kie.coordinator.kind == "local"
    assert emulator.stats.tasks_created == 2


async def test_a_lost_answer_is_settled_by_a_callback_that_reached_another_worker(
    redis_url: str, tmp_path: Path
) -> None:
    """Worker B's createTask answer is lost; the task's callback lands on worker A, which relays it over Redis."""
    config = EmulatorConfig(generation_seconds=0.2, webhook_hmac_key="relay-key")
    async with (
        KieEmulator(config) as emulator,
        session(emulator, redis_url) as worker_a,
        session(emulator, redis_url) as worker_b,
    ):
        app = web.Application()
        add_callback_route(app, worker_a, "/cb", hmac_key="relay-key")
        async with serve_app(app) as base:
            emulator.faults.add("createTask", "reset_after")
            options = opts(tmp_path).model_copy(update={"callback_url": f"{base}/cb", "wait_timeout": 10})
            (result,) = await run_many(
                [RawUserRequest(model_key="nano-banana-2", prompt="relayed")],
                worker_b,
                options=options,
                journal_path=tmp_path / "journal.jsonl",
            )
    assert result.succeeded, result.error
    assert emulator.stats.tasks_created == 1 and result.task_id == emulator.tasks()[0].task_id
