"""The engine-neutral job (kie_async.integrations.jobs), in this process against the emulator: one event loop per
process for any number of calling threads, the batch's job keys, and bad settings that leave nothing running."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

import pytest

from kie_async.core.errors import KieConfigError
from kie_async.core.settings import KieSettings
from kie_async.emulator import KieEmulator
from kie_async.integrations.jobs import KieJournalBusyError, ProcessLoop, batch_jobs, run_job
from kie_async.session import KieSession
from tests.engine_workers import requests


async def test_threads_sharing_one_process_loop_buy_a_request_once(
    emulator: KieEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path / "outputs"))
    loop = ProcessLoop(lambda: emulator.settings())
    request = requests(1, "threads")[0].model_dump(mode="json")
    job = functools.partial(run_job, request=request)
    outcomes: list[object] = []

    def call() -> None:
        try:
            outcomes.append(loop.run(job, timeout=120))
        except KieJournalBusyError as exc:  # the same request held by another thread's run right now
            outcomes.append(exc)

    try:
        threads = [threading.Thread(target=call) for _ in range(3)]
        await asyncio.to_thread(lambda: [t.start() for t in threads] and [t.join() for t in threads])
        again = await asyncio.to_thread(loop.run, job, timeout=120)
    finally:
        await asyncio.to_thread(loop.close)

    summaries = [o for o in outcomes if isinstance(o, dict)]
    assert summaries and all(s["status"] == "succeeded" for s in summaries), outcomes
    assert len({s["pid"] for s in summaries}) == 1 and len({s["task_id"] for s in summaries}) == 1
    assert again["resumed"] and again["task_id"] == summaries[0]["task_id"]
    assert emulator.stats.tasks_created == 1


async def test_a_batch_s_job_keys_are_stable_and_number_a_repeated_request() -> None:
    batch = requests(2, "keys")
    jobs = await batch_jobs([*batch, batch[0]])
    keys = [key for _, key in jobs]
    assert keys[2] == f"{keys[0]}#2" and len(set(keys)) == 3
    assert [key for _, key in await batch_jobs([*batch, batch[0]])] == keys  # enqueued again: the same keys
    assert jobs[0][0]["prompt"] == batch[0].prompt


def test_bad_settings_fail_the_job_and_leave_no_loop_running() -> None:
    before = threading.active_count()
    loop = ProcessLoop(lambda: KieSettings(base_url="https://api.kie.ai", allow_live=False))

    async def job(session: KieSession) -> int:
        return 1

    for _ in range(2):
        with pytest.raises(KieConfigError):
            loop.run(job)
    assert threading.active_count() == before
