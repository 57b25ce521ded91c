"""How run folders are stored and which derivatives are made: plain settings, cheap to import.

Kept apart from the writer and the derivative renderer so the pipeline's options (which hold these) load
neither the index, the queries nor the renderer until a run is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kie_async.artifacts.layout import resolve_root


class ArtifactDerivativeSettings(BaseModel):
    """Sizes, format and quality of derivatives, and how much parallelism to spend on them."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    web_long_edge: int = Field(default=2048, ge=16, le=16384)
    thumb_long_edge: int = Field(default=384, ge=16, le=4096)
    format: Literal["webp", "jpeg"] = "webp"
    web_quality: int = Field(default=82, ge=1, le=100)
    thumb_quality: int = Field(default=75, ge=1, le=100)
    webp_effort: int = Field(
        default=2,
        ge=0,
        le=6,
        description="libwebp effort for the web/poster rendition: 2 is the measured sweet "
        "spot (0-1 give the same PSNR in ~30% more bytes; 3+ is 2.5-20x slower for 5-30% fewer bytes)",
    )
    thumb_webp_effort: int = Field(
        default=4,
        ge=0,
        le=6,
        description="libwebp effort for the thumbnail: on 384 px it costs a few ms and "
        "gives the best PSNR per byte (see benchmarks/README.md)",
    )
    vips_cache_max_ops: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="libvips operation cache size, applied in derivative workers (process-wide): derivatives "
        "never repeat an operation, so 0 saves ~40 MB of RSS at no cost in speed",
    )
    vips_cache_max_mem_mb: int = Field(default=16, ge=0, le=65_536, description="libvips operation cache memory cap")
    upscale: bool = Field(default=False, description="enlarge originals smaller than the target size")
    max_workers: int | None = Field(default=None, ge=1, le=64, description="default: min(4, CPU count)")
    video_posters: bool = True
    video_frames: Literal["auto", "never"] = Field(
        default="auto", description="auto: grab a frame with ffmpeg when it is already on PATH and no cover is given"
    )
    frame_at_seconds: float = Field(default=1.0, ge=0)
    flatten_background: tuple[int, int, int] = (255, 255, 255)

    @property
    def suffix(self) -> str:
        return ".webp" if self.format == "webp" else ".jpg"

    def workers(self) -> int:
        return self.max_workers or max(1, min(4, os.cpu_count() or 1))


class ArtifactSettings(BaseModel):
    """Where runs go and how they are stored."""

    model_config = ConfigDict(frozen=True)

    root: Path | None = Field(default=None, description="artifacts root; default $KIE_OUTPUT_DIR or ./outputs")
    output_link_mode: Literal["link", "copy"] = Field(
        default="link", description="link: hard link when on the same filesystem, else copy"
    )
    input_link_mode: Literal["link", "copy"] = Field(
        default="copy", description="inputs are the user's files and may be edited later, so they are copied"
    )
    derivatives: ArtifactDerivativeSettings = Field(default_factory=ArtifactDerivativeSettings)
    fsync: bool = Field(default=True, description="fsync run.json, the run folder and index appends")
    update_index: bool = True

    def resolved_root(self) -> Path:
        return resolve_root(self.root)
