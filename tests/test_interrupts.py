"""After a purchase nothing may lose the task: interrupts, SIGTERM, a lying record, a failing callback, a torn line.

Each case was reproduced on the code before it was fixed. Task counts are read from the emulator (what was really
sold), never from what the SDK reports; the CLI cases run the real command in a subprocess and send real signals,
waiting on events (the journal's lines, the emulator's task count), not on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.emulator.state import EmulatedTask, RecordInfo
from kie_async.errors import KieConfigError, paid_task_id
from kie_async.interfaces.cli import main
from kie_async.interfaces.sync import KieClient
from kie_async.ledger.journal import BatchJournal
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.batch_progress import BatchProgress
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineHooks, PipelineOptions, run_pipeline
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=60.0)
FAST_RETRY = RetrySettings(max_retries=1, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)


def _request(i: int = 0, tag: str = "interrupt") -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt=f"{tag} request {i}")


def _options(root: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts)


def _session(emulator: KieEmulator) -> KieSession:
    return KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS))


# -- item 13: any exception after the purchase keeps the task -----------------------------------------------------

_YEAR_10000_MS = 253_402_300_800_000


def _lying_record(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    """Every finished record the emulator serves carries ``changes`` (a lying or broken server)."""
    honest = EmulatedTask.record

    def record(self: EmulatedTask, output_urls: list[str], now: float | None = None) -> RecordInfo:
        info = honest(self, output_urls, now)
        return info.model_copy(update=changes) if info.completeTime is not None else info

    monkeypatch.setattr(EmulatedTask, "record", record)


_LIES = {
    "year 10000": {"completeTime": _YEAR_10000_MS * 2},
    "negative time": {"createTime": -(10**18), "completeTime": -(10**18)},
    "lone surrogate": {"param": json.dumps({"model": "x", "input": {"prompt": "half an emoji \ud83d"}})},
}


@pytest.mark.parametrize("lie", list(_LIES), ids=list(_LIES))
async def test_a_lying_success_record_leaves_the_task_incomplete_and_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: str
) -> None:
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        with monkeypatch.context() as patch:
            _lying_record(patch, **_LIES[lie])
            async with _session(emulator) as kie:
                (first,) = await run_many([_request()], kie, options=_options(tmp_path / "out"), journal_path=journal)
        assert first.status == "incomplete", (first.status, first.error)
        assert first.task_id == emulator.tasks()[0].task_id and not first.spent_nothing and first.resumable
        async with _session(emulator) as kie:  # the server tells the truth again: the same task is collected
            (second,) = await run_many([_request()], kie, options=_options(tmp_path / "out"), journal_path=journal)
        assert second.succeeded and second.task_id == first.task_id and second.resumed, second.error
        assert emulator.stats.tasks_created == 1


async def test_a_lying_record_in_run_pipeline_is_a_result_not_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        _lying_record(monkeypatch, **_LIES["year 10000"])
        async with _session(emulator) as kie:
            result = await run_pipeline(_request(), kie, options=_options(tmp_path / "out"))
        assert result.status == "incomplete" and result.task_id == emulator.tasks()[0].task_id
        assert result.state is RequestState.INCOMPLETE and emulator.stats.tasks_created == 1


async def test_a_failing_on_submitted_hook_costs_no_result(tmp_path: Path) -> None:
    async def broken(task_id: str, estimate: float | None) -> None:
        raise RuntimeError("the user's hook broke")

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        async with _session(emulator) as kie:
            result = await run_pipeline(
                _request(), kie, options=_options(tmp_path / "out"), hooks=PipelineHooks(on_submitted=broken)
            )
        assert result.succeeded, result.error
        assert any("on_submitted" in w and "the user's hook broke" in w for w in result.warnings)
        assert emulator.stats.tasks_created == 1


async def test_a_failing_on_stage_hook_costs_no_result(tmp_path: Path) -> None:
    def broken(outcome: object) -> None:
        raise KeyError("the user's stage display broke")

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        async with _session(emulator) as kie:
            result = await run_pipeline(
                _request(tag="stage"), kie, options=_options(tmp_path / "out"), hooks=PipelineHooks(on_stage=broken)
            )
        assert result.succeeded, result.error
        assert any("on_stage" in w for w in result.warnings) and emulator.stats.tasks_created == 1


async def test_a_failing_on_progress_callback_drops_no_result(tmp_path: Path) -> None:
    calls: list[int] = []

    def broken(progress: BatchProgress) -> None:
        calls.append(progress.done)
        raise ValueError("the progress bar broke")

    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        async with _session(emulator) as kie:
            results = await run_many(
                [_request(i) for i in range(4)],
                kie,
                options=_options(tmp_path / "out"),
                journal_path=journal,
                on_progress=broken,
            )
        assert [r.status for r in results] == ["succeeded"] * 4, [r.error for r in results]
        assert len(calls) > 4  # it kept being called (and kept failing): reported, never fatal
        assert all(any("on_progress" in w and "the progress bar broke" in w for w in r.warnings) for r in results)
        assert emulator.stats.tasks_created == 4


# -- items 2 and 11: Ctrl-C and SIGTERM through the real command ---------------------------------------------------


def _cli_env(emulator: KieEmulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env.update(
        KIE_BASE_URL=emulator.base_url,
        KIE_UPLOAD_BASE_URL=emulator.upload_base_url,
        KIE_API_KEY=emulator.api_key,
        KIE_WAIT_POLL_INTERVAL_SECONDS="0.1",  # a resumed task is done at once: read it now, not 2.5 s later
    )
    return env


async def _until(condition: Any, what: str, timeout: float = 60.0) -> None:
    """Wait for an event (a journal line, the emulator's count), polling; the timeout only bounds a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


RUN = [
    sys.executable,
    "-m",
    "kie_async",
    "run",
    "--model",
    "nano-banana-2",
    "--prompt",
    "a lighthouse at dusk",
    "--no-derivatives",
]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
async def test_run_interrupted_while_generating_prints_the_task_and_the_same_command_resumes_it(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    command = [*RUN, "--out", str(tmp_path / "out")]
    async with KieEmulator(EmulatorConfig(generation_seconds=120)) as emulator:
        env = _cli_env(emulator)
        proc = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            await _until(lambda: emulator.stats.tasks_created == 1, "the purchase")
            task_id = emulator.tasks()[0].task_id
            proc.send_signal(sig)
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
        shown = stderr.decode()
        assert proc.returncode == code, shown
        assert f"task {task_id} is paid for" in shown and f"--resume-task {task_id}" in shown, shown
        for task in emulator.tasks():
            task.duration = 0.05  # the generation finishes now
        again = await asyncio.create_subprocess_exec(
            *command, "--json", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(again.communicate(), timeout=120)
        result = json.loads(stdout)
        assert again.returncode == 0, stderr.decode()[-2000:]
        assert result["status"] == "succeeded" and result["task_id"] == task_id and result["resumed"]
        assert emulator.stats.tasks_created == 1


async def test_sigterm_during_run_batch_awaits_the_answers_on_their_way(tmp_path: Path) -> None:
    count = 6
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        "".join(json.dumps({"model_key": "nano-banana-2", "prompt": f"sigterm {i}"}) + "\n" for i in range(count))
    )
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
        str(count),
        "--no-derivatives",
        "--json",
    ]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05, create_rate_limit=None)) as emulator:
        emulator.faults.add("createTask", "latency", count=None, delay=1.5)  # every answer is on its way a while
        env = _cli_env(emulator)
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            # Every createTask has reached Kie.ai (the emulator holds its answer): they are all on their way.
            await _until(lambda: emulator.stats.requests.get("createTask", 0) >= count, "every send")
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
        assert proc.returncode == 143, stderr.decode()[-2000:]
        async with await BatchJournal.open(journal) as view:
            states = {entry.key: entry.state for entry in view.entries.values()}
        assert sorted(states.values()) == [RequestState.SUBMITTED] * count, states  # none left uncertain
        sold = emulator.stats.tasks_created
        emulator.faults.clear()
        final = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(final.communicate(), timeout=120)
        statuses = [r["status"] for r in json.loads(stdout)["results"]]
        assert statuses == ["succeeded"] * count, stderr.decode()[-2000:]
        assert sold == count and emulator.stats.tasks_created == count


# -- item 2: the blocking client ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _emulator_thread(config: EmulatorConfig) -> Iterator[KieEmulator]:
    """An emulator on its own loop thread, for tests whose main thread blocks in :class:`KieClient`."""
    loop = asyncio.new_event_loop()
    started: list[KieEmulator] = []
    ready, stop = threading.Event(), asyncio.Event()

    async def serve() -> None:
        async with KieEmulator(config) as emulator:
            started.append(emulator)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield started[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def _wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _client(emulator: KieEmulator) -> KieClient:
    return KieClient(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS))


def test_ctrl_c_in_kieclient_run_carries_the_task_id(tmp_path: Path) -> None:
    with _emulator_thread(EmulatorConfig(generation_seconds=120)) as emulator, _client(emulator) as kie:

        def press_ctrl_c() -> None:
            _wait_for(lambda: emulator.stats.tasks_created == 1, "the purchase")
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

        threading.Thread(target=press_ctrl_c, daemon=True).start()
        with pytest.raises(KeyboardInterrupt) as stopped:
            kie.run(_request(tag="sync"), options=_options(tmp_path / "out"))
        task_id = emulator.tasks()[0].task_id
        assert paid_task_id(stopped.value) == task_id and stopped.value.task_id == task_id  # type: ignore[attr-defined]
        assert any(task_id in note for note in stopped.value.__notes__)
        for task in emulator.tasks():
            task.duration = 0.05
        resumed = kie.run(_request(tag="sync"), options=_options(tmp_path / "out"), resume_task_id=task_id)
        assert resumed.succeeded and resumed.task_id == task_id and emulator.stats.tasks_created == 1


def test_closing_kieclient_under_eight_runs_hands_each_its_task_id(tmp_path: Path) -> None:
    with _emulator_thread(EmulatorConfig(generation_seconds=120)) as emulator:
        kie = _client(emulator)
        kie.open()
        raised: list[BaseException] = []

        def one(i: int) -> None:
            try:
                kie.run(_request(i, "closed"), options=_options(tmp_path / "out"))
            except BaseException as exc:
                raised.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        _wait_for(lambda: emulator.stats.tasks_created == 8, "eight purchases")
        kie.close()
        for thread in threads:
            thread.join(60)
        assert len(raised) == 8 and all(isinstance(e, KieConfigError) for e in raised), raised
        ids = {paid_task_id(e) for e in raised}
        assert ids == {t.task_id for t in emulator.tasks()} and len(ids) == 8
        assert all(paid_task_id(e) in str(e) for e in raised)


async def test_a_cancelled_run_pipeline_task_raises_cancelled_error_with_the_task_id(tmp_path: Path) -> None:
    async with KieEmulator(EmulatorConfig(generation_seconds=120)) as emulator:
        async with _session(emulator) as kie:
            job = asyncio.create_task(run_pipeline(_request(tag="cancel"), kie, options=_options(tmp_path / "out")))
            await _until(lambda: emulator.stats.tasks_created == 1, "the purchase")
            await asyncio.sleep(0)
            job.cancel()
            with pytest.raises(asyncio.CancelledError) as stopped:
                await job
        assert paid_task_id(stopped.value) == emulator.tasks()[0].task_id


# -- item 14: a torn ``submitted`` line, with the task named in the run folder ----------------------------------


@pytest.mark.parametrize("resubmit", [False, True], ids=["plain", "resubmit-uncertain"])
async def test_a_torn_submitted_line_adopts_the_task_its_run_folder_names(tmp_path: Path, resubmit: bool) -> None:
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        async with _session(emulator) as kie:
            (first,) = await run_many(
                [_request(tag="torn")], kie, options=_options(tmp_path / "out"), journal_path=journal
            )
        assert first.succeeded and first.run_id
        lines = journal.read_bytes().splitlines(keepends=True)
        submitted = next(i for i, line in enumerate(lines) if b'"state":"submitted"' in line)
        journal.write_bytes(b"".join(lines[:submitted]) + lines[submitted][: len(lines[submitted]) // 2])
        async with await BatchJournal.open(journal) as view:  # what a crash mid-append leaves: "maybe bought"
            assert [e.state for e in view.entries.values()] == [RequestState.UNCERTAIN]
        async with _session(emulator) as kie:
            (again,) = await run_many(
                [_request(tag="torn")],
                kie,
                options=_options(tmp_path / "out"),
                journal_path=journal,
                resubmit_uncertain=resubmit,
            )
        assert again.succeeded and again.task_id == first.task_id and again.run_id == first.run_id, again.error
        assert emulator.stats.tasks_created == 1
        async with await BatchJournal.open(journal) as view:
            assert [e.state for e in view.entries.values()] == [RequestState.SUCCEEDED]


async def test_run_after_a_lost_answer_buys_nothing_until_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kie-async run``'s journal: an answer lost on the wire is "maybe bought" for the next identical run too."""
    command = [
        "run",
        "--model",
        "nano-banana-2",
        "--prompt",
        "a lost answer",
        "--out",
        str(tmp_path / "out"),
        "--no-derivatives",
        "--json",
    ]
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        for key, value in _cli_env(emulator).items():
            if key.startswith("KIE_"):
                monkeypatch.setenv(key, value)
        emulator.faults.add("createTask", "reset_after")  # the task is created, the answer is lost
        assert await asyncio.to_thread(main, command) == 1
        assert json.loads(capsys.readouterr().out)["status"] == "submit_uncertain"
        assert await asyncio.to_thread(main, command) == 1  # the same command: still uncertain, nothing bought
        assert json.loads(capsys.readouterr().out)["status"] == "submit_uncertain"
        assert emulator.stats.tasks_created == 1
        assert await asyncio.to_thread(main, [*command, "--resubmit-uncertain"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "succeeded" and emulator.stats.tasks_created == 2
