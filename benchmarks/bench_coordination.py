"""Several processes on one Kie.ai account, sharing it through Redis (``KIE_COORDINATION_URL``).

    python benchmarks/bench_coordination.py            # full (about 3 minutes)
    python benchmarks/bench_coordination.py --quick    # under a minute

Every worker is its own process with its own ``KieSession``; the emulator runs in its own process and a
``redis-server`` started here (free port, ``--save "" --appendonly no``) is the shared store. Four scenarios:

* **submit**: 4 processes submit ``createTask`` as fast as they are allowed for 60 s (``--quick``: 12 s) against
  one key with the real limit, 20 per 10 s. With coordination: the emulator's 429 count and the aggregate
  submit rate after the first burst, ``(N - 20) / (last - first answer)``, over the allowed 2/s (the SDK keeps a
  5 % margin, so 0.95 is its ceiling). Without coordination (each process its own window): the 429 count, as
  the control.
* **fan-in**: a callback receiver in process A, 100 callback-driven waiters (safety poll 60 s) spread over
  processes B-D. Wake-up latency is the waiter getting its finished record minus the callback's arrival at A
  (p50/p99); extra status requests per task are the emulator's recordInfo count per task minus the two a
  woken waiter needs (one when it starts, one after the callback). The createTask limit is lifted and the
  read limit raised to 500/s here: the figure is about the callback hop, not the limits.
* **budget**: 3 processes run one batch (same ``batch_id``) with a 400-credit budget, 8-credit requests, more
  requests than fit: total spent (the emulator's figure) must be at most 400.
* **restart**: 2 processes run a 30-request batch (scaled limit 5 per 1 s); Redis is stopped mid-batch for 3 s
  and started again, empty: createTask calls the emulator saw while it was down (must be 0), and whether every
  request still got exactly one task.

Without ``redis-server`` on PATH the script says so and writes empty figures (exit 0), unless
``KIE_REQUIRE_REDIS=1`` (set by ``.ci/run``), which makes it fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _common import EmulatorProcess, add_common_flags, fmt, percentile, print_table, write_results

NAME = "bench_coordination"
REAL_LIMIT, REAL_WINDOW = 20, 10.0
RESULT_PREFIX = "RESULT "


# -- redis ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


class Redis:
    """A throwaway redis-server; ``stop``/``start`` keep the port (and lose every key: no persistence)."""

    def __init__(self, binary: str, folder: str) -> None:
        self.binary, self.folder, self.port = binary, folder, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.folder,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120  # generous: on a busy machine a process starts slowly
        while not _ping(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.proc.returncode} (port {self.port} taken?)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port} within 120 s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


# -- child processes ----------------------------------------------------------------------------------------


def _settings(spec: dict[str, Any]) -> Any:
    from kie_async import KieSettings, PollSettings, RateLimitSettings

    values: dict[str, Any] = {
        "api_key": spec["api_key"],
        "base_url": spec["base_url"],
        "upload_base_url": spec["upload_base_url"],
        "rate_limit": RateLimitSettings(
            create_per_window=spec.get("limit", REAL_LIMIT),
            create_window_seconds=spec.get("window", REAL_WINDOW),
            reads_per_second=spec.get("reads_per_second", 10.0),
        ),
        "poll": PollSettings(schedule=((float("inf"), 0.25),), callback_safety_interval=60.0, timeout=300.0),
    }
    if spec.get("redis_url"):
        values["coordination_url"] = spec["redis_url"]
        values["coordination_prefix"] = spec["prefix"]
    return KieSettings(**values)


def _pipeline_options(root: str) -> Any:
    from kie_async import ArtifactSettings, PipelineOptions
    from kie_async.artifacts import ArtifactDerivativeSettings

    artifacts = ArtifactSettings(root=Path(root), derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts, check_balance=False)


async def _until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def child_submit(spec: dict[str, Any]) -> dict[str, Any]:
    """Submit createTask from ``concurrency`` loops until the deadline; the answer times are the submit times."""
    from kie_async import KieError, KieSession

    answers: list[float] = []
    errors = 0
    async with KieSession(_settings(spec)) as kie:
        await _until(spec["start_at"])

        async def loop(n: int) -> None:
            nonlocal errors
            i = 0
            while True:
                try:
                    await kie.create_task(model="nano-banana-2", input={"prompt": f"{spec['tag']} {n}.{i}"})
                    answers.append(time.time())
                except KieError:
                    errors += 1
                i += 1

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(spec["start_at"] + spec["seconds"] - time.time()):
                await asyncio.gather(*(loop(n) for n in range(spec["concurrency"])))
        sdk_429 = kie.stats.rate_limited
    return {"answers": answers, "errors": errors, "sdk_429": sdk_429}


async def child_wait(spec: dict[str, Any]) -> dict[str, Any]:
    """Create ``count`` tasks (spread over ``spread`` s) with the receiver's callback URL; wait for each."""
    from kie_async import KieSession

    woke: dict[str, float] = {}
    async with KieSession(_settings(spec)) as kie:
        await _until(spec["start_at"])

        async def one(i: int) -> None:
            await asyncio.sleep(spec["spread"] * i / max(1, spec["count"]))
            created = await kie.create_task(
                model="nano-banana-2", input={"prompt": f"{spec['tag']} {i}"}, callback_url=spec["callback_url"]
            )
            record = await kie.wait_for_task(created.task_id, callback_driven=True, timeout=120)
            woke[created.task_id] = time.time()
            assert record.has_usable_result

        await asyncio.gather(*(one(i) for i in range(spec["count"])))
    return {"woke": woke}


async def child_receiver(spec: dict[str, Any]) -> dict[str, Any]:
    """Serve ``add_callback_route``; note when each callback arrived (before it is verified and published)."""
    from aiohttp import web

    from kie_async import KieSession, verify_callback
    from kie_async.interfaces.callback_receiver import CallbackReceiver

    arrived: dict[str, float] = {}
    async with KieSession(_settings(spec)) as kie:
        app = web.Application()
        receiver = CallbackReceiver(kie, hmac_key=spec["hmac_key"])

        async def handle(request: web.Request) -> web.StreamResponse:
            now = time.time()
            body = await request.read()  # aiohttp keeps it: the receiver reads the same bytes
            with contextlib.suppress(Exception):
                arrived.setdefault(verify_callback(request.headers, body, None).task_id, now)
            return await receiver.handle(request)

        app.router.add_post("/kie/callback", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        print(json.dumps({"callback_url": f"http://127.0.0.1:{port}/kie/callback"}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        await runner.cleanup()
        accepted = receiver.stats.accepted
    return {"arrived": arrived, "accepted": accepted}


async def child_batch(spec: dict[str, Any]) -> dict[str, Any]:
    """One process's part of a batch: ``run_many`` with the shared ``batch_id`` (and budget)."""
    from kie_async import KieSession, RawUserRequest, run_many

    requests = [RawUserRequest(model_key="nano-banana-2", prompt=f"{spec['tag']} {i}") for i in range(spec["count"])]
    async with KieSession(_settings(spec)) as kie:
        await _until(spec["start_at"])
        results = await run_many(
            requests,
            kie,
            concurrency=spec.get("concurrency", 8),
            budget_credits=spec.get("budget"),
            options=_pipeline_options(spec["root"]),
            batch_id=spec["batch_id"],
        )
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    return {
        "statuses": statuses,
        "task_ids": [r.task_id for r in results if r.task_id],
        "charged": sum(r.credits_charged or 0.0 for r in results if r.succeeded),
        "finished_at": time.time(),
    }


CHILDREN = {"submit": child_submit, "wait": child_wait, "receiver": child_receiver, "batch": child_batch}


def child_main(raw: str) -> int:
    spec = json.loads(raw)
    result = asyncio.run(CHILDREN[spec["role"]](spec))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


class Child:
    """A worker process of this script (``--child SPEC``); its last ``RESULT`` line is its answer."""

    def __init__(self, spec: dict[str, Any], *, keep_stdin: bool = False) -> None:
        self.spec = spec
        self.keep_stdin = keep_stdin
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Child:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--child",
            json.dumps(self.spec),
            stdin=asyncio.subprocess.PIPE if self.keep_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        return self

    async def first_line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.spec['role']} child exited early")
        data: dict[str, Any] = json.loads(line)
        return data

    async def result(self, timeout: float = 600) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        if self.keep_stdin and self.proc.stdin is not None:
            self.proc.stdin.close()
        out = await asyncio.wait_for(self.proc.stdout.read(), timeout=timeout)
        await self.proc.wait()
        for line in reversed(out.decode().splitlines()):
            if line.startswith(RESULT_PREFIX):
                data: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
                return data
        raise RuntimeError(f"{self.spec['role']} child exited {self.proc.returncode} without a result")

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)


@contextlib.asynccontextmanager
async def children(specs: list[dict[str, Any]]) -> AsyncIterator[list[Child]]:
    started = [await Child(spec).start() for spec in specs]
    try:
        yield started
    finally:
        for child in started:
            child.kill()


def _base_spec(emulator: EmulatorProcess, redis_url: str | None, prefix: str) -> dict[str, Any]:
    return {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "upload_base_url": str(emulator.info["upload_base_url"]),
        "redis_url": redis_url,
        "prefix": prefix,
    }


# -- scenarios ------------------------------------------------------------------------------------------------


async def scenario_submit(redis: Redis, *, shared: bool, seconds: float, processes: int) -> dict[str, Any]:
    async with EmulatorProcess(
        generation_seconds=5.0, create_rate_limit=REAL_LIMIT, create_rate_window=REAL_WINDOW
    ) as emulator:
        base = _base_spec(emulator, redis.url if shared else None, f"bench-{secrets.token_hex(4)}:")
        start_at = time.time() + 3.0  # every process has started and connected by then
        specs = [
            {**base, "role": "submit", "tag": f"p{i}", "start_at": start_at, "seconds": seconds, "concurrency": 8}
            for i in range(processes)
        ]
        async with children(specs) as started:
            results = [await c.result() for c in started]
        stats = await emulator.stats()
    answers = sorted(t for r in results for t in r["answers"])
    allowed = REAL_LIMIT / REAL_WINDOW
    steady = (len(answers) - REAL_LIMIT) / (answers[-1] - answers[0]) if len(answers) > REAL_LIMIT else math.nan
    return {
        "coordinated": shared,
        "processes": processes,
        "seconds": seconds,
        "submits": len(answers),
        "submits_per_process": [len(r["answers"]) for r in results],
        "emulator_429s": int(stats.get("rate_limited", 0)),
        "sdk_429s": sum(int(r["sdk_429"]) for r in results),
        "errors": sum(int(r["errors"]) for r in results),
        "rate_over_allowed": round(steady / allowed, 3) if not math.isnan(steady) else None,
        "span_s": round(answers[-1] - answers[0], 2) if answers else None,
    }


async def scenario_fan_in(redis: Redis, *, waiters: int, processes: int) -> dict[str, Any]:
    hmac_key = secrets.token_urlsafe(12)
    async with EmulatorProcess(generation_seconds=1.0, create_rate_limit=None, webhook_hmac_key=hmac_key) as emulator:
        base = {
            **_base_spec(emulator, redis.url, f"bench-{secrets.token_hex(4)}:"),
            "limit": 100_000,
            "window": 1.0,
            "reads_per_second": 500.0,
        }
        receiver = await Child({**base, "role": "receiver", "hmac_key": hmac_key}, keep_stdin=True).start()
        try:
            callback_url = (await receiver.first_line())["callback_url"]
            start_at = time.time() + 3.0
            shares = [waiters // processes + (1 if i < waiters % processes else 0) for i in range(processes)]
            specs = [
                {
                    **base,
                    "role": "wait",
                    "tag": f"w{i}",
                    "count": n,
                    "spread": 2.0,
                    "start_at": start_at,
                    "callback_url": callback_url,
                }
                for i, n in enumerate(shares)
            ]
            async with children(specs) as started:
                woken = [await c.result() for c in started]
            received = await receiver.result()
        finally:
            receiver.kill()
        stats = await emulator.stats()
    woke = {task: t for r in woken for task, t in r["woke"].items()}
    latencies_ms = [(t - received["arrived"][task]) * 1000 for task, t in woke.items() if task in received["arrived"]]
    reads = [int(stats["status_requests"].get(task, 0)) for task in woke]
    return {
        "waiters": len(woke),
        "waiter_processes": processes,
        "callbacks_received": len(received["arrived"]),
        "wake_p50_ms": round(percentile(latencies_ms, 50), 2),
        "wake_p99_ms": round(percentile(latencies_ms, 99), 2),
        "wake_max_ms": round(max(latencies_ms, default=math.nan), 2),
        "status_requests_per_task": round(sum(reads) / len(reads), 3) if reads else None,
        "extra_status_requests_per_task": round(sum(r - 2 for r in reads) / len(reads), 3) if reads else None,
    }


async def scenario_budget(redis: Redis, *, processes: int, per_process: int, cap: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        async with EmulatorProcess(generation_seconds=0.3, create_rate_limit=None) as emulator:
            base = {
                **_base_spec(emulator, redis.url, f"bench-{secrets.token_hex(4)}:"),
                "limit": 100_000,
                "window": 1.0,
                "reads_per_second": 500.0,
            }
            batch_id = f"budget-{secrets.token_hex(4)}"
            start_at = time.time() + 3.0
            specs = [
                {
                    **base,
                    "role": "batch",
                    "tag": f"b{i}",
                    "count": per_process,
                    "budget": cap,
                    "batch_id": batch_id,
                    "root": f"{folder}/p{i}",
                    "start_at": start_at,
                }
                for i in range(processes)
            ]
            async with children(specs) as started:
                results = [await c.result() for c in started]
            stats = await emulator.stats()
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    spent = float(stats.get("credits_spent", 0.0))
    return {
        "processes": processes,
        "requests": processes * per_process,
        "cap": cap,
        "cost_per_request": round(spent / max(1, statuses.get("succeeded", 0)), 2),
        "spent": spent,
        "over_cap": max(0.0, spent - cap),
        "succeeded": statuses.get("succeeded", 0),
        "over_budget": statuses.get("over_budget", 0),
        "other": {k: v for k, v in statuses.items() if k not in ("succeeded", "over_budget")},
        "succeeded_per_process": [r["statuses"].get("succeeded", 0) for r in results],
    }


async def scenario_restart(redis: Redis, *, processes: int, per_process: int, outage: float) -> dict[str, Any]:
    total = processes * per_process
    with tempfile.TemporaryDirectory() as folder:
        async with EmulatorProcess(generation_seconds=0.5, create_rate_limit=5, create_rate_window=1.0) as emulator:
            base = {
                **_base_spec(emulator, redis.url, f"bench-{secrets.token_hex(4)}:"),
                "limit": 5,
                "window": 1.0,
                "reads_per_second": 200.0,
            }
            start_at = time.time() + 3.0
            specs = [
                {
                    **base,
                    "role": "batch",
                    "tag": f"r{i}",
                    "count": per_process,
                    "batch_id": "restart",
                    "root": f"{folder}/p{i}",
                    "start_at": start_at,
                }
                for i in range(processes)
            ]

            async def creates() -> int:
                return int((await emulator.stats()).get("requests", {}).get("createTask", 0))

            async with children(specs) as started:
                while await creates() < total // 3:  # noqa: ASYNC110 (polling another process's counters)
                    await asyncio.sleep(0.02)
                redis.stop()
                try:
                    await asyncio.sleep(0.3)  # a slot granted just before the stop may still be on the wire
                    at_stop = await creates()
                    await asyncio.sleep(outage)
                    before_restart = await creates()
                finally:
                    redis.start()
                restarted = time.time()
                results = [await c.result() for c in started]
            stats = await emulator.stats()
    task_ids = [t for r in results for t in r["task_ids"]]
    succeeded = sum(r["statuses"].get("succeeded", 0) for r in results)
    return {
        "processes": processes,
        "requests": total,
        "outage_s": outage,
        "creates_at_stop": at_stop,
        "creates_while_down": before_restart - at_stop,
        "succeeded": succeeded,
        "distinct_task_ids": len(set(task_ids)),
        "tasks_created": int(stats.get("tasks_created", 0)),
        "emulator_429s": int(stats.get("rate_limited", 0)),
        "finish_after_restart_s": round(max(r["finished_at"] for r in results) - restarted, 2),
    }


# -- main -----------------------------------------------------------------------------------------------------

FIGURES = ("submit_coordinated", "submit_control", "fan_in", "budget", "restart")


async def main_async(args: argparse.Namespace, binary: str) -> dict[str, Any]:
    seconds = 12.0 if args.quick else args.seconds
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        redis = Redis(binary, folder)
        redis.start()
        try:
            print(f"redis-server on port {redis.port}; submit scenario {seconds:g} s x 2 ...", flush=True)
            figures["submit_coordinated"] = await scenario_submit(redis, shared=True, seconds=seconds, processes=4)
            figures["submit_control"] = await scenario_submit(redis, shared=False, seconds=seconds, processes=4)
            print("fan-in ...", flush=True)
            figures["fan_in"] = await scenario_fan_in(redis, waiters=30 if args.quick else 100, processes=3)
            print("budget ...", flush=True)
            figures["budget"] = await scenario_budget(
                redis, processes=3, per_process=10 if args.quick else 25, cap=120.0 if args.quick else 400.0
            )
            print("restart ...", flush=True)
            figures["restart"] = await scenario_restart(
                redis, processes=2, per_process=8 if args.quick else 15, outage=2.0 if args.quick else 3.0
            )
        finally:
            redis.stop()
    return figures


def report(figures: dict[str, Any]) -> None:
    co, ctl = figures["submit_coordinated"], figures["submit_control"]
    print_table(
        f"4 processes submitting for {co['seconds']:g} s at 20 per 10 s",
        ["", "coordinated (Redis)", "control (per process)"],
        [
            ["createTask answered", fmt(co["submits"]), fmt(ctl["submits"])],
            ["**429s** (emulator)", fmt(co["emulator_429s"]), fmt(ctl["emulator_429s"])],
            [
                "submit rate / allowed (after the first burst)",
                fmt(co["rate_over_allowed"]),
                fmt(ctl["rate_over_allowed"]),
            ],
        ],
    )
    f, b, r = figures["fan_in"], figures["budget"], figures["restart"]
    print_table(
        "fan-in, budget, restart",
        ["figure", "value"],
        [
            [
                f"wake-up after the callback, {f['waiters']} waiters in {f['waiter_processes']} processes, "
                "p50 / p99 (ms)",
                f"{fmt(f['wake_p50_ms'])} / {fmt(f['wake_p99_ms'])}",
            ],
            ["extra status requests per task", fmt(f["extra_status_requests_per_task"], 3)],
            [
                f"budget: spent of {b['cap']:g} by {b['processes']} processes ({b['succeeded']} succeeded, "
                f"{b['over_budget']} over budget)",
                fmt(b["spent"], 0),
            ],
            [f"restart: createTask while Redis was down ({r['outage_s']:g} s)", fmt(r["creates_while_down"])],
            [
                f"restart: succeeded / requests (distinct tasks {r['distinct_task_ids']})",
                f"{r['succeeded']} / {r['requests']}",
            ],
        ],
    )


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child_main(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the submit scenario (default 60)")
    args = parser.parse_args()
    params = {"seconds": 12.0 if args.quick else args.seconds, "limit": REAL_LIMIT, "window_s": REAL_WINDOW}
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server not found: install it with `apt-get install -y redis-server` to run this benchmark"
        if os.environ.get("KIE_REQUIRE_REDIS", "").lower() in ("1", "true", "yes"):
            print(f"error: {message} (KIE_REQUIRE_REDIS is set)", file=sys.stderr)
            return 1
        print(f"skipped: {message}")
        write_results(
            NAME, args.out, quick=args.quick, params={**params, "skipped": message}, figures=dict.fromkeys(FIGURES)
        )
        return 0
    started = time.monotonic()
    figures = asyncio.run(main_async(args, binary))
    report(figures)
    params["wall_s"] = round(time.monotonic() - started, 1)
    headline = {
        "submit_429s": figures["submit_coordinated"]["emulator_429s"],
        "submit_rate_over_allowed": figures["submit_coordinated"]["rate_over_allowed"],
        "control_429s": figures["submit_control"]["emulator_429s"],
        "wake_p99_ms": figures["fan_in"]["wake_p99_ms"],
        "extra_status_requests_per_task": figures["fan_in"]["extra_status_requests_per_task"],
        "budget_spent": figures["budget"]["spent"],
        "restart_creates_while_down": figures["restart"]["creates_while_down"],
    }
    write_results(NAME, args.out, quick=args.quick, params=params, figures=figures, headline=headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
