"""Seed toolkit preset keys as aliases, prompt policies (off/ask/auto/preview), system_prompt_override and
unknown placeholders, against the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactSettings, load_run
from kie_async.catalogue.presets import PresetError, PromptContext, load_presets, resolve_prompt_context
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

IMG = "https://cdn.example.com/a.png"
IMG2 = "https://cdn.example.com/b.png"
SEED_KEYS = [
    "kling_3_0_i2v_first_frame_v1",
    "kling_3_0_i2v_first_last_frame_v1",
    "kling_3_0_motion_control_v1",
    "kling_3_0_t2v_v1",
    "kling_motion_v1",
    "kling_video_v1",
    "nano_banana_2_image_edit_v1",
    "nano_banana_2_text_to_image_v1",
    "nano_banana_2_v1",
    "nano_banana_pro_image_edit_v1",
    "nano_banana_pro_text_to_image_v1",
    "nano_banana_pro_v1",
]


@pytest.mark.parametrize(
    ("seed_key", "request_", "ours"),
    [
        (
            "kling_3_0_i2v_first_frame_v1",
            RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG]),
            "kling_image_to_video_v1",
        ),
        (
            "kling_video_v1",
            RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG]),
            "kling_image_to_video_v1",
        ),
        ("kling_video_v1", RawUserRequest(model_key="kling-3.0-t2v", prompt="x"), "kling_text_to_video_v1"),
        (
            "kling_video_v1",
            RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG, IMG2]),
            "kling_first_last_frames_v1",
        ),
        (
            "nano_banana_2_v1",
            RawUserRequest(model_key="nano-banana-2", prompt="x", images=[IMG]),
            "nano_banana_image_edit_v1",
        ),
        (
            "nano_banana_pro_text_to_image_v1",
            RawUserRequest(model_key="nano-banana-pro", prompt="x"),
            "nano_banana_text_to_image_v1",
        ),
    ],
)
def test_seed_keys_resolve_to_the_fitting_preset(seed_key: str, request_: RawUserRequest, ours: str) -> None:
    context = resolve_prompt_context(request_, preset_key=seed_key)
    assert context.preset_key == ours and context.requested_preset_key == seed_key
    assert context.system_prompt and not context.warnings


def test_every_seed_key_is_known() -> None:
    aliases = {a for p in load_presets().values() for a in p.aliases}
    assert set(SEED_KEYS) <= aliases


def test_override_and_unknown_placeholders() -> None:
    request = RawUserRequest(model_key="nano-banana-2", prompt="a fox")
    context = resolve_prompt_context(request, system_prompt_override="Write for {{model_label}}: {{user_prompt}}")
    assert context.system_prompt == "Write for Nano Banana 2: a fox" and context.system_prompt_source == "override"
    with pytest.raises(PresetError, match="model_lable"):
        resolve_prompt_context(request, system_prompt_override="for {{model_lable}}")
    loose = resolve_prompt_context(
        request, system_prompt_override="for {{model_lable}}", allow_unknown_placeholders=True
    )
    assert loose.system_prompt == "for {{model_lable}}" and loose.warnings


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=PollSettings(schedule=((float("inf"), 0.05),)))) as session:
        yield session


async def shout(context: PromptContext) -> str:
    return (context.raw_prompt or "").upper() + "!"


@pytest.mark.parametrize(
    ("policy", "sent", "enhanced"),
    [
        ("auto", "A FOX!", "A FOX!"),
        ("off", "a fox", None),
        ("preview", "a fox", "A FOX!"),
    ],
)
async def test_policies(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path, policy: str, sent: str, enhanced: str | None
) -> None:
    opts = PipelineOptions.model_validate(
        {"artifacts": ArtifactSettings(root=tmp_path), "enhance": shout, "prompt_policy": policy}
    )
    result = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt="a fox"), kie, options=opts)
    assert result.status == "succeeded", result.error
    assert result.task_id is not None and result.run_id is not None
    record = await kie.get_task(result.task_id)
    assert isinstance(record.request_param["input"], dict) and record.request_param["input"]["prompt"] == sent
    prompts = (await load_run(tmp_path, result.run_id)).manifest.prompts
    assert prompts.raw == "a fox" and prompts.final_used == sent and prompts.enhanced == enhanced


async def test_ask_needs_a_reviewer_and_buys_nothing_without_approval(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    base = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path), enhance=shout, prompt_policy="ask")
    request = RawUserRequest(model_key="nano-banana-2", prompt="a fox")
    unreviewed = await run_pipeline(request, kie, options=base)
    assert unreviewed.status == "blocked" and unreviewed.task_id is None

    async def refuse(context: PromptContext, enhanced: str | None) -> str | None:
        return None

    refused = await run_pipeline(request, kie, options=base.model_copy(update={"review_prompt": refuse}))
    assert refused.status == "blocked" and refused.task_id is None
    assert emulator.stats.tasks_created == 0

    async def edit(context: PromptContext, enhanced: str | None) -> str | None:
        return f"{enhanced} (edited)"

    approved = await run_pipeline(request, kie, options=base.model_copy(update={"review_prompt": edit}))
    assert approved.status == "succeeded" and approved.task_id is not None
    record = await kie.get_task(approved.task_id)
    assert isinstance(record.request_param["input"], dict)
    assert record.request_param["input"]["prompt"] == "A FOX! (edited)"


async def test_a_seed_key_and_override_through_the_pipeline(kie: KieSession, tmp_path: Path) -> None:
    seen: list[PromptContext] = []

    async def keep(context: PromptContext) -> str | None:
        seen.append(context)
        return None

    opts = PipelineOptions(
        artifacts=ArtifactSettings(root=tmp_path),
        enhance=keep,
        preset_key="nano_banana_2_text_to_image_v1",
        system_prompt_override="Be brief: {{user_prompt}}",
    )
    result = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt="a fox"), kie, options=opts)
    assert result.status == "succeeded", result.error
    assert seen[0].preset_key == "nano_banana_text_to_image_v1" and seen[0].system_prompt == "Be brief: a fox"
