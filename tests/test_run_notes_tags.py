"""Run notes, tags (at run time and later), prompt.txt and the caller's source context, against the emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kie_async.artifacts import (
    ArtifactSettings,
    KieArtifactError,
    load_run,
    query_runs,
    read_index,
    rebuild_artifact_index,
    update_run_notes,
    update_run_tags,
)
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as session:
        yield session


async def run_one(kie: KieSession, root: Path, prompt: str, **opts: object) -> str:
    options = PipelineOptions(artifacts=ArtifactSettings(root=root), **opts)  # type: ignore[arg-type]
    result = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt=prompt), kie, options=options)
    assert result.status == "succeeded", result.error
    assert result.run_id is not None
    return result.run_id


async def test_tags_context_and_prompt_file_at_run_time(kie: KieSession, tmp_path: Path) -> None:
    run_id = await run_one(
        kie,
        tmp_path,
        "a red fox",
        tags=["client-a", "draft", "draft"],
        source_context={"request_id": "req-42", "user": "ana"},
    )
    run = await load_run(tmp_path, run_id)
    assert run.manifest.tags == ["client-a", "draft"]
    assert run.manifest.source_context == {"request_id": "req-42", "user": "ana"}
    assert (run.run_dir / "prompt.txt").read_text(encoding="utf-8") == "a red fox\n"
    await run_one(kie, tmp_path, "a snowy owl", tags=["client-b"])
    assert [e.run_id for e in await query_runs(tmp_path, tag="client-a")] == [run_id]
    assert await query_runs(tmp_path, tag=["client-a", "nope"]) == []


async def test_notes_and_later_tags_update_manifest_and_index(kie: KieSession, tmp_path: Path) -> None:
    run_id = await run_one(kie, tmp_path, "a koi pond")
    other = await run_one(kie, tmp_path, "a lantern")
    run = await update_run_notes(run_id, "# verdict\nthe koi came out blurry", root=tmp_path)
    assert (run.run_dir / "notes.md").read_text(encoding="utf-8") == "# verdict\nthe koi came out blurry\n"
    run = await update_run_notes(run_id, "client picked it anyway", root=tmp_path, append=True)
    assert (run.run_dir / "notes.md").read_text(encoding="utf-8").endswith("blurry\nclient picked it anyway\n")
    assert run.manifest.notes_updated_at is not None
    await update_run_tags(run_id, add=["keeper", "koi"], root=tmp_path)
    await update_run_tags(run_id, remove=["koi"], root=tmp_path)
    assert [e.run_id for e in await query_runs(tmp_path, tag="keeper")] == [run_id]
    assert (await query_runs(tmp_path, tag="koi")) == []
    entry = next(e for e in (await read_index(tmp_path)).latest_per_run() if e.run_id == run_id)
    assert entry.tags == ["keeper"] and entry.notes is not None and entry.notes.startswith("# verdict")
    # the manifest is the truth: a rebuilt index says the same
    await rebuild_artifact_index(tmp_path)
    rebuilt = next(e for e in (await read_index(tmp_path)).latest_per_run() if e.run_id == run_id)
    assert rebuilt.tags == ["keeper"] and rebuilt.notes == entry.notes
    assert (await load_run(tmp_path, other)).manifest.tags == []


async def test_bad_tags_and_unknown_runs_are_refused(kie: KieSession, tmp_path: Path) -> None:
    run_id = await run_one(kie, tmp_path, "a fox")
    for bad in ("", "a,b", "x" * 65, "line\nbreak"):
        with pytest.raises(KieArtifactError, match="tag"):
            await update_run_tags(run_id, add=[bad], root=tmp_path)
    with pytest.raises(KieArtifactError, match="list"):
        await update_run_tags(run_id, add="draft", root=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(KieArtifactError, match="no run"):
        await update_run_notes("nope", "x", root=tmp_path)
    with pytest.raises(ValueError):
        PipelineOptions(tags=["a,b"])
    assert (await load_run(tmp_path, run_id)).manifest.tags == []


def test_cli_tag_notes_and_list_by_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path)
    assert (
        main(
            [
                "run",
                "--offline",
                "--model",
                "nano-banana-2",
                "--prompt",
                "a fox",
                "--out",
                out,
                "--json",
                "--tag",
                "batch-7",
                "--context",
                "request_id=r1",
            ]
        )
        == 0
    )
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["artifacts", "tag", run_id, "--add", "keeper", "--root", out]) == 0
    assert main(["artifacts", "notes", run_id, "looks good", "--root", out]) == 0
    capsys.readouterr()
    assert main(["artifacts", "list", "--tag", "keeper", "--tag", "batch-7", "--root", out, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["run_id"] for e in listed] == [run_id] and listed[0]["notes"] == "looks good"
    assert main(["artifacts", "list", "--tag", "other", "--root", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    manifest = json.loads((tmp_path / "runs" / run_id / "run.json").read_text(encoding="utf-8"))
    assert manifest["source_context"] == {"request_id": "r1"}
    assert main(["artifacts", "tag", run_id, "--root", out]) == 2


async def test_run_ids_cannot_leave_the_root(kie: KieSession, tmp_path: Path) -> None:
    run_id = await run_one(kie, tmp_path / "a", "a fox")
    outside = tmp_path / "b"
    with pytest.raises(KieArtifactError, match="no run"):
        await update_run_notes(f"../../a/runs/{run_id}", "x", root=outside)
    with pytest.raises(KieArtifactError, match="no run"):
        await load_run(outside, f"../../a/runs/{run_id}")


def test_source_context_must_be_plain_json() -> None:
    from datetime import datetime

    for bad in ({"when": datetime(2026, 1, 1)}, {"x": float("nan")}, {"x": object()}):
        with pytest.raises(ValueError, match="source_context"):
            PipelineOptions(source_context=bad)
    assert PipelineOptions(source_context={"a": [1, {"b": None}]}).source_context == {"a": [1, {"b": None}]}
