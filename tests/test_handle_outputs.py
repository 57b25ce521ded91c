"""Task handles (submit / task / refresh / progress / wait / create_and_wait) and readable outputs, on the emulator."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import pytest

from kie_async import KieSession, PipelineOptions, RawUserRequest
from kie_async.core.settings import PollSettings
from kie_async.emulator import KieEmulator
from kie_async.emulator.faults import FaultEndpoint, FaultKind
from kie_async.errors import (
    KieConnectionError,
    KieDownloadContentError,
    KieDownloadError,
    KieInputError,
    KieRequestBlockedError,
    KieSubmissionUncertainError,
    KieTaskFailedError,
    KieTimeoutError,
)
from kie_async.pipeline.handle import TaskHandle, TaskOutcome
from kie_async.pipeline.outputs import FileOutput
from kie_async.wire.api_models import TaskState

FAST_POLL = PollSettings(schedule=((1000.0, 0.05),), timeout=30)
JPEG = b"\xff\xd8\xff"
FOX = RawUserRequest(model_key="nano-banana-2", prompt="a red fox", options={"resolution": "1K"})


def settings(emulator: KieEmulator):  # type: ignore[no-untyped-def]
    return emulator.settings(poll=FAST_POLL)


async def test_submit_wait_and_read_outputs(emulator: KieEmulator, tmp_path: Path) -> None:
    async with KieSession(settings(emulator)) as kie:
        handle = await kie.submit(FOX)
        assert isinstance(handle, TaskHandle) and handle.model_key == "nano-banana-2"
        assert handle.credits_estimated == 8 and not handle.done
        result = await handle.wait()
        assert isinstance(result, TaskOutcome) and result.succeeded and result.state is TaskState.SUCCESS
        assert handle.done and len(result.outputs) == len(result.output_urls) == 1
        output = result.outputs[0]
        assert output.kind == "image" and output.task_id == handle.task_id
        assert "?" not in repr(output)  # signed query strings stay out of reprs

        whole = await output.aread()
        assert whole.startswith(JPEG)
        streamed = b"".join([chunk async for chunk in output.aiter_bytes(chunk_size=1000)])
        assert streamed == whole
        saved = await output.save(tmp_path / "fox", name_from_content=True)
        assert Path(saved.destination_path).name == "fox.jpg"
        assert saved.sha256 == hashlib.sha256(whole).hexdigest()
        assert list(tmp_path.iterdir()) == [tmp_path / "fox.jpg"]  # no temp file left behind
        # The handle was already finished: wait() again reads nothing.
        reads = emulator.stats.status_requests[handle.task_id]
        assert (await handle.wait()).record == result.record
        assert emulator.stats.status_requests[handle.task_id] == reads
    assert emulator.stats.tasks_created == 1


async def test_reattach_from_another_session_refresh_and_progress(emulator: KieEmulator) -> None:
    async with KieSession(settings(emulator)) as web_request_one:
        task_id = (await web_request_one.submit(FOX)).task_id
    async with KieSession(settings(emulator)) as web_request_two:  # another request, maybe another process
        handle = web_request_two.task(task_id)
        assert handle.last is None and "not read yet" in repr(handle)
        first = await handle.refresh()
        assert first.task_id == task_id and handle.last == first
        seen = [p async for p in handle.progress()]
        assert seen and seen[-1].next_poll_in is None and seen[-1].state is TaskState.SUCCESS
        assert all(p.next_poll_in is not None for p in seen[:-1])
        assert [p.polls for p in seen] == sorted(p.polls for p in seen)
        assert handle.done
        result = await handle.wait()
        # Re-attached without a model key: the output kind comes from the record's provider model.
        assert result.outputs[0].kind == "image" and result.model_key is None
        # A finished handle's progress is one final item, with no read.
        assert [p.state for p in [p async for p in handle.progress()]] == [TaskState.SUCCESS]
    assert emulator.stats.tasks_created == 1


async def test_breaking_out_of_progress_stops_polling(emulator: KieEmulator) -> None:
    emulator.config.generation_seconds = 30
    async with KieSession(settings(emulator)) as kie:
        handle = await kie.submit(FOX)
        async for progress in handle.progress():
            assert progress.state is not TaskState.SUCCESS
            break
        await asyncio.sleep(0.2)
        reads = emulator.stats.status_requests[handle.task_id]
        await asyncio.sleep(0.3)
        assert emulator.stats.status_requests[handle.task_id] == reads  # nothing polls any more
        with pytest.raises(KieTimeoutError, match=handle.task_id):
            await handle.wait(timeout=0.2)


async def test_create_and_wait(emulator: KieEmulator) -> None:
    async with KieSession(settings(emulator)) as kie:
        result = await kie.create_and_wait(FOX)
        assert result.succeeded and result.credits_estimated == 8
        assert (await result.outputs[0].aread()).startswith(JPEG)


@pytest.mark.parametrize(
    ("request_", "options", "where"),
    [
        (RawUserRequest(model_key="nano-banana-2"), None, "prompt"),  # needs input
        (RawUserRequest(model_key="nano-banana-2", prompt="x", options={"resolution": "9K"}), None, "resolution"),
        (FOX, PipelineOptions(budget_credits=1), "budget"),
        (FOX, PipelineOptions(available_credits=2), "credits"),
    ],
)
async def test_submit_refuses_before_any_spend(
    emulator: KieEmulator, request_: RawUserRequest, options: PipelineOptions | None, where: str
) -> None:
    async with KieSession(settings(emulator)) as kie:
        with pytest.raises(KieRequestBlockedError) as caught:
            await kie.submit(request_, options=options)
    assert where in str(caught.value).lower()
    assert caught.value.validation is not None
    assert emulator.stats.requests.get("createTask", 0) == 0 and emulator.stats.tasks_created == 0


async def test_submit_uncertain_is_never_retried(emulator: KieEmulator) -> None:
    emulator.faults.add(FaultEndpoint.CREATE_TASK, FaultKind.RESET_AFTER)
    async with KieSession(settings(emulator)) as kie:
        with pytest.raises(KieSubmissionUncertainError) as caught:
            await kie.submit(FOX)
    assert "dashboard" in caught.value.hint and "kie.task" in caught.value.hint
    assert emulator.stats.requests["createTask"] == 1 and emulator.stats.tasks_created == 1  # bought once, not twice


async def test_cancelled_submit_logs_the_task_it_bought(
    emulator: KieEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.faults.add(FaultEndpoint.CREATE_TASK, FaultKind.LATENCY, delay=0.4)
    caplog.set_level(logging.WARNING, logger="kie_async.pipeline.handle")
    async with KieSession(settings(emulator)) as kie:
        submit = asyncio.create_task(kie.submit(FOX))
        while emulator.stats.requests.get("createTask", 0) == 0:
            await asyncio.sleep(0.01)
        submit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await submit
    (task,) = emulator.tasks()
    assert task.task_id in caplog.text and "kie.task(" in caplog.text


async def test_failed_task(emulator: KieEmulator) -> None:
    emulator.fail_next(1, code="422", msg="content policy")
    async with KieSession(settings(emulator)) as kie:
        handle = await kie.submit(FOX)
        states = [p.state async for p in handle.progress()]
        assert states[-1] is TaskState.FAIL  # progress ends normally; wait() says why
        with pytest.raises(KieTaskFailedError, match="content policy"):
            await handle.wait()
        result = await handle.wait(raise_on_failure=False)
        assert not result.succeeded and result.outputs == []
        emulator.fail_next(1)
        with pytest.raises(KieTaskFailedError):
            await kie.create_and_wait(FOX)


@pytest.mark.parametrize("task_id", ["", "   ", "a b", "x" * 300, "line\nbreak", "tab\t"])
async def test_task_refuses_garbage_ids(emulator: KieEmulator, task_id: str) -> None:
    async with KieSession(settings(emulator)) as kie:
        with pytest.raises(KieInputError):
            kie.task(task_id)


async def test_task_with_unknown_model_key(emulator: KieEmulator) -> None:
    async with KieSession(settings(emulator)) as kie:
        with pytest.raises(KieInputError, match="unknown model_key"):
            kie.task("abc", model_key="no-such-model")
        assert kie.task("abc", model_key="nano-banana-2").model_key == "nano-banana-2"


async def _finished_output(kie: KieSession) -> FileOutput:
    return (await kie.create_and_wait(FOX)).outputs[0]


async def test_output_error_page_is_retried_then_refused(emulator: KieEmulator) -> None:
    async with KieSession(settings(emulator)) as kie:
        output = await _finished_output(kie)
        served = emulator.stats.files_served
        emulator.faults.add(FaultEndpoint.FILES, FaultKind.WRONG_BODY, count=1)  # once: retried, then fine
        assert (await output.aread()).startswith(JPEG)
        emulator.faults.add(FaultEndpoint.FILES, FaultKind.WRONG_BODY, count=None)  # always: never streamed on
        chunks: list[bytes] = []
        with pytest.raises(KieDownloadContentError, match="HTML"):
            async for chunk in output.aiter_bytes():
                chunks.append(chunk)
        assert chunks == []
        emulator.faults.clear()
        # Without a kind the content is not judged, but the stream still says what it is.
        emulator.faults.add(FaultEndpoint.FILES, FaultKind.WRONG_BODY, count=1)
        async with await kie.output(output.url).open() as stream:
            assert stream.media_type.startswith("text/html") and stream.sniffed.format is None
        assert emulator.stats.files_served >= served + 1


async def test_output_cut_short_mid_stream_raises(emulator: KieEmulator) -> None:
    emulator.config.output_bytes = 200_000
    async with KieSession(settings(emulator)) as kie:
        output = await _finished_output(kie)
        emulator.faults.add(FaultEndpoint.FILES, FaultKind.TRUNCATED_BODY, count=1)
        received = 0
        with pytest.raises((KieDownloadError, KieConnectionError)) as caught:
            async for chunk in output.aiter_bytes():
                received += len(chunk)
        assert 0 < received < 200_000
        assert "read the output again" in str(caught.value)


async def test_aread_max_bytes(emulator: KieEmulator) -> None:
    async with KieSession(settings(emulator)) as kie:
        output = await _finished_output(kie)
        size = len(await output.aread())
        assert len(await output.aread(max_bytes=size)) == size
        before = emulator.stats.requests.get("files", 0)
        with pytest.raises(KieDownloadError, match="max_bytes"):
            await output.aread(max_bytes=size - 1)
        assert emulator.stats.requests.get("files", 0) - before <= 1  # refused, not retried
        with pytest.raises(KieInputError):
            await output.aread(max_bytes=-1)


async def test_output_refuses_non_http_urls(emulator: KieEmulator) -> None:
    async with KieSession(settings(emulator)) as kie:
        for url in ("file:///etc/passwd", "ftp://x/y.png", "not a url"):
            with pytest.raises(KieDownloadError):
                kie.output(url)


async def test_hostile_arguments_are_refused_before_any_spend_or_read(emulator: KieEmulator) -> None:
    async with KieSession(settings(emulator)) as kie:
        for update in ({"budget_credits": float("nan")}, {"wait_timeout": -1.0}, {"available_credits": -5.0}):
            options = PipelineOptions().model_copy(update=update)  # model_copy skips the model's own checks
            with pytest.raises(KieInputError):
                await kie.submit(FOX, options=options)
        assert emulator.stats.requests.get("createTask", 0) == 0
        handle = kie.task("some-task")
        for bad in (float("nan"), -1.0, 0.0, float("inf")):
            with pytest.raises(KieInputError):
                await handle.wait(timeout=bad)
            with pytest.raises(KieInputError):
                [p async for p in handle.progress(timeout=bad)]
            with pytest.raises(KieInputError):
                await kie.create_and_wait(FOX, timeout=bad)
        assert emulator.stats.requests.get("recordInfo", 0) == 0 and emulator.stats.tasks_created == 0
        output = await _finished_output(kie)
        before = emulator.stats.files_served
        for size in (0, -1, 1.5, True):
            with pytest.raises(KieInputError):
                [c async for c in output.aiter_bytes(chunk_size=size)]  # type: ignore[arg-type]
        assert emulator.stats.files_served == before
        stream = await output.open()
        with pytest.raises(KieInputError):
            [c async for c in stream.aiter_bytes(chunk_size=0)]
        with pytest.raises(KieInputError, match="already read"):
            [c async for c in stream.aiter_bytes()]


async def test_an_outcome_serialises_for_a_web_answer(emulator: KieEmulator) -> None:
    import json

    async with KieSession(settings(emulator)) as kie:
        outcome = await kie.create_and_wait(FOX)
    data = json.loads(outcome.model_dump_json())
    assert data["task_id"] == outcome.task_id and data["record"]["state"] == "success"
    assert data["outputs"] == [{"index": 0, "kind": "image", "url": outcome.output_urls[0]}]


async def test_a_web_backend_submits_in_one_request_and_streams_the_result_in_another(emulator: KieEmulator) -> None:
    import httpx
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    async with KieSession(settings(emulator)) as kie:
        app = FastAPI()

        @app.post("/images")
        async def create(prompt: str) -> dict[str, str]:
            handle = await kie.submit(RawUserRequest(model_key="nano-banana-2", prompt=prompt))
            return {"task_id": handle.task_id}

        @app.get("/images/{task_id}")
        async def result(task_id: str) -> StreamingResponse:
            outcome = await kie.task(task_id).wait(timeout=20)
            stream = await outcome.outputs[0].open()
            return StreamingResponse(stream.aiter_bytes(), media_type=stream.media_type)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://backend") as client:
            task_id = (await client.post("/images", params={"prompt": "a red fox"})).json()["task_id"]
            answer = await client.get(f"/images/{task_id}")
        direct = await kie.task(task_id).outputs()
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        assert answer.content == await direct[0].aread()
    assert emulator.stats.tasks_created == 1


async def test_reattaching_before_the_specs_are_loaded_reads_them_off_the_loop(emulator: KieEmulator) -> None:
    """``kie.task(id, model_key=)`` is sync code on the event loop: with no specs in memory it must not parse
    YAML there; the key is checked (and refused if unknown) at the handle's first read instead."""
    from kie_async.catalogue.specs import clear_registry_cache, loaded_registry

    async with KieSession(settings(emulator)) as kie:
        task_id = (await kie.submit(FOX)).task_id
        clear_registry_cache()
        handle = kie.task(task_id, model_key="nano-banana-2")
        assert loaded_registry() is None  # nothing was parsed by the sync call
        outcome = await handle.wait()
        assert outcome.record.task_id == task_id and handle.model_key == "nano-banana-2"
        clear_registry_cache()
        stranger = kie.task(task_id, model_key="no-such-model")
        with pytest.raises(KieInputError, match="no-such-model"):
            await stranger.refresh()
