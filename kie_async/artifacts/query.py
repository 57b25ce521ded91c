"""Questions asked of the artifacts root: which runs match, where are the latest assets, what is in a run.

Queries read only ``index.jsonl`` (one read, one pass, validated by pydantic-core straight from bytes), so
they stay fast at tens of thousands of runs; ``load_run`` opens a single ``run.json`` for the full detail.
When there is no index but there are run folders, the folders are scanned instead (slower, still correct).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from kie_async.artifacts.exceptions import KieArtifactError
from kie_async.artifacts.index import IndexEntry, _scan_manifests, read_index_sync
from kie_async.artifacts.layout import MANIFEST_FILENAME_GLOB, index_path, resolve_root, runs_dir
from kie_async.artifacts.manifest import (
    MANIFEST_FILENAME,
    ArtifactKind,
    RunArtifact,
    RunManifest,
    RunStatus,
    _utc,
    utc_now,
)

if TYPE_CHECKING:
    from rich.console import Console

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AssetRef(BaseModel):
    """One output of a run with absolute paths to the original and its derivatives."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    model_key: str
    recorded_at: datetime
    role: str
    kind: ArtifactKind
    original: Path | None = None
    url: str | None = None
    web: Path | None = None
    thumb: Path | None = None
    poster: Path | None = None
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None


def parse_since(value: datetime | timedelta | str | None) -> datetime | None:
    """``since`` as a datetime (UTC); accepts a datetime, a timedelta back from now, ``"24h"``/``"7d"`` or ISO."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, timedelta):
        return utc_now() - value
    match = _RELATIVE.match(value)
    if match:
        return utc_now() - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError as exc:
        raise KieArtifactError(f"cannot read since={value!r}", hint="use ISO 8601 or a span like 30m, 24h, 7d") from exc


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {value}
    return {str(v) for v in value}


def _load_entries(base: Path) -> list[IndexEntry]:
    if index_path(base).exists():
        return read_index_sync(base).latest_per_run()
    entries, _ = _scan_manifests(base)
    return entries


def query_runs_sync(
    root: str | os.PathLike[str] | None = None,
    *,
    model: str | Iterable[str] | None = None,
    status: str | RunStatus | Iterable[str | RunStatus] | None = None,
    since: datetime | timedelta | str | None = None,
    task_mode: str | Iterable[str] | None = None,
    parent_run_id: str | None = None,
    limit: int | None = 50,
    tag: str | Iterable[str] | None = None,
) -> list[IndexEntry]:
    """Blocking twin of :func:`query_runs`."""
    base = resolve_root(root)
    models = _as_set(model)
    statuses = _as_set([status] if isinstance(status, str) else status)
    modes = _as_set(task_mode)
    tags = _as_set(tag)
    after = parse_since(since)
    matched: list[IndexEntry] = []
    for entry in _load_entries(base):
        if models is not None and entry.model_key not in models and entry.provider_model not in models:
            continue
        if statuses is not None and entry.status.value not in statuses:
            continue
        if modes is not None and entry.task_mode not in modes:
            continue
        if after is not None and entry.created_at < after:
            continue
        if parent_run_id is not None and parent_run_id not in entry.parent_run_ids:
            continue
        if tags is not None and not tags.issubset(entry.tags):
            continue
        matched.append(entry)
    matched.sort(key=lambda e: (e.recorded_at, e.run_id), reverse=True)
    return matched if limit is None else matched[: max(limit, 0)]


async def query_runs(
    root: str | os.PathLike[str] | None = None,
    *,
    model: str | Iterable[str] | None = None,
    status: str | RunStatus | Iterable[str | RunStatus] | None = None,
    since: datetime | timedelta | str | None = None,
    task_mode: str | Iterable[str] | None = None,
    parent_run_id: str | None = None,
    limit: int | None = 50,
    tag: str | Iterable[str] | None = None,
) -> list[IndexEntry]:
    """Runs matching every given filter, newest first.

    ``model`` matches the model key or the provider model id; ``status`` is one status or several (default:
    any); ``since`` bounds ``created_at``; ``parent_run_id`` finds the children of a run; ``tag`` keeps runs
    carrying that tag (several: all of them), set at run time or later with ``update_run_tags``; ``limit=None``
    returns every match.
    """
    return await asyncio.to_thread(
        query_runs_sync,
        root,
        model=model,
        status=status,
        since=since,
        task_mode=task_mode,
        parent_run_id=parent_run_id,
        limit=limit,
        tag=tag,
    )


def get_latest_assets_sync(
    root: str | os.PathLike[str] | None = None,
    *,
    model: str | Iterable[str] | None = None,
    task_mode: str | Iterable[str] | None = None,
    kind: ArtifactKind | str | None = None,
    role: str | None = "output",
    limit: int = 1,
) -> list[AssetRef]:
    """Blocking twin of :func:`get_latest_assets`."""
    base = resolve_root(root).resolve()
    wanted_kind = ArtifactKind(kind) if kind is not None else None
    found: list[AssetRef] = []
    for entry in query_runs_sync(base, model=model, task_mode=task_mode, status="succeeded", limit=None):
        for asset in entry.assets:
            if wanted_kind is not None and asset.kind is not wanted_kind:
                continue
            if role is not None and asset.role != role:
                continue
            found.append(
                AssetRef(
                    run_id=entry.run_id,
                    model_key=entry.model_key,
                    recorded_at=entry.recorded_at,
                    role=asset.role,
                    kind=asset.kind,
                    original=base / asset.path if asset.path else None,
                    url=asset.url,
                    web=base / asset.web if asset.web else None,
                    thumb=base / asset.thumb if asset.thumb else None,
                    poster=base / asset.poster if asset.poster else None,
                    width=asset.width,
                    height=asset.height,
                    duration_seconds=asset.duration_seconds,
                )
            )
            if len(found) >= limit:
                return found
    return found


async def get_latest_assets(
    root: str | os.PathLike[str] | None = None,
    *,
    model: str | Iterable[str] | None = None,
    task_mode: str | Iterable[str] | None = None,
    kind: ArtifactKind | str | None = None,
    role: str | None = "output",
    limit: int = 1,
) -> list[AssetRef]:
    """The newest assets of succeeded runs (newest first), e.g. the last image to feed into a video model."""
    return await asyncio.to_thread(
        get_latest_assets_sync, root, model=model, task_mode=task_mode, kind=kind, role=role, limit=limit
    )


async def list_recent_runs(
    root: str | os.PathLike[str] | None = None, *, limit: int = 20, model: str | None = None
) -> list[IndexEntry]:
    """The newest runs of any status (the sync toolkit's name for ``query_runs(limit=...)``)."""
    return await query_runs(root, model=model, limit=limit)


async def get_latest_successful_run(
    root: str | os.PathLike[str] | None = None,
    *,
    model: str | Iterable[str] | None = None,
    task_mode: str | Iterable[str] | None = None,
) -> RunArtifact | None:
    """The newest succeeded run with its full manifest, or None when there is none."""
    entries = await query_runs(root, model=model, task_mode=task_mode, status=RunStatus.SUCCEEDED, limit=1)
    return await load_run(root, entries[0].run_id) if entries else None


def find_run_dir(root: str | os.PathLike[str] | None, run_id: str) -> Path:
    """The folder of a run by full id or unique prefix."""
    base = runs_dir(resolve_root(root))
    # Checked before the path is used: "../../x" must not reach a run.json (or, for notes, a folder) elsewhere.
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise KieArtifactError(f"no run {run_id!r} under {base}")
    exact = base / run_id
    if (exact / MANIFEST_FILENAME).is_file():
        return exact
    matches = [p.parent for p in base.glob(MANIFEST_FILENAME_GLOB) if p.parent.name.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise KieArtifactError(f"no run {run_id!r} under {base}")
    raise KieArtifactError(f"run id prefix {run_id!r} is ambiguous ({len(matches)} runs)", hint="give more of the id")


def load_run_sync(root: str | os.PathLike[str] | None, run_id: str) -> RunArtifact:
    """Blocking twin of :func:`load_run`."""
    folder = find_run_dir(root, run_id)
    manifest = RunManifest.model_validate_json((folder / MANIFEST_FILENAME).read_bytes())
    return RunArtifact(
        run_id=manifest.run_id,
        run_dir=folder,
        manifest_path=folder / MANIFEST_FILENAME,
        manifest=manifest,
        indexed=True,
    )


async def load_run(root: str | os.PathLike[str] | None, run_id: str) -> RunArtifact:
    """Open one run's manifest by id or unique id prefix."""
    return await asyncio.to_thread(load_run_sync, root, run_id)


def _fmt_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def print_run_summary(run: RunManifest | RunArtifact | IndexEntry, console: Console | None = None) -> None:
    """Print a human summary of one run (manifest, artifact or index entry) with rich."""
    from rich.console import Console  # rich loads only when something is printed (~40 ms of import)
    from rich.table import Table

    out = console or Console()
    if isinstance(run, RunArtifact):
        folder: str | None = str(run.run_dir)
        source: RunManifest | IndexEntry = run.manifest
    elif isinstance(run, RunManifest):
        folder, source = None, run
    else:
        folder, source = run.run_dir, run

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold cyan")
    head.add_column()
    rows = _manifest_rows(source, folder) if isinstance(source, RunManifest) else _index_rows(source, folder)
    for label, value in rows:
        if value:
            head.add_row(label, value)
    out.print(head)

    files = Table(title="files", show_lines=False)
    for column in ("group", "role", "kind", "path", "size", "media", "derivatives"):
        files.add_column(column)
    file_rows = _manifest_files(source) if isinstance(source, RunManifest) else _index_files(source)
    for row in file_rows:
        files.add_row(*row)
    if files.row_count:
        out.print(files)


def _manifest_rows(manifest: RunManifest, folder: str | None) -> list[tuple[str, str | None]]:
    trace = manifest.provider_trace
    shown_prompt = manifest.prompts.final_used or manifest.prompts.raw
    return [
        ("run", manifest.run_id),
        ("status", manifest.status.value),
        ("model", f"{manifest.model_key}" + (f" ({manifest.provider_model})" if manifest.provider_model else "")),
        ("task mode", manifest.task_mode),
        ("created", _fmt_time(manifest.created_at)),
        ("folder", folder),
        ("task id", trace.task_id if trace else None),
        ("credits", f"{trace.credits_consumed:g}" if trace and trace.credits_consumed is not None else None),
        ("wall time", f"{trace.wall_seconds:.1f}s" if trace and trace.wall_seconds is not None else None),
        ("parents", ", ".join(manifest.parent_run_ids) or None),
        ("prompt", shown_prompt),
        ("enhanced", manifest.prompts.enhanced if manifest.prompts.enhanced != shown_prompt else None),
        ("error", manifest.error or (trace.fail_msg if trace else None)),
        ("sdk", manifest.sdk_version),
    ]


def _index_rows(run: IndexEntry, folder: str | None) -> list[tuple[str, str | None]]:
    return [
        ("run", run.run_id),
        ("status", run.status.value),
        ("model", run.model_key),
        ("task mode", run.task_mode),
        ("created", _fmt_time(run.created_at)),
        ("folder", folder),
        ("task id", run.task_id),
        ("parents", ", ".join(run.parent_run_ids) or None),
        ("prompt", run.prompt),
    ]


def _manifest_files(manifest: RunManifest) -> list[tuple[str, str, str, str, str, str, str]]:
    """group, role, kind, path, size, media, derivatives of every input and output file."""
    rows: list[tuple[str, str, str, str, str, str, str]] = []
    for group, items in (("input", manifest.inputs), ("output", manifest.outputs)):
        for item in items:
            media = item.media
            dims = f"{media.width}x{media.height}" if media and media.width else ""
            if media and media.duration_seconds:
                dims = f"{dims} {media.duration_seconds:g}s".strip()
            derivatives = ", ".join(f"{d.name} {d.width}x{d.height}" for d in item.derivatives)
            location = item.path or item.url or ""
            rows.append((group, item.role, item.kind.value, location, _human_bytes(item.bytes), dims, derivatives))
    return rows


def _index_files(run: IndexEntry) -> list[tuple[str, str, str, str, str, str, str]]:
    """The same columns for an index entry's assets (outputs only; no sizes in the index)."""
    rows: list[tuple[str, str, str, str, str, str, str]] = []
    for asset in run.assets:
        dims = f"{asset.width}x{asset.height}" if asset.width else ""
        names = [n for n, v in (("web", asset.web), ("thumb", asset.thumb), ("poster", asset.poster)) if v]
        location = asset.path or asset.url or ""
        rows.append(("output", asset.role, asset.kind.value, location, "", dims, ", ".join(names)))
    return rows


def _human_bytes(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
