"""Money-safety soak: a batch through ``kie-async run-batch`` under faults, SIGKILLs and a SIGINT, re-run until done.

    python benchmarks/soak_money.py            # 300 requests, ~20% faults per endpoint, 5 SIGKILLs + 1 SIGINT
    python benchmarks/soak_money.py --quick    # 30 requests, 2 SIGKILLs + 1 SIGINT (the test suite runs this)

Three processes, as in production: the emulator (its own process, standing in for Kie.ai), a long-lived
callback receiver (``kie-async receive-callbacks``, standing in for the web app that receives Kie.ai's
callbacks), and ``kie-async run-batch`` itself, started again after every interruption. The receiver settles
requests whose createTask answer was lost (the ``reset_after`` fault, or a kill mid-send) by appending the
task id to the journal (and to the account's ledger); the next run resumes them.

A fourth process buys on the same account at the same time: ``soak_side.py`` (``--side`` requests, 60; 10 with
``--quick``) through every other entry point (``run_pipeline``, ``run_many``, handles, the blocking client and
``kie-async run``), SIGKILLed with each interruption and run to the end after the batch. Its requests count in
every figure below (a side prompt with two tasks is a double like any other).

Figures (every one must be 0):

- ``requests_with_two_tasks``: prompts the emulator sold more than one task for;
- ``false_submit_uncertain``: requests left ``submit_uncertain`` whose uncertain createTask never reached the
  emulator (no task, and the emulator never saw that attempt's correlation token). An attempt that arrived and
  lost its answer is real uncertainty even if nothing was created (say a 429 whose answer was cut off): the
  client cannot tell it from a task being created; those are counted in ``uncertain_arrived_no_task``;
- ``succeeded_missing_or_wrong_output``: ``succeeded`` runs whose output file is gone, or whose sha256
  differs from the emulator's own file for that task;
- ``orphan_temp_files``: files left under ``<out>/.tmp`` or ``*.part`` anywhere under ``<out>``;
- ``paid_tasks_not_final``: tasks the emulator sold that do not end ``succeeded`` or provider-``failed``.

Shown beside them, bounded rather than zero: ``killed_between_marker_and_send``, requests a SIGKILL stopped after
their attempt's ``sending`` marker and before the first byte left (the emulator never saw them, and nothing on the
client can tell them from a send that did leave, so they stay ``submit_uncertain``); at most one per SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from _common import EmulatorProcess, add_common_flags, print_table, write_results

from kie_async.ledger.journal import correlation_token
from kie_async.wire.callbacks import request_token_from_url

HMAC_KEY = "soak-webhook-key"
SHOWN = (
    "killed_between_marker_and_send",
    "uncertain_arrived_no_task",
    "statuses",
    "side_requests",
    "side_statuses",
    "tasks_sold",
    "runs",
    "interruptions_fired",
    "faults_fired",
    "callbacks_delivered",
    "wall_s",
)
FAULT_KINDS: dict[str, list[dict[str, Any]]] = {
    "createTask": [
        {"kind": "rate_limit", "retry_after": 0},
        {"kind": "server_error", "status": 500},
        {"kind": "reset_after"},  # the task exists, the answer is lost: only its callback can settle it
        {"kind": "latency", "delay": 0.3},
    ],
    "recordInfo": [
        {"kind": "server_error", "status": 502},
        {"kind": "rate_limit", "retry_after": 0},
        {"kind": "truncated_body"},
        {"kind": "reset"},
    ],
    "credit": [{"kind": "server_error", "status": 503}, {"kind": "reset"}],
    "files": [
        {"kind": "server_error", "status": 500},
        {"kind": "truncated_body"},
        {"kind": "wrong_body", "wrong_body": "html"},
        {"kind": "reset"},
    ],
}


def fault_rules(rate: float) -> list[dict[str, Any]]:
    """About ``rate`` of the requests to every endpoint misbehave, spread over that endpoint's fault kinds."""
    rules = []
    for endpoint, kinds in FAULT_KINDS.items():
        for kind in kinds:
            rules.append({"endpoint": endpoint, "count": None, "probability": rate / len(kinds), **kind})
    rules.append({"endpoint": "createTask", "kind": "task_fail", "count": None, "probability": 0.05})
    return rules


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path, emulator: EmulatorProcess) -> None:
        self.args = args
        self.work = work
        self.emulator = emulator
        self.out = work / "out"
        self.journal = work / "journal.jsonl"
        self.batch = work / "batch.jsonl"
        self.env = {
            **os.environ,
            "KIE_BASE_URL": emulator.base_url,
            "KIE_UPLOAD_BASE_URL": str(emulator.info["upload_base_url"]),
            "KIE_API_KEY": emulator.api_key,
            "KIE_WEBHOOK_HMAC_KEY": HMAC_KEY,
            "KIE_STATE_DIR": str(work / "state"),  # the soak's own purchase ledger, shared by every process in it
            "PYTHONUNBUFFERED": "1",
        }
        self.side_prompts = [f"soak side {i}" for i in range(args.side)]
        self.side_report = work / "side-report.json"
        self.side: asyncio.subprocess.Process | None = None
        self.rng = random.Random(args.seed)
        self.http = aiohttp.ClientSession()
        self.callback_url = ""
        self.receiver: asyncio.subprocess.Process | None = None
        self.runs: list[dict[str, Any]] = []

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.emulator.base_url}{path}", json=body) as response:
            return await response.json()

    async def tasks(self) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = (await self.control("GET", "/_emulator/tasks"))["tasks"]
        return tasks

    async def arrived_tokens(self) -> set[str]:
        """Correlation tokens of every createTask that reached the emulator's handler (answered or not)."""
        arrivals = (await self.control("GET", "/_emulator/tasks"))["create_arrivals"]
        return {token for a in arrivals if (token := request_token_from_url(a.get("callBackUrl")))}

    def cli(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "kie_async", *extra]

    async def start_receiver(self) -> None:
        self.receiver = await asyncio.create_subprocess_exec(
            *self.cli("receive-callbacks", "--journal", str(self.journal), "--port", "0"),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.receiver.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.receiver.stdout.readline(), timeout=30)).decode()
            if not line:
                raise RuntimeError("the callback receiver exited before listening")
            if line.startswith("callback url: "):
                self.callback_url = line.split(": ", 1)[1].strip()
                return

    async def stop_receiver(self) -> None:
        if self.receiver is not None and self.receiver.returncode is None:
            self.receiver.send_signal(signal.SIGINT)
            await asyncio.wait_for(self.receiver.wait(), timeout=30)

    def batch_command(self) -> list[str]:
        return self.cli(
            "run-batch",
            str(self.batch),
            "--out",
            str(self.out),
            "--journal",
            str(self.journal),
            "--concurrency",
            str(self.args.concurrency),
            "--no-derivatives",
            "--json",
            "--callback-url",
            self.callback_url,
        )

    async def start_side(self) -> asyncio.subprocess.Process:
        """The second buyer (``soak_side.py``): every other entry point, on the same account and ledger."""
        prompts = self.work / "side-prompts.json"
        prompts.write_text(json.dumps(self.side_prompts))
        return await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("soak_side.py")),
            str(prompts),
            "--out",
            str(self.out),
            "--callback-url",
            self.callback_url,
            "--journal",
            str(self.work / "side-journal.jsonl"),
            "--report",
            str(self.side_report),
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def kill_side(self) -> None:
        if self.side is not None and self.side.returncode is None:
            self.side.send_signal(signal.SIGKILL)
            await asyncio.wait_for(self.side.wait(), timeout=60)

    async def finish_side(self) -> dict[str, Any]:
        """Run the second buyer to the end, again while any of its requests is not settled yet."""
        report: dict[str, Any] = {}
        for _ in range(self.args.max_reruns):
            self.side = await self.start_side()
            await asyncio.wait_for(self.side.wait(), timeout=self.args.max_wait * 4)
            report = json.loads(self.side_report.read_text()) if self.side_report.is_file() else {}
            settled = {"succeeded", "failed"}
            if len(report) == len(self.side_prompts) and all(r["status"] in settled for r in report.values()):
                break
            await asyncio.sleep(self.args.settle_seconds)  # callbacks of lost answers reach the receiver
        return report

    async def interrupted_run(self, how: signal.Signals) -> dict[str, Any]:
        before = len(await self.tasks())
        if self.side_prompts:
            await self.kill_side()
            self.side = await self.start_side()  # buying beside the batch, killed with it
        proc = await asyncio.create_subprocess_exec(
            *self.batch_command(),
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        # A random moment: after a random number of new purchases, or a random time, whichever comes first.
        target = before + self.rng.randint(1, max(2, self.args.requests // 6))
        deadline = time.monotonic() + self.rng.uniform(1.0, 4.0)
        while proc.returncode is None and time.monotonic() < deadline and len(await self.tasks()) < target:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling another process's progress over HTTP: there is no event to wait on
        await asyncio.sleep(self.rng.uniform(0.0, 0.5))  # land anywhere: in the limiter, mid-send, mid-download
        fired = proc.returncode is None
        if fired:
            proc.send_signal(how)
        await self.kill_side()
        code = await asyncio.wait_for(proc.wait(), timeout=120)
        return {
            "signal": how.name,
            "fired": fired,
            "exit": code,
            "tasks_before": before,
            "tasks_after": len(await self.tasks()),
        }

    async def full_run(self) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            *self.batch_command(), env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=self.args.max_wait * 4)
        if not stdout.strip():
            raise RuntimeError(f"run-batch printed nothing (exit {proc.returncode}): {stderr.decode()[-2000:]}")
        report: dict[str, Any] = json.loads(stdout)
        report["exit"] = proc.returncode
        return report

    async def play(self) -> dict[str, Any]:
        self.batch.write_text(
            "".join(
                json.dumps({"model_key": "nano-banana-2", "prompt": f"soak request {i}"}) + "\n"
                for i in range(self.args.requests)
            )
        )
        await self.start_receiver()
        await self.control("POST", "/_emulator/faults", {"clear": True, "rules": fault_rules(self.args.fault_rate)})
        kills = [signal.SIGKILL] * self.args.kills
        self.rng.shuffle(kills)
        # The SIGINT goes to the first run, the longest one (it meets the 20-per-10-s limiter), so it always lands
        # mid-flight; the SIGKILLs land wherever their random moment falls, startup and resume-only runs included.
        interruptions = [signal.SIGINT] * self.args.sigints + kills
        for how in interruptions:
            self.runs.append(await self.interrupted_run(how))
        final: dict[str, Any] = {}
        for _ in range(self.args.max_reruns):
            final = await self.full_run()
            statuses = Counter(r["status"] for r in final["results"])
            self.runs.append({"signal": None, "exit": final["exit"], "statuses": dict(statuses)})
            if set(statuses) <= {"succeeded", "failed", "submit_uncertain"} and not self._settling(final):
                break
            await asyncio.sleep(self.args.settle_seconds)  # callbacks of lost answers reach the receiver
        side = await self.finish_side() if self.side_prompts else {}
        await self.control("POST", "/_emulator/faults", {"clear": True, "rules": []})
        await asyncio.sleep(self.args.settle_seconds)
        await self.stop_receiver()
        return await self.measure(final, side)

    def _uncertain_token(self, key: str) -> str:
        attempts = [line.get("attempt") for line in self._journal_lines(key) if line["state"] == "uncertain"]
        return correlation_token(key, str(attempts[-1])) if attempts else ""

    def _ends_mid_send(self, key: str) -> bool:
        lines = self._journal_lines(key)
        return bool(lines) and lines[-1].get("sending") is True

    def _journal_lines(self, key: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]
        return [line for line in lines if line.get("key") == key]

    def _settling(self, final: dict[str, Any]) -> bool:
        """An uncertain request may still be settled by a callback on its way; give it another run."""
        return any(r["status"] == "submit_uncertain" for r in final["results"]) and len(self.runs) < 40

    async def emulator_sha256(self, task_id: str) -> list[str]:
        params = {"taskId": task_id}
        headers = {"Authorization": f"Bearer {self.emulator.api_key}"}
        async with self.http.get(
            f"{self.emulator.base_url}/api/v1/jobs/recordInfo", params=params, headers=headers
        ) as response:
            data = (await response.json())["data"]
        urls = json.loads(data["resultJson"] or "{}").get("resultUrls") or []
        digests = []
        for url in urls:
            async with self.http.get(url) as response:
                digests.append(hashlib.sha256(await response.read()).hexdigest())
        return digests

    async def measure(self, final: dict[str, Any], side: dict[str, Any]) -> dict[str, Any]:
        tasks = await self.tasks()
        by_prompt: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_prompt.setdefault(str((task["input"] or {}).get("prompt")), []).append(task)
        prompts = [json.loads(line)["prompt"] for line in self.batch.read_text().splitlines()]
        results = dict(zip(prompts, final["results"], strict=True))
        two_tasks = sum(len(v) > 1 for v in by_prompt.values())
        # False: uncertain although the uncertain attempt never reached the emulator. (Reaching it and losing
        # the answer is real uncertainty, even when the emulator then created nothing, e.g. a 429 whose answer
        # was cut: the client cannot tell that from a task being created.)
        arrived = await self.arrived_tokens()
        false_uncertain_prompts = [
            p
            for p, r in results.items()
            if r["status"] == "submit_uncertain"
            and not by_prompt.get(p)
            and self._uncertain_token(str(r["request_key"])) not in arrived
        ]
        true_uncertain_without_task = sum(
            r["status"] == "submit_uncertain" and not by_prompt.get(p) for p, r in results.items()
        ) - len(false_uncertain_prompts)
        # A SIGKILL after the attempt's "sending" marker and before its first byte left is indistinguishable, from
        # the journal, from one just after: staying uncertain is the only money-safe reading. Such a request ends
        # with that marker as its last journal line; any other shape of false uncertainty is a bug.
        mid_send = [p for p in false_uncertain_prompts if self._ends_mid_send(str(results[p]["request_key"]))]
        false_uncertain_prompts = [p for p in false_uncertain_prompts if p not in mid_send]
        false_uncertain = len(false_uncertain_prompts)
        bad_success = 0
        for result in final["results"]:
            if result["status"] != "succeeded":
                continue
            paths = [Path(p) for p in result["outputs"]]
            if not paths or not all(p.is_file() for p in paths):
                bad_success += 1
                continue
            mine = [await asyncio.to_thread(lambda p=p: hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths]
            if mine != await self.emulator_sha256(result["task_id"]):
                bad_success += 1
        tmp = self.out / ".tmp"
        orphans = [str(p) for p in tmp.rglob("*") if p.is_file()] if tmp.exists() else []
        orphans += [str(p) for p in self.out.rglob("*.part")]
        final_ok = {
            r["task_id"]: r
            for r in final["results"]
            if r["status"] == "succeeded" or (r["status"] == "failed" and r.get("error_type") == "KieTaskFailedError")
        }
        final_ok.update({r["task_id"]: r for r in side.values() if r["status"] in ("succeeded", "failed")})
        paid_not_final = [t["taskId"] for t in tasks if t["taskId"] not in final_ok]
        statuses = Counter(r["status"] for r in final["results"])
        stats = await self.control("GET", "/_emulator/stats")
        return {
            "requests_with_two_tasks": two_tasks,
            "false_submit_uncertain": false_uncertain,
            "killed_between_marker_and_send": len(mid_send),
            "succeeded_missing_or_wrong_output": bad_success,
            "orphan_temp_files": len(orphans),
            "paid_tasks_not_final": len(paid_not_final),
            "uncertain_arrived_no_task": true_uncertain_without_task,
            "statuses": dict(statuses),
            "side_requests": len(self.side_prompts),
            "side_statuses": dict(Counter(f"{r['way']}:{r['status']}" for r in side.values())),
            "tasks_sold": len(tasks),
            "runs": len(self.runs),
            "interruptions_fired": sum(1 for r in self.runs if r.get("fired")),
            "faults_fired": sum(stats.get("faults_fired", {}).values()),
            "callbacks_delivered": stats.get("callbacks_delivered"),
            "orphan_examples": orphans[:5],
            "false_uncertain_examples": [
                {"prompt": p, "journal": self._journal_lines(str(results[p]["request_key"]))}
                for p in false_uncertain_prompts[:3]
            ],
            "work_dir": str(self.work) if self.args.keep else None,
            "paid_not_final_examples": paid_not_final[:5],
        }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = {
        "generation_seconds": args.generation_seconds,
        "webhook_hmac_key": HMAC_KEY,
        "create_rate_limit": args.create_limit,
        "create_rate_window": args.create_window,
        "seed": args.seed,
    }
    tmp = tempfile.mkdtemp(prefix="kie-soak-")
    try:
        async with EmulatorProcess(**config) as emulator:
            soak = Soak(args, Path(tmp), emulator)
            try:
                started = time.monotonic()
                figures = await soak.play()
                figures["wall_s"] = round(time.monotonic() - started, 1)
            finally:
                await soak.stop_receiver()
                await soak.http.close()
            figures["run_log"] = soak.runs
            return figures
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--sigints", type=int, default=1)
    parser.add_argument(
        "--side", type=int, default=60, help="requests bought beside the batch through every other entry point"
    )
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (journal, outputs) to inspect")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.kills, args.side = 30, 2, 10
    # The real limit (20 per 10 s) in a full run; a scaled one in --quick so the suite stays fast.
    args.create_limit, args.create_window = (200, 1.0) if args.quick else (20, 10.0)
    args.generation_seconds = 0.5 if args.quick else 1.0
    args.max_wait, args.max_reruns, args.settle_seconds = (60.0, 8, 0.5) if args.quick else (600.0, 12, 2.0)
    figures = asyncio.run(main_async(args))
    zero_keys = [
        "requests_with_two_tasks",
        "false_submit_uncertain",
        "succeeded_missing_or_wrong_output",
        "orphan_temp_files",
        "paid_tasks_not_final",
    ]
    print_table(
        f"money soak: {args.requests} requests, {args.kills} SIGKILL + {args.sigints} SIGINT, "
        f"{args.fault_rate:.0%} faults per endpoint",
        ["figure", "value"],
        [[k, str(figures[k])] for k in [*zero_keys, *SHOWN]],
    )
    params = {
        k: getattr(args, k)
        for k in (
            "requests",
            "kills",
            "sigints",
            "side",
            "fault_rate",
            "concurrency",
            "seed",
            "create_limit",
            "create_window",
            "generation_seconds",
        )
    }
    write_results("soak_money", args.out, quick=args.quick, params=params, figures=figures)
    mid_send_ok = figures["killed_between_marker_and_send"] <= args.kills  # at most one stranded send per SIGKILL
    return 0 if all(figures[k] == 0 for k in zero_keys) and mid_send_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
