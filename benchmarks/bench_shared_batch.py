"""Shared batch: 3 ``kie-async run-batch --coordination`` processes on one file, one SIGKILLed mid-way.

    python benchmarks/bench_shared_batch.py            # 300 requests, the real 20-per-10-s createTask limit
    python benchmarks/bench_shared_batch.py --quick    # 30 requests, a scaled limit, a 2 s lease (the suite runs it)

Four processes besides this one: the emulator (standing in for Kie.ai), a ``redis-server`` (no persistence), and
three ``run-batch`` processes with the same file and ``--coordination``: they split the batch through the shared
journal. Once about 40% of the batch is bought and the first process holds requests, it is killed with SIGKILL,
aiming (for up to one createTask window) at a moment when one of its createTask calls is on the wire (the
emulator answers createTask after 0.4 s, as a remote service does). Its claims expire after the lease and the
two survivors take them over, each printing the outcome of the whole batch.

Figures that must be 0:

- ``requests_with_two_tasks``: prompts the emulator sold more than one task for;
- ``not_settled``: requests whose final status is not ``succeeded``, a provider ``failed`` or
  ``submit_uncertain`` (a maybe-sent claim of the dead process, which is left alone by design);
- ``dead_claims_unfinished``: requests the dead process held at the kill (createTask not on the wire) that
  the survivors did not finish (``succeeded`` or a provider ``failed``);
- ``dead_maybe_sent_not_left_uncertain``: requests whose createTask the dead process had on the wire (sending
  marker, no answer) that did not end ``submit_uncertain``: a taker must never buy those again;
- ``survivors_disagree``: requests whose status or task id differs between the two survivors' reports;
- ``uncertain_not_from_the_kill``: uncertain results that no takeover explains (no faults are injected).

Reported alongside: the dead process's claims at the kill, claims taken over, its maybe-sent ones left
uncertain (``dead_maybe_sent_left_uncertain``) and its never-sent ones bought by a survivor, claims finished
per process, and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from _common import EmulatorProcess, add_common_flags, print_table, write_results

from kie_async.coordination import account_namespace
from kie_async.interfaces.cli._run_cmd import default_batch_id

ZERO_KEYS = (
    "requests_with_two_tasks",
    "not_settled",
    "dead_claims_unfinished",
    "dead_maybe_sent_not_left_uncertain",
    "survivors_disagree",
    "uncertain_not_from_the_kill",
)
SHOWN = (
    "requests",
    "dead_claims_at_kill",
    "dead_states_at_kill",
    "claims_taken_over",
    "dead_maybe_sent_left_uncertain",
    "dead_never_sent_bought",
    "tasks_sold",
    "statuses",
    "claims_finished_per_process",
    "killed_after_tasks",
    "wall_s",
)


class RedisProcess:
    """A throw-away ``redis-server`` on a free port, no persistence (the suite's fixture does the same)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found: apt-get install -y redis-server")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def ready(self) -> None:
        client: aioredis.Redis = aioredis.from_url(self.url)
        try:
            deadline = time.monotonic() + 120  # generous: on a busy machine a process starts slowly
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with code {self.proc.returncode} (port taken?)")
                try:
                    await client.ping()
                    return
                except (OSError, aioredis.ConnectionError):
                    await asyncio.sleep(0.05)
            raise RuntimeError("redis-server did not answer within 120 s")
        finally:
            await client.aclose()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SharedBatch:
    def __init__(self, args: argparse.Namespace, work: Path, emulator: EmulatorProcess, redis_url: str) -> None:
        self.args = args
        self.work = work
        self.emulator = emulator
        self.redis_url = redis_url
        self.file = work / "batch.jsonl"
        self.rng = random.Random(args.seed)
        self.http = aiohttp.ClientSession()
        self.env = {
            **os.environ,
            "KIE_BASE_URL": emulator.base_url,
            "KIE_UPLOAD_BASE_URL": str(emulator.info["upload_base_url"]),
            "KIE_API_KEY": emulator.api_key,
            "KIE_COORDINATION_LEASE_SECONDS": str(args.lease),
            "PYTHONUNBUFFERED": "1",
        }

    async def tasks(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.emulator.base_url}/_emulator/tasks") as response:
            tasks: list[dict[str, Any]] = (await response.json())["tasks"]
            return tasks

    async def start(self, n: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kie_async",
            "run-batch",
            str(self.file),
            "--coordination",
            self.redis_url,
            "--out",
            str(self.work / f"out{n}"),
            "--no-derivatives",
            "--json",
            "--concurrency",
            str(self.args.concurrency),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def held_by(self, client: aioredis.Redis, pid: int | None) -> set[str]:
        holders: dict[str, str] = await client.hgetall(self.batch_key("holders"))
        return {key for key, owner in holders.items() if owner.split(":")[1] == str(pid)}

    async def states(self, client: aioredis.Redis, keys: set[str]) -> dict[str, str]:
        """Each request's journal state; ``submitting+sending`` when its createTask is on the wire."""
        if not keys:
            return {}
        ordered = sorted(keys)
        raw = await client.hmget(self.batch_key("entries"), [f"e:{key}" for key in ordered])
        states = {}
        for key, text in zip(ordered, raw, strict=True):
            entry = json.loads(text) if text else {"state": "pending"}
            sending = entry.get("state") == "submitting" and entry.get("sending")
            states[key] = "submitting+sending" if sending else str(entry.get("state"))
        return states

    async def sending(self, client: aioredis.Redis, pid: int | None) -> bool:
        """Whether a request the process holds has its createTask on the wire (sending marker, no answer)."""
        states = await self.states(client, await self.held_by(client, pid))
        return "submitting+sending" in states.values()

    def batch_key(self, part: str) -> str:
        batch_id = default_batch_id(self.file)
        return f"{account_namespace(self.emulator.api_key)}:batch:{batch_id}:{part}"

    async def play(self) -> dict[str, Any]:
        # Kie.ai answers createTask in a fraction of a second, not instantly: a kill can land mid-send.
        latency = {"endpoint": "createTask", "kind": "latency", "delay": self.args.create_latency, "count": None}
        async with self.http.post(f"{self.emulator.base_url}/_emulator/faults", json=latency) as response:
            response.raise_for_status()
        prompts = [f"shared batch request {i}" for i in range(self.args.requests)]
        self.file.write_text("".join(json.dumps({"model_key": "nano-banana-2", "prompt": p}) + "\n" for p in prompts))
        started = time.monotonic()
        procs = [await self.start(n) for n in range(3)]
        victim, survivors = procs[0], procs[1:]
        readers = [asyncio.create_task(p.communicate()) for p in survivors]
        target = int(self.args.requests * 0.4)
        client: aioredis.Redis = aioredis.from_url(self.redis_url, decode_responses=True)
        try:
            # Mid-way for the batch (40% bought) and for the victim (it holds requests): other processes'
            # progress, polled over HTTP and Redis, since there is nothing to wait on.
            while victim.returncode is None and (  # noqa: ASYNC110
                len(await self.tasks()) < target or not await self.held_by(client, victim.pid)
            ):
                await asyncio.sleep(0.05)
            # Then, for a while, aim at a createTask of the victim's that is on the wire (marker written, no
            # answer yet): the case a taker must leave uncertain. Otherwise the kill lands wherever it falls.
            aim_until = time.monotonic() + self.args.aim_seconds
            while victim.returncode is None and time.monotonic() < aim_until:
                if await self.sending(client, victim.pid):
                    break  # kill now: its answer is at most a fraction of a second away
                await asyncio.sleep(0.005)
            if victim.returncode is not None:
                raise RuntimeError(f"the victim exited (code {victim.returncode}) before the kill")
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            # What it left, read well before its lease runs out (nobody can have taken anything over yet).
            dead = await self.states(client, await self.held_by(client, victim.pid))
            killed_after = len(await self.tasks())
            outputs = await asyncio.wait_for(asyncio.gather(*readers), timeout=self.args.max_wait)
            wall = time.monotonic() - started
            meta = await client.hgetall(self.batch_key("meta"))
        finally:
            await client.aclose()
        reports = []
        for proc, (stdout, stderr) in zip(survivors, outputs, strict=True):
            if not stdout.strip():
                raise RuntimeError(f"a survivor printed nothing (exit {proc.returncode}): {stderr.decode()[-2000:]}")
            reports.append(json.loads(stdout))
        return await self.measure(prompts, reports, dead, meta, killed_after, wall)

    async def measure(
        self,
        prompts: list[str],
        reports: list[dict[str, Any]],
        dead: dict[str, str],
        meta: dict[str, str],
        killed_after: int,
        wall: float,
    ) -> dict[str, Any]:
        tasks = await self.tasks()
        sold = Counter(str((t["input"] or {}).get("prompt")) for t in tasks)
        first, second = (report["results"] for report in reports)
        disagree = sum(
            (a["status"], a["task_id"]) != (b["status"], b["task_id"]) for a, b in zip(first, second, strict=True)
        )

        def finished(result: dict[str, Any]) -> bool:
            provider_failed = result["status"] == "failed" and result.get("error_type") == "KieTaskFailedError"
            return result["status"] == "succeeded" or provider_failed

        def settled(result: dict[str, Any]) -> bool:
            return finished(result) or result["status"] == "submit_uncertain"

        by_key = {r["request_key"]: r for r in first}
        uncertain = sum(r["status"] == "submit_uncertain" for r in first)
        taken_uncertain = int(meta.get("takeover_uncertain", 0))
        # Per survivor pid: requests it claimed and finished (run, or read back from the journal when it got
        # there after another process had finished them).
        per_process = {
            field.removeprefix("finished:").split(":")[1]: int(n)
            for field, n in meta.items()
            if field.startswith("finished:")
        }
        return {
            "requests_with_two_tasks": sum(n > 1 for n in sold.values()),
            "not_settled": sum(not settled(r) for r in first),
            "dead_claims_unfinished": sum(
                1 for key, state in dead.items() if state != "submitting+sending" and not finished(by_key[key])
            ),
            "dead_maybe_sent_not_left_uncertain": sum(
                1
                for key, state in dead.items()
                if state == "submitting+sending" and by_key[key]["status"] != "submit_uncertain"
            ),
            "survivors_disagree": disagree,
            "uncertain_not_from_the_kill": max(0, uncertain - taken_uncertain),
            "requests": len(prompts),
            "dead_claims_at_kill": len(dead),
            "dead_states_at_kill": dict(Counter(dead.values())),
            "claims_taken_over": int(meta.get("takeovers", 0)),
            "dead_maybe_sent_left_uncertain": taken_uncertain,
            "dead_never_sent_bought": int(meta.get("takeover_refused", 0)),
            "tasks_sold": len(tasks),
            "statuses": dict(Counter(r["status"] for r in first)),
            "claims_finished_per_process": per_process,
            "killed_after_tasks": killed_after,
            "wall_s": round(wall, 1),
        }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = {
        "generation_seconds": args.generation_seconds,
        "create_rate_limit": args.create_limit,
        "create_rate_window": args.create_window,
        "seed": args.seed,
        "_render": "template",
    }
    work = Path(tempfile.mkdtemp(prefix="kie-shared-batch-"))
    redis = RedisProcess(work)
    try:
        await redis.ready()
        async with EmulatorProcess(**config) as emulator:
            bench = SharedBatch(args, work, emulator, redis.url)
            try:
                return await bench.play()
            finally:
                await bench.http.close()
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8, help="per process")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.concurrency = 30, 4
    # The real createTask limit (20 per 10 s: the CLI's own limit too) and, in a full run, the default 15 s lease.
    args.create_limit, args.create_window = 20, 10.0
    args.lease = 2.0 if args.quick else 15.0
    args.generation_seconds = 0.5 if args.quick else 2.0
    # Aim for longer than one createTask window: at the limit, sends come in bursts as the window frees.
    args.create_latency, args.aim_seconds = 0.4, args.create_window * 1.2
    args.max_wait = 120.0 if args.quick else 900.0
    figures = asyncio.run(main_async(args))
    print_table(
        f"shared batch: {args.requests} requests, 3 run-batch processes, one SIGKILLed mid-way",
        ["figure", "value"],
        [[k, str(figures[k])] for k in [*ZERO_KEYS, *SHOWN]],
    )
    params = {
        k: getattr(args, k)
        for k in (
            "requests",
            "concurrency",
            "seed",
            "create_limit",
            "create_window",
            "lease",
            "generation_seconds",
            "create_latency",
            "aim_seconds",
        )
    }
    params["processes"] = 3
    write_results(
        "bench_shared_batch",
        args.out,
        quick=args.quick,
        params=params,
        figures=figures,
        headline={k: figures[k] for k in (*ZERO_KEYS, "claims_taken_over", "wall_s")},
    )
    return 0 if all(figures[k] == 0 for k in ZERO_KEYS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
