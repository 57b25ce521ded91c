"""run_pipeline against the emulator: stages, the spend-nothing gates, upload-first, chaining, cancellation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pyvips

from kie_async.artifacts import ArtifactSettings, query_runs
from kie_async.catalogue.presets import PromptContext
from kie_async.catalogue.request_models import MediaInput, RawUserRequest
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.ledger.budget import CreditBudget
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)


def nb2(prompt: str) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt=prompt)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.15)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as session:
        yield session


@pytest.fixture
def opts(tmp_path: Path) -> PipelineOptions:
    return PipelineOptions(artifacts=ArtifactSettings(root=tmp_path / "out"))


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "start.png"
    pyvips.Image.xyz(640, 480).extract_band(0).cast("uchar").write_to_file(str(path))
    return path


async def test_text_to_image_runs_every_stage(kie: KieSession, emulator: KieEmulator, opts: PipelineOptions) -> None:
    result = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt="a red fox"), kie, options=opts)
    assert result.status == "succeeded", result.error
    assert [s.name for s in result.stages] == [
        "normalize",
        "prompt",
        "validate",
        "preflight",
        "prepare",
        "submit",
        "wait",
        "download",
        "artifact",
    ]
    assert all(s.status == "ok" for s in result.stages)
    assert result.credits_estimated == 8 and result.credits_charged == 8 == emulator.stats.credits_spent
    manifest = json.loads((Path(str(result.run_dir)) / "run.json").read_text())
    assert manifest["provider_trace"]["task_id"] == result.task_id
    assert manifest["prompts"]["final_used"] == "a red fox"
    assert result.outputs[0].path.is_file() and result.outputs[0].path.is_relative_to(Path(str(result.run_dir)))
    # the staging downloads folder is cleaned up
    assert not any((opts.artifacts.resolved_root() / ".tmp" / "downloads").glob("*"))


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (RawUserRequest(model_key="kling-3.0", prompt="x", options={"duration": 99}), "duration"),
        (RawUserRequest(model_key="kling-2.6-motion", prompt="dance"), "needs_input"),
        (RawUserRequest(model_key="no-such-model", prompt="x"), "invalid"),
    ],
)
async def test_bad_requests_stop_before_submit_and_spend_nothing(
    kie: KieSession, emulator: KieEmulator, opts: PipelineOptions, request_: RawUserRequest, reason: str
) -> None:
    result = await run_pipeline(request_, kie, options=opts)
    assert result.status == "blocked" and result.spent_nothing
    assert reason in (result.error or "")
    assert emulator.stats.requests.get("createTask", 0) == 0 and emulator.stats.uploads == 0
    assert result.stages[-1].name == "validate" and result.stages[-1].status == "blocked"


async def test_preflight_blocks_when_credits_are_short(
    kie: KieSession, emulator: KieEmulator, opts: PipelineOptions
) -> None:
    emulator.set_credits(5)
    result = await run_pipeline(nb2("x"), kie, options=opts)
    assert result.status == "blocked" and "only 5 available" in (result.error or "")
    assert emulator.stats.requests.get("createTask", 0) == 0


async def test_shared_budget_refuses_when_exhausted(
    kie: KieSession, emulator: KieEmulator, opts: PipelineOptions
) -> None:
    budget = CreditBudget(10)
    first = await run_pipeline(nb2("one"), kie, options=opts, budget=budget)
    second = await run_pipeline(nb2("two"), kie, options=opts, budget=budget)
    assert first.succeeded and second.status == "over_budget" and second.spent_nothing
    assert budget.snapshot().spent == 8 and emulator.stats.tasks_created == 1


async def test_upload_first_and_identical_files_uploaded_once(
    kie: KieSession, emulator: KieEmulator, opts: PipelineOptions, image_file: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "same-content.png"
    copy.write_bytes(image_file.read_bytes())
    request = RawUserRequest(model_key="nano-banana-pro", prompt="edit", images=[image_file, copy])
    result = await run_pipeline(request, kie, options=opts)
    assert result.status == "succeeded", result.error
    assert result.prepared is not None
    assert [u.action for u in result.prepared.uploads] in (["uploaded", "reused"], ["reused", "uploaded"])
    assert emulator.stats.uploads == 1
    task = emulator.task(str(result.task_id))
    assert task is not None
    sent = json.loads(json.loads(task.param_json())["input"])
    assert all(url.startswith(emulator.upload_base_url) for url in sent["image_input"])


async def test_chaining_records_lineage(kie: KieSession, opts: PipelineOptions) -> None:
    image = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt="a castle"), kie, options=opts)
    assert image.succeeded
    video = await run_pipeline(
        RawUserRequest(
            model_key="kling-3.0",
            prompt="slow push in",
            images=[image.outputs[0].as_media("first_frame")],
            options={"duration": 5, "sound": False},
        ),
        kie,
        options=opts,
    )
    assert video.status == "succeeded", video.error
    assert video.parent_run_ids == [image.run_id]
    manifest = json.loads((Path(str(video.run_dir)) / "run.json").read_text())
    assert manifest["parent_run_ids"] == [image.run_id]
    assert manifest["task_mode"] == "image_to_video"
    runs = await query_runs(opts.artifacts.resolved_root())
    assert {r.run_id for r in runs} == {image.run_id, video.run_id}


async def test_enhancer_hook_sets_final_prompt(kie: KieSession, emulator: KieEmulator, opts: PipelineOptions) -> None:
    seen: list[PromptContext] = []

    async def enhance(context: PromptContext) -> str:
        seen.append(context)
        return f"{context.raw_prompt}, golden hour, 35mm"

    enhanced_opts = opts.model_copy(update={"enhance": enhance})
    result = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt="a fox"), kie, options=enhanced_opts)
    assert result.succeeded and seen and seen[0].raw_prompt == "a fox"
    task = emulator.task(str(result.task_id))
    assert task is not None and "golden hour" in task.param_json()
    manifest = json.loads((Path(str(result.run_dir)) / "run.json").read_text())
    assert manifest["prompts"]["raw"] == "a fox" and manifest["prompts"]["final_used"].endswith("35mm")


async def test_task_failure_is_recorded_not_raised(
    kie: KieSession, emulator: KieEmulator, opts: PipelineOptions
) -> None:
    emulator.fail_next(1, code="422", msg="unsafe content")
    result = await run_pipeline(nb2("x"), kie, options=opts)
    assert result.status == "failed" and "unsafe content" in (result.error or "")
    manifest = json.loads((Path(str(result.run_dir)) / "run.json").read_text())
    assert manifest["status"] == "failed"


async def test_uncertain_submission_is_reported(kie: KieSession, emulator: KieEmulator, opts: PipelineOptions) -> None:
    emulator.faults.add("createTask", "reset_after", count=1)
    result = await run_pipeline(nb2("x"), kie, options=opts)
    assert result.status == "submit_uncertain" and not result.spent_nothing
    assert emulator.stats.requests.get("createTask", 0) == 1


async def test_cancel_mid_download_leaves_no_partial_files(
    emulator_config: EmulatorConfig, opts: PipelineOptions
) -> None:
    emulator_config.output_bytes = 300_000
    async with KieEmulator(emulator_config) as emulator, KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        emulator.faults.add("files", "slow_body", count=None, chunk_size=2048, chunk_delay=0.01)
        job = asyncio.create_task(run_pipeline(nb2("x"), kie, options=opts))
        root = opts.artifacts.resolved_root()
        for _ in range(400):
            await asyncio.sleep(0.01)
            if any(p.name.endswith(".part") for p in root.rglob("*")):
                break
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await asyncio.sleep(0.05)
    leftovers = [p for p in root.rglob("*") if p.is_file() and p.name not in ("index.lock",)]
    assert leftovers == []


async def test_media_input_roles_reach_the_payload(
    kie: KieSession, emulator: KieEmulator, opts: PipelineOptions, image_file: Path
) -> None:
    request = RawUserRequest(
        model_key="seedance-2.0",
        prompt="the scene comes alive",
        images=[MediaInput(source=image_file, role="first_frame")],
        options={"duration": 5},
    )
    result = await run_pipeline(request, kie, options=opts)
    assert result.status == "succeeded", result.error
    task = emulator.task(str(result.task_id))
    assert task is not None
    sent = json.loads(json.loads(task.param_json())["input"])
    assert sent["first_frame_url"].startswith(emulator.upload_base_url) and sent["duration"] == 5


async def test_cancel_during_upload_cancels_the_upload(
    kie: KieSession, emulator: KieEmulator, opts: PipelineOptions, image_file: Path
) -> None:
    emulator.faults.add("uploads", "latency", count=None, delay=5.0)
    request = RawUserRequest(model_key="nano-banana-pro", prompt="edit", images=[image_file])
    job = asyncio.create_task(run_pipeline(request, kie, options=opts))
    for _ in range(300):
        await asyncio.sleep(0.01)
        if kie._upload_cache:
            break
    assert kie._upload_cache, "the upload never started"
    (upload,) = kie._upload_cache.values()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await asyncio.wait({upload}, timeout=2)  # a cancelled upload unwinds through its own awaits
    assert upload.cancelled() and not kie._upload_cache
    assert emulator.stats.requests.get("createTask", 0) == 0
