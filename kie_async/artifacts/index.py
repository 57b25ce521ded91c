"""The run index: ``index.jsonl`` under the artifacts root, one JSON line per run event, append-only.

Why JSONL rather than a database: appends are cheap and crash-safe, the file is greppable and diffable, and
it can always be rebuilt from the run folders, which stay the source of truth.

Crash safety: each append is one ``write`` of a whole line while holding an exclusive ``flock`` on a
separate lock file (so a rebuild can atomically replace ``index.jsonl`` without racing appenders). If a
previous writer died mid-line, the next append first terminates the torn fragment with a newline so the new
line is never glued to it. Readers take a shared lock, skip lines that do not parse and report them; a
damaged line is never fatal. The last event per run id wins when reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kie_async._version import __version__
from kie_async.artifacts.exceptions import KieArtifactError
from kie_async.artifacts.layout import (
    MANIFEST_FILENAME_GLOB,
    index_path,
    lock_path,
    resolve_root,
    runs_dir,
)
from kie_async.artifacts.manifest import ArtifactKind, RunManifest, RunStatus
from kie_async.artifacts.staging import sweep_staging
from kie_async.core.jsonl_log import append_line, locked
from kie_async.core.threads import run_file_io

logger = logging.getLogger("kie_async.artifacts")

INDEX_SCHEMA_VERSION = 1
PROMPT_EXCERPT_CHARS = 240


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class IndexAsset(_Model):
    """An output as listed in the index; paths are relative to the artifacts root."""

    role: str
    kind: ArtifactKind
    path: str | None = None
    url: str | None = None
    web: str | None = None
    thumb: str | None = None
    poster: str | None = None
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None


class IndexEntry(_Model):
    """One line of ``index.jsonl``: enough to list, filter and find assets without opening run.json."""

    v: int = INDEX_SCHEMA_VERSION
    event: Literal["run_created", "run_updated"] = "run_created"
    run_id: str
    run_dir: str
    status: RunStatus
    created_at: datetime
    recorded_at: datetime
    model_key: str
    provider_model: str | None = None
    task_mode: str | None = None
    task_id: str | None = None
    credits_consumed: float | None = None
    parent_run_ids: list[str] = Field(default_factory=list)
    prompt: str | None = None
    assets: list[IndexAsset] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    notes: str | None = Field(default=None, description="the start of the run's notes.md")
    sdk_version: str = __version__

    def to_line(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8") + b"\n"


class SkippedLine(_Model):
    line_number: int
    torn_tail: bool = Field(description="the last line, without a newline: a writer died mid-append")
    reason: str
    excerpt: str


class IndexReadResult(_Model):
    entries: list[IndexEntry] = Field(default_factory=list, description="every readable line, in file order")
    skipped: list[SkippedLine] = Field(default_factory=list)
    total_lines: int = 0

    def latest_per_run(self) -> list[IndexEntry]:
        """The last event for each run id, in the order runs were first recorded."""
        latest: dict[str, IndexEntry] = {}
        for entry in self.entries:
            latest[entry.run_id] = entry
        return list(latest.values())


class RebuildReport(_Model):
    root: Path
    runs_indexed: int
    previous_lines: int
    previous_skipped: int
    bad_manifests: list[str] = Field(default_factory=list)
    stale_staging_dirs: list[str] = Field(default_factory=list, description="left in .tmp (crashed or in progress)")
    cleaned_staging_dirs: list[str] = Field(default_factory=list)


def entry_from_manifest(manifest: RunManifest, run_dir: str, event: str = "run_created") -> IndexEntry:
    """Derive the index line from a manifest; deterministic, which is what lets a rebuild reproduce the index."""
    assets: list[IndexAsset] = []
    for out in manifest.outputs:

        def rooted(rel: str | None) -> str | None:
            return f"{run_dir}/{rel}" if rel else None

        web = out.derivative("web")
        thumb = out.derivative("thumb")
        poster = out.derivative("poster")
        assets.append(
            IndexAsset(
                role=out.role,
                kind=out.kind,
                path=rooted(out.path),
                url=out.url,
                web=rooted(web.path) if web else None,
                thumb=rooted(thumb.path) if thumb else None,
                poster=rooted(poster.path) if poster else None,
                width=out.media.width if out.media else None,
                height=out.media.height if out.media else None,
                duration_seconds=out.media.duration_seconds if out.media else None,
            )
        )
    prompt = manifest.prompts.final_used or manifest.prompts.enhanced or manifest.prompts.raw
    if prompt and len(prompt) > PROMPT_EXCERPT_CHARS:
        prompt = prompt[: PROMPT_EXCERPT_CHARS - 1] + "…"
    trace = manifest.provider_trace
    return IndexEntry(
        event="run_updated" if event == "run_updated" else "run_created",
        run_id=manifest.run_id,
        run_dir=run_dir,
        status=manifest.status,
        created_at=manifest.created_at,
        recorded_at=manifest.recorded_at,
        model_key=manifest.model_key,
        provider_model=manifest.provider_model,
        task_mode=manifest.task_mode,
        task_id=trace.task_id if trace else None,
        credits_consumed=trace.credits_consumed if trace else None,
        parent_run_ids=list(manifest.parent_run_ids),
        prompt=prompt,
        assets=assets,
        tags=list(manifest.tags),
        notes=manifest.notes_excerpt,
        sdk_version=manifest.sdk_version,
    )


@contextlib.contextmanager
def index_lock(root: Path, *, exclusive: bool) -> Iterator[None]:
    """Cross-process lock on ``<root>/index.lock`` (shared for readers, exclusive for writers)."""
    with locked(lock_path(root), exclusive=exclusive):
        yield


def append_index_line_sync(root: str | os.PathLike[str] | None, line: bytes, *, fsync: bool = True) -> None:
    """Blocking: append one complete line under the exclusive lock (torn tails sealed first)."""
    base = resolve_root(root)
    append_line(index_path(base), line, lock_file=lock_path(base), fsync=fsync)


def append_index_entry_sync(root: str | os.PathLike[str] | None, entry: IndexEntry, *, fsync: bool = True) -> None:
    append_index_line_sync(root, entry.to_line(), fsync=fsync)


async def append_index_entry(root: str | os.PathLike[str] | None, entry: IndexEntry, *, fsync: bool = True) -> None:
    """Append one run event; the lock wait and the write happen in a worker thread."""
    await run_file_io(append_index_entry_sync, root, entry, fsync=fsync)


def _parse_line(raw: bytes, number: int, torn_tail: bool) -> IndexEntry | SkippedLine:
    try:
        return IndexEntry.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        return SkippedLine(
            line_number=number,
            torn_tail=torn_tail,
            reason=str(errors[0].get("msg", "invalid")) if errors else str(exc),
            excerpt=raw[:80].decode("utf-8", "replace"),
        )


def _sort_into(parsed: IndexEntry | SkippedLine, entries: list[IndexEntry], skipped: list[SkippedLine]) -> None:
    if isinstance(parsed, IndexEntry):
        entries.append(parsed)
    else:
        skipped.append(parsed)


class _Chunk:
    """Complete lines parsed from a byte range, plus a possibly torn tail left unconsumed."""

    def __init__(self, data: bytes, first_number: int) -> None:
        self.entries: list[IndexEntry] = []
        self.skipped: list[SkippedLine] = []
        cut = data.rfind(b"\n") + 1
        self.consumed = cut
        self.lines = 0
        number = first_number
        for raw in data[:cut].split(b"\n")[:-1]:
            if raw.strip():
                _sort_into(_parse_line(raw, number, torn_tail=False), self.entries, self.skipped)
            number += 1
            self.lines += 1
        tail = data[cut:]
        self.tail: SkippedLine | IndexEntry | None = _parse_line(tail, number, torn_tail=True) if tail.strip() else None


def _parse(data: bytes) -> IndexReadResult:
    chunk = _Chunk(data, 1)
    entries, skipped, total = chunk.entries, chunk.skipped, chunk.lines
    if chunk.tail is not None:
        total += 1
        # A last line without its newline that still parses is whole (written by hand or an older tool).
        _sort_into(chunk.tail, entries, skipped)
    return IndexReadResult(entries=entries, skipped=skipped, total_lines=total)


class _CacheState:
    def __init__(self, device: int, inode: int) -> None:
        self.device = device
        self.inode = inode
        self.offset = 0
        self.lines = 0
        self.mark = b""  # the last parsed line, to notice a different file that reused the inode
        self.entries: list[IndexEntry] = []
        self.skipped: list[SkippedLine] = []


_cache: dict[Path, _CacheState] = {}
_cache_lock = threading.Lock()


def clear_index_cache() -> None:
    """Forget what this process has parsed; the next read parses the whole index again."""
    with _cache_lock:
        _cache.clear()


def _read_cached(path: Path) -> IndexReadResult:
    """Parse only what was appended since the last read in this process; start over after a rebuild swap.

    Appends only ever grow the file, and a rebuild replaces it (new inode), so (device, inode, size) tells
    which case applies; inode numbers can be reused, so the bytes just before the parsed offset must also
    still match. This turns repeated queries in a long-lived process into a few milliseconds.
    """
    key = path.resolve()
    with _cache_lock, path.open("rb") as fh:
        stat = os.fstat(fh.fileno())
        state = _cache.get(key)
        if state is not None and state.mark:
            fh.seek(max(state.offset - len(state.mark), 0))
            same_prefix = fh.read(len(state.mark)) == state.mark
        else:
            same_prefix = True
        if (
            state is None
            or not same_prefix
            or (state.device, state.inode) != (stat.st_dev, stat.st_ino)
            or stat.st_size < state.offset
        ):
            state = _CacheState(stat.st_dev, stat.st_ino)
            _cache[key] = state
        fh.seek(state.offset)
        data = fh.read()
        chunk = _Chunk(data, state.lines + 1)
        state.entries.extend(chunk.entries)
        state.skipped.extend(chunk.skipped)
        if chunk.consumed:  # the whole last complete line: it carries a run id, so it is distinctive
            start = data.rfind(b"\n", 0, chunk.consumed - 1) + 1
            state.mark = data[start : chunk.consumed]
        state.offset += chunk.consumed
        state.lines += chunk.lines
        entries, skipped, total = list(state.entries), list(state.skipped), state.lines
    if chunk.tail is not None:
        total += 1
        _sort_into(chunk.tail, entries, skipped)
    return IndexReadResult.model_construct(entries=entries, skipped=skipped, total_lines=total)


def read_index_sync(root: str | os.PathLike[str] | None = None, *, use_cache: bool = True) -> IndexReadResult:
    """Blocking: every readable line; unreadable ones are reported in ``skipped`` and logged, never raised."""
    base = resolve_root(root)
    path = index_path(base)
    if not path.exists():
        return IndexReadResult()
    with index_lock(base, exclusive=False):
        result = _read_cached(path) if use_cache else _parse(path.read_bytes())
    if result.skipped:
        torn = [b.line_number for b in result.skipped if b.torn_tail]
        other = [b.line_number for b in result.skipped if not b.torn_tail]
        logger.warning(
            "%s: skipped %s%s; `kie-async artifacts rebuild` rewrites the index from the run folders",
            path,
            f"torn last line {torn[0]}" if torn else "",
            f"{', ' if torn else ''}unreadable line(s) {other[:5]}" if other else "",
        )
    return result


async def read_index(root: str | os.PathLike[str] | None = None, *, use_cache: bool = True) -> IndexReadResult:
    """Read the index in a worker thread; ``use_cache=False`` re-parses the whole file."""
    return await asyncio.to_thread(read_index_sync, root, use_cache=use_cache)


def _scan_manifests(base: Path) -> tuple[list[IndexEntry], list[str]]:
    entries: list[IndexEntry] = []
    bad: list[str] = []
    folder = runs_dir(base)
    if not folder.is_dir():
        return entries, bad
    for manifest_file in sorted(folder.glob(MANIFEST_FILENAME_GLOB)):
        run_folder = manifest_file.parent
        try:
            manifest = RunManifest.model_validate_json(manifest_file.read_bytes())
        except (OSError, ValidationError) as exc:
            bad.append(f"{manifest_file}: {type(exc).__name__}")
            continue
        entries.append(entry_from_manifest(manifest, run_folder.relative_to(base).as_posix()))
    entries.sort(key=lambda e: (e.recorded_at, e.run_id))
    return entries, bad


def rebuild_artifact_index_sync(
    root: str | os.PathLike[str] | None = None,
    *,
    fsync: bool = True,
    clean_staging_older_than: float | None = None,
) -> RebuildReport:
    """Blocking: reconstruct ``index.jsonl`` from the run folders and swap it in atomically.

    The scan runs under the exclusive lock so no append can slip between the scan and the swap and be lost.
    Runs are written in ``recorded_at`` order, which is the order they were originally appended. With
    ``clean_staging_older_than`` (seconds), unfinished run folders left in ``.tmp`` by crashes are removed.
    Staging left by processes that are gone (on this host) is always removed: nothing can finish it.
    """
    base = resolve_root(root)
    if not base.is_dir():  # a typo in --root should not silently create an empty artifacts root
        raise KieArtifactError(f"no artifacts root at {base}", hint="check --root / $KIE_OUTPUT_DIR")
    sweep = sweep_staging(base, older_than=clean_staging_older_than)
    path = index_path(base)
    with index_lock(base, exclusive=True):
        previous = _parse(path.read_bytes()) if path.exists() else IndexReadResult()
        entries, bad = _scan_manifests(base)
        staging = path.with_name(f".{path.name}.rebuild-{os.getpid()}")
        with staging.open("wb") as fh:
            fh.write(b"".join(e.to_line() for e in entries))
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(staging, path)
    return RebuildReport(
        root=base,
        runs_indexed=len(entries),
        previous_lines=previous.total_lines,
        previous_skipped=len(previous.skipped),
        bad_manifests=bad,
        stale_staging_dirs=sweep.kept,
        cleaned_staging_dirs=sweep.removed,
    )


async def rebuild_artifact_index(
    root: str | os.PathLike[str] | None = None,
    *,
    fsync: bool = True,
    clean_staging_older_than: float | None = None,
) -> RebuildReport:
    """Reconstruct the index from the run folders (source of truth), in a worker thread."""
    return await asyncio.to_thread(
        rebuild_artifact_index_sync, root, fsync=fsync, clean_staging_older_than=clean_staging_older_than
    )
