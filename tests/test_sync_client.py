"""``kie_async.sync.KieClient``: the blocking facade, on one private loop thread, against the emulator.

The tests are async only so that the emulator fixture can run; every ``KieClient`` call happens in a worker
thread (``asyncio.to_thread``), where no event loop runs, as in a Django view or a script.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from kie_async import KieSettings, PipelineOptions, RawUserRequest
from kie_async.artifacts import ArtifactSettings
from kie_async.core.settings import PollSettings
from kie_async.emulator import KieEmulator
from kie_async.errors import (
    KieConfigError,
    KieRequestBlockedError,
    KieTaskFailedError,
    KieValidationError,
)
from kie_async.sync import KieClient

FAST_POLL = PollSettings(schedule=((1000.0, 0.05),), timeout=30)
FOX = RawUserRequest(model_key="nano-banana-2", prompt="a red fox", options={"resolution": "1K"})


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kie-async-sync"]


async def test_everything_a_script_needs(emulator: KieEmulator, tmp_path: Path) -> None:
    settings = emulator.settings(poll=FAST_POLL)
    options = PipelineOptions(artifacts=ArtifactSettings(root=str(tmp_path / "runs")))

    def script() -> None:
        with KieClient(settings) as kie:
            assert kie.get_credits().credits == 5000
            assert kie.validate(FOX).is_submittable
            assert kie.estimate(FOX).credits == 8
            assert kie.preflight(FOX, budget_credits=5).allowed is False
            run = kie.run(FOX, options=options)
            assert run.succeeded and run.run_dir and Path(run.run_dir).is_dir()
            batch = kie.run_many([FOX, FOX.model_copy(update={"prompt": "an owl"})], options=options, concurrency=2)
            assert [r.status for r in batch] == ["succeeded", "succeeded"]
            handle = kie.submit(FOX)
            assert handle.refresh().task_id == handle.task_id
            seen = list(handle.progress())
            assert seen and seen[-1].next_poll_in is None
            result = handle.wait()
            assert result.succeeded
            again = kie.task(handle.task_id).wait()
            assert again.output_urls == result.output_urls
            body = kie.read(result.outputs[0])
            saved = kie.save(result.outputs[0], tmp_path / "fox", name_from_content=True)
            assert saved.bytes_written == len(body) and Path(saved.destination_path).suffix == ".jpg"
            assert kie.create_and_wait(FOX).succeeded
            assert len(loop_threads()) == 1  # one private loop for the client's whole life
        assert not loop_threads()

    await asyncio.to_thread(script)
    assert emulator.stats.tasks_created == 5


async def test_many_threads_share_one_client(emulator: KieEmulator) -> None:
    settings = emulator.settings(poll=FAST_POLL)

    def script() -> list[float]:
        results: list[float] = []
        errors: list[BaseException] = []
        with KieClient(settings) as kie:

            def worker() -> None:
                try:
                    for _ in range(5):
                        results.append(kie.get_credits().credits)
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=worker) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(loop_threads()) == 1
        assert not errors, errors
        return results

    results = await asyncio.to_thread(script)
    assert results == [5000.0] * 40
    assert emulator.stats.requests["credit"] == 40


async def test_errors_are_the_same_typed_exceptions(emulator: KieEmulator) -> None:
    settings = emulator.settings(poll=FAST_POLL)

    def script() -> None:
        with KieClient(settings) as kie:
            with pytest.raises(KieRequestBlockedError, match="prompt"):
                kie.submit(RawUserRequest(model_key="nano-banana-2"))
            with pytest.raises(KieValidationError):
                kie.get_task("no-such-task")
            emulator.fail_next(1, msg="content policy")
            with pytest.raises(KieTaskFailedError, match="content policy"):
                kie.create_and_wait(FOX)
            assert kie.get_credits().credits > 0  # the client still works after errors

    await asyncio.to_thread(script)


async def test_live_without_opt_in_is_refused_and_leaves_no_thread() -> None:
    live = KieSettings(api_key="sk-not-real", allow_live=False)

    def script() -> None:
        with pytest.raises(KieConfigError, match="opt-in"), KieClient(live):
            pass
        assert not loop_threads()

    await asyncio.to_thread(script)


async def test_refused_inside_a_running_loop(emulator: KieEmulator) -> None:
    with pytest.raises(KieConfigError, match="running event loop"):
        KieClient(emulator.settings()).open()
    assert not loop_threads()


async def test_closed_client_and_close_during_a_call(emulator: KieEmulator) -> None:
    emulator.config.generation_seconds = 30
    settings = emulator.settings(poll=FAST_POLL)

    def script() -> None:
        kie = KieClient(settings)
        with pytest.raises(KieConfigError, match="not open"):
            kie.get_credits()
        kie.open()
        task_id = kie.submit(FOX).task_id
        failures: list[BaseException] = []

        def waiter() -> None:
            try:
                kie.wait_for_task(task_id)
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=waiter)
        thread.start()
        while emulator.stats.status_requests.get(task_id, 0) < 2:
            threading.Event().wait(0.02)
        kie.close()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert len(failures) == 1 and isinstance(failures[0], KieConfigError), failures
        kie.close()  # idempotent
        with pytest.raises(KieConfigError, match="not open"):
            kie.get_credits()
        assert not loop_threads()

    await asyncio.to_thread(script)


async def test_a_callback_calling_back_into_the_client_is_refused(emulator: KieEmulator, tmp_path: Path) -> None:
    settings = emulator.settings(poll=FAST_POLL)
    options = PipelineOptions(artifacts=ArtifactSettings(root=str(tmp_path)))

    def script() -> None:
        seen: list[BaseException] = []
        with KieClient(settings) as kie:

            def on_progress(progress: object) -> None:
                if not seen:
                    try:
                        kie.get_credits()
                    except KieConfigError as exc:
                        seen.append(exc)

            kie.run_many([FOX], options=options, on_progress=on_progress)
        assert seen and "own loop thread" in str(seen[0])

    await asyncio.to_thread(script)


async def test_breaking_out_of_sync_progress_stops_polling(emulator: KieEmulator) -> None:
    emulator.config.generation_seconds = 30
    settings = emulator.settings(poll=FAST_POLL)

    def script() -> tuple[int, int]:
        with KieClient(settings) as kie:
            handle = kie.submit(FOX)
            for _ in handle.progress():
                break
            reads = emulator.stats.status_requests[handle.task_id]
            threading.Event().wait(0.3)
            return reads, emulator.stats.status_requests[handle.task_id]

    before, after = await asyncio.to_thread(script)
    assert before == after
