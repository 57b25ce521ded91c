"""Taskiq workers (real ``taskiq worker`` processes, a real redis-server as the streams broker and result backend)
running requests against the emulator: every request is bought once, whatever the engine delivers twice."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.integrations.taskiq import TASK_NAME, make_broker
from tests.engine_workers import Workers, requests, run_folders, tasks_per_prompt, worker_env, workers

RESULT_TIMEOUT = float(os.environ.get("KIE_TEST_SERVICE_TIMEOUT") or 300)
"""Seconds a batch may take: generous, for a busy 2-core machine starting several worker processes."""
BROKER = "kie_async.integrations.taskiq:broker"
STOP_SECONDS = 10.0
"""taskiq 0.13's worker does not exit on SIGTERM once its jobs are done (its receiver hangs after "Stopping
prefetching messages"): every job here is acknowledged by then, so the test stops its workers with SIGKILL after
this long."""


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=1.0)


@pytest.fixture
async def producer(redis_url: str) -> AsyncIterator[Any]:
    """The test's side of the broker: it enqueues and reads results (it runs no job)."""
    broker = make_broker(redis_url, redis_url)
    await broker.startup()  # declares the consumer group before the first job, so no worker misses one
    yield broker
    await broker.shutdown()


def start_taskiq(group: Workers, name: str, env: dict[str, str], *, processes: int = 1) -> None:
    argv = ["taskiq", "worker", BROKER, "--workers", str(processes), "--max-async-tasks", "3"]
    argv += ["--ack-type", "when_saved", "--shutdown-timeout", "10"]
    group.start(name, argv, env)


async def enqueue(producer: Any, batch: list[Any]) -> list[Any]:
    task = producer.find_task(TASK_NAME)
    return [await task.kiq(request.model_dump(mode="json")) for request in batch]


async def results_of(jobs: list[Any], group: Workers) -> list[dict[str, Any]]:
    """Every job's summary, waited for on the result backend (never a fixed sleep)."""
    try:
        async with asyncio.timeout(RESULT_TIMEOUT):
            results = [await job.wait_result(check_interval=0.1) for job in jobs]
    except TimeoutError as exc:
        raise AssertionError(f"jobs did not finish\n{group.logs()}") from exc
    failed = [r.error for r in results if r.is_err]
    assert not failed, f"{failed}\n{group.logs()}"
    return [r.return_value for r in results]


def taskiq_env(emulator: KieEmulator, folder: Path, redis_url: str, **extra: str) -> dict[str, str]:
    return worker_env(emulator, folder, KIE_TASKIQ_BROKER_URL=redis_url, KIE_TASKIQ_RESULT_BACKEND=redis_url, **extra)


async def test_three_workers_buy_each_request_once_and_a_duplicate_enqueue_buys_nothing(
    emulator: KieEmulator, redis_url: str, producer: Any, tmp_path: Path
) -> None:
    env = taskiq_env(emulator, tmp_path, redis_url, KIE_COORDINATION_URL=redis_url)
    batch = requests(9, "taskiq batch")
    with workers(tmp_path, STOP_SECONDS) as group:
        for name in ("worker-a", "worker-b", "worker-c"):
            start_taskiq(group, name, env)
        first = await enqueue(producer, batch)
        again = await enqueue(producer, batch)  # the same batch enqueued twice at once
        done = await results_of(first + again, group)
        assert emulator.stats.tasks_created == len(batch)
        late = await results_of(await enqueue(producer, batch), group)  # and once more, after delivery

    assert all(r["status"] == "succeeded" for r in done + late), done + late
    assert emulator.stats.tasks_created == len(batch)
    assert set(tasks_per_prompt(emulator).values()) == {1}
    by_request = [{r["task_id"] for r in (done[i], done[i + len(batch)], late[i])} for i in range(len(batch))]
    assert all(len(ids) == 1 for ids in by_request), by_request  # three deliveries, one task each
    assert all(r["resumed"] for r in late)  # the recorded result, nothing sent
    assert all(Path(p).is_file() for r in done + late for p in r["outputs"])
    assert len(run_folders(tmp_path)) == len(batch)  # one run folder per request
    assert len({r["pid"] for r in done}) >= 2  # the batch was shared out


async def test_a_killed_worker_s_jobs_are_claimed_again_and_nothing_is_bought_twice(
    emulator: KieEmulator, redis_url: str, producer: Any, tmp_path: Path
) -> None:
    emulator.config.generation_seconds = 2.0  # long enough to be mid-generation when the worker dies
    env = taskiq_env(emulator, tmp_path, redis_url, KIE_TASKIQ_IDLE_TIMEOUT="6")
    batch = requests(12, "taskiq kill")
    with workers(tmp_path, STOP_SECONDS) as group:
        start_taskiq(group, "victim", env)
        jobs = await enqueue(producer, batch)
        async with asyncio.timeout(RESULT_TIMEOUT):
            while emulator.stats.tasks_created < 2:  # the victim, alone, has bought and is waiting on its tasks
                await asyncio.sleep(0.05)
        bought_before_kill = emulator.stats.tasks_created
        group.kill("victim")
        # taskiq-redis hands a vanished worker's unacknowledged jobs to a worker that looks for them once they have
        # been idle for the idle timeout (seen to happen when a worker starts, not reliably later): the survivors
        # start after it. Waiting longer than needed is harmless; a busy machine only makes it longer.
        await asyncio.sleep(float(env["KIE_TASKIQ_IDLE_TIMEOUT"]) + 1.0)
        start_taskiq(group, "survivor-a", env)
        start_taskiq(group, "survivor-b", env)
        done = await results_of(jobs, group)

    assert bought_before_kill >= 2
    # A createTask on the wire when its worker died may have bought a task whose answer nobody heard: that request
    # reads as submit_uncertain and buys nothing more (the ledger's rule), never as a second purchase.
    uncertain = [r for r in done if r["status"] == "submit_uncertain"]
    delivered = [r for r in done if r["status"] == "succeeded"]
    assert len(uncertain) <= 3, uncertain  # at most the victim's three job slots
    assert len(delivered) + len(uncertain) == len(batch), [r for r in done if r not in delivered + uncertain]
    assert len(delivered) <= emulator.stats.tasks_created <= len(batch)  # killed workers' purchases resumed
    assert set(tasks_per_prompt(emulator).values()) == {1}  # no request bought twice
    assert len({r["task_id"] for r in delivered}) == len(delivered)
    assert all(r["outputs"] and all(Path(p).is_file() for p in r["outputs"]) for r in delivered)
    assert len(run_folders(tmp_path)) == len(delivered)  # every output delivered once, in one run folder


async def test_sixty_requests_over_three_workers_at_the_account_limit_see_no_429(
    emulator: KieEmulator, redis_url: str, producer: Any, tmp_path: Path
) -> None:
    assert emulator.config.create_rate_limit == 20 and emulator.config.create_rate_window == 10.0  # Kie.ai's own
    env = taskiq_env(emulator, tmp_path, redis_url, KIE_COORDINATION_URL=redis_url)
    batch = requests(60, "taskiq sixty")
    with workers(tmp_path, STOP_SECONDS) as group:
        for name in ("w0", "w1", "w2"):
            start_taskiq(group, name, env)
        done = await results_of(await enqueue(producer, batch), group)
    assert [r["status"] for r in done] == ["succeeded"] * 60
    assert emulator.stats.tasks_created == 60 and set(tasks_per_prompt(emulator).values()) == {1}
    assert emulator.stats.rate_limited == 0  # three workers, one account's limit, never a 429
    assert len(run_folders(tmp_path)) == 60
