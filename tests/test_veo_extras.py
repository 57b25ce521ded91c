"""Veo 3.1's other documented models and endpoints (Lite, extend, 4K) bought against the emulator, whose Veo
routes judge each body by the schema on the provider's page."""

from __future__ import annotations

from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.core.media_sniff import read_head, sniff_head
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


async def test_veo_lite_is_bought_on_the_veo_api_as_veo3_lite(tmp_path: Path) -> None:
    spec = load_registry().get("veo-3.1-lite")
    assert spec.provider_models == ["veo3_lite"] and spec.transport.name == "veo3"
    request = RawUserRequest(model_key="veo3-lite", prompt="a red fox crossing a snowy field at dawn")
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        result = await run_pipeline(request, kie, options=opts(tmp_path))
        requests = dict(emulator.stats.requests)
    assert result.succeeded, result.error
    (task,) = emulator.tasks()
    assert task.dialect == "veo3" and task.body["model"] == "veo3_lite" and requests.get("createTask:veo3") == 1


async def _earlier_veo_task(kie: KieSession, tmp_path: Path) -> str:
    request = RawUserRequest(model_key="veo-3.1-fast", prompt="a dog running through a sunny park")
    earlier = await run_pipeline(request, kie, options=opts(tmp_path / "earlier"))
    assert earlier.succeeded and earlier.task_id, earlier.error
    return earlier.task_id


async def test_extend_works_on_an_earlier_veo_task_and_is_read_like_one(tmp_path: Path) -> None:
    spec = load_registry().get("veo-3.1-extend")
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        source = await _earlier_veo_task(kie, tmp_path)
        request = RawUserRequest(
            model_key="veo-extend",
            prompt="the dog jumps over a bench and keeps running",
            options={"task_id": source, "seed": 12345},
            callback_url=CALLBACK,
        )
        result = await run_pipeline(request, kie, options=opts(tmp_path / "extend"))
        requests = dict(emulator.stats.requests)
        task = emulator.task(result.task_id or "")
        assert task is not None
        body = callback_body(emulator._ctx, task)
    assert result.succeeded, result.error
    assert task.dialect == "veo3-extend" and requests.get("createTask:veo3-extend") == 1
    # Laid out as the page shows it: flat, the page's default model sent, no model id of the SDK's own.
    callback = task.body.pop("callBackUrl")
    assert str(callback).startswith(CALLBACK)
    assert task.body == {
        "taskId": source,
        "prompt": "the dog jumps over a bench and keeps running",
        "seeds": 12345,
        "model": "fast",
    }
    assert result.outputs and "video" in sniff_head(read_head(result.outputs[0].path)).kinds
    assert pick(body, spec.transport.callback.task_id) == task.task_id
    assert [u for u in pick_all(body, spec.transport.callback.result_urls) if u]


@pytest.mark.parametrize(
    ("source", "message"),
    [("veo-no-such-task", "record is null"), ("market", "record is null"), ("running", "record status is not success")],
)
async def test_extend_of_a_task_the_veo_api_did_not_finish_is_refused_before_any_charge(
    source: str, message: str, tmp_path: Path
) -> None:
    transport = load_registry().get("veo-3.1-extend").transport
    async with KieEmulator(EmulatorConfig(generation_seconds=30)) as emulator, fast(emulator) as kie:
        if source == "market":  # a market task is unknown to the Veo API
            source = (await kie.create_task(model="nano-banana-2", input={"prompt": "a fox"})).task_id
        elif source == "running":
            source = (
                await kie.create_task(
                    model="veo3_fast",
                    input={"prompt": "a fox"},
                    transport=load_registry().get("veo-3.1-fast").transport,
                )
            ).task_id
        before = await kie.get_credits()
        with pytest.raises(KieValidationError, match=message):
            await kie.create_task(model="veo3-extend", input={"taskId": source, "prompt": "more"}, transport=transport)
        assert (await kie.get_credits()).credits == before.credits


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "more"},
        {"taskId": "t", "prompt": "more", "seeds": 99},
        {"taskId": "t", "prompt": "more", "model": "turbo"},
    ],
)
async def test_extend_bodies_are_judged_by_the_pages_schema(body: dict[str, object]) -> None:
    transport = load_registry().get("veo-3.1-extend").transport
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        with pytest.raises(KieValidationError):
            await kie.create_task(model="veo3-extend", input=body, transport=transport)
        assert emulator.stats.tasks_created == 0


def test_the_sdk_refuses_what_the_extend_page_forbids() -> None:
    report = validate_request(
        RawUserRequest(model_key="veo-3.1-extend", prompt="more", options={"taskId": "t", "seeds": 123})
    )
    assert report.state == "invalid" and any("seeds" in d.field for d in report.all_details())
    missing = validate_request(RawUserRequest(model_key="veo-3.1-extend", prompt="more"))
    assert missing.state != "ready"


async def test_4k_upgrades_an_earlier_veo_task_and_calls_back_in_its_own_shape(tmp_path: Path) -> None:
    spec = load_registry().get("veo-3.1-4k")
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        source = await _earlier_veo_task(kie, tmp_path)
        request = RawUserRequest(model_key="veo-4k", options={"task_id": source}, callback_url=CALLBACK)
        result = await run_pipeline(request, kie, options=opts(tmp_path / "4k"))
        task = emulator.task(result.task_id or "")
        assert task is not None
        body = callback_body(emulator._ctx, task)
        # No video 1 on a one-video task: refused before any charge, as the page's 422 list says.
        with pytest.raises(KieValidationError, match="record result data not exist"):
            await kie.create_task(model="veo3-4k", input={"taskId": source, "index": 1}, transport=spec.transport)
    assert result.succeeded, result.error
    assert task.dialect == "veo3_4k" and task.body["taskId"] == source and "index" not in task.body
    assert "prompt" not in task.body and "model" not in task.body
    assert result.outputs and "video" in sniff_head(read_head(result.outputs[0].path)).kinds
    assert body["msg"] == "4K Video generated successfully." and body["data"]["info"]["imageUrls"]
    assert pick(body, spec.transport.callback.task_id) == task.task_id
    assert [u for u in pick_all(body, spec.transport.callback.result_urls) if u]


async def test_a_failed_4k_upgrade_calls_back_500_with_the_task_id_only(tmp_path: Path) -> None:
    transport = load_registry().get("veo-3.1-4k").transport
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        source = await _earlier_veo_task(kie, tmp_path)
        emulator.fail_next(1)
        created = await kie.create_task(model="veo3-4k", input={"taskId": source}, transport=transport)
        record = await kie.wait_for_task(created.task_id, timeout=10, raise_on_failure=False)
        task = emulator.task(created.task_id)
        assert task is not None
        body = callback_body(emulator._ctx, task)
    assert record.state.value == "fail"
    assert body["code"] == 500 and body["data"] == {"taskId": created.task_id}


async def test_the_1080p_version_is_asked_until_ready_and_spends_nothing(tmp_path: Path) -> None:
    transport = load_registry().get("veo-3.1-fast").transport
    assert transport.upgrade("1080p") is not None
    async with KieEmulator(EmulatorConfig(generation_seconds=0.3)) as emulator, fast(emulator) as kie:
        created = await kie.create_task(model="veo3_fast", input={"prompt": "a fox"}, transport=transport)
        with pytest.raises(KieValidationError, match="record status is not success"):  # not finished: final
            await kie.get_upgrade_url(created.task_id, "1080p", timeout=5, every=0.05)
        record = await kie.wait_for_task(created.task_id, timeout=10)
        before = await kie.get_credits()
        url = await kie.get_upgrade_url(created.task_id, "1080p", timeout=10, every=0.05)
        reads = dict(emulator.stats.requests).get("upgrade:veo3_1080p", 0)
        saved = await kie.download(url, tmp_path / "fox-1080p.mp4", expect_kind="video")
        with pytest.raises(KieValidationError, match="record result data not exist"):
            await kie.get_upgrade_url(created.task_id, "1080p", index=3, timeout=5, every=0.05)
        with pytest.raises(KieValidationError, match="record is null"):
            await kie.get_upgrade_url("veo-no-such-task", "1080p", timeout=5, transport=transport)
        after = await kie.get_credits()
    assert url == record.output_urls[0] and saved.bytes_written > 0
    assert reads >= 2  # "processing" answers were asked again, not given up on
    assert after.credits == before.credits


async def test_an_api_without_that_upgrade_says_so_before_asking() -> None:
    from kie_async.errors import KieInputError

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        transport = load_registry().get("veo-3.1-4k").transport
        with pytest.raises(KieInputError, match="no '1080p' upgrade"):
            await kie.get_upgrade_url("t", "1080p", transport=transport)
        assert emulator.stats.requests.get("upgrade:veo3_1080p") is None
