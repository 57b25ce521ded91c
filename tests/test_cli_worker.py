"""``kie-async worker --engine celery|taskiq``: the engine's own worker, started by the command line, runs jobs
against the emulator; and the package (and that command's refusal) without the engines installed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from kie_async.emulator import KieEmulator
from kie_async.integrations.celery import TASK_NAME as CELERY_TASK
from kie_async.integrations.celery import make_app
from kie_async.integrations.taskiq import TASK_NAME as TASKIQ_TASK
from kie_async.integrations.taskiq import make_broker
from tests.engine_workers import requests, run_folders, tasks_per_prompt, worker_env, workers

RESULT_TIMEOUT = 300.0


async def test_kie_async_worker_celery_runs_jobs(emulator: KieEmulator, redis_url: str, tmp_path: Path) -> None:
    app = make_app(redis_url, redis_url)
    batch = requests(3, "cli celery")
    with workers(tmp_path) as group:
        argv = ["kie_async", "worker", "--engine", "celery", "--broker", redis_url, "--concurrency", "2"]
        group.start(
            "cli-celery", [*argv, "--pool", "threads", "--", "--hostname", "cli@%h"], worker_env(emulator, tmp_path)
        )
        jobs = [app.send_task(CELERY_TASK, args=[r.model_dump(mode="json")]) for r in batch]

        def collect() -> list[dict[str, Any]]:
            deadline = time.monotonic() + RESULT_TIMEOUT
            return [job.get(timeout=max(1.0, deadline - time.monotonic()), interval=0.1) for job in jobs]

        done = await asyncio.to_thread(collect)
        log = group.logs()
    assert [r["status"] for r in done] == ["succeeded"] * 3, log
    assert emulator.stats.tasks_created == 3 and set(tasks_per_prompt(emulator).values()) == {1}
    assert len(run_folders(tmp_path)) == 3
    assert "cli@" in log  # the arguments after -- reached Celery


async def test_kie_async_worker_taskiq_runs_jobs(emulator: KieEmulator, redis_url: str, tmp_path: Path) -> None:
    producer = make_broker(redis_url, redis_url)
    await producer.startup()
    batch = requests(3, "cli taskiq")
    try:
        with workers(tmp_path, stop_timeout=10) as group:
            argv = ["kie_async", "worker", "--engine", "taskiq", "--broker", redis_url, "--concurrency", "2"]
            group.start("cli-taskiq", [*argv, "--", "--workers", "1"], worker_env(emulator, tmp_path))
            task = producer.find_task(TASKIQ_TASK)
            jobs = [await task.kiq(r.model_dump(mode="json")) for r in batch]
            async with asyncio.timeout(RESULT_TIMEOUT):
                done = [(await job.wait_result(check_interval=0.1)).return_value for job in jobs]
            log = group.logs()
    finally:
        await producer.shutdown()
    assert [r["status"] for r in done] == ["succeeded"] * 3, log
    assert emulator.stats.tasks_created == 3 and set(tasks_per_prompt(emulator).values()) == {1}
    assert len(run_folders(tmp_path)) == 3


WITHOUT_ENGINES = textwrap.dedent(
    """
    import sys
    for name in ("celery", "kombu", "taskiq", "taskiq_redis"):
        sys.modules[name] = None  # as if not installed: importing them fails
    import kie_async, kie_async.integrations, kie_async.integrations.jobs
    from kie_async.interfaces.cli import main
    sys.exit(main(["worker", "--engine", sys.argv[1], "--broker", "redis://127.0.0.1:1/0"]))
    """
)


@pytest.mark.parametrize("engine", ["celery", "taskiq"])
def test_without_the_engine_the_package_imports_and_worker_names_the_extra(engine: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_ENGINES, engine], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert f"kie-async[{engine}]" in proc.stderr


async def kie_async_cli(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kie_async", *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(RESULT_TIMEOUT):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("engine", ["celery", "taskiq"])
async def test_run_batch_on_an_engine_twice_buys_each_line_once(
    engine: str, emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    batch = requests(2, f"run-batch {engine}")
    lines = [r.model_dump_json(exclude_defaults=True) for r in [*batch, batch[0]]]  # a line twice: two purchases
    batch_file = tmp_path / "batch.jsonl"
    batch_file.write_text("\n".join(lines) + "\n")
    env = worker_env(emulator, tmp_path)
    with workers(tmp_path, stop_timeout=10) as group:
        worker = ["kie_async", "worker", "--engine", engine, "--broker", redis_url, "--concurrency", "2"]
        group.start(f"cli-{engine}", [*worker, *(["--pool", "threads"] if engine == "celery" else [])], env)
        command = ["run-batch", str(batch_file), "--engine", engine, "--broker", redis_url, "--json"]
        first = await kie_async_cli(*command, env=env)
        second = await kie_async_cli(*command, env=env)  # stopped and started again, or run twice
        log = group.logs()
    assert first[0] == 0 and second[0] == 0, (first, second, log)
    one, two = json.loads(first[1]), json.loads(second[1])
    assert one["summary"]["succeeded"] == 3 and two["summary"]["resumed"] == 3
    assert [r["task_id"] for r in one["results"]] == [r["task_id"] for r in two["results"]]
    assert emulator.stats.tasks_created == 3  # the repeated line is its own purchase; the second command buys none
    assert tasks_per_prompt(emulator)[batch[0].prompt] == 2


def test_run_batch_on_an_engine_refuses_what_only_a_local_batch_has(tmp_path: Path) -> None:
    batch_file = tmp_path / "batch.jsonl"
    batch_file.write_text(requests(1, "refused")[0].model_dump_json(exclude_defaults=True) + "\n")
    argv = ["run-batch", str(batch_file), "--engine", "celery", "--broker", "redis://127.0.0.1:1/0", "--budget", "5"]
    proc = subprocess.run(
        [sys.executable, "-m", "kie_async", *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2 and "--budget cannot go with --engine" in proc.stderr, proc.stderr
