"""Run artifact bundles: manifest round trip, storage, lineage, secrets, atomicity."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pyvips
from pydantic import SecretStr

from kie_async._version import __version__
from kie_async.artifacts import (
    ArtifactDerivativeSettings,
    ArtifactKind,
    ArtifactSettings,
    ArtifactSource,
    KieArtifactError,
    PromptRecord,
    ProviderTrace,
    RunArtifactCreateRequest,
    RunManifest,
    RunStatus,
    StoredAs,
    create_run_artifact,
    load_run,
    query_runs,
    read_index,
    regenerate_run_derivatives,
)
from kie_async.artifacts.media import sha256_file
from kie_async.wire.api_models import TaskRecord, TaskState


def _image(path: Path, width: int = 640, height: int = 360) -> Path:
    xyz = pyvips.Image.xyz(width, height)
    img = (xyz[0] * (255.0 / width)).bandjoin([xyz[1] * (255.0 / height), xyz[0] * 0 + 90]).cast("uchar")
    img.write_to_file(str(path))
    return path


def _settings(root: Path, **kw: object) -> ArtifactSettings:
    return ArtifactSettings(root=root, fsync=False, **kw)


def _request(tmp_path: Path, **overrides: object) -> RunArtifactCreateRequest:
    out = _image(tmp_path / "downloaded.png")
    ref = _image(tmp_path / "reference.jpg", 300, 200)
    base: dict[str, object] = {
        "status": "succeeded",
        "model_key": "nano-banana-2",
        "provider_model": "google/nano-banana-2",
        "task_mode": "image_edit",
        "prompts": PromptRecord(raw="a cat", enhanced="a fluffy cat, soft", final_used="a fluffy cat, soft"),
        "inputs": [
            ArtifactSource(role="reference", source_path=ref, url="https://tempfile.example/ref.jpg"),
            ArtifactSource(role="style", url="https://cdn.example/style.webp"),
        ],
        "outputs": [ArtifactSource(role="output", source_path=out, url="https://tempfile.example/out.png")],
        "provider_trace": ProviderTrace(
            task_id="task_123",
            cost_time=12,
            wall_seconds=14.5,
            credits_estimated=8,
            credits_consumed=8,
            submitted_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            request_input={"prompt": "a fluffy cat", "image_urls": ["https://tempfile.example/ref.jpg"]},
        ),
        "parent_run_ids": ["20260101-000000-000_seed_aaaaaa"],
        "tags": ["demo"],
    }
    base.update(overrides)
    return RunArtifactCreateRequest.model_validate(base)


async def test_manifest_round_trip(tmp_path: Path) -> None:
    request = _request(tmp_path)
    art = await create_run_artifact(request, _settings(tmp_path / "outputs"))

    on_disk = RunManifest.model_validate_json(art.manifest_path.read_bytes())
    assert on_disk == art.manifest
    assert RunManifest.model_validate_json(on_disk.model_dump_json()) == on_disk
    loaded = await load_run(tmp_path / "outputs", art.run_id[:15])  # unique prefix works
    assert loaded.manifest == art.manifest

    m = art.manifest
    assert m.status is RunStatus.SUCCEEDED
    assert (m.model_key, m.provider_model, m.task_mode) == ("nano-banana-2", "google/nano-banana-2", "image_edit")
    assert m.prompts.raw == "a cat" and m.prompts.final_used == "a fluffy cat, soft"
    assert m.parent_run_ids == ["20260101-000000-000_seed_aaaaaa"]
    assert m.sdk_version == __version__
    assert m.provider_trace is not None and m.provider_trace.task_id == "task_123"
    assert m.provider_trace.credits_consumed == 8

    out = m.outputs[0]
    assert out.role == "output" and out.kind is ArtifactKind.IMAGE
    assert out.media is not None and (out.media.width, out.media.height) == (640, 360)
    assert out.media.format == "png"
    stored = art.run_dir / (out.path or "")
    assert (out.sha256, out.bytes) == sha256_file(stored)
    assert out.original_name == "downloaded.png"
    assert {d.name for d in out.derivatives} == {"web", "thumb"}

    ref, style = m.inputs
    assert ref.kind is ArtifactKind.IMAGE and ref.stored_as is StoredAs.COPY
    assert ref.media is not None and (ref.media.width, ref.media.height) == (300, 200)
    assert style.stored_as is StoredAs.REFERENCE and style.path is None and style.kind is ArtifactKind.IMAGE


async def test_outputs_are_hard_linked_and_inputs_copied(tmp_path: Path) -> None:
    request = _request(tmp_path)
    art = await create_run_artifact(request, _settings(tmp_path / "outputs"))
    out = art.manifest.outputs[0]
    assert out.stored_as is StoredAs.HARDLINK
    assert os.stat(art.run_dir / (out.path or "")).st_ino == os.stat(tmp_path / "downloaded.png").st_ino
    ref = art.manifest.inputs[0]
    assert os.stat(art.run_dir / (ref.path or "")).st_ino != os.stat(tmp_path / "reference.jpg").st_ino

    copy_all = _settings(tmp_path / "copies", output_link_mode="copy")
    art2 = await create_run_artifact(_request(tmp_path), copy_all)
    assert art2.manifest.outputs[0].stored_as is StoredAs.COPY


async def test_secrets_never_reach_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIE_API_KEY", "kie-env-key-0123456789")
    trace = ProviderTrace(
        task_id="t",
        request_input={
            "prompt": "ok",
            "api_key": "plain-secret-in-input",
            "headers": {"Authorization": "Bearer abcdefghijklmnop"},
            "note": "leaked kie-env-key-0123456789 and explicit-secret-xyz",
        },
    )
    request = _request(
        tmp_path,
        provider_trace=trace,
        outputs=[
            ArtifactSource(
                role="output",
                source_path=_image(tmp_path / "o.png"),
                url="https://user:pw@files.example/o.png?X-Amz-Signature=deadbeef&token=tok123&w=1",
            )
        ],
    )
    root = tmp_path / "outputs"
    art = await create_run_artifact(request, _settings(root), secrets=[SecretStr("explicit-secret-xyz")])
    blob = art.manifest_path.read_text() + (root / "index.jsonl").read_text()
    for secret in (
        "plain-secret-in-input",
        "abcdefghijklmnop",
        "kie-env-key-0123456789",
        "explicit-secret-xyz",
        "deadbeef",
        "tok123",
        "user:pw",
    ):
        assert secret not in blob
    url = art.manifest.outputs[0].url or ""
    assert url.startswith("https://files.example/o.png?") and "w=1" in url
    assert art.manifest.provider_trace is not None
    assert art.manifest.provider_trace.request_input is not None
    assert art.manifest.provider_trace.request_input["prompt"] == "ok"


async def test_missing_output_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    request = _request(tmp_path, outputs=[ArtifactSource(role="output", source_path=tmp_path / "nope.png")])
    with pytest.raises(KieArtifactError, match="not found"):
        await create_run_artifact(request, _settings(root))
    assert list((root / "runs").iterdir()) == []
    assert list((root / ".tmp").iterdir()) == []
    assert not (root / "index.jsonl").exists()


async def test_run_id_collision_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    request = _request(tmp_path, run_id="fixed-run-1")
    first = await create_run_artifact(request, _settings(root))
    assert first.run_dir.name == "fixed-run-1"
    with pytest.raises(KieArtifactError, match="already exists"):
        await create_run_artifact(_request(tmp_path, run_id="fixed-run-1"), _settings(root))
    assert (root / "index.jsonl").read_text().count("\n") == 1


async def test_failed_run_and_lineage(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    parent = await create_run_artifact(_request(tmp_path), _settings(root))
    child_req = _request(
        tmp_path,
        status="failed",
        task_mode="image_to_video",
        model_key="kling-3.0",
        outputs=[],
        inputs=[ArtifactSource(role="first_frame", source_path=parent.run_dir / "outputs" / "output_0.png")],
        parent_run_ids=[parent.run_id],
        provider_trace=ProviderTrace(task_id="t2", fail_code="500", fail_msg="upstream error"),
        error="task failed",
    )
    child = await create_run_artifact(child_req, _settings(root))
    assert child.manifest.status is RunStatus.FAILED
    assert child.manifest.parent_run_ids == [parent.run_id]
    assert child.manifest.outputs == []
    assert child.manifest.inputs[0].sha256 == parent.manifest.outputs[0].sha256


async def test_video_output_media_info_and_cover_poster(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(_tiny_mp4(width=1280, height=720, duration_s=5.0))
    cover = _image(tmp_path / "cover.jpg", 1280, 720)
    request = _request(
        tmp_path,
        model_key="kling-3.0",
        task_mode="text_to_video",
        inputs=[],
        outputs=[ArtifactSource(role="output", source_path=video, poster_path=cover)],
    )
    settings = _settings(tmp_path / "outputs", derivatives=ArtifactDerivativeSettings(format="jpeg"))
    art = await create_run_artifact(request, settings)
    out = art.manifest.outputs[0]
    assert out.kind is ArtifactKind.VIDEO
    assert out.media is not None
    assert (out.media.width, out.media.height, out.media.duration_seconds) == (1280, 720, 5.0)
    poster = out.derivative("poster")
    assert poster is not None and poster.source == "provider_cover" and poster.format == "jpeg"
    assert (poster.width, poster.height) == (1280, 720)
    assert pyvips.Image.new_from_file(str(art.run_dir / poster.path)).get("vips-loader") == "jpegload"
    assert out.cover_path == "outputs/output_0.cover.jpg" and (art.run_dir / out.cover_path).is_file()


async def test_regenerate_derivatives_swaps_manifest_and_logs_update(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    first = await create_run_artifact(_request(tmp_path), _settings(root))
    other = await create_run_artifact(_request(tmp_path, model_key="other"), _settings(root))
    assert first.manifest.outputs[0].derivative("web") is not None
    settings = ArtifactDerivativeSettings(format="jpeg", web_long_edge=320, thumb_long_edge=64)
    updated = await regenerate_run_derivatives(root, first.run_id, settings, fsync=False)

    out = updated.manifest.outputs[0]
    web, thumb = out.derivative("web"), out.derivative("thumb")
    assert web is not None and thumb is not None
    assert (web.format, web.width, web.height, thumb.width) == ("jpeg", 320, 180, 64)
    assert (first.run_dir / web.path).is_file() and not (first.run_dir / "derivatives").exists()
    on_disk = RunManifest.model_validate_json(first.manifest_path.read_bytes())
    assert on_disk == updated.manifest and on_disk.updated_at is not None
    assert on_disk.recorded_at == first.manifest.recorded_at  # ordering of runs is unchanged

    index = await read_index(root)
    assert [(e.run_id, e.event) for e in index.entries] == [
        (first.run_id, "run_created"),
        (other.run_id, "run_created"),
        (first.run_id, "run_updated"),
    ]
    (latest,) = [e for e in index.latest_per_run() if e.run_id == first.run_id]
    assert latest.assets[0].web is not None and latest.assets[0].web.endswith(".web.jpg")
    runs = await query_runs(root, limit=None)
    assert [r.run_id for r in runs] == [other.run_id, first.run_id]


def _box(kind: bytes, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + kind + body


def _tiny_mp4(width: int, height: int, duration_s: float) -> bytes:
    """A structurally valid MP4 header (no media data): enough for the box parser, no encoder needed."""
    timescale = 1000
    mvhd = _box(
        b"mvhd",
        bytes(4) + bytes(8) + timescale.to_bytes(4, "big") + int(duration_s * timescale).to_bytes(4, "big") + bytes(80),
    )
    tkhd_body = (
        bytes(4)
        + bytes(20)
        + bytes(8)
        + bytes(8)
        + bytes(36)
        + (width << 16).to_bytes(4, "big")
        + (height << 16).to_bytes(4, "big")
    )
    trak = _box(b"trak", _box(b"tkhd", tkhd_body))
    ftyp = _box(b"ftyp", b"isom" + bytes(4) + b"isomiso2mp41")
    return ftyp + _box(b"moov", mvhd + trak) + _box(b"mdat", b"")


def test_provider_trace_and_status_from_task_record() -> None:
    record = TaskRecord.model_validate(
        {
            "taskId": "abc",
            "model": "nano-banana-2",
            "state": "fail",
            "param": json.dumps({"model": "nano-banana-2", "input": json.dumps({"prompt": "hi"})}),
            "failCode": "422",
            "failMsg": "bad",
            "costTime": 7,
            "createTime": 1_760_000_000_000,
            "completeTime": 1_760_000_007_000,
        }
    )
    trace = ProviderTrace.from_task_record(record, wall_seconds=7.5, credits_estimated=8)
    assert (trace.task_id, trace.provider_state, trace.fail_code, trace.cost_time) == ("abc", "fail", "422", 7)
    assert trace.request_input == {"prompt": "hi"} and trace.wall_seconds == 7.5
    assert trace.provider_completed_at is not None and trace.provider_created_at is not None
    assert (trace.provider_completed_at - trace.provider_created_at).total_seconds() == 7
    assert RunStatus.from_task_state(record.state) is RunStatus.FAILED
    assert RunStatus.from_task_state(TaskState.SUCCESS) is RunStatus.SUCCEEDED
    assert RunStatus.from_task_state(TaskState.GENERATING) is RunStatus.CANCELLED


def test_manifest_json_has_stable_shape(tmp_path: Path) -> None:
    m = RunManifest(
        run_id="r1",
        status=RunStatus.SUCCEEDED,
        created_at=datetime(2026, 1, 1),
        recorded_at=datetime(2026, 1, 1, 0, 0, 1),
        model_key="m",
    )
    data = json.loads(m.model_dump_json())
    assert data["created_at"].endswith("Z")  # naive datetimes are taken as UTC
    assert data["sdk_version"] == __version__
    with pytest.raises(ValueError, match="source_path, url"):
        ArtifactSource(role="output")


async def test_caller_digest_is_used_only_for_a_hard_link_of_the_same_size(tmp_path: Path) -> None:
    """The pipeline hands on the sha256 it took while downloading, so the run folder does not read the file
    again; a copy, or a file whose size no longer matches, is hashed from disk whatever the caller said."""
    out = _image(tmp_path / "downloaded.png")
    real, size = sha256_file(out)
    claimed = "0" * 64  # deliberately wrong: shows which digest the manifest took

    def with_output(**kw: object) -> RunArtifactCreateRequest:
        return _request(tmp_path, outputs=[ArtifactSource(role="output", source_path=out, **kw)])

    linked = await create_run_artifact(with_output(sha256=claimed, bytes=size), _settings(tmp_path / "a"))
    assert linked.manifest.outputs[0].stored_as is StoredAs.HARDLINK
    assert linked.manifest.outputs[0].sha256 == claimed  # trusted: same inode, same size

    copied = await create_run_artifact(
        with_output(sha256=claimed, bytes=size), _settings(tmp_path / "b", output_link_mode="copy")
    )
    assert copied.manifest.outputs[0].sha256 == real

    resized = await create_run_artifact(with_output(sha256=claimed, bytes=size + 1), _settings(tmp_path / "c"))
    assert resized.manifest.outputs[0].sha256 == real

    plain = await create_run_artifact(with_output(), _settings(tmp_path / "d"))
    assert plain.manifest.outputs[0].sha256 == real

    with pytest.raises(ValueError, match="sha256"):
        ArtifactSource(role="output", source_path=out, sha256="not-hex")
