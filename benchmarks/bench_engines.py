"""Task engines: one batch through 3 Celery workers, 3 Taskiq workers, and a local ``run_many``, at the account's limit.

    python benchmarks/bench_engines.py            # 60 requests, the real 20-per-10-s createTask limit
    python benchmarks/bench_engines.py --quick    # 12 requests, a scaled limit (seconds)

Besides this process: the emulator (standing in for Kie.ai, in its own process), a ``redis-server`` (broker,
result backend and ``KIE_COORDINATION_URL``, so the workers share the account's createTask window), and three
worker processes of each engine (``kie-async worker``: Celery with a threads pool of 2, Taskiq with 2 jobs at once).
Once every worker says it takes jobs, the batch is enqueued with ``kie_async.integrations.<engine>.enqueue_batch``;
the wall time runs from the first enqueue to the last result. The same batch (new prompts) then runs here with
``run_many``.

Figures that must be 0: ``requests_with_two_tasks`` (prompts the emulator sold twice), ``not_succeeded``,
``rate_limited`` (429s the emulator sent: the shared window must keep every worker under the limit).
Reported: wall seconds per engine and for ``run_many``, the ratio engine / ``run_many`` (1.0: the engine
reaches the account's limit as well as one process does), and the createTask rate from the batch's first to its
last createTask against the account's sustained rate (``submit_rate_vs_allowed``; goal ≥ 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import EmulatorProcess, add_common_flags, print_table, write_results
from bench_shared_batch import RedisProcess

from kie_async.artifacts import ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.integrations import celery as celery_engine
from kie_async.integrations import taskiq as taskiq_engine
from kie_async.integrations.jobs import batch_jobs
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run_models import PipelineOptions
from kie_async.session import KieSession

WORKERS = 3


def worker_env(emulator: EmulatorProcess, work: Path, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": str(emulator.info["upload_base_url"]),
        "KIE_API_KEY": emulator.api_key,
        "KIE_STATE_DIR": str(work / "state"),
        "KIE_OUTPUT_DIR": str(work / "outputs"),
        "KIE_COORDINATION_URL": redis_url,
        "KIE_WAIT_POLL_INTERVAL_SECONDS": "0.5",
    }


def start_workers(engine: str, env: dict[str, str], redis_url: str, work: Path) -> list[subprocess.Popen[bytes]]:
    argv = [
        sys.executable,
        "-m",
        "kie_async",
        "worker",
        "--engine",
        engine,
        "--broker",
        redis_url,
        "--concurrency",
        "2",
    ]
    if engine == "celery":
        argv += ["--pool", "threads", "--", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    procs = []
    for n in range(WORKERS):
        with (work / f"{engine}-{n}.log").open("ab") as log:
            extra = ["--hostname", f"{engine}{n}@%h"] if engine == "celery" else []
            procs.append(
                subprocess.Popen([*argv, *extra], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # taskiq 0.13 does not exit on SIGTERM: its jobs are all done here
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def on_engine(engine: str, count: int, emulator: EmulatorProcess, redis_url: str, work: Path) -> dict[str, Any]:
    batch = [RawUserRequest(model_key="nano-banana-2", prompt=f"{engine} bench {i}") for i in range(count)]
    module = celery_engine if engine == "celery" else taskiq_engine
    procs = start_workers(engine, worker_env(emulator, work, redis_url), redis_url, work)
    try:
        await ready(engine, work)
        jobs = await batch_jobs(batch)
        before = await emulator.stats()
        started = time.monotonic()
        results = await module.enqueue_batch(jobs, broker=redis_url, timeout=1800)
        wall = time.monotonic() - started
        after = await emulator.stats()
    finally:
        stop_workers(procs)
    return {
        "wall_seconds": round(wall, 2),
        "tasks_created": after["tasks_created"] - before["tasks_created"],
        "rate_limited": after["rate_limited"] - before["rate_limited"],
        "not_succeeded": sum(1 for r in results if r["status"] != "succeeded"),
        "worker_processes_used": len({r["pid"] for r in results}),
    }


READY = {"celery": "ready.", "taskiq": "Listening started"}
"""What each engine's worker logs once it takes jobs."""


async def ready(engine: str, work: Path, timeout: float = 120) -> None:
    """Wait until every worker of ``engine`` said it takes jobs (the wall time leaves out their start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = [(work / f"{engine}-{n}.log").read_text(errors="replace") for n in range(WORKERS)]
        if all(READY[engine] in log for log in logs):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{engine} workers did not start within {timeout:g} s")


async def local(count: int, emulator: EmulatorProcess, work: Path) -> dict[str, Any]:
    batch = [RawUserRequest(model_key="nano-banana-2", prompt=f"local bench {i}") for i in range(count)]
    os.environ["KIE_STATE_DIR"] = str(work / "state-local")
    options = PipelineOptions(artifacts=ArtifactSettings(root=work / "outputs-local"))
    before = await emulator.stats()
    started = time.monotonic()
    async with KieSession(emulator.settings()) as kie:
        results = await run_many(batch, kie, concurrency=WORKERS * 2, options=options)
    wall = time.monotonic() - started
    after = await emulator.stats()
    return {
        "wall_seconds": round(wall, 2),
        "tasks_created": after["tasks_created"] - before["tasks_created"],
        "rate_limited": after["rate_limited"] - before["rate_limited"],
        "not_succeeded": sum(1 for r in results if r.status != "succeeded"),
    }


async def main(args: argparse.Namespace) -> int:
    count = 12 if args.quick else 60
    limit, window = (20, 2.0) if args.quick else (20, 10.0)
    config = {"generation_seconds": 2.0, "create_rate_limit": limit, "create_rate_window": window}
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as folder:
        work = Path(folder)
        redis = RedisProcess(work)
        try:
            await redis.ready()
            async with EmulatorProcess(**config) as emulator:
                figures: dict[str, Any] = {}
                for engine in ("celery", "taskiq"):
                    figures[engine] = await on_engine(engine, count, emulator, redis.url, work)
                    await asyncio.sleep(window)  # the next run starts with the account's window empty
                figures["run_many"] = await local(count, emulator, work)
                tasks = await sold(emulator)
        finally:
            redis.stop()
    per_prompt = Counter(prompt for prompt, _ in tasks)
    for name, prefix in (("celery", "celery bench"), ("taskiq", "taskiq bench"), ("run_many", "local bench")):
        span = create_span(tasks, prefix)
        figures[name]["create_span_seconds"] = span
        # createTasks per second after the first, against the account's sustained rate (limit per window)
        figures[name]["submit_rate_vs_allowed"] = round((count - 1) / span / (limit / window), 3) if span else None
    figures["requests_with_two_tasks"] = sum(1 for n in per_prompt.values() if n > 1)
    for engine in ("celery", "taskiq"):
        figures[engine]["ratio_to_run_many"] = round(
            figures[engine]["wall_seconds"] / figures["run_many"]["wall_seconds"], 3
        )
    rows = [
        [
            name,
            str(f["wall_seconds"]),
            str(f["create_span_seconds"]),
            str(f["submit_rate_vs_allowed"]),
            str(f["tasks_created"]),
            str(f["rate_limited"]),
            str(f["not_succeeded"]),
        ]
        for name, f in figures.items()
        if isinstance(f, dict)
    ]
    print_table(
        f"{count} requests, {limit} createTask per {window:g} s",
        ["run", "wall s", "create span s", "rate / allowed", "tasks", "429s", "not ok"],
        rows,
    )
    write_results(
        "bench_engines",
        args.out,
        quick=args.quick,
        params={"requests": count, "workers": WORKERS, "create_rate_limit": limit, "create_rate_window": window},
        figures=figures,
    )
    return 0


async def sold(emulator: EmulatorProcess) -> list[tuple[str, float]]:
    """Every task the emulator sold, as (prompt, createTime in seconds), over its control API."""
    assert emulator._http is not None
    async with emulator._http.get(f"{emulator.base_url}/_emulator/tasks") as response:
        tasks: list[dict[str, Any]] = (await response.json())["tasks"]
    found = []
    for task in tasks:
        body = task["input"] if isinstance(task["input"], dict) else json.loads(task["input"])
        found.append((str(body.get("prompt")), float(task["createTime"]) / 1000))
    return found


def create_span(tasks: list[tuple[str, float]], prefix: str) -> float:
    """Seconds from the batch's first createTask to its last."""
    times = [at for prompt, at in tasks if prompt.startswith(prefix)]
    return round(max(times) - min(times), 2) if times else float("nan")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(parser)
    sys.exit(asyncio.run(main(parser.parse_args())))
