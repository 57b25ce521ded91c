"""Celery workers (real ``celery worker`` processes, a real redis-server as broker and backend) running requests
against the emulator: every request is bought once, whatever the engine delivers twice."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.integrations.celery import TASK_NAME, make_app
from tests.engine_workers import Workers, requests, run_folders, tasks_per_prompt, worker_env, workers

RESULT_TIMEOUT = float(os.environ.get("KIE_TEST_SERVICE_TIMEOUT") or 300)
"""Seconds a batch may take: generous, for a busy 2-core machine starting several worker processes."""
APP = "kie_async.integrations.celery"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=1.0)


def start_celery(group: Workers, name: str, env: dict[str, str], *, pool: str, concurrency: int = 2) -> None:
    argv = ["celery", "-A", APP, "worker", "--pool", pool, "--concurrency", str(concurrency)]
    argv += ["--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    group.start(name, argv, env)


async def results_of(jobs: list[Any], group: Workers) -> list[dict[str, Any]]:
    """Every job's summary, waited for on the result backend (never a fixed sleep)."""

    def collect() -> list[dict[str, Any]]:
        deadline = time.monotonic() + RESULT_TIMEOUT
        return [job.get(timeout=max(1.0, deadline - time.monotonic()), interval=0.1) for job in jobs]

    try:
        return await asyncio.to_thread(collect)
    except Exception as exc:
        raise AssertionError(f"jobs did not finish: {exc!r}\n{group.logs()}") from exc


def enqueue(app: Any, batch: list[Any]) -> list[Any]:
    return [app.send_task(TASK_NAME, args=[request.model_dump(mode="json")]) for request in batch]


async def test_three_workers_buy_each_request_once_and_a_duplicate_enqueue_buys_nothing(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    app = make_app(redis_url, redis_url)
    env = worker_env(
        emulator,
        tmp_path,
        KIE_CELERY_BROKER_URL=redis_url,
        KIE_CELERY_RESULT_BACKEND=redis_url,
        KIE_COORDINATION_URL=redis_url,  # the account's rate limit, shared by the workers
    )
    batch = requests(9, "celery batch")
    with workers(tmp_path) as group:
        start_celery(group, "prefork", env, pool="prefork")
        start_celery(group, "threads-a", env, pool="threads")
        start_celery(group, "threads-b", env, pool="threads")
        first = enqueue(app, batch)
        again = enqueue(app, batch)  # the same batch enqueued twice at once: runs that meet a busy request wait
        done = await results_of(first + again, group)
        assert emulator.stats.tasks_created == len(batch)
        late = await results_of(enqueue(app, batch), group)  # and once more, after delivery

    assert all(r["status"] == "succeeded" for r in done + late), done + late
    assert emulator.stats.tasks_created == len(batch)
    assert set(tasks_per_prompt(emulator).values()) == {1}
    by_request = [{r["task_id"] for r in (done[i], done[i + len(batch)], late[i])} for i in range(len(batch))]
    assert all(len(ids) == 1 for ids in by_request), by_request  # three deliveries, one task each
    assert all(r["resumed"] for r in late)  # the recorded result, nothing sent
    assert all(Path(p).is_file() for r in done + late for p in r["outputs"])
    assert len(run_folders(tmp_path)) == len(batch)  # one run folder per request
    assert len({r["pid"] for r in done}) >= 2  # the batch was shared out


async def test_a_killed_worker_s_jobs_are_delivered_again_and_nothing_is_bought_twice(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    emulator.config.generation_seconds = 2.0  # long enough to be mid-generation when the worker dies
    app = make_app(redis_url, redis_url)
    env = worker_env(
        emulator,
        tmp_path,
        KIE_CELERY_BROKER_URL=redis_url,
        KIE_CELERY_RESULT_BACKEND=redis_url,
        KIE_CELERY_VISIBILITY_TIMEOUT="6",  # a vanished worker's jobs come back after 6 s
    )
    batch = requests(12, "celery kill")
    with workers(tmp_path) as group:
        start_celery(group, "victim", env, pool="prefork")
        start_celery(group, "survivor-a", env, pool="threads")
        start_celery(group, "survivor-b", env, pool="prefork")
        jobs = enqueue(app, batch)
        victim_jobs = await bought_on(jobs, batch, "victim@", emulator, group)
        bought_before_kill = emulator.stats.tasks_created
        group.kill("victim")
        done = await results_of(jobs, group)

    assert victim_jobs and bought_before_kill >= 1  # the victim died holding a paid, undelivered task
    # A createTask on the wire when its worker died may have bought a task whose answer nobody heard: that request
    # reads as submit_uncertain and buys nothing more (the ledger's rule), never as a second purchase.
    uncertain = [r for r in done if r["status"] == "submit_uncertain"]
    delivered = [r for r in done if r["status"] == "succeeded"]
    assert len(uncertain) <= 2, uncertain  # at most the victim's two processes
    assert len(delivered) + len(uncertain) == len(batch), [r for r in done if r not in delivered + uncertain]
    assert len(delivered) <= emulator.stats.tasks_created <= len(batch)  # killed workers' purchases resumed
    assert set(tasks_per_prompt(emulator).values()) == {1}  # no request bought twice
    assert len({r["task_id"] for r in delivered}) == len(delivered)
    assert all(r["outputs"] and all(Path(p).is_file() for p in r["outputs"]) for r in delivered)
    assert len(run_folders(tmp_path)) == len(delivered)  # every output delivered once, in one run folder


async def bought_on(jobs: list[Any], batch: list[Any], host: str, emulator: KieEmulator, group: Workers) -> list[str]:
    """Wait until a job running on ``host`` (the backend's STARTED state says where) has bought its task."""

    def started() -> list[int]:
        return [
            i
            for i, job in enumerate(jobs)
            if job.state == "STARTED" and str((job.info or {}).get("hostname", "")).startswith(host)
        ]

    deadline = time.monotonic() + RESULT_TIMEOUT
    while time.monotonic() < deadline:
        bought = tasks_per_prompt(emulator)
        mine = [batch[i].prompt for i in await asyncio.to_thread(started) if batch[i].prompt in bought]
        if mine:
            return mine
        await asyncio.sleep(0.05)
    raise AssertionError(f"no job bought on {host}\n{group.logs()}")


async def test_sixty_requests_over_three_workers_at_the_account_limit_see_no_429(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    assert emulator.config.create_rate_limit == 20 and emulator.config.create_rate_window == 10.0  # Kie.ai's own
    app = make_app(redis_url, redis_url)
    env = worker_env(
        emulator,
        tmp_path,
        KIE_CELERY_BROKER_URL=redis_url,
        KIE_CELERY_RESULT_BACKEND=redis_url,
        KIE_COORDINATION_URL=redis_url,  # one createTask window for the account, whichever worker sends
    )
    batch = requests(60, "celery sixty")
    with workers(tmp_path) as group:
        for n, pool in enumerate(("prefork", "threads", "threads")):
            start_celery(group, f"w{n}", env, pool=pool)
        done = await results_of(enqueue(app, batch), group)
    assert [r["status"] for r in done] == ["succeeded"] * 60
    assert emulator.stats.tasks_created == 60 and set(tasks_per_prompt(emulator).values()) == {1}
    assert emulator.stats.rate_limited == 0  # three workers, one account's limit, never a 429
    assert len(run_folders(tmp_path)) == 60
