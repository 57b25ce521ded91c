"""A hostile review of money safety (issue 9): each test is an attack that broke something on main.

Every test asserts the correct behaviour; the ones still marked ``xfail`` say why they were left open.
Counts come from the emulator (what was really sold), not from what the SDK believes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieInputError, KieJournalBusyError
from kie_async.ledger.journal import BatchJournal, JournalRecord, append_adoption
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession
from tests.aioresponses_compat import patch_aioresponses  # noqa: F401  (autouse fixture)

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)
FAST_RETRY = RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)


def nb2(i: int, tag: str) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt=f"{tag} request {i}")


def opts(root: Path, **extra: object) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts, **extra)  # type: ignore[arg-type]


def fast(emulator: KieEmulator) -> KieSession:
    return KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS))


def tasks_per_prompt(emulator: KieEmulator) -> Counter[str]:
    return Counter(json.loads(json.loads(t.param_json())["input"])["prompt"] for t in emulator.tasks())


# -- two owners of one journal through another name for the same file ---------------------------------------------


async def test_a_symlink_to_the_journal_is_the_same_journal(tmp_path: Path) -> None:
    """macOS's /tmp -> /private/tmp, a symlinked project folder: one file, two names, must still be one owner."""
    journal = tmp_path / "journal.jsonl"
    journal.touch()
    (tmp_path / "alias").symlink_to(tmp_path)
    names = [tmp_path / "link.jsonl", tmp_path / "alias" / "journal.jsonl"]
    names[0].symlink_to(journal)
    async with await BatchJournal.open(journal):
        for other in names:
            with pytest.raises(KieJournalBusyError, match=f"pid {os.getpid()}"):
                await BatchJournal.open(other)


async def test_two_batches_through_a_symlinked_journal_buy_each_request_once(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(journal)
    requests = [nb2(i, "symlink") for i in range(4)]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.5)) as emulator, fast(emulator) as kie:
        first = asyncio.create_task(run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal))
        while emulator.stats.tasks_created < 1:
            await asyncio.sleep(0.01)
        second = await asyncio.gather(
            run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=link), return_exceptions=True
        )
        await first
    assert isinstance(second[0], KieJournalBusyError)
    assert max(tasks_per_prompt(emulator).values()) == 1 and emulator.stats.tasks_created == 4


# -- a late adoption for an older attempt must not displace the newer attempt's task ------------------------------


async def test_a_late_adoption_of_an_older_attempt_keeps_the_newer_attempts_task(tmp_path: Path) -> None:
    """Run 1 lost createTask's answer (attempt a1, task T1). Run 2 (--resubmit-uncertain) buys T2 with attempt a2;
    meanwhile T1's callback reaches a receiver in another process, which appends the adoption while a2 is on the
    wire. T2 is what run 2 waited on, downloaded and recorded: it must stay the request's task, with T1 reported
    as a second purchase, not silently dropped from the journal."""
    path = tmp_path / "journal.jsonl"
    s = RequestState
    async with await BatchJournal.open(path) as journal:
        for record in (
            JournalRecord(key="k", state=s.SUBMITTING, attempt="a1"),
            JournalRecord(key="k", state=s.SUBMITTING, attempt="a1", sending=True),
            JournalRecord(key="k", state=s.UNCERTAIN, attempt="a1"),
            JournalRecord(key="k", state=s.SUBMITTING, attempt="a2"),
            JournalRecord(key="k", state=s.SUBMITTING, attempt="a2", sending=True),
        ):
            await journal.record(record)
        await append_adoption(path, "k", "a1", "T1")  # the receiver, from another process
        await journal.record(JournalRecord(key="k", state=s.SUBMITTED, attempt="a2", task_id="T2", run_id="r2"))
        await journal.record(JournalRecord(key="k", state=s.SUCCEEDED, task_id="T2", run_id="r2", outputs=["o"]))
    async with await BatchJournal.open(path) as reread:
        entry = reread.get("k")
    assert entry is not None
    assert (entry.state, entry.task_id, entry.extra_task_ids) == (s.SUCCEEDED, "T2", ["T1"])
    assert entry.result is not None and entry.result.outputs == ["o"]


async def test_a_late_adoption_while_the_newer_attempt_ends_uncertain_keeps_the_known_task(tmp_path: Path) -> None:
    """If the newer attempt's own answer is lost too, the adopted task is the one we know: never buy again."""
    path = tmp_path / "journal.jsonl"
    s = RequestState
    lines = [
        JournalRecord(key="k", state=s.SUBMITTING, attempt="a1"),
        JournalRecord(key="k", state=s.UNCERTAIN, attempt="a1"),
        JournalRecord(key="k", state=s.SUBMITTING, attempt="a2"),
        JournalRecord(key="k", state=s.SUBMITTED, attempt="a1", task_id="T1", adopted=True),
        JournalRecord(key="k", state=s.UNCERTAIN, attempt="a2"),
    ]
    path.write_bytes(b"".join(r.to_line() for r in lines))
    async with await BatchJournal.open(path) as view:
        entry = view.get("k")
    assert entry is not None and entry.state is s.SUBMITTED and entry.task_id == "T1"


# -- a journal path that is not a regular file ----------------------------------------------------------------------


def _fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "journal.fifo"
    os.mkfifo(fifo)

    def unblock() -> None:  # without the fix the reader would wait forever for a writer: give it one, late
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        os.close(fd)

    timer = threading.Timer(5.0, unblock)
    timer.daemon = True
    timer.start()
    return fifo


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/null").exists(), reason="POSIX device files")
@pytest.mark.parametrize("kind", ["device", "fifo"])
async def test_a_journal_that_is_a_device_or_a_pipe_is_refused_before_anything(tmp_path: Path, kind: str) -> None:
    """``--journal /dev/stdout`` (to watch it), /dev/null, a FIFO: reading /dev/zero or /dev/full grew memory
    until the OOM killer came, a FIFO hung forever, /dev/null failed every request one by one."""
    journal = Path("/dev/null") if kind == "device" else _fifo(tmp_path)
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        with pytest.raises(KieInputError, match="not a regular file"):
            await asyncio.wait_for(
                run_many([nb2(0, kind)], kie, options=opts(tmp_path / "out"), journal_path=journal), timeout=20
            )
    assert emulator.stats.requests.get("createTask", 0) == 0
    assert not Path(f"{journal}.owner").exists() and not Path(f"{journal}.lock").exists()


# -- a task id that is a path ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("write_artifact", [False, True])
@pytest.mark.parametrize("evil", ["../../escaped", "ABSOLUTE"])
async def test_a_task_id_that_is_a_path_never_writes_outside_the_output_root(
    tmp_path: Path, write_artifact: bool, evil: str
) -> None:
    """A garbage or hostile 200 ``{"taskId": "../../x"}`` (or ``/abs/path``) became a folder name for downloads."""
    from aioresponses import aioresponses

    root = tmp_path / "nest" / "out"
    outside = tmp_path / "abs-escape" if evil == "ABSOLUTE" else tmp_path / "escaped"
    task_id = str(outside) if evil == "ABSOLUTE" else evil
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        real = await kie.create_task(model="nano-banana-2", input={"prompt": "a real output"})
        url = (await kie.wait_for_task(real.task_id)).output_urls[0]
        data = {
            "taskId": task_id,
            "model": "nano-banana-2",
            "state": "success",
            "param": "{}",
            "resultJson": json.dumps({"resultUrls": [url]}),
            "failCode": None,
            "failMsg": None,
            "createTime": 1,
            "updateTime": 1,
        }
        with aioresponses(passthrough=[url]) as mocked:
            created = {"code": 200, "msg": "success", "data": {"taskId": task_id}}
            mocked.post(re.compile(r".*/createTask"), payload=created)
            mocked.get(
                re.compile(r".*/recordInfo.*"), payload={"code": 200, "msg": "success", "data": data}, repeat=True
            )
            result = await run_pipeline(
                nb2(0, "evil id"), kie, options=opts(root, write_artifact=write_artifact, available_credits=100)
            )
    escaped = [p for p in tmp_path.rglob("*") if not p.is_relative_to(root) and p.name.startswith("output_")]
    assert escaped == [] and not outside.exists()
    assert result.task_id == task_id  # the id itself is kept as given: it is what the provider knows
    assert all(o.path.resolve().is_relative_to(root.resolve()) for o in result.outputs)


# -- a journal write that fails once after the wire ----------------------------------------------------------------


async def test_one_failed_journal_write_after_the_wire_neither_crashes_the_batch_nor_loses_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moment of ENOSPC on the ``submitted`` line: the run goes on (the result carries the task id), but the
    next move (``succeeded``) was refused as illegal against the journal's stale view, which crashed the whole
    batch and left a finished, paid request reading ``uncertain`` forever."""
    import kie_async.ledger.journal as journal_module

    real_append = journal_module.append_line
    failed: list[bytes] = []

    def flaky_append(path: Path, line: bytes, **kwargs: object) -> None:
        if b'"state":"submitted"' in line and not failed:
            failed.append(line)
            raise OSError(28, "No space left on device")
        real_append(path, line, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(journal_module, "append_line", flaky_append)
    journal = tmp_path / "journal.jsonl"
    requests = [nb2(i, "enospc") for i in range(3)]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        first = await run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal)
        assert failed and [r.status for r in first] == ["succeeded"] * 3
        async with await BatchJournal.open(journal) as view:
            assert {e.state for e in view.entries.values()} == {RequestState.SUCCEEDED}
            assert sorted(e.task_id or "" for e in view.entries.values()) == sorted(r.task_id or "" for r in first)
        again = await run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal)
    assert all(r.succeeded and r.resumed for r in again) and emulator.stats.tasks_created == 3


# -- an empty resume task id -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["", "   "])
async def test_an_empty_resume_task_id_is_an_input_error(tmp_path: Path, task_id: str) -> None:
    """``kie-async run --resume-task ''`` crashed: "internal error: IllegalTransitionError pending -> incomplete"."""
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        with pytest.raises(KieInputError, match="resume_task_id"):
            await run_pipeline(nb2(0, "empty resume"), kie, options=opts(tmp_path), resume_task_id=task_id)
    assert emulator.stats.requests.get("createTask", 0) == 0


def test_cli_empty_resume_task_is_one_error_line(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "kie_async",
        "run",
        "--model",
        "nano-banana-2",
        "--prompt",
        "x",
        "--resume-task",
        "",
        "--offline",
        "--out",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("error:") and "resume" in done.stderr


# -- left open: the budget across re-runs, and a spec change between runs -------------------------------------------


async def test_the_batch_budget_counts_tasks_bought_by_an_earlier_run(tmp_path: Path) -> None:
    """Budget 16 (two 8-credit tasks). Run 1 buys two that cannot download; run 2 adds two new requests with the
    same budget: the two paid tasks already use it all, so the new ones must be ``over_budget``. The docs say the
    journal's spend counts towards the budget; today resumed tasks count as 0 (their charge is read back as None)
    and only after they finish, so the new ones are bought: 32 credits on a 16-credit batch."""
    journal = tmp_path / "journal.jsonl"
    old = [nb2(i, "budget old") for i in range(2)]
    new = [nb2(i, "budget new") for i in range(2)]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        emulator.faults.add("files", "server_error", count=None)
        async with fast(emulator) as kie:
            first = await run_many(old, kie, options=opts(tmp_path / "out"), journal_path=journal, budget_credits=16)
        assert [r.status for r in first] == ["incomplete"] * 2
        emulator.faults.clear()
        async with fast(emulator) as kie:
            again = await run_many(
                new + old, kie, options=opts(tmp_path / "out"), journal_path=journal, budget_credits=16
            )
    assert [r.status for r in again] == ["over_budget", "over_budget", "succeeded", "succeeded"]
    assert [r.credits_charged for r in again[2:]] == [8.0, 8.0]
    assert emulator.stats.tasks_created == 2


async def test_a_spec_change_between_runs_does_not_buy_a_paid_request_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run 1 buys a task that cannot download. Before the re-run, the model's spec changes a default (an SDK
    upgrade, or a KIE_MODEL_SPECS_DIR override): the request as the user wrote it is the same, the task is paid,
    so the re-run must resume it. Today the key (a hash of the *normalized* request, defaults included)
    changes, the journal no longer knows the request, and it is bought again."""
    from kie_async.catalogue.specs import clear_registry_cache
    from kie_async.core.data import data_dir

    journal = tmp_path / "journal.jsonl"
    requests = [nb2(0, "spec change")]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        emulator.faults.add("files", "server_error", count=None)
        async with fast(emulator) as kie:
            (first,) = await run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal)
        assert first.status == "incomplete"
        emulator.faults.clear()
        override = tmp_path / "specs"
        override.mkdir()
        spec = (data_dir("model_specs") / "nano-banana-2.yaml").read_text()
        (override / "nano-banana-2.yaml").write_text(spec.replace("default: jpg", "default: png", 1))
        monkeypatch.setenv("KIE_MODEL_SPECS_DIR", str(override))
        clear_registry_cache()
        try:
            async with fast(emulator) as kie:
                (again,) = await run_many(requests, kie, options=opts(tmp_path / "out"), journal_path=journal)
        finally:
            monkeypatch.delenv("KIE_MODEL_SPECS_DIR")
            clear_registry_cache()
    assert again.succeeded and again.resumed and again.task_id == first.task_id
    assert emulator.stats.tasks_created == 1


# -- a cancel while the journal loads -------------------------------------------------------------------------------


async def test_a_cancel_while_the_journal_loads_does_not_keep_it_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupting a notebook cell (or a web handler) while a big journal loads: the worker thread still took
    the owner lock and nobody released it, so this process could never open that journal again."""
    import time

    journal = tmp_path / "journal.jsonl"
    slow_load = BatchJournal._load

    def load_slowly(self: BatchJournal) -> None:
        time.sleep(0.6)  # a journal of tens of thousands of lines
        slow_load(self)

    monkeypatch.setattr(BatchJournal, "_load", load_slowly)
    opening = asyncio.create_task(BatchJournal.open(journal))
    await asyncio.sleep(0.2)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    await asyncio.sleep(1.0)  # the thread has finished by now
    async with await BatchJournal.open(journal) as again:
        assert again.entries == {}
