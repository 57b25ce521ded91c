"""``create_run_artifact``: turn a finished run into a self-contained folder plus one index line.

The folder is assembled under ``<root>/.tmp`` and renamed into ``<root>/runs/<run_id>`` only when the
manifest is complete, so a crash never leaves a half-written run where readers look. Files are hard-linked
when possible (outputs the pipeline just downloaded need no second copy) and copied otherwise; hashing,
probing and pyvips work all run in threads. The index append comes last: if it fails the run still exists
and ``rebuild_artifact_index`` picks it up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, SecretStr

from kie_async.artifacts.derivatives import DerivativeSource, generate_derivatives
from kie_async.artifacts.exceptions import KieArtifactError
from kie_async.artifacts.index import append_index_entry, append_index_entry_sync, entry_from_manifest
from kie_async.artifacts.layout import resolve_root, runs_dir, staging_name, tmp_dir
from kie_async.artifacts.manifest import (
    MANIFEST_FILENAME,
    PROMPT_FILENAME,
    ArtifactFile,
    ArtifactKind,
    ArtifactSource,
    MediaInfo,
    RunArtifact,
    RunArtifactCreateRequest,
    RunManifest,
    StoredAs,
    utc_now,
)
from kie_async.artifacts.media import kind_from_url, probe, sha256_file, sniff
from kie_async.artifacts.query import load_run
from kie_async.artifacts.settings import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.core.path_component import require_run_id
from kie_async.core.redact import redact_value
from kie_async.core.threads import run_file_io
from kie_async.core.tokens import name_token

logger = logging.getLogger("kie_async.artifacts")


_SLUG = re.compile(r"[^a-z0-9.]+")
_ROLE = re.compile(r"[^A-Za-z0-9_-]+")


def make_run_id(model_key: str, at: datetime | None = None) -> str:
    """Sortable, readable and unique: ``20261128-171502-123_nano-banana-2_9f3a1c``."""
    when = at or utc_now()
    slug = _SLUG.sub("-", model_key.lower()).strip("-.")[:40] or "run"
    return f"{when:%Y%m%d-%H%M%S}-{when.microsecond // 1000:03d}_{slug}_{name_token(3)}"


def _link_or_copy(src: Path, dst: Path, mode: Literal["link", "copy"]) -> StoredAs:
    if mode == "link":
        try:
            os.link(src, dst)
            return StoredAs.HARDLINK
        except OSError:
            pass  # other filesystem, no permission, or links unsupported: fall back to a copy
    shutil.copy2(src, dst)
    return StoredAs.COPY


def _digest_of(source: ArtifactSource, target: Path, stored_as: StoredAs) -> tuple[str, int]:
    """The caller's digest when ``target`` is a hard link of the file it was taken of (same inode) and the size
    still matches, else the file's own: a copy, or a caller that gave no digest, is read and hashed."""
    trusted = stored_as is StoredAs.HARDLINK and source.sha256 is not None and source.bytes is not None
    if trusted and target.stat().st_size == source.bytes:
        assert source.sha256 is not None and source.bytes is not None
        return source.sha256, source.bytes
    return sha256_file(target)


def _stage_files_blocking(
    request: RunArtifactCreateRequest, cfg: ArtifactSettings, runs: Path, staging: Path
) -> tuple[list[ArtifactFile], list[ArtifactFile]]:
    """Make the staging folder and store every input and output in it, in one worker-thread call.

    One call rather than one per file: each hand-off to a thread wakes the loop and passes the GIL twice, which
    at 200 runs/s cost more CPU than the links themselves; a run rarely has more than a few files.
    """
    runs.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True)
    inputs = [_store_blocking(src, staging, "inputs", n, cfg.input_link_mode) for n, src in enumerate(request.inputs)]
    outputs = [
        _store_blocking(src, staging, "outputs", n, cfg.output_link_mode) for n, src in enumerate(request.outputs)
    ]
    return inputs, outputs


class _Published(BaseModel):
    replaced: bool
    indexed: bool


def _finish_blocking(
    root: Path, staging: Path, final: Path, manifest: RunManifest, cfg: ArtifactSettings, replace: bool
) -> _Published:
    """Write ``run.json`` and ``prompt.txt``, publish the folder, then append its index line: one thread call.

    The index line comes last and its failure is only a warning: the run folder exists and a rebuild finds it.
    """
    _write_manifest_blocking(staging, manifest, cfg.fsync)
    _write_prompt_blocking(staging, manifest)
    replaced = _publish_blocking(staging, final, cfg.fsync, replace)
    if not cfg.update_index:
        return _Published(replaced=replaced, indexed=False)
    event = "run_updated" if replaced else "run_created"
    entry = entry_from_manifest(manifest, final.relative_to(root).as_posix(), event=event)
    try:
        append_index_entry_sync(root, entry, fsync=cfg.fsync)
    except OSError as exc:
        logger.warning("run %s written but not indexed (%s); run `kie-async artifacts rebuild`", manifest.run_id, exc)
        return _Published(replaced=replaced, indexed=False)
    return _Published(replaced=replaced, indexed=True)


def _store_blocking(
    source: ArtifactSource, staging: Path, group: str, number: int, mode: Literal["link", "copy"]
) -> ArtifactFile:
    if source.source_path is None:
        url = source.url or ""
        return ArtifactFile(
            role=source.role,
            kind=source.kind or kind_from_url(url),
            url=url,
            stored_as=StoredAs.REFERENCE,
            label=source.label,
        )
    src = Path(source.source_path)
    if not src.is_file():
        raise KieArtifactError(f"{group[:-1]} file not found: {src}")
    suffix = src.suffix.lower()
    if not suffix:
        _, fmt = sniff(src)
        suffix = f".{'jpg' if fmt == 'jpeg' else fmt}" if fmt else ""
    role = _ROLE.sub("-", source.role).strip("-") or group[:-1]
    folder = staging / group
    folder.mkdir(exist_ok=True)
    target = folder / f"{role}_{number}{suffix}"
    stored_as = _link_or_copy(src, target, mode)
    digest, size = _digest_of(source, target, stored_as)
    kind, media = probe(target, source.kind)
    cover_path: str | None = None
    if source.poster_path is not None:
        cover = Path(source.poster_path)
        if cover.is_file():  # kept in the run so derivatives can be remade without the provider's URL
            cover_target = folder / f"{role}_{number}.cover{cover.suffix.lower() or '.img'}"
            _link_or_copy(cover, cover_target, mode)
            cover_path = cover_target.relative_to(staging).as_posix()
        else:
            logger.warning("cover image %s not found; %s gets no provider poster", cover, target.name)
    return ArtifactFile(
        role=source.role,
        kind=kind,
        path=target.relative_to(staging).as_posix(),
        url=source.url,
        original_name=src.name,
        stored_as=stored_as,
        sha256=digest,
        bytes=size,
        media=media,
        cover_path=cover_path,
        label=source.label,
    )


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # directories cannot be opened on some platforms (Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_manifest_blocking(staging: Path, manifest: RunManifest, fsync: bool) -> None:
    target = staging / MANIFEST_FILENAME
    with target.open("w", encoding="utf-8") as fh:
        fh.write(manifest.model_dump_json(indent=2, exclude_none=True))
        fh.write("\n")
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


def _write_prompt_blocking(staging: Path, manifest: RunManifest) -> None:
    """``prompt.txt``: the prompt that was sent, readable without opening JSON (the manifest keeps all three)."""
    prompt = manifest.prompts.final_used or manifest.prompts.enhanced or manifest.prompts.raw
    if prompt:
        (staging / PROMPT_FILENAME).write_text(prompt if prompt.endswith("\n") else prompt + "\n", encoding="utf-8")


def _publish_blocking(staging: Path, final: Path, fsync: bool, replace: bool) -> bool:
    """Rename the assembled folder into place; True when it replaced an existing one."""
    old: Path | None = None
    if final.exists():
        if not replace:
            raise KieArtifactError(f"run folder already exists: {final}", hint="pick another run_id or leave it unset")
        # Move the old folder aside under a staging name, so a crash between the two renames leaves only
        # sweepable leftovers (the journal then sees the outputs missing and fetches them again).
        old = staging.with_name(f"replaced-{staging.name}")
        os.rename(final, old)
    if fsync:
        _fsync_path(staging)
    try:
        os.rename(staging, final)  # atomic on one filesystem; .tmp lives under the same root for that reason
    except OSError as exc:  # lost a race for the same run id, or the root is not writable
        raise KieArtifactError(f"could not publish run folder {final}: {exc}") from exc
    if fsync:
        _fsync_path(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return old is not None


def _secret_values(extra: Iterable[SecretStr | str]) -> list[str]:
    values = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in extra]
    env_key = os.environ.get("KIE_API_KEY")
    if env_key:
        values.append(env_key)
    return [v for v in values if v and len(v) >= 4]


async def create_run_artifact(
    request: RunArtifactCreateRequest,
    settings: ArtifactSettings | None = None,
    *,
    secrets: Iterable[SecretStr | str] = (),
    replace: bool = False,
) -> RunArtifact:
    """Write a run folder (manifest, inputs, outputs, derivatives) atomically and append it to the index.

    ``secrets`` are exact values to scrub from everything written (pass ``[kie_settings.api_key]``);
    ``$KIE_API_KEY`` is always scrubbed, as are secret-looking keys and signed-URL query parameters.
    Raises :class:`KieArtifactError` when an input/output file is missing or the run id is taken; nothing
    is left behind in that case. ``replace=True`` swaps out an existing folder of the same ``run_id`` (a resumed
    task whose files were lost keeps its one run folder).
    """
    cfg = settings or ArtifactSettings()
    root = cfg.resolved_root().absolute()
    started = utc_now()
    # A run id can come from a journal or a shared ledger: it must stay one folder under the root.
    run_id = (
        require_run_id(request.run_id)
        if request.run_id
        else make_run_id(request.model_key, request.started_at or started)
    )
    final = runs_dir(root) / run_id
    staging = tmp_dir(root) / staging_name(run_id)

    try:
        inputs, outputs = await run_file_io(_stage_files_blocking, request, cfg, runs_dir(root), staging)
        outputs = await _with_derivatives(outputs, staging, cfg.derivatives)
        manifest = build_manifest(request, run_id, started, inputs, outputs, _secret_values(secrets))
        published = await run_file_io(_finish_blocking, root, staging, final, manifest, cfg, replace)
    except BaseException:  # the staging name carries a random token: whatever is there is ours to remove
        await asyncio.shield(run_file_io(shutil.rmtree, staging, True))
        raise
    return RunArtifact(
        run_id=run_id,
        run_dir=final,
        manifest_path=final / MANIFEST_FILENAME,
        manifest=manifest,
        indexed=published.indexed,
    )


def build_manifest(
    request: RunArtifactCreateRequest,
    run_id: str,
    started: datetime,
    inputs: list[ArtifactFile],
    outputs: list[ArtifactFile],
    secret_values: list[str],
) -> RunManifest:
    """The manifest, redacted by construction: its parts go through the redactor as plain data, then one model.

    Building the model first, dumping it, redacting the dump and validating it again cost three passes over
    every run's manifest (~3 ms a run at 200 runs/s); this is one dump of the parts and one validation, with
    the same redaction applied to every string and secret-looking key.
    """
    data = {
        "run_id": run_id,
        "status": request.status,
        "created_at": request.started_at or started,
        "recorded_at": utc_now(),  # as late as possible: the index (and a rebuild) is ordered by it
        "model_key": request.model_key,
        "provider_model": request.provider_model,
        "task_mode": request.task_mode,
        "prompts": request.prompts.model_dump(mode="json"),
        "inputs": [f.model_dump(mode="json", exclude_defaults=True) for f in inputs],
        "outputs": [f.model_dump(mode="json", exclude_defaults=True) for f in outputs],
        "provider_trace": request.provider_trace.model_dump(mode="json") if request.provider_trace else None,
        "parent_run_ids": list(request.parent_run_ids),
        "request_key": request.request_key,
        "error": request.error,
        "tags": list(request.tags),
        "source_context": dict(request.source_context),
        "warnings": list(request.warnings),
    }
    return RunManifest.model_validate(redact_value(data, secret_values))


def _derivative_sources(files: list[ArtifactFile], run_dir: Path) -> list[tuple[int, DerivativeSource]]:
    wanted: list[tuple[int, DerivativeSource]] = []
    for n, stored in enumerate(files):
        if stored.path is None or stored.kind not in (ArtifactKind.IMAGE, ArtifactKind.VIDEO):
            continue
        media = stored.media or MediaInfo()
        wanted.append(
            (
                n,
                DerivativeSource(
                    path=run_dir / stored.path,
                    kind=stored.kind,
                    poster_path=run_dir / stored.cover_path if stored.cover_path else None,
                    stem=Path(stored.path).stem,
                    duration_seconds=media.duration_seconds,
                ),
            )
        )
    return wanted


async def _with_derivatives(
    files: list[ArtifactFile],
    run_dir: Path,
    settings: ArtifactDerivativeSettings,
    folder: str = "derivatives",
) -> list[ArtifactFile]:
    """Outputs with derivatives made from the files already stored in ``run_dir``."""
    wanted = _derivative_sources(files, run_dir)
    if not settings.enabled or not wanted:
        return files
    sets = await generate_derivatives([d for _, d in wanted], run_dir / folder, settings, relative_to=run_dir)
    result = list(files)
    for (n, _), made in zip(wanted, sets, strict=True):
        if made.note and not made.derivatives:
            logger.info("output %s: %s", files[n].path, made.note)
        result[n] = files[n].model_copy(update={"derivatives": made.derivatives})
    return result


def replace_manifest_blocking(run_dir: Path, manifest: RunManifest, fsync: bool) -> None:
    staging = run_dir / f".{MANIFEST_FILENAME}.{name_token(4)}"
    with staging.open("w", encoding="utf-8") as fh:
        fh.write(manifest.model_dump_json(indent=2, exclude_none=True))
        fh.write("\n")
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    os.replace(staging, run_dir / MANIFEST_FILENAME)
    if fsync:
        _fsync_path(run_dir)


async def regenerate_run_derivatives(
    root: str | os.PathLike[str] | None,
    run_id: str,
    settings: ArtifactDerivativeSettings | None = None,
    *,
    fsync: bool = True,
) -> RunArtifact:
    """Remake a stored run's derivatives from its originals (new sizes or format) and record a ``run_updated``.

    New files go to a fresh folder and ``run.json`` is swapped atomically before the old folder is removed,
    so a crash leaves either the old or the new set referenced, never a mix.
    """
    base = resolve_root(root).absolute()
    run = await load_run(base, run_id)
    cfg = settings or ArtifactDerivativeSettings()
    folder = f"derivatives-{name_token(3)}"
    cleared = [f.model_copy(update={"derivatives": []}) for f in run.manifest.outputs]
    outputs = await _with_derivatives(cleared, run.run_dir, cfg, folder)
    manifest = run.manifest.model_copy(update={"outputs": outputs, "updated_at": utc_now()})
    await run_file_io(replace_manifest_blocking, run.run_dir, manifest, fsync)
    # Reused renditions name the original under outputs/: only derivative folders are ever removed.
    old_folders = {Path(d.path).parts[0] for f in run.manifest.outputs for d in f.derivatives if not d.reused} - {
        folder
    }
    old_folders = {name for name in old_folders if name.startswith("derivatives")}
    for old in old_folders:
        await asyncio.to_thread(shutil.rmtree, run.run_dir / old, True)
    entry = entry_from_manifest(manifest, run.run_dir.relative_to(base).as_posix(), event="run_updated")
    await append_index_entry(base, entry, fsync=fsync)
    return run.model_copy(update={"manifest": manifest})
