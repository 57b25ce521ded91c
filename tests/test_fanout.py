"""run_many: big faulty batches, budget caps, progress, and the journal under crashes (in-process and SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.ledger.journal import BatchJournal, JournalRecord, request_key
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.fanout import BatchProgress, run_many
from kie_async.pipeline.run import PipelineOptions
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.1),), timeout=60.0)
FAST_RETRY = RetrySettings(max_retries=6, initial_backoff=0.02, max_backoff=0.2)
FAST_READS = RateLimitSettings(create_per_window=400, create_window_seconds=1.0, reads_per_second=2000)


def nb2(i: int) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt=f"request number {i}")


def options(root: Path, derivatives: bool = False) -> PipelineOptions:
    return PipelineOptions(
        artifacts=ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=derivatives), fsync=False)
    )


def tasks_per_prompt(emulator: KieEmulator) -> Counter[str]:
    return Counter(json.loads(json.loads(t.param_json())["input"])["prompt"] for t in emulator.tasks())


async def test_200_run_batch_with_faults_accounts_for_every_run(tmp_path: Path) -> None:
    config = EmulatorConfig(generation_seconds=0.3, create_rate_limit=400, create_rate_window=1.0, seed=7)
    async with KieEmulator(config) as emulator:
        for endpoint, kind, params in [
            ("recordInfo", "rate_limit", {"retry_after": 0}),
            ("recordInfo", "server_error", {"status": 502}),
            ("recordInfo", "truncated_body", {}),
            ("files", "truncated_body", {}),
            ("createTask", "rate_limit", {"retry_after": 0}),
        ]:
            emulator.faults.add(endpoint, kind, count=None, probability=0.05, **params)
        emulator.fail_next(7, code="500", msg="injected generation failure")
        settings = emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=FAST_READS)
        seen: list[BatchProgress] = []
        async with KieSession(settings) as kie:
            results = await run_many(
                [nb2(i) for i in range(200)],
                kie,
                concurrency=64,
                options=options(tmp_path / "out"),
                journal_path=tmp_path / "journal.jsonl",
                on_progress=seen.append,
            )
        status = Counter(r.status for r in results)
        assert len(results) == 200 and sum(status.values()) == 200
        assert status["succeeded"] == 193 and status["failed"] == 7, status
        assert [r.model_key for r in results] == ["nano-banana-2"] * 200
        assert all(r.task_id for r in results)  # every run reached the provider exactly once
        assert emulator.stats.tasks_created == 200
        assert max(tasks_per_prompt(emulator).values()) == 1
        assert sum(emulator.stats.faults_fired.values()) > 20  # the faults really happened
        assert seen[-1].finished == 200 and seen[-1].done == 193 and seen[-1].failed == 7


async def test_budget_cap_stops_submission_at_the_cap(emulator: KieEmulator, tmp_path: Path) -> None:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        results = await run_many(
            [nb2(i) for i in range(20)], kie, concurrency=4, budget_credits=50, options=options(tmp_path)
        )
    status = Counter(r.status for r in results)
    assert status == {"succeeded": 6, "over_budget": 14}  # 6 x 8 = 48 <= 50 < 56
    assert emulator.stats.tasks_created == 6 and emulator.stats.credits_spent == 48
    assert all(r.spent_nothing for r in results if r.status == "over_budget")


async def test_one_bad_request_does_not_kill_the_others(emulator: KieEmulator, tmp_path: Path) -> None:
    requests = [
        nb2(0),
        RawUserRequest(model_key="nano-banana-2", prompt="x", prompt_preset="no-such-preset"),
        RawUserRequest(model_key="kling-3.0", prompt="x", options={"duration": 99}),
        nb2(3),
    ]
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        results = await run_many(requests, kie, concurrency=4, options=options(tmp_path))
    assert [r.status for r in results] == ["succeeded", "failed", "blocked", "succeeded"]
    assert "no-such-preset" in (results[1].error or "")
    assert emulator.stats.tasks_created == 2


async def test_cancelled_batch_resumes_without_resubmitting(tmp_path: Path) -> None:
    config = EmulatorConfig(generation_seconds=1.0, create_rate_limit=400, create_rate_window=1.0)
    journal = tmp_path / "journal.jsonl"
    requests = [nb2(i) for i in range(12)]
    async with KieEmulator(config) as emulator:
        settings = emulator.settings(poll=FAST_POLL, rate_limit=FAST_READS)
        async with KieSession(settings) as kie:
            job = asyncio.create_task(
                run_many(requests, kie, concurrency=6, options=options(tmp_path / "out"), journal_path=journal)
            )
            while emulator.stats.tasks_created < 6:
                await asyncio.sleep(0.02)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
        created_before = emulator.stats.tasks_created
        async with KieSession(settings) as kie:
            results = await run_many(
                requests, kie, concurrency=6, options=options(tmp_path / "out"), journal_path=journal
            )
        # A cancel can land after the intent line and before createTask answered: such a request is
        # "submit_uncertain" and deliberately not resubmitted; every other one finishes.
        statuses = Counter(r.status for r in results)
        assert statuses["succeeded"] + statuses["submit_uncertain"] == 12, [r.error for r in results]
        assert statuses["succeeded"] >= 12 - 6
        assert emulator.stats.tasks_created <= 12 and created_before >= 6
        assert max(tasks_per_prompt(emulator).values()) == 1
        assert sum(r.resumed for r in results) >= 6 - statuses["submit_uncertain"]
        async with KieSession(settings) as kie:
            again = await run_many(requests, kie, options=options(tmp_path / "out"), journal_path=journal)
        assert [r.status for r in again] == [r.status for r in results]
        assert all(r.resumed for r in again if r.succeeded) and max(tasks_per_prompt(emulator).values()) == 1


async def test_intent_without_task_id_is_not_resubmitted(emulator: KieEmulator, tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.jsonl"
    request = nb2(1)
    key = request_key(normalize_request(request))
    async with await BatchJournal.open(journal_path) as journal:
        await journal.write(JournalRecord(key=key, state=RequestState.SUBMITTING, model_key="nano-banana-2"))
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        (result,) = await run_many([request], kie, options=options(tmp_path), journal_path=journal_path)
        assert result.status == "submit_uncertain" and emulator.stats.requests.get("createTask", 0) == 0
        (forced,) = await run_many(
            [request], kie, options=options(tmp_path), journal_path=journal_path, resubmit_uncertain=True
        )
    assert forced.succeeded and emulator.stats.tasks_created == 1


async def test_torn_journal_line_is_skipped_and_sealed(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    good = JournalRecord(key="k1", state=RequestState.SUBMITTED, task_id="t1")
    path.write_bytes(good.to_line() + b'{"key": "k2", "state": "subm')
    async with await BatchJournal.open(path) as journal:
        assert journal.skipped_lines == [2]
        assert journal.get("k1") is not None and journal.get("k1").task_id == "t1"  # type: ignore[union-attr]
        await journal.write(JournalRecord(key="k3", state=RequestState.SUBMITTING))
    reopened = await BatchJournal.open(path)
    await reopened.close()
    assert reopened.skipped_lines == [2] and reopened.get("k3") is not None and reopened.get("k3").intent  # type: ignore[union-attr]


def test_duplicate_requests_get_distinct_keys() -> None:
    a, b = normalize_request(nb2(1)), normalize_request(nb2(1))
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key(normalize_request(nb2(2)))


BATCH_SIZE = 24


async def test_batch_killed_at_random_points_never_submits_twice(tmp_path: Path) -> None:
    """SIGKILL a real `kie-async run-batch` process at random moments, re-run it, count tasks per request."""
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        "".join(
            json.dumps({"model_key": "nano-banana-2", "prompt": f"kill test {i}"}) + "\n" for i in range(BATCH_SIZE)
        )
    )
    out, journal = tmp_path / "out", tmp_path / "journal.jsonl"
    config = EmulatorConfig(generation_seconds=0.8, create_rate_limit=400, create_rate_window=1.0)
    rng = random.Random(20261128)
    async with KieEmulator(config) as emulator:
        env = {
            **os.environ,
            "KIE_BASE_URL": emulator.base_url,
            "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
            "KIE_API_KEY": emulator.api_key,
        }
        command = [
            sys.executable,
            "-m",
            "kie_async",
            "run-batch",
            str(batch),
            "--out",
            str(out),
            "--journal",
            str(journal),
            "--concurrency",
            "4",
            "--no-derivatives",
            "--json",
        ]
        kills = 0
        for _ in range(3):
            proc = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            start_tasks = emulator.stats.tasks_created
            deadline = asyncio.get_running_loop().time() + 20
            # kill after a random number of new submissions, so the kill lands mid-flight
            target = start_tasks + rng.randint(1, 4)
            while emulator.stats.tasks_created < target and proc.returncode is None:
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.uniform(0, 0.3))
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            await proc.wait()
        final = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(final.communicate(), timeout=120)
        report = json.loads(stdout)
        per_prompt = tasks_per_prompt(emulator)
    assert kills >= 2, "the batch finished before it could be killed; the test proved nothing"
    assert max(per_prompt.values()) == 1, f"a request was submitted twice: {per_prompt.most_common(3)}"
    statuses = Counter(r["status"] for r in report["results"])
    # a kill between the journal's intent line and createTask's answer leaves an "uncertain" request that is
    # deliberately not resubmitted; everything else finishes
    assert statuses["succeeded"] + statuses["submit_uncertain"] == BATCH_SIZE, (statuses, stderr[-2000:])
    assert statuses["succeeded"] == len(per_prompt) or statuses["succeeded"] >= BATCH_SIZE - kills
