"""Web and thumbnail renditions with pyvips, run in a thread pool so the event loop keeps serving.

Every image gets ``web`` (long edge 2048 by default) and ``thumb`` (384). The original is decoded once
(``thumbnail`` uses shrink-on-load, so a 4K JPEG is never fully decoded), the web size is kept in memory and
the thumbnail is cut from it. libvips releases the GIL while it computes, so worker threads do not starve
the loop.

An original that already fits a rendition (long edge at or under it, 8-bit sRGB or grey JPEG/PNG/WebP/GIF)
is not decoded and re-encoded for it: the record names the original (``reused``), or a copy when the
original lives outside the folder records are relative to. Re-encoding it would cost ~10 ms of CPU per
output, lose quality and, without upscaling, give the same size. Only the header is read to decide.

libvips' operation cache (by default ~100 operations, up to 100 MB) pays off for repeated identical calls,
which derivatives never make; it is sized by :attr:`ArtifactDerivativeSettings.vips_cache_max_ops` and
``vips_cache_max_mem_mb`` when a derivative worker thread starts (the cache is process-wide).

A video gets a ``poster`` (web size) and a ``thumb``. The pixels come from, in order: a cover image the
caller already has on disk (e.g. downloaded from the provider's cover URL), or a frame grabbed with
``ffmpeg`` when an ``ffmpeg`` binary is already on ``PATH`` (run as an asyncio subprocess; it is optional,
never a dependency). With neither, the video simply has no poster and the record says nothing was made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kie_async.artifacts.manifest import ArtifactKind, DerivativeRecord
from kie_async.artifacts.media import probe
from kie_async.artifacts.settings import ArtifactDerivativeSettings
from kie_async.core.image_header import ImageHeader, read_header


class DerivativeSource(BaseModel):
    """An original already on disk; ``stem`` names its derivatives (default: the file's stem)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    kind: ArtifactKind | None = None
    poster_path: Path | None = None
    stem: str | None = None
    duration_seconds: float | None = None


class DerivativeSet(BaseModel):
    """The derivatives made for one source; ``note`` explains a video without a poster."""

    model_config = ConfigDict(frozen=True)

    source: Path
    kind: ArtifactKind
    derivatives: list[DerivativeRecord] = Field(default_factory=list)
    note: str | None = None


_executors: dict[tuple[int, int, int], ThreadPoolExecutor] = {}


def _size_vips_cache(max_ops: int, max_mem_mb: int) -> None:
    """Worker initializer: size libvips' (process-wide) operation cache before the first derivative.

    Never raises: a failing initializer would break the pool for good, while a missing libvips should
    become each derivative's ``note``, as it does when the render imports pyvips.
    """
    try:
        import pyvips

        pyvips.cache_set_max(max_ops)
        pyvips.cache_set_max_mem(max_mem_mb * 1024 * 1024)
    except Exception:  # reported by the render itself
        pass


def _executor(settings: ArtifactDerivativeSettings) -> ThreadPoolExecutor:
    # The CPU pool: one long-lived, bounded pool per configuration (creating threads per call would cost more
    # than a thumbnail), apart from the file-I/O threads so that encodes never queue behind downloads.
    workers = settings.workers()
    key = (workers, settings.vips_cache_max_ops, settings.vips_cache_max_mem_mb)
    pool = _executors.get(key)
    if pool is None:
        pool = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix=f"kie-vips-{workers}",
            initializer=_size_vips_cache,
            initargs=(settings.vips_cache_max_ops, settings.vips_cache_max_mem_mb),
        )
        _executors[key] = pool
    return pool


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` where there is one (not on musl, macOS or Windows), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def _returning_memory() -> Iterator[None]:
    """Around a decode: hand its freed buffers back afterwards, failed or not (a reused original skips this)."""
    try:
        yield
    finally:
        _release_freed_memory()


def _release_freed_memory() -> None:
    """Hand freed decode/encode buffers back to the OS after an image.

    glibc keeps freed blocks in per-thread arenas; with libvips' worker threads, RSS ratcheted up by tens of
    MB over a few 4K images although nothing was still in use (measured: peak RSS growth of 4 sequential 4K
    images fell from ~63-70 MB to ~55 MB). Costs well under a millisecond.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def ffmpeg_binary() -> str | None:
    """The ffmpeg on PATH, if any; frames for video posters are only grabbed when this is not None."""
    return shutil.which("ffmpeg")


def _to_display(image: Any) -> Any:
    """8-bit sRGB (or grey): what browsers show and WebP/JPEG store; 16-bit PNGs, CMYK and Lab get here."""
    interpretation = image.interpretation
    if interpretation not in ("srgb", "b-w"):
        image = image.colourspace("b-w" if interpretation == "grey16" else "srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def _save(image: Any, out: Path, settings: ArtifactDerivativeSettings, quality: int, effort: int) -> None:
    image = _to_display(image)
    if settings.format == "jpeg":
        if image.hasalpha():
            image = image.flatten(background=list(settings.flatten_background))
        image.write_to_file(str(out), Q=quality, keep="none", optimize_coding=True, interlace=True)
    else:
        image.write_to_file(str(out), Q=quality, keep="none", effort=effort)


Origin = Literal["image", "provider_cover", "video_frame"]
_WEB_LOADERS = {"jpegload": "jpeg", "pngload": "png", "webpload": "webp", "gifload": "gif"}


def _reusable_format(header: ImageHeader) -> str | None:
    """The original's format when browsers show it as is (8-bit sRGB/grey JPEG, PNG, WebP, GIF), else None."""
    fmt = _WEB_LOADERS.get(header.loader.split("_")[0])
    if fmt is None or header.band_format != "uchar" or header.interpretation not in ("srgb", "b-w"):
        return None
    return fmt


def _reuse(
    source: Path,
    out_dir: Path,
    stem: str,
    name: str,
    fmt: str,
    header: ImageHeader,
    origin: Origin,
    relative_to: Path,
) -> DerivativeRecord:
    """A record naming the original itself (inside ``relative_to``) or a copy of it (outside)."""
    try:
        path = source.relative_to(relative_to)
        size = source.stat().st_size
    except ValueError:
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{stem}.{name}{source.suffix.lower() or '.' + fmt}"
        shutil.copyfile(source, target)
        path, size = target.relative_to(relative_to), target.stat().st_size
    return DerivativeRecord(
        name=name,
        path=path.as_posix(),
        format=fmt,
        width=header.width,
        height=header.height,
        bytes=size,
        source=origin,
        reused=True,
    )


def _render(
    source: Path,
    out_dir: Path,
    stem: str,
    large_name: Literal["web", "poster"],
    origin: Origin,
    settings: ArtifactDerivativeSettings,
    relative_to: Path,
) -> list[DerivativeRecord]:
    """Blocking: decode once, write the large rendition and the thumbnail. Runs in a worker thread."""
    import pyvips

    size = "both" if settings.upscale else "down"
    edge = settings.web_long_edge
    thumb_edge = settings.thumb_long_edge
    records: list[DerivativeRecord] = []
    if not settings.upscale:
        header = read_header(source)  # the header only, usually remembered from the download's check
        long_edge = max(header.width, header.height)
        fmt = _reusable_format(header) if long_edge <= edge else None
        if fmt is not None:
            records.append(_reuse(source, out_dir, stem, large_name, fmt, header, origin, relative_to))
            if long_edge <= thumb_edge:  # nothing decoded
                records.append(_reuse(source, out_dir, stem, "thumb", fmt, header, origin, relative_to))
                return records
            with _returning_memory():
                thumb = pyvips.Image.thumbnail(str(source), thumb_edge, height=thumb_edge, size=size)
                out_dir.mkdir(parents=True, exist_ok=True)
                records.append(_write_rendition(thumb, out_dir, stem, "thumb", settings, origin, relative_to))
            return records
    with _returning_memory():
        large = pyvips.Image.thumbnail(str(source), edge, height=edge, size=size).copy_memory()
        out_dir.mkdir(parents=True, exist_ok=True)
        thumb = large.thumbnail_image(thumb_edge, height=thumb_edge, size=size)
        records.append(_write_rendition(large, out_dir, stem, large_name, settings, origin, relative_to))
        records.append(_write_rendition(thumb, out_dir, stem, "thumb", settings, origin, relative_to))
    return records


def _write_rendition(
    image: Any,
    out_dir: Path,
    stem: str,
    name: Literal["web", "poster", "thumb"],
    settings: ArtifactDerivativeSettings,
    origin: Origin,
    relative_to: Path,
) -> DerivativeRecord:
    thumb = name == "thumb"
    quality = settings.thumb_quality if thumb else settings.web_quality
    effort = settings.thumb_webp_effort if thumb else settings.webp_effort
    target = out_dir / f"{stem}.{name}{settings.suffix}"
    _save(image, target, settings, quality, effort)
    return DerivativeRecord(
        name=name,
        path=target.relative_to(relative_to).as_posix(),
        format=settings.format,
        width=image.width,
        height=image.height,
        bytes=target.stat().st_size,
        source=origin,
    )


def _non_empty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


async def _grab_frame(video: Path, target: Path, at_seconds: float) -> bool:
    binary = ffmpeg_binary()
    if binary is None:
        return False
    for offset in (at_seconds, 0.0):
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-ss",
            f"{offset:.3f}",
            "-i",
            str(video),
            "-frames:v",
            "1",
            "-an",
            str(target),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return False
        if code == 0 and await asyncio.to_thread(_non_empty, target):
            return True
        if offset == 0.0:
            break
    return False


async def derive_one(
    source: DerivativeSource, out_dir: Path, settings: ArtifactDerivativeSettings, relative_to: Path | None = None
) -> DerivativeSet:
    """Derivatives for one original (image or video); failures become a ``note``, never an exception."""
    loop = asyncio.get_running_loop()
    pool = _executor(settings)
    rel = relative_to or out_dir
    stem = source.stem or source.path.stem
    kind = source.kind
    if kind is None:
        kind, _ = await loop.run_in_executor(pool, probe, source.path, None)
    if not settings.enabled:
        return DerivativeSet(source=source.path, kind=kind, note="derivatives disabled")
    try:
        if kind is ArtifactKind.IMAGE:
            records = await loop.run_in_executor(
                pool, partial(_render, source.path, out_dir, stem, "web", "image", settings, rel)
            )
            return DerivativeSet(source=source.path, kind=kind, derivatives=records)
        if kind is ArtifactKind.VIDEO and settings.video_posters:
            return await _video_poster(source, out_dir, stem, settings, rel)
    except Exception as exc:  # a bad original must not sink the whole run artifact
        return DerivativeSet(source=source.path, kind=kind, note=f"derivatives failed: {type(exc).__name__}: {exc}")
    return DerivativeSet(source=source.path, kind=kind)


async def _video_poster(
    source: DerivativeSource, out_dir: Path, stem: str, settings: ArtifactDerivativeSettings, rel: Path
) -> DerivativeSet:
    loop = asyncio.get_running_loop()
    pool = _executor(settings)
    if source.poster_path is not None:
        records = await loop.run_in_executor(
            pool, partial(_render, source.poster_path, out_dir, stem, "poster", "provider_cover", settings, rel)
        )
        return DerivativeSet(source=source.path, kind=ArtifactKind.VIDEO, derivatives=records)
    if settings.video_frames == "never" or ffmpeg_binary() is None:
        return DerivativeSet(
            source=source.path, kind=ArtifactKind.VIDEO, note="no poster: no cover image given and no ffmpeg on PATH"
        )
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    frame = out_dir / f".{stem}.frame.png"
    at = settings.frame_at_seconds
    if source.duration_seconds is not None:
        at = min(at, source.duration_seconds / 2)
    try:
        if not await _grab_frame(source.path, frame, at):
            return DerivativeSet(source=source.path, kind=ArtifactKind.VIDEO, note="no poster: ffmpeg read no frame")
        records = await loop.run_in_executor(
            pool, partial(_render, frame, out_dir, stem, "poster", "video_frame", settings, rel)
        )
    finally:
        await asyncio.to_thread(frame.unlink, missing_ok=True)
    return DerivativeSet(source=source.path, kind=ArtifactKind.VIDEO, derivatives=records)


async def generate_derivatives(
    sources: Sequence[DerivativeSource | Path | str],
    out_dir: str | os.PathLike[str],
    settings: ArtifactDerivativeSettings | None = None,
    *,
    relative_to: str | os.PathLike[str] | None = None,
) -> list[DerivativeSet]:
    """Make derivatives for originals already on disk, concurrently, in the order given.

    Record paths are relative to ``relative_to`` (default ``out_dir``), which lets a run folder store paths
    relative to itself. The worker pool bounds the parallelism, so passing thousands of sources is fine.
    """
    cfg = settings or ArtifactDerivativeSettings()
    target = Path(out_dir)
    rel = Path(relative_to) if relative_to is not None else target
    items = [s if isinstance(s, DerivativeSource) else DerivativeSource(path=Path(s)) for s in sources]
    stems = _unique_stems(items)
    jobs = [
        derive_one(item.model_copy(update={"stem": stem}), target, cfg, rel)
        for item, stem in zip(items, stems, strict=True)
    ]
    return list(await asyncio.gather(*jobs))


def _unique_stems(items: Sequence[DerivativeSource]) -> list[str]:
    # Two originals named a.png in different folders must not overwrite each other's derivatives.
    taken: set[str] = set()
    stems: list[str] = []
    for item in items:
        base = item.stem or item.path.stem
        stem, n = base, 1
        while stem in taken:
            stem, n = f"{base}-{n}", n + 1
        taken.add(stem)
        stems.append(stem)
    return stems
