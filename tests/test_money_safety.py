"""Money safety at the seams (issue 9): each case reproduced against the emulator, then proven fixed.

Every test counts what the emulator really sold (tasks per prompt), never what the SDK believes it did.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings, rebuild_artifact_index
from kie_async.artifacts.layout import host_tag
from kie_async.artifacts.media import sha256_file
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieJournalBusyError
from kie_async.ledger.journal import BatchJournal
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions, RunResult
from kie_async.session import KieSession
from tests.aioresponses_compat import patch_aioresponses  # noqa: F401  (autouse fixture)
from tests.conftest import serve_app

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)
FAST_RETRY = RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)


def nb2(i: int, tag: str = "money") -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt=f"{tag} request {i}")


def opts(root: Path, **extra: object) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts, **extra)  # type: ignore[arg-type]


def tasks_per_prompt(emulator: KieEmulator) -> Counter[str]:
    return Counter(json.loads(json.loads(t.param_json())["input"])["prompt"] for t in emulator.tasks())


def fast(emulator: KieEmulator, **overrides: object) -> KieSession:
    values: dict[str, object] = {"poll": FAST_POLL, "retry": FAST_RETRY, "rate_limit": OPEN_LIMITS, **overrides}
    return KieSession(emulator.settings(**values))


def run_dirs(root: Path) -> list[Path]:
    runs = root / "runs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


# -- 2. a paid task that hit a transient error is resumable, never bought again --------------------------------


async def test_download_outage_leaves_incomplete_and_rerun_resumes_without_buying(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    requests = [nb2(i) for i in range(3)]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        emulator.faults.add("files", "server_error", count=None)
        async with fast(emulator) as kie:
            first = await run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal)
        assert [r.status for r in first] == ["incomplete"] * 3
        assert all(r.task_id and r.state is RequestState.INCOMPLETE and r.resumable for r in first)
        assert not any(r.spent_nothing for r in first)
        # still failing: still incomplete, and retry_failed must not buy a paid task again
        async with fast(emulator) as kie:
            again = await run_many(
                requests, kie, options=opts(tmp_path / "out"), journal_path=journal, retry_failed=True
            )
        assert [r.status for r in again] == ["incomplete"] * 3 and all(r.resumed for r in again)
        assert emulator.stats.tasks_created == 3
        emulator.faults.clear()
        async with fast(emulator) as kie:
            last = await run_many(
                requests, kie, options=opts(tmp_path / "out"), journal_path=journal, retry_failed=True
            )
        assert [r.status for r in last] == ["succeeded"] * 3 and all(r.resumed for r in last)
        assert [r.task_id for r in last] == [r.task_id for r in first]
        assert emulator.stats.tasks_created == 3 and max(tasks_per_prompt(emulator).values()) == 1
        assert all(o.path.is_file() for r in last for o in r.outputs)


async def test_api_outage_while_tasks_generate_is_waited_out(tmp_path: Path) -> None:
    """recordInfo down for a while: the waiter keeps polling (the task is paid for) and finishes once it's back."""
    requests = [nb2(i, "outage") for i in range(6)]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator:
        outage = emulator.faults.add("recordInfo", "server_error", count=None)
        async with fast(emulator) as kie:
            job = asyncio.create_task(run_many(requests, kie, options=opts(tmp_path / "out")))
            while emulator.stats.tasks_created < 6:
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # an outage far longer than one read's retries
            outage.count = 0
            results = await asyncio.wait_for(job, timeout=30)
        assert [r.status for r in results] == ["succeeded"] * 6
        assert emulator.stats.tasks_created == 6


async def test_outage_past_the_wait_timeout_is_incomplete_then_resumed(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    requests = [nb2(i, "long-outage") for i in range(4)]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        emulator.faults.add("recordInfo", "server_error", count=None)
        async with fast(emulator) as kie:
            first = await run_many(
                requests, kie, options=opts(tmp_path / "out", wait_timeout=0.5), journal_path=journal
            )
        assert [r.status for r in first] == ["incomplete"] * 4, [r.error for r in first]
        assert all("paid for" in (r.error or "") for r in first)
        emulator.faults.clear()
        async with fast(emulator) as kie:
            second = await run_many(
                requests, kie, options=opts(tmp_path / "out"), journal_path=journal, retry_failed=True
            )
        assert [r.status for r in second] == ["succeeded"] * 4
        assert emulator.stats.tasks_created == 4


async def test_provider_failure_is_final_and_only_retry_failed_buys_again(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        emulator.fail_next(1)
        async with fast(emulator) as kie:
            (first,) = await run_many([nb2(0)], kie, options=opts(tmp_path / "out"), journal_path=journal)
            assert first.status == "failed" and first.state is RequestState.FAILED and not first.resumable
            (skipped,) = await run_many([nb2(0)], kie, options=opts(tmp_path / "out"), journal_path=journal)
            assert skipped.status == "failed" and skipped.resumed and emulator.stats.tasks_created == 1
            (retried,) = await run_many(
                [nb2(0)], kie, options=opts(tmp_path / "out"), journal_path=journal, retry_failed=True
            )
        assert retried.succeeded and retried.task_id != first.task_id and emulator.stats.tasks_created == 2


# -- 3. the intent is journaled only when createTask goes on the wire ------------------------------------------


async def test_requests_queued_in_the_rate_limiter_are_not_uncertain_after_a_cancel(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    requests = [nb2(i, "queued") for i in range(10)]
    slow_submits = RateLimitSettings(create_per_window=3, create_window_seconds=30.0, reads_per_second=5000)
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05, create_rate_limit=None)) as emulator:
        async with fast(emulator, rate_limit=slow_submits) as kie:
            job = asyncio.create_task(
                run_many(requests, kie, concurrency=10, options=opts(tmp_path / "out"), journal_path=journal)
            )
            while emulator.stats.tasks_created < 3:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # seven requests now wait in the limiter
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
        async with await BatchJournal.open(journal) as view:
            states = Counter(entry.state for entry in view.entries.values())
        assert states[RequestState.UNCERTAIN] == 0 and states[RequestState.SUBMITTING] == 0, states
        assert sum(states.values()) <= 3  # nothing at all was journaled for the queued seven
        async with fast(emulator) as kie:
            results = await run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal)
        assert [r.status for r in results] == ["succeeded"] * 10
        assert emulator.stats.tasks_created == 10 and max(tasks_per_prompt(emulator).values()) == 1


def _cli_env(emulator: KieEmulator) -> dict[str, str]:
    return {
        **os.environ,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_API_KEY": emulator.api_key,
        "KIE_WAIT_POLL_INTERVAL_SECONDS": "0.1",  # the emulator's tasks take tenths of a second: no 2.5 s first read
    }


def _batch_file(path: Path, count: int, tag: str) -> Path:
    path.write_text(
        "".join(json.dumps({"model_key": "nano-banana-2", "prompt": f"{tag} {i}"}) + "\n" for i in range(count))
    )
    return path


async def test_sigkill_while_requests_queue_in_the_limiter_leaves_no_false_uncertain(tmp_path: Path) -> None:
    """The issue's reproduction, shrunk: 24 requests at concurrency 24 through the real 20-per-10-s limiter."""
    batch = _batch_file(tmp_path / "batch.jsonl", 24, "sigkill queued")
    command = [
        sys.executable,
        "-m",
        "kie_async",
        "run-batch",
        str(batch),
        "--out",
        str(tmp_path / "out"),
        "--concurrency",
        "24",
        "--no-derivatives",
        "--json",
    ]
    config = EmulatorConfig(generation_seconds=0.2, create_rate_limit=1000, create_rate_window=1.0)
    async with KieEmulator(config) as emulator:
        env = _cli_env(emulator)
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = asyncio.get_running_loop().time() + 30
        while emulator.stats.tasks_created < 20 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert proc.returncode is None, "the batch finished before the kill"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        sold_before_rerun = emulator.stats.tasks_created
        final = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(final.communicate(), timeout=90)
        per_prompt = tasks_per_prompt(emulator)
    assert sold_before_rerun == 20
    statuses = Counter(r["status"] for r in json.loads(stdout)["results"])
    assert statuses == Counter({"succeeded": 24}), (statuses, stderr[-2000:])
    assert len(per_prompt) == 24 and max(per_prompt.values()) == 1


# -- 4. a definite refusal closes the intent ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "server_error", "status": 500},  # an error envelope: Kie.ai created nothing
        {"kind": "server_error", "status": 422},
        {"kind": "rate_limit", "retry_after": 0, "count": 10},  # 429 after every retry
    ],
)
async def test_definite_refusal_is_refused_not_uncertain(tmp_path: Path, fault: dict[str, object]) -> None:
    journal = tmp_path / "journal.jsonl"
    params = dict(fault)
    count = params.pop("count", 1)
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        emulator.faults.add("createTask", str(params.pop("kind")), count=count, **params)  # type: ignore[arg-type]
        async with fast(emulator) as kie:
            (first,) = await run_many([nb2(0)], kie, options=opts(tmp_path / "out"), journal_path=journal)
            assert first.status == "failed" and first.spent_nothing and first.state is RequestState.REFUSED
            emulator.faults.clear()
            (second,) = await run_many([nb2(0)], kie, options=opts(tmp_path / "out"), journal_path=journal)
        assert second.succeeded, second.error
        assert emulator.stats.tasks_created == 1


async def test_402_then_top_up_buys_once(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05, credits=0)) as emulator:
        async with fast(emulator) as kie:
            (first,) = await run_many(
                [nb2(0)], kie, options=opts(tmp_path / "out", check_balance=False), journal_path=journal
            )
            assert first.status == "failed" and first.error_type == "KieInsufficientCreditsError"
            assert first.spent_nothing and first.state is RequestState.REFUSED
            emulator.set_credits(100)
            (second,) = await run_many(
                [nb2(0)], kie, options=opts(tmp_path / "out", check_balance=False), journal_path=journal
            )
        assert second.succeeded and emulator.stats.tasks_created == 1


async def test_a_gateway_error_page_on_createtask_is_uncertain_not_refused(tmp_path: Path) -> None:
    """An HTML 502 is a proxy speaking, not Kie.ai: the backend may have created the task behind it."""
    from aioresponses import aioresponses

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        with aioresponses(passthrough=[emulator.upload_base_url]) as mocked:
            mocked.post(emulator.base_url + "/api/v1/jobs/createTask", status=502, body="<html>Bad Gateway</html>")
            (result,) = await run_many(
                [nb2(0)], kie, options=opts(tmp_path / "out", check_balance=False), journal_path=tmp_path / "j"
            )
    assert result.status == "submit_uncertain" and result.state is RequestState.UNCERTAIN
    assert not result.spent_nothing


# -- 5. one journal, one owner ---------------------------------------------------------------------------------


async def test_two_batches_on_one_journal_in_one_process_fail_fast(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.5)) as emulator, fast(emulator) as kie:
        first = asyncio.create_task(run_many([nb2(0)], kie, options=opts(tmp_path / "out"), journal_path=journal))
        while emulator.stats.tasks_created < 1:
            await asyncio.sleep(0.01)
        with pytest.raises(KieJournalBusyError) as caught:
            await run_many([nb2(0)], kie, options=opts(tmp_path / "out"), journal_path=journal)
        assert f"pid {os.getpid()}" in str(caught.value)
        assert (await first)[0].succeeded
        # the lock went with the first batch: the same journal opens again at once
        (again,) = await run_many([nb2(0)], kie, options=opts(tmp_path / "out"), journal_path=journal)
    assert again.succeeded and again.resumed and emulator.stats.tasks_created == 1


async def test_a_second_run_batch_process_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    batch = _batch_file(tmp_path / "batch.jsonl", 6, "two processes")
    journal = tmp_path / "journal.jsonl"
    command = [
        sys.executable,
        "-m",
        "kie_async",
        "run-batch",
        str(batch),
        "--out",
        str(tmp_path / "out"),
        "--journal",
        str(journal),
        "--no-derivatives",
        "--json",
    ]
    # The owner must still hold the journal when the second process gets to it, however slowly a loaded machine
    # starts Python: its tasks do not finish until the second process has been refused (an event, not a margin).
    async with KieEmulator(EmulatorConfig(generation_seconds=600.0)) as emulator:
        env = _cli_env(emulator)
        owner = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while emulator.stats.tasks_created < 1:
            await asyncio.sleep(0.02)
        second = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err2 = await asyncio.wait_for(second.communicate(), timeout=60)
        assert owner.returncode is None, "the owner finished before the second process was refused"
        emulator.config.generation_seconds = 0.05  # the owner's tasks finish now, those still to come at once
        for task in emulator.tasks():
            task.duration = 0.05
        await asyncio.wait_for(owner.communicate(), timeout=90)
        per_prompt = tasks_per_prompt(emulator)
    assert second.returncode == 2 and b"Traceback" not in err2
    assert f"in use by pid {owner.pid}".encode() in err2, err2
    assert owner.returncode == 0 and len(per_prompt) == 6 and max(per_prompt.values()) == 1


# -- 11, 12. one run folder per task; lost outputs are fetched again from the same task -------------------------


async def test_deleted_outputs_are_fetched_again_from_the_same_task(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal.jsonl", tmp_path / "out"
    requests = [nb2(i, "lost") for i in range(2)]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        first = await run_many(requests, kie, options=opts(root), journal_path=journal)
        lost = first[0].outputs[0].path
        digest = sha256_file(lost)[0]
        lost.unlink()
        tampered = first[1].outputs[0].path
        tampered.write_bytes(b"not the image any more")
        again = await run_many(requests, kie, options=opts(root), journal_path=journal)
        assert [r.status for r in again] == ["succeeded", "succeeded"] and all(r.resumed for r in again)
        assert sha256_file(lost)[0] == digest and tampered.read_bytes() != b"not the image any more"
        assert emulator.stats.tasks_created == 2
        assert len(run_dirs(root)) == 2  # refetched into the same run folders
        untouched = await run_many(requests, kie, options=opts(root), journal_path=journal)
    downloads_before = emulator.stats.snapshot().model_dump()
    assert all(r.resumed for r in untouched) and downloads_before


async def test_kill_after_the_run_folder_but_before_the_journal_keeps_one_folder(tmp_path: Path) -> None:
    """Strip the final journal line (as a kill right after publishing the run folder would) and re-run."""
    journal, root = tmp_path / "journal.jsonl", tmp_path / "out"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        (first,) = await run_many([nb2(0, "folder")], kie, options=opts(root), journal_path=journal)
        lines = journal.read_bytes().splitlines(keepends=True)
        assert json.loads(lines[-1])["state"] == "succeeded"
        journal.write_bytes(b"".join(lines[:-1]))
        files_before = emulator.stats.requests.get("files", 0)
        (again,) = await run_many([nb2(0, "folder")], kie, options=opts(root), journal_path=journal)
        files_after = emulator.stats.requests.get("files", 0)
    assert again.succeeded and again.resumed and again.run_id == first.run_id
    assert len(run_dirs(root)) == 1 and emulator.stats.tasks_created == 1
    assert files_after == files_before  # the intact folder was kept, nothing downloaded again


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_staging_left_by_dead_processes_is_swept(tmp_path: Path) -> None:
    root = tmp_path / "out"
    dead, tag = _dead_pid(), host_tag()
    orphans = [
        root / ".tmp" / "downloads" / f"task1.{tag}-{dead}.0badc0de",
        root / ".tmp" / f"20261129-000000-000_nano-banana-2_abc123.{tag}-{dead}.0badc0de",
    ]
    alive = root / ".tmp" / "downloads" / f"task2.{tag}-{os.getpid()}.0badc0de"
    for folder in [*orphans, alive]:
        folder.mkdir(parents=True)
        (folder / ".output_0.png.123.part").write_bytes(b"half")
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        (result,) = await run_many([nb2(0, "sweep")], kie, options=opts(root))
    assert result.succeeded
    assert not any(p.exists() for p in orphans) and alive.exists()
    report = await rebuild_artifact_index(root)
    assert report.stale_staging_dirs == [f"downloads/{alive.name}"] and report.runs_indexed == 1


# -- uncertainty settled by a correlated callback --------------------------------------------------------------


async def test_lost_createtask_answer_is_settled_by_the_tasks_callback(tmp_path: Path) -> None:
    from aiohttp import web

    from kie_async.interfaces.callback_receiver import add_callback_route

    hmac_key = "adoption-test-key"
    journal = tmp_path / "journal.jsonl"
    config = EmulatorConfig(generation_seconds=0.2, webhook_hmac_key=hmac_key)
    async with KieEmulator(config) as emulator, fast(emulator) as kie:
        app = web.Application()
        add_callback_route(app, kie, "/kie/callback", hmac_key=hmac_key)
        async with serve_app(app) as base:
            emulator.faults.add("createTask", "reset_after")
            options = opts(tmp_path / "out", callback_url=f"{base}/kie/callback", wait_timeout=10)
            (result,) = await run_many([nb2(0, "adopt")], kie, options=options, journal_path=journal)
    assert result.succeeded, result.error
    assert emulator.stats.tasks_created == 1 and result.task_id == emulator.tasks()[0].task_id
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    records = [r for r in records if not r.get("sending")]  # the "going out now" marker
    assert [r["state"] for r in records] == ["submitting", "uncertain", "submitted", "succeeded"]
    assert records[2].get("adopted") is True


async def test_lost_answer_without_callbacks_says_what_to_check(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        emulator.faults.add("createTask", "reset_after")
        (first,) = await run_many([nb2(0, "uncertain")], kie, options=opts(tmp_path / "out"), journal_path=journal)
        (second,) = await run_many(
            [nb2(0, "uncertain")], kie, options=opts(tmp_path / "out"), journal_path=journal, retry_failed=True
        )
    for result in (first, second):
        assert result.status == "submit_uncertain" and not result.spent_nothing
        assert "nano-banana-2" in (result.error or "") and "uncertain request 0" in (result.error or "")
        assert "dashboard" in (result.error or "")
    assert emulator.stats.tasks_created == 1


def _statuses(results: list[RunResult]) -> list[str]:
    return [r.status for r in results]


async def test_garbage_200_downloads_leave_the_paid_task_resumable(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        emulator.faults.add("files", "wrong_body", count=None, wrong_body="html")
        async with fast(emulator) as kie:
            (first,) = await run_many([nb2(0, "garbage")], kie, options=opts(tmp_path / "out"), journal_path=journal)
            assert first.status == "incomplete" and first.error_type == "KieDownloadContentError"
            assert not list((tmp_path / "out").rglob("output_*"))  # the HTML page was never kept as output
            emulator.faults.clear()
            (second,) = await run_many([nb2(0, "garbage")], kie, options=opts(tmp_path / "out"), journal_path=journal)
    assert second.succeeded and second.outputs[0].path.suffix == ".jpg"  # nano-banana-2 answers JPEG by default
    assert second.outputs[0].path.read_bytes()[:3] == b"\xff\xd8\xff" and emulator.stats.tasks_created == 1


async def test_a_cancel_while_createtask_is_on_the_wire_waits_for_the_answer(tmp_path: Path) -> None:
    """Ctrl-C is graceful: answers already on their way are recorded, so nothing is left uncertain.

    Two requests are at the emulator (which answers after 0.6 s) and a third waits in the limiter; the
    third's instant cancellation must not end the batch under the other two.
    """
    journal = tmp_path / "journal.jsonl"
    two_at_once = RateLimitSettings(create_per_window=2, create_window_seconds=60.0, reads_per_second=5000)
    config = EmulatorConfig(generation_seconds=0.05, create_rate_limit=None)
    requests = [nb2(i, "graceful") for i in range(3)]
    async with KieEmulator(config) as emulator:
        emulator.faults.add("createTask", "latency", count=None, delay=0.6)
        async with fast(emulator, rate_limit=two_at_once) as kie:
            job = asyncio.create_task(run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal))
            while (journal.read_bytes() if journal.exists() else b"").count(b'"state":"submitting"') < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # both requests are at the emulator now
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
        lines = [json.loads(line) for line in journal.read_text().splitlines()]
        states = Counter(r["state"] + ("+sending" if r.get("sending") else "") for r in lines)
        assert states == Counter({"submitting": 2, "submitting+sending": 2, "submitted": 2}), states
        assert emulator.stats.tasks_created == 2
        emulator.faults.clear()
        async with fast(emulator) as kie:
            again = await run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal)
    assert [r.status for r in again] == ["succeeded"] * 3 and emulator.stats.tasks_created == 3
    assert sum(r.resumed for r in again) == 2


async def test_a_cancel_before_the_wire_closes_the_intent_as_refused(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    slow_submits = RateLimitSettings(create_per_window=1, create_window_seconds=60.0, reads_per_second=5000)
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05, create_rate_limit=None)) as emulator:
        async with fast(emulator, rate_limit=slow_submits) as kie:
            job = asyncio.create_task(
                run_many([nb2(i, "queue") for i in range(3)], kie, options=opts(tmp_path / "out"), journal_path=journal)
            )
            while emulator.stats.tasks_created < 1:
                await asyncio.sleep(0.01)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
        async with await BatchJournal.open(journal) as view:
            states = Counter(e.state for e in view.entries.values())
    assert RequestState.UNCERTAIN not in states and sum(states.values()) == 1, states


async def test_a_receiver_in_another_session_settles_the_journal_for_the_next_run(tmp_path: Path) -> None:
    """The batch ends uncertain; the callback reaches a receiver elsewhere, which records the task; re-run resumes."""
    from aiohttp import web

    from kie_async.interfaces.callback_receiver import add_callback_route

    hmac_key = "settle-test-key"
    journal = tmp_path / "journal.jsonl"
    config = EmulatorConfig(generation_seconds=0.3, webhook_hmac_key=hmac_key)
    async with KieEmulator(config) as emulator, fast(emulator) as web_app_session, fast(emulator) as batch_session:
        app = web.Application()
        receiver = add_callback_route(app, web_app_session, "/hook", hmac_key=hmac_key, journal=journal)
        async with serve_app(app) as base:
            emulator.faults.add("createTask", "reset_after")
            options = opts(tmp_path / "out", callback_url=f"{base}/hook")
            (first,) = await run_many([nb2(0, "settle")], batch_session, options=options, journal_path=journal)
            assert first.status == "submit_uncertain"
            for _ in range(200):
                if receiver.stats.settled:
                    break
                await asyncio.sleep(0.02)
            assert receiver.stats.settled == 1
            (second,) = await run_many([nb2(0, "settle")], batch_session, options=options, journal_path=journal)
    assert second.succeeded and second.resumed and second.task_id == emulator.tasks()[0].task_id
    assert emulator.stats.tasks_created == 1


async def test_a_forged_token_is_not_adopted(tmp_path: Path) -> None:
    """The token sits in the unsigned URL: a genuine callback replayed with another request's token is refused."""
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        emulator.faults.add("createTask", "reset_after")
        (lost,) = await run_many([nb2(0, "victim")], kie, options=opts(tmp_path / "out"), journal_path=journal)
        assert lost.status == "submit_uncertain"
        (other,) = await run_many([nb2(1, "other")], kie, options=opts(tmp_path / "o2"))
        assert other.task_id is not None
        async with await BatchJournal.open(journal) as view:
            (entry,) = view.entries.values()
        token = f"{entry.key}.{entry.attempt}"
        from kie_async.ledger.journal import settle_from_callback

        adopted = await kie.adopt_task(token, other.task_id, fallback=lambda t, i: settle_from_callback(journal, t, i))
        assert adopted is False
        (again,) = await run_many([nb2(0, "victim")], kie, options=opts(tmp_path / "out"), journal_path=journal)
    assert again.status == "submit_uncertain"  # still uncertain: the other request's task was not taken


# -- 10. a success that is not a result; odd states -----------------------------------------------------------


def _record(task_id: str, state: object, result_json: str = "") -> dict[str, object]:
    data = {
        "taskId": task_id,
        "model": "nano-banana-2",
        "state": state,
        "param": "{}",
        "resultJson": result_json,
        "failCode": None,
        "failMsg": None,
        "createTime": 1,
        "updateTime": 1,
    }
    return {"code": 200, "msg": "success", "data": data}


@pytest.mark.parametrize(
    ("state", "result_json", "status", "state_after"),
    [
        ("success", "", "incomplete", RequestState.INCOMPLETE),  # unparsable / missing result
        ("success", "{not json", "incomplete", RequestState.INCOMPLETE),
        ("success", '{"resultUrls": [null, 5]}', "incomplete", RequestState.INCOMPLETE),
        ("success", '{"resultUrls": []}', "incomplete", RequestState.INCOMPLETE),
        ("CANCELED", "", "failed", RequestState.FAILED),  # the provider ended it: final
    ],
)
async def test_odd_records_never_become_empty_successes_and_keep_the_task_id(
    tmp_path: Path, state: str, result_json: str, status: str, state_after: RequestState
) -> None:
    import re

    from aioresponses import aioresponses

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        passthrough = [f"{emulator.base_url}/api/v1/jobs/createTask", f"{emulator.base_url}/api/v1/chat/credit"]
        with aioresponses(passthrough=passthrough) as mocked:
            mocked.get(
                re.compile(r".*/api/v1/jobs/recordInfo\?taskId=(?P<id>\w+)"),
                repeat=True,
                callback=lambda url, **_: _odd_answer(url, state, result_json),
            )
            (result,) = await run_many(
                [nb2(0, "odd")],
                kie,
                options=opts(tmp_path / "out", wait_timeout=1.0),
                journal_path=tmp_path / "journal.jsonl",
            )
    assert result.status == status and result.state is state_after, result.error
    assert result.task_id == emulator.tasks()[0].task_id and result.outputs == []
    if status == "incomplete":
        expected = "resultJson never arrived" if not result_json else "no usable output"
        assert expected in (result.error or "") and result.resumable


def _odd_answer(url: object, state: str, result_json: str) -> object:
    from aioresponses import CallbackResult

    task_id = str(url).rsplit("=", 1)[-1]
    return CallbackResult(payload=_record(task_id, state, result_json))


# -- a failing disk, a changed spec ------------------------------------------------------------------------------


async def test_journal_failure_before_the_wire_buys_nothing_after_it_keeps_the_task(tmp_path: Path) -> None:
    from kie_async.ledger.journal import JournalRecord
    from kie_async.pipeline.run import PipelineHooks, run_pipeline

    def failing_at(state: RequestState) -> PipelineHooks:
        async def on_state(record: JournalRecord) -> None:
            if record.state is state:
                raise OSError(28, "No space left on device")

        return PipelineHooks(on_state=on_state)

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        with pytest.raises(OSError, match="No space left"):
            await run_pipeline(nb2(0, "disk"), kie, options=opts(tmp_path), hooks=failing_at(RequestState.SUBMITTING))
        assert emulator.stats.tasks_created == 0 and emulator.stats.requests.get("createTask", 0) == 0
        result = await run_pipeline(
            nb2(1, "disk"), kie, options=opts(tmp_path), hooks=failing_at(RequestState.SUBMITTED)
        )
    assert result.succeeded and result.task_id == emulator.tasks()[0].task_id


async def test_resuming_a_bought_task_is_not_blocked_by_todays_validation(tmp_path: Path) -> None:
    from kie_async.pipeline.run import run_pipeline

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        task = await kie.create_task(model="nano-banana-2", input={"prompt": "bought yesterday"})
        invalid_now = RawUserRequest(model_key="nano-banana-2", prompt=None)  # a spec change made it invalid
        result = await run_pipeline(invalid_now, kie, options=opts(tmp_path), resume_task_id=task.task_id)
    assert result.succeeded and result.resumed and result.outputs and emulator.stats.tasks_created == 1


async def test_a_journal_path_that_is_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    from kie_async.errors import KieInputError

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        with pytest.raises(KieInputError, match="is a folder"):
            await run_many([nb2(0)], kie, options=opts(tmp_path), journal_path=tmp_path)
    assert emulator.stats.tasks_created == 0


# -- a dead process's intent: sent or not? -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sending", "boot", "expected"),
    [
        (False, "this", RequestState.REFUSED),  # same boot, no marker: the request provably never left
        (True, "this", RequestState.UNCERTAIN),  # the marker says it may have left
        (False, "other", RequestState.UNCERTAIN),  # an OS crash since could have eaten the (unsynced) marker
        (False, None, RequestState.UNCERTAIN),  # no boot id on this OS: assume the worst
    ],
)
async def test_an_intent_left_by_a_dead_process_reads_by_its_sending_marker(
    tmp_path: Path, sending: bool, boot: str | None, expected: RequestState
) -> None:
    from kie_async.ledger.journal import JournalRecord, boot_stamp

    stamp = {"this": boot_stamp(), "other": "elsewhere/0000", None: None}[boot]
    if boot == "this" and stamp is None:
        pytest.skip("this OS has no boot id; every dead intent reads as uncertain here")
    journal = tmp_path / "journal.jsonl"
    lines = [JournalRecord(key="k", state=RequestState.SUBMITTING, attempt="a1", boot=stamp)]
    if sending:
        lines.append(JournalRecord(key="k", state=RequestState.SUBMITTING, attempt="a1", sending=True))
    journal.write_bytes(b"".join(r.to_line() for r in lines))
    async with await BatchJournal.open(journal) as view:
        assert view.state_of("k") is expected


async def test_sigkill_during_intent_fsyncs_leaves_no_false_uncertain(tmp_path: Path) -> None:
    """Kill run-batch right as a burst of intents is being fsynced: those never sent must not read as uncertain."""
    from kie_async.ledger.journal import boot_stamp

    if boot_stamp() is None:
        pytest.skip("needs a boot id (Linux)")
    batch = _batch_file(tmp_path / "batch.jsonl", 30, "fsync kill")
    journal = tmp_path / "journal.jsonl"
    command = [
        sys.executable,
        "-m",
        "kie_async",
        "run-batch",
        str(batch),
        "--out",
        str(tmp_path / "out"),
        "--journal",
        str(journal),
        "--concurrency",
        "30",
        "--no-derivatives",
        "--json",
    ]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.5, create_rate_limit=None)) as emulator:
        env = _cli_env(emulator)
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while b'"state":"submitting"' not in (journal.read_bytes() if journal.exists() else b""):
            await asyncio.sleep(0.001)
        proc.send_signal(signal.SIGKILL)  # mid-burst: 20 intents released by the limiter at once
        await proc.wait()
        async with await BatchJournal.open(journal) as view:
            entries = list(view.entries.values())
        arrived = {json.loads(json.loads(t.param_json())["input"])["prompt"] for t in emulator.tasks()}
        print("states after the kill:", Counter(e.state.value for e in entries), "tasks:", len(arrived))
        for entry in entries:
            prompt = entry.intent.prompt if entry.intent else None
            if entry.state is RequestState.UNCERTAIN:
                assert entry.sending, f"{prompt} reads uncertain without having been sent"
            if prompt in arrived:
                assert entry.state in (RequestState.UNCERTAIN, RequestState.SUBMITTED), (prompt, entry.state)
        final = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, _ = await asyncio.wait_for(final.communicate(), timeout=90)
        per_prompt = tasks_per_prompt(emulator)
    assert max(per_prompt.values()) == 1
    statuses = Counter(r["status"] for r in json.loads(stdout)["results"])
    assert statuses["succeeded"] + statuses["submit_uncertain"] == 30
    assert statuses["submit_uncertain"] <= sum(e.sending and e.state is RequestState.UNCERTAIN for e in entries)
