"""The money soak's second buyer: the same account through every other way in, killed and started again.

    python benchmarks/soak_side.py PROMPTS.json --out OUT --callback-url URL --journal SIDE.jsonl --report R.json

Started by ``soak_money.py`` beside its ``run-batch`` processes (the environment names the emulator, the key and
the state folder, so both share one purchase ledger). Each prompt always goes through the same entry point, chosen
from its number: ``run_pipeline``, ``run_many`` (with a journal), a handle (``create_and_wait``), the blocking
``KieClient`` and the ``kie-async run`` command. Every call but ``run_many`` names its purchase with an idempotency
key (the prompt), as a job system would, so a prompt delivered before a kill is read back, never bought again;
``run_many`` gets the same from its journal. The report lists each prompt's last status and task id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kie_async import KieSession, KieSettings, PipelineOptions, PollSettings, RawUserRequest, run_many, run_pipeline
from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.core.errors import KieError
from kie_async.sync import KieClient

WAYS = ("run_pipeline", "run_many", "handle", "sync", "cli")
Outcome = dict[str, Any]


def way_of(number: int) -> str:
    return WAYS[number % len(WAYS)]


class Side:
    def __init__(self, args: argparse.Namespace, kie: KieSession) -> None:
        self.args = args
        self.kie = kie
        artifacts = ArtifactSettings(root=args.out, derivatives=ArtifactDerivativeSettings(enabled=False))
        self.options = PipelineOptions(artifacts=artifacts, callback_url=args.callback_url)

    def request(self, prompt: str) -> RawUserRequest:
        return RawUserRequest(model_key="nano-banana-2", prompt=prompt)

    async def run_pipeline(self, prompt: str) -> Outcome:
        result = await run_pipeline(self.request(prompt), self.kie, options=self.options, idempotency_key=prompt)
        return {"status": result.status, "task_id": result.task_id}

    async def run_many(self, prompt: str) -> Outcome:
        results = await run_many([self.request(prompt)], self.kie, options=self.options, journal_path=self.args.journal)
        return {"status": results[0].status, "task_id": results[0].task_id}

    async def handle(self, prompt: str) -> Outcome:
        try:
            outcome = await self.kie.create_and_wait(self.request(prompt), options=self.options, idempotency_key=prompt)
        except KieError as exc:
            return {"status": "failed", "task_id": getattr(exc, "task_id", None), "error_type": type(exc).__name__}
        return {"status": "succeeded" if outcome.succeeded else "failed", "task_id": outcome.task_id}

    async def sync(self, prompt: str) -> Outcome:
        def blocking() -> Outcome:
            with KieClient(self.kie.settings) as client:
                result = client.run(self.request(prompt), options=self.options, idempotency_key=prompt)
            return {"status": result.status, "task_id": result.task_id}

        return await asyncio.to_thread(blocking)

    async def cli(self, prompt: str) -> Outcome:
        command = [sys.executable, "-m", "kie_async", "run", "--model", "nano-banana-2", "--prompt", prompt]
        command += ["--out", str(self.args.out), "--no-derivatives", "--json", "--yes", "--idempotency-key", prompt]
        command += ["--callback-url", self.args.callback_url]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, env=os.environ.copy())
        try:
            report = json.loads(done.stdout)
        except ValueError:
            return {"status": "error", "task_id": None, "error_type": f"exit {done.returncode}"}
        return {"status": report["status"], "task_id": report["task_id"]}


async def main_async(args: argparse.Namespace) -> int:
    prompts: list[str] = json.loads(Path(args.prompts).read_text())
    poll = PollSettings(schedule=((float("inf"), 0.1),), timeout=120.0)
    report: dict[str, Outcome] = {}
    async with KieSession(KieSettings.from_env(poll=poll)) as kie:
        side = Side(args, kie)
        for number, prompt in enumerate(prompts):
            way = way_of(number)
            call: Callable[[str], Awaitable[Outcome]] = getattr(side, way)
            try:
                outcome = await call(prompt)
            except KieError as exc:  # a refusal (another process holds the request now): tried again next run
                outcome = {"status": "error", "task_id": None, "error_type": type(exc).__name__}
            report[prompt] = {"way": way, **outcome}
            Path(args.report).write_text(json.dumps(report))
            print(json.dumps({"prompt": prompt, **report[prompt]}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompts", help="a JSON list of prompts")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--callback-url", required=True)
    parser.add_argument("--journal", type=Path, required=True, help="run_many's journal")
    parser.add_argument("--report", type=Path, required=True)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
