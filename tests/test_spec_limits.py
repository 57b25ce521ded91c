"""The spec format's limits beyond a field's type and range (issue 22): each one refuses what it should, in the
validator and in the wire check, and lets through what it should."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import pyvips

from kie_async.artifacts import ArtifactSettings
from kie_async.catalogue.request_models import MediaInput, RawUserRequest
from kie_async.catalogue.specs import ModelRegistry, load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.catalogue.wire_parse import parse_wire_input
from kie_async.core.image_header import video_size
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

SPEC = """
key: acme-limits
label: Acme limits
family: acme
output_kind: image
provenance: {source: "an illustrative page", checked_on: "2026-12-07", status: unconfirmed}
prompt:
  max_chars: 100
  limits_when:
    - when: [{field: mode, equals: short}]
      max_chars: 10
      reason: "short mode takes ten characters"
options:
  mode: {type: enum, allowed: [short, long], default: long}
  guidance: {type: number, min: 0, max: 10, multiple_of: 0.5}
  strength: {type: number, decimals: 2}
  lines:
    type: list
    items: {type: string}
    max_total_chars: 12
  steps:
    type: integer
    limits_when:
      - when: [{field: mode, equals: short}]
        max: 4
        reason: "short mode takes at most 4 steps"
task_modes:
  - name: image_edit
    provider_model: acme/limits
    input_pattern: image_edit
    slots:
      - {name: main, kind: image, roles: [reference], min: 1, max: 1, field: image_url, shape: scalar,
         pixels: {min_side: 32, max_pixels: 20000, aspect_ratio: {min: 0.5, max: 2}}}
      - name: style
        kind: image
        roles: [reference]
        max: 3
        field: style_urls
        max_total_mb: 0.005
        limits_when:
          - when: [{field: mode, equals: short}]
            max_items: 1
            reason: "short mode takes one style image"
      - {name: extra, kind: image, roles: [reference], max: 3, field: extra_urls}
    slot_totals:
      - {slots: [style, extra], max: 4, reason: "style and extra images at most 4 together"}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    folder = tmp_path_factory.mktemp("specs")
    (folder / "acme-limits.yaml").write_text(SPEC)
    return load_registry(folder)


def _url(n: int) -> str:
    return f"https://example.com/{n}.png"


def _rules(registry: ModelRegistry, **kw: Any) -> set[str]:
    kw.setdefault("images", [_url(0)])
    kw.setdefault("prompt", "hi")
    result = validate_request(RawUserRequest(model_key="acme-limits", **kw), registry=registry)
    return {d.rule for d in result.impossible_inputs}


def test_conditional_prompt_length_and_option_range(registry: ModelRegistry) -> None:
    assert _rules(registry, prompt="x" * 50) == set()
    assert "max_chars" in _rules(registry, prompt="x" * 50, options={"mode": "short"})
    assert _rules(registry, options={"steps": 8}) == set()
    assert "max" in _rules(registry, options={"steps": 8, "mode": "short"})


def test_step_and_decimals(registry: ModelRegistry) -> None:
    assert _rules(registry, options={"guidance": 2.5, "strength": 0.25}) == set()
    assert "multiple_of" in _rules(registry, options={"guidance": 2.3})
    assert "decimals" in _rules(registry, options={"strength": 0.125})


def test_combined_length_across_list_items(registry: ModelRegistry) -> None:
    assert _rules(registry, options={"lines": ["abcdef", "ghijkl"]}) == set()
    assert "max_total_chars" in _rules(registry, options={"lines": ["abcdef", "ghijklm"]})


def test_conditional_slot_count_and_totals_across_slots(registry: ModelRegistry) -> None:
    images = [_url(0), _url(1), _url(2), _url(3), _url(4)]
    assert _rules(registry, images=images) == set()
    assert "max_items" in _rules(registry, images=images[:3], options={"mode": "short"})
    assert "slot_total" in _rules(registry, images=[*images, _url(5)])
    spec = registry.get("acme-limits")
    mode = spec.task_modes[0]
    body = {"prompt": "hi", "image_url": _url(0), "style_urls": [_url(1), _url(2)], "mode": "short"}
    assert any("style_urls" in p for p in parse_wire_input(spec, mode, body).problems)
    body = {"prompt": "hi", "image_url": _url(0), "style_urls": [_url(1)] * 3, "extra_urls": [_url(2)] * 2}
    assert any("together" in p for p in parse_wire_input(spec, mode, body).problems)


def test_total_size_of_a_slots_files(registry: ModelRegistry) -> None:
    noisy = bytes(pyvips.Image.gaussnoise(60, 60).cast("uchar").pngsave_buffer())
    assert 2700 < len(noisy) < 5000  # one fits in 0.005 MB (5243 bytes), two do not
    small = MediaInput(source=noisy, filename="s.png")
    assert "max_total_mb" not in _rules(registry, images=[_url(0), small])
    assert "max_total_mb" in _rules(registry, images=[_url(0), small, small])


def _png(width: int, height: int) -> bytes:
    return bytes(pyvips.Image.black(width, height).pngsave_buffer())


def test_pixel_size_and_aspect_from_the_header_of_files_and_bytes(registry: ModelRegistry, tmp_path: Path) -> None:
    assert _rules(registry, images=[MediaInput(source=_png(100, 100), filename="a.png")]) == set()
    assert "pixels" in _rules(registry, images=[MediaInput(source=_png(20, 40), filename="a.png")])
    assert "pixels" in _rules(registry, images=[MediaInput(source=_png(200, 200), filename="a.png")])
    wide = tmp_path / "wide.png"
    wide.write_bytes(_png(150, 50))
    assert "aspect_ratio" in _rules(registry, images=[str(wide)])
    fine = tmp_path / "fine.png"
    fine.write_bytes(_png(120, 80))
    assert _rules(registry, images=[str(fine)]) == set()


# ---------------------------------------------------------------- before any upload, on the emulator


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1)


async def test_an_image_below_the_pages_pixel_bound_is_refused_before_upload(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    small = tmp_path / "small.png"
    small.write_bytes(_png(200, 200))  # happyhorse-i2v: width and height at least 300 px (the page)
    request = RawUserRequest(model_key="happyhorse-i2v", prompt="a horse runs", images=[str(small)])
    async with KieSession(emulator.settings()) as kie:
        result = await run_pipeline(
            request, kie, options=PipelineOptions(artifacts=ArtifactSettings(root=tmp_path / "out"))
        )
    assert result.status == "blocked" and result.spent_nothing, result.error
    assert "300" in (result.error or "")
    assert emulator.stats.uploads == 0 and emulator.stats.tasks_created == 0


def _mp4(width: int, height: int) -> bytes:
    """A minimal MP4: ftyp, then moov > trak > tkhd (version 0) giving the track's size in 16.16 fixed point."""
    tkhd_payload = bytes(4 + 20 + 8 + 8 + 36) + struct.pack(">II", width << 16, height << 16)
    tkhd = struct.pack(">I4s", 8 + len(tkhd_payload), b"tkhd") + tkhd_payload
    trak = struct.pack(">I4s", 8 + len(tkhd), b"trak") + tkhd
    moov = struct.pack(">I4s", 8 + len(trak), b"moov") + trak
    ftyp = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 0, b"isom")
    return ftyp + moov


def test_video_size_comes_from_the_track_header(tmp_path: Path) -> None:
    assert video_size(_mp4(1280, 720)) == (1280, 720)
    assert video_size(_mp4(0, 0)) is None  # an audio track has no size
    path = tmp_path / "clip.mp4"
    path.write_bytes(_mp4(720, 1280))
    assert video_size(path) == (720, 1280)
    assert video_size(b"not a video") is None


def test_video_pixel_bounds_are_checked_before_upload(tmp_path: Path) -> None:
    def rules(width: int, height: int) -> set[str]:
        clip = tmp_path / f"clip-{width}x{height}.mp4"
        clip.write_bytes(_mp4(width, height))
        result = validate_request(
            RawUserRequest(model_key="happyhorse-video-edit", prompt="make it night", videos=[str(clip)])
        )
        return {d.rule for d in result.impossible_inputs}

    assert "pixels" not in rules(1280, 720)
    assert "pixels" in rules(2400, 1000)  # the longer side above 2160 px (the page)
    assert "pixels" in rules(300, 600)  # the shorter side below 320 px
