"""Notes and tags added to a stored run after the fact: ``notes.md`` in the run folder, tags in ``run.json``.

A run is judged later ("the fox came out blurry", "client picked this one"), often by someone other than
whoever ran it. Both edits rewrite ``run.json`` atomically under a per-run lock (two editors never lose
each other's change) and append a ``run_updated`` line to the index, so ``query_runs(tag=...)`` and the
listings see them without a rebuild; a rebuild reproduces the same lines from the manifests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from pathlib import Path

from kie_async.artifacts.exceptions import KieArtifactError
from kie_async.artifacts.index import append_index_entry_sync, entry_from_manifest
from kie_async.artifacts.layout import resolve_root
from kie_async.artifacts.manifest import (
    MANIFEST_FILENAME,
    NOTES_EXCERPT_CHARS,
    NOTES_FILENAME,
    RunArtifact,
    RunManifest,
    clean_tags,
    utc_now,
)
from kie_async.artifacts.query import find_run_dir
from kie_async.artifacts.writer import replace_manifest_blocking
from kie_async.core.jsonl_log import locked

MAX_NOTES_CHARS = 1_000_000


def _excerpt(text: str) -> str | None:
    flat = " ".join(text.split())
    if not flat:
        return None
    return flat if len(flat) <= NOTES_EXCERPT_CHARS else flat[: NOTES_EXCERPT_CHARS - 1] + "…"


def _edit_blocking(
    root: str | os.PathLike[str] | None,
    run_id: str,
    *,
    notes: str | None,
    append: bool,
    add_tags: Iterable[str],
    remove_tags: Iterable[str],
    fsync: bool,
) -> RunArtifact:
    base = resolve_root(root).absolute()
    folder = find_run_dir(base, run_id)
    adding, removing = clean_tags(add_tags), set(clean_tags(remove_tags))
    with locked(folder / ".run.lock", exclusive=True):
        manifest = RunManifest.model_validate_json((folder / MANIFEST_FILENAME).read_bytes())
        update: dict[str, object] = {}
        if notes is not None:
            path = folder / NOTES_FILENAME
            text = notes
            if append and path.is_file():
                old = path.read_text(encoding="utf-8")
                text = old + ("" if not old or old.endswith("\n") else "\n") + notes
            if len(text) > MAX_NOTES_CHARS:
                raise KieArtifactError(
                    f"notes for {manifest.run_id} would be {len(text)} characters",
                    hint=f"keep notes under {MAX_NOTES_CHARS} characters; link to bigger files",
                )
            staging = folder / f".{NOTES_FILENAME}.{os.getpid()}.tmp"
            staging.write_text(text if not text or text.endswith("\n") else text + "\n", encoding="utf-8")
            os.replace(staging, path)
            update.update(notes_updated_at=utc_now(), notes_excerpt=_excerpt(text))
        if adding or removing:
            update["tags"] = [t for t in clean_tags([*manifest.tags, *adding]) if t not in removing]
        if not update:
            return RunArtifact(
                run_id=manifest.run_id,
                run_dir=folder,
                manifest_path=folder / MANIFEST_FILENAME,
                manifest=manifest,
                indexed=True,
            )
        manifest = manifest.model_copy(update=update)
        replace_manifest_blocking(folder, manifest, fsync)
    entry = entry_from_manifest(manifest, folder.relative_to(base).as_posix(), event="run_updated")
    indexed = True
    try:
        append_index_entry_sync(base, entry, fsync=fsync)
    except OSError:
        indexed = False  # run.json holds the change; `kie-async artifacts rebuild` brings the index back
    return RunArtifact(
        run_id=manifest.run_id,
        run_dir=folder,
        manifest_path=folder / MANIFEST_FILENAME,
        manifest=manifest,
        indexed=indexed,
    )


async def update_run_notes(
    run_id: str,
    text: str,
    *,
    root: str | os.PathLike[str] | None = None,
    append: bool = False,
    fsync: bool = True,
) -> RunArtifact:
    """Write (or with ``append=True`` add to) the run's ``notes.md``; the manifest and index record it.

    ``run_id`` may be a unique prefix. ``text=""`` clears the notes.
    """
    if not isinstance(text, str):
        raise KieArtifactError(f"notes must be text, got {type(text).__name__}", hint="pass a str")
    return await asyncio.to_thread(
        _edit_blocking, root, run_id, notes=text, append=append, add_tags=(), remove_tags=(), fsync=fsync
    )


async def update_run_tags(
    run_id: str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    root: str | os.PathLike[str] | None = None,
    fsync: bool = True,
) -> RunArtifact:
    """Add and/or remove tags of a stored run (tags given at run time stay unless removed)."""
    if isinstance(add, str) or isinstance(remove, str):  # list("draft") would tag the run d, r, a, f, t
        raise KieArtifactError("add= and remove= take a list of tags", hint='write add=["draft"], not add="draft"')
    add, remove = list(add), list(remove)
    try:
        return await asyncio.to_thread(
            _edit_blocking, root, run_id, notes=None, append=False, add_tags=add, remove_tags=remove, fsync=fsync
        )
    except ValueError as exc:
        raise KieArtifactError(str(exc), hint="tags are 1-64 printable characters without commas") from None


def notes_path(run: RunArtifact) -> Path:
    return run.run_dir / NOTES_FILENAME
