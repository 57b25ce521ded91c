"""Runway extend (POST /api/v1/runway/extend) on an earlier Runway task, against the emulator, whose route judges
the body by the page's schema and reads the task like every Runway task at record-detail."""

from __future__ import annotations

from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.emulator.lifecycle import callback_body
from kie_async.errors import KieValidationError
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession
from kie_async.wire.task_apis import pick, pick_all

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)
FAST_RETRY = RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)
CALLBACK = "http://127.0.0.1:9/kie/callback"  # nothing listens: the emulator's delivery fails quietly


def opts(root: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts, allow_unknown_cost=True, wait_timeout=20)


def fast(emulator: KieEmulator) -> KieSession:
    return KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS))


async def test_runway_extend_continues_an_earlier_runway_task(tmp_path: Path) -> None:
    spec = load_registry().get("runway-extend")
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        first = await run_pipeline(
            RawUserRequest(model_key="runway-gen", prompt="a cat dancing under disco lights"),
            kie,
            options=opts(tmp_path / "first"),
        )
        assert first.succeeded and first.task_id, first.error
        request = RawUserRequest(
            model_key="runway-extend",
            prompt="the cat keeps dancing, spinning faster",
            options={"task_id": first.task_id, "watermark": ""},
            callback_url=CALLBACK,
        )
        result = await run_pipeline(request, kie, options=opts(tmp_path / "extend"))
        requests = dict(emulator.stats.requests)
        task = emulator.task(result.task_id or "")
        assert task is not None
        body = callback_body(emulator._ctx, task)
    assert result.succeeded, result.error
    assert task.dialect == "runway-extend" and requests.get("createTask:runway-extend") == 1
    callback = task.body.pop("callBackUrl")
    assert str(callback).startswith(CALLBACK)
    assert task.body == {
        "taskId": first.task_id,
        "prompt": "the cat keeps dancing, spinning faster",
        "quality": "720p",
        "waterMark": "",
    }
    assert pick(body, spec.transport.callback.task_id) == task.task_id
    assert [u for u in pick_all(body, spec.transport.callback.result_urls) if u]


async def test_runway_extend_of_a_task_runway_did_not_sell_is_refused_before_any_charge() -> None:
    transport = load_registry().get("runway-extend").transport
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        veo = await kie.create_task(
            model="veo3_fast", input={"prompt": "a fox"}, transport=load_registry().get("veo-3.1-fast").transport
        )
        before = await kie.get_credits()
        for source in ("no-such-task", veo.task_id):
            with pytest.raises(KieValidationError):
                await kie.create_task(
                    model="runway-extend",
                    input={"taskId": source, "prompt": "more", "quality": "720p"},
                    transport=transport,
                )
        assert (await kie.get_credits()).credits == before.credits
        with pytest.raises(KieValidationError):  # quality is required by the page's schema
            await kie.create_task(
                model="runway-extend", input={"taskId": veo.task_id, "prompt": "more"}, transport=transport
            )


def test_the_sdk_refuses_a_quality_the_page_does_not_offer() -> None:
    report = validate_request(
        RawUserRequest(model_key="runway-extend", prompt="more", options={"taskId": "t", "quality": "4k"})
    )
    assert report.state == "invalid"
