"""The append-only index: cross-process appends, torn lines, rebuild, queries and the CLI."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pyvips

from kie_async.artifacts import (
    ArtifactDerivativeSettings,
    ArtifactKind,
    ArtifactSettings,
    ArtifactSource,
    IndexEntry,
    PromptRecord,
    ProviderTrace,
    RunArtifactCreateRequest,
    RunStatus,
    create_run_artifact,
    get_latest_assets,
    get_latest_successful_run,
    list_recent_runs,
    query_runs,
    read_index,
    rebuild_artifact_index,
)
from kie_async.artifacts.index import append_index_entry_sync, clear_index_cache, read_index_sync
from kie_async.interfaces.cli import main as cli_main

WORKERS = 4
LINES_PER_WORKER = 150


def _entry(run_id: str, *, prompt: str = "p") -> IndexEntry:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return IndexEntry(
        run_id=run_id,
        run_dir=f"runs/{run_id}",
        status=RunStatus.SUCCEEDED,
        created_at=now,
        recorded_at=now,
        model_key="m",
        prompt=prompt,
    )


def _append_many(root: str, worker: int, count: int) -> None:
    # Long prompts make each line several KB, so an unlocked, non-atomic writer would interleave bytes.
    for n in range(count):
        append_index_entry_sync(root, _entry(f"w{worker}-{n:04d}", prompt="x" * (2000 + worker)), fsync=False)


def test_concurrent_appends_from_processes_lose_no_line(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, LINES_PER_WORKER)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    result = read_index_sync(tmp_path)
    assert result.skipped == []
    ids = [e.run_id for e in result.entries]
    assert len(ids) == WORKERS * LINES_PER_WORKER
    assert set(ids) == {f"w{w}-{n:04d}" for w in range(WORKERS) for n in range(LINES_PER_WORKER)}
    for w in range(WORKERS):  # each writer's lines keep their own order
        mine = [i for i in ids if i.startswith(f"w{w}-")]
        assert mine == sorted(mine)


async def test_torn_last_line_is_skipped_reported_and_sealed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(3):
        append_index_entry_sync(tmp_path, _entry(f"r{n}"), fsync=False)
    index = tmp_path / "index.jsonl"
    whole = _entry("torn").to_line()
    with index.open("ab") as fh:
        fh.write(whole[: len(whole) // 2])  # a writer died mid-line

    result = await read_index(tmp_path)
    assert [e.run_id for e in result.entries] == ["r0", "r1", "r2"]
    assert len(result.skipped) == 1 and result.skipped[0].torn_tail and result.skipped[0].line_number == 4
    assert "torn last line" in caplog.text

    append_index_entry_sync(tmp_path, _entry("after"), fsync=False)  # must not glue onto the fragment
    result = await read_index(tmp_path)
    assert [e.run_id for e in result.entries] == ["r0", "r1", "r2", "after"]
    assert len(result.skipped) == 1 and not result.skipped[0].torn_tail  # still reported, now a sealed bad line


async def test_cached_reads_follow_appends_and_rebuilds(tmp_path: Path) -> None:
    for n in range(3):
        append_index_entry_sync(tmp_path, _entry(f"a{n}"), fsync=False)
    first = await read_index(tmp_path)
    assert [e.run_id for e in first.entries] == ["a0", "a1", "a2"]
    append_index_entry_sync(tmp_path, _entry("a3"), fsync=False)
    with (tmp_path / "index.jsonl").open("ab") as fh:
        fh.write(b'{"broken": tr')
    cached = await read_index(tmp_path)
    fresh = await read_index(tmp_path, use_cache=False)
    assert cached == fresh
    assert [e.run_id for e in cached.entries] == ["a0", "a1", "a2", "a3"] and cached.skipped[0].torn_tail

    replacement = tmp_path / "new.jsonl"  # what a rebuild does: a new file swapped in
    replacement.write_bytes(_entry("b0").to_line())
    os.replace(replacement, tmp_path / "index.jsonl")
    assert [e.run_id for e in (await read_index(tmp_path)).entries] == ["b0"]
    clear_index_cache()
    assert [e.run_id for e in (await read_index(tmp_path)).entries] == ["b0"]

    # Same inode, longer content, different bytes (an in-place rewrite or a reused inode): start over.
    (tmp_path / "index.jsonl").write_bytes(_entry("c0").to_line() + _entry("c1").to_line())
    assert [e.run_id for e in (await read_index(tmp_path)).entries] == ["c0", "c1"]


def _image(path: Path, width: int, height: int) -> Path:
    xyz = pyvips.Image.xyz(width, height)
    (xyz[0] * 0.3).bandjoin([xyz[1] * 0.5, xyz[0] * 0 + 40]).cast("uchar").write_to_file(str(path))
    return path


async def _populate(root: Path, tmp_path: Path) -> list[str]:
    settings = ArtifactSettings(root=root, fsync=False, derivatives=ArtifactDerivativeSettings(format="jpeg"))
    specs = [
        ("nano-banana-2", "text_to_image", "succeeded", "image"),
        ("nano-banana-2", "image_edit", "failed", "image"),
        ("kling-3.0", "image_to_video", "succeeded", "video"),
        ("seedream-4.5", "text_to_image", "succeeded", "image"),
        ("nano-banana-2", "text_to_image", "succeeded", "image"),
    ]
    ids: list[str] = []
    for n, (model, mode, status, kind) in enumerate(specs):
        if kind == "image":
            src = _image(tmp_path / f"out{n}.png", 300 + n, 200)
        else:
            src = tmp_path / f"out{n}.mp4"
            src.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(12))
        outputs = [] if status == "failed" else [ArtifactSource(role="output", source_path=src)]
        art = await create_run_artifact(
            RunArtifactCreateRequest(
                status=RunStatus(status),
                model_key=model,
                provider_model=f"prov/{model}",
                task_mode=mode,
                prompts=PromptRecord(raw=f"prompt {n}", final_used=f"prompt {n}"),
                outputs=outputs,
                provider_trace=ProviderTrace(task_id=f"task{n}", credits_consumed=n),
                parent_run_ids=ids[-1:] if kind == "video" else [],
            ),
            settings,
        )
        ids.append(art.run_id)
    return ids


async def test_rebuild_equals_original_index(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    await _populate(root, tmp_path)
    index = root / "index.jsonl"
    original = index.read_bytes()
    assert original.count(b"\n") == 5

    index.unlink()
    report = await rebuild_artifact_index(root)
    assert report.runs_indexed == 5 and report.bad_manifests == []
    assert index.read_bytes() == original

    index.write_bytes(original[: len(original) - 30])  # torn tail, and one run missing entirely
    report = await rebuild_artifact_index(root)
    assert report.previous_skipped == 1
    assert index.read_bytes() == original


async def test_concurrent_creates_are_all_indexed_and_rebuild_matches(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    settings = ArtifactSettings(root=root, fsync=False, derivatives=ArtifactDerivativeSettings(format="jpeg"))
    sources = [_image(tmp_path / f"c{n}.png", 64 + n, 48) for n in range(8)]
    arts = await asyncio.gather(
        *(
            create_run_artifact(
                RunArtifactCreateRequest(
                    status=RunStatus.SUCCEEDED,
                    model_key="nano-banana-2",
                    outputs=[ArtifactSource(role="output", source_path=src)],
                ),
                settings,
            )
            for src in sources
        )
    )
    original = (root / "index.jsonl").read_bytes().splitlines()
    assert len(original) == 8 and {a.run_id for a in arts} == {e.run_id for e in read_index_sync(root).entries}
    await rebuild_artifact_index(root)
    rebuilt = (root / "index.jsonl").read_bytes().splitlines()
    assert sorted(rebuilt) == sorted(original)  # same lines; order is recorded_at order


async def test_queries_filter_and_order(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    ids = await _populate(root, tmp_path)

    newest_first = await query_runs(root, status=None, limit=None)
    assert [e.run_id for e in newest_first] == ids[::-1]
    banana = await query_runs(root, model="nano-banana-2")
    assert [e.run_id for e in banana] == [ids[4], ids[1], ids[0]]
    ok_banana = await query_runs(root, model="nano-banana-2", status=RunStatus.SUCCEEDED)
    assert [e.run_id for e in ok_banana] == [ids[4], ids[0]]
    assert [e.run_id for e in await query_runs(root, status=["failed", "cancelled"])] == [ids[1]]
    assert [e.run_id for e in await query_runs(root, model="prov/kling-3.0")] == [ids[2]]
    assert [e.run_id for e in await query_runs(root, status="failed")] == [ids[1]]
    t2i = await query_runs(root, task_mode="text_to_image", limit=2)
    assert [e.run_id for e in await list_recent_runs(root, limit=2)] == [ids[4], ids[3]]
    latest = await get_latest_successful_run(root, model="kling-3.0")
    assert latest is not None and latest.run_id == ids[2] and latest.manifest.task_mode == "image_to_video"
    assert await get_latest_successful_run(root, model="no-such-model") is None
    assert [e.run_id for e in t2i] == [ids[4], ids[3]]
    assert await query_runs(root, since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(await query_runs(root, since="1h", status=None)) == 5
    children = await query_runs(root, parent_run_id=ids[1], status=None)
    assert [e.run_id for e in children] == [ids[2]]

    (latest_image,) = await get_latest_assets(root, kind="image")
    assert latest_image.run_id == ids[4] and latest_image.kind is ArtifactKind.IMAGE
    assert latest_image.original is not None and latest_image.original.is_file()
    assert latest_image.web is not None and latest_image.web.is_file()
    assert latest_image.thumb is not None and latest_image.thumb.is_file()
    (latest_video,) = await get_latest_assets(root, kind=ArtifactKind.VIDEO)
    assert latest_video.run_id == ids[2]
    assert len(await get_latest_assets(root, model="nano-banana-2", limit=5)) == 2


async def test_rebuild_reports_and_cleans_stale_staging(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    await _populate(root, tmp_path)
    old = root / ".tmp" / "crashed.123.abcd0123"
    (old / "outputs").mkdir(parents=True)
    os.utime(old, (0, 0))
    fresh = root / ".tmp" / "in-progress.456.ef01ef01"
    fresh.mkdir()
    someone_elses = root / ".tmp" / "downloads"  # the pipeline stages downloads here; never touched
    someone_elses.mkdir()
    os.utime(someone_elses, (0, 0))
    report = await rebuild_artifact_index(root)
    assert set(report.stale_staging_dirs) == {old.name, fresh.name} and report.cleaned_staging_dirs == []
    report = await rebuild_artifact_index(root, clean_staging_older_than=3600)
    assert report.cleaned_staging_dirs == [old.name] and report.stale_staging_dirs == [fresh.name]
    assert not old.exists() and fresh.exists() and someone_elses.exists()


async def test_queries_without_index_scan_run_folders(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    ids = await _populate(root, tmp_path)
    (root / "index.jsonl").unlink()
    assert [e.run_id for e in await query_runs(root, status=None, limit=None)] == ids[::-1]


def test_cli_list_show_latest_rebuild(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "outputs"
    ids = asyncio.run(_populate(root, tmp_path))

    assert cli_main(["artifacts", "list", "--root", str(root), "--json", "--model", "nano-banana-2"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in listed] == [ids[4], ids[1], ids[0]]

    assert cli_main(["artifacts", "show", ids[2][:22], "--root", str(root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["manifest"]["run_id"] == ids[2] and shown["manifest"]["parent_run_ids"] == [ids[1]]

    assert cli_main(["artifacts", "show", ids[2], "--root", str(root)]) == 0
    assert "kling-3.0" in capsys.readouterr().out

    assert cli_main(["artifacts", "latest", "--root", str(root), "--kind", "image", "--json"]) == 0
    (asset,) = json.loads(capsys.readouterr().out)
    assert asset["run_id"] == ids[4] and os.path.isfile(asset["thumb"])

    (root / "index.jsonl").unlink()
    assert cli_main(["artifacts", "rebuild", "--root", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs_indexed"] == 5

    assert cli_main(["artifacts", "show", "nope", "--root", str(root)]) == 2  # KieArtifactError → exit 2
    assert cli_main(["artifacts", "rebuild", "--root", str(tmp_path / "typo")]) == 2
    assert not (tmp_path / "typo").exists()

    assert cli_main(["artifacts", "list", "--root", str(root), "--status", "failed"]) == 0
    assert ids[1] in capsys.readouterr().out
