"""End to end against the local emulator: generate, download, bundle, query, as the pipeline will."""

from __future__ import annotations

import time
from pathlib import Path

from kie_async.artifacts import (
    ArtifactKind,
    ArtifactSettings,
    ArtifactSource,
    PromptRecord,
    ProviderTrace,
    RunArtifactCreateRequest,
    RunStatus,
    create_run_artifact,
    get_latest_assets,
    query_runs,
    read_index,
)
from kie_async.artifacts.derivatives import ffmpeg_binary
from kie_async.core.settings import PollSettings
from kie_async.emulator import KieEmulator
from kie_async.session import KieSession


async def _generate(kie: KieSession, model: str, payload: dict[str, object], dest: Path) -> tuple[Path, ProviderTrace]:
    started = time.perf_counter()
    created = await kie.create_task(model=model, input=payload)
    record = await kie.wait_for_task(created.task_id, timeout=30)
    result = await kie.download(record.output_urls[0], dest)
    trace = ProviderTrace.from_task_record(record, wall_seconds=time.perf_counter() - started, credits_estimated=8)
    return Path(result.destination_path), trace


async def test_emulated_image_then_video_chain(emulator: KieEmulator, tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    settings = ArtifactSettings(root=root, fsync=False)
    fast_poll = PollSettings(schedule=((float("inf"), 0.05),))
    async with KieSession(emulator.settings(poll=fast_poll)) as kie:
        image_path, image_trace = await _generate(
            kie, "nano-banana-2", {"prompt": "a lighthouse", "output_format": "png"}, tmp_path / "dl" / "img.png"
        )
        image_run = await create_run_artifact(
            RunArtifactCreateRequest(
                status=RunStatus.SUCCEEDED,
                model_key="nano-banana-2",
                provider_model="nano-banana-2",
                task_mode="text_to_image",
                prompts=PromptRecord(raw="a lighthouse", final_used="a lighthouse"),
                outputs=[ArtifactSource(role="output", source_path=image_path)],
                provider_trace=image_trace,
            ),
            settings,
            secrets=[emulator.settings().api_key or ""],
        )
        first_frame = image_run.run_dir / "outputs" / "output_0.png"
        uploaded = await kie.upload_file(first_frame)
        video_path, video_trace = await _generate(
            kie,
            "kling-3.0/video",
            {
                "prompt": "slow push in",
                "image_urls": [uploaded.download_url],
                "sound": False,
                "mode": "std",
                "duration": "5",
            },
            tmp_path / "dl" / "clip.mp4",
        )
        video_run = await create_run_artifact(
            RunArtifactCreateRequest(
                status=RunStatus.SUCCEEDED,
                model_key="kling-3.0",
                provider_model="kling-3.0/video",
                task_mode="image_to_video",
                prompts=PromptRecord(raw="slow push in", final_used="slow push in"),
                inputs=[ArtifactSource(role="first_frame", source_path=first_frame, url=uploaded.download_url)],
                outputs=[ArtifactSource(role="output", source_path=video_path)],
                provider_trace=video_trace,
                parent_run_ids=[image_run.run_id],
            ),
            settings,
        )

    image_out = image_run.manifest.outputs[0]
    assert image_out.kind is ArtifactKind.IMAGE and image_out.media is not None and image_out.media.width
    assert {d.name for d in image_out.derivatives} == {"web", "thumb"}
    assert image_run.manifest.provider_trace is not None
    assert image_run.manifest.provider_trace.request_input == {"prompt": "a lighthouse", "output_format": "png"}

    video_out = video_run.manifest.outputs[0]
    assert video_out.kind is ArtifactKind.VIDEO and video_out.media is not None
    assert (video_out.media.width, video_out.media.height) == (160, 90) and video_out.media.duration_seconds
    if ffmpeg_binary() is not None:
        poster = video_out.derivative("poster")
        assert poster is not None and poster.source == "video_frame"
    assert video_run.manifest.inputs[0].sha256 == image_out.sha256
    assert video_run.manifest.inputs[0].url == uploaded.download_url

    index = await read_index(root)
    assert [e.run_id for e in index.entries] == [image_run.run_id, video_run.run_id] and index.skipped == []
    children = await query_runs(root, parent_run_id=image_run.run_id)
    assert [c.run_id for c in children] == [video_run.run_id]
    (latest,) = await get_latest_assets(root, kind="image")
    assert latest.thumb is not None and latest.thumb.is_file()
    key = emulator.settings().api_key
    assert key is not None
    assert key.get_secret_value() not in image_run.manifest_path.read_text()
