"""Originals that already fit a rendition are referenced (or copied), never decoded and re-encoded.

Small web-format originals give ``reused`` records naming the original inside the run folder (a copy when it
lives outside the folder records are relative to); a medium one reuses the original as ``web`` and only makes
the thumbnail; an original browsers cannot show as is (16-bit) is still converted; remaking a run's
derivatives never removes its outputs; the libvips cache setting is what the workers applied.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import pyvips

from kie_async.artifacts import (
    ArtifactDerivativeSettings,
    ArtifactSettings,
    ArtifactSource,
    RunArtifactCreateRequest,
    create_run_artifact,
    generate_derivatives,
    regenerate_run_derivatives,
)
from kie_async.artifacts.derivatives import DerivativeSource


def _image(width: int, height: int) -> pyvips.Image:
    return (
        pyvips.Image.gaussnoise(width, height, sigma=30, mean=128)
        .cast("uchar")
        .bandjoin([90, 200])
        .copy(interpretation="srgb")
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_small_original_inside_the_folder_is_referenced(tmp_path: Path) -> None:
    original = tmp_path / "outputs" / "out_0.png"
    original.parent.mkdir()
    _image(256, 200).write_to_file(str(original))
    (made,) = await generate_derivatives(
        [DerivativeSource(path=original)], tmp_path / "derivatives", relative_to=tmp_path
    )
    assert [(d.name, d.path, d.format, d.width, d.height, d.reused) for d in made.derivatives] == [
        ("web", "outputs/out_0.png", "png", 256, 200, True),
        ("thumb", "outputs/out_0.png", "png", 256, 200, True),
    ]
    assert not (tmp_path / "derivatives").exists()


async def test_small_original_outside_is_copied_unchanged(tmp_path: Path) -> None:
    original = tmp_path / "elsewhere.jpg"
    _image(300, 120).write_to_file(str(original), Q=90)
    (made,) = await generate_derivatives([original], tmp_path / "d")
    assert [d.reused for d in made.derivatives] == [True, True]
    for record in made.derivatives:
        assert _digest(tmp_path / "d" / record.path) == _digest(original)
        assert record.bytes == original.stat().st_size


async def test_medium_original_is_the_web_rendition_and_gets_a_thumb(tmp_path: Path) -> None:
    original = tmp_path / "outputs" / "mid.webp"
    original.parent.mkdir()
    _image(1000, 600).write_to_file(str(original))
    (made,) = await generate_derivatives([original], tmp_path / "derivatives", relative_to=tmp_path)
    web, thumb = made.derivatives
    assert (web.path, web.reused, web.format) == ("outputs/mid.webp", True, "webp")
    assert (thumb.reused, thumb.width, thumb.height, thumb.format) == (False, 384, 230, "webp")
    assert (tmp_path / thumb.path).is_file()


async def test_upscale_and_non_web_originals_are_still_rendered(tmp_path: Path) -> None:
    deep = tmp_path / "deep.png"
    _image(200, 100).cast("ushort").copy(interpretation="rgb16").write_to_file(str(deep))
    (made,) = await generate_derivatives([deep], tmp_path / "d")
    assert [(d.reused, d.format) for d in made.derivatives] == [(False, "webp"), (False, "webp")]
    small = tmp_path / "small.png"
    _image(200, 100).write_to_file(str(small))
    (up,) = await generate_derivatives([small], tmp_path / "u", ArtifactDerivativeSettings(upscale=True))
    assert [(d.reused, d.width) for d in up.derivatives] == [(False, 2048), (False, 384)]


async def test_remaking_derivatives_keeps_the_outputs(tmp_path: Path) -> None:
    source = tmp_path / "small.png"
    _image(128, 128).write_to_file(str(source))
    settings = ArtifactSettings(root=tmp_path / "root", fsync=False)
    request = RunArtifactCreateRequest(
        status="succeeded", model_key="nano-banana-2", outputs=[ArtifactSource(role="output", source_path=source)]
    )
    run = await create_run_artifact(request, settings)
    (output,) = run.manifest.outputs
    assert [d.reused for d in output.derivatives] == [True, True]
    again = await regenerate_run_derivatives(settings.root, run.run_id, ArtifactDerivativeSettings(), fsync=False)
    assert (again.run_dir / again.manifest.outputs[0].path).is_file()  # type: ignore[operator]
    assert [d.path for d in again.manifest.outputs[0].derivatives] == [output.path, output.path]


@pytest.mark.parametrize("ops", [0, 7])
async def test_vips_cache_is_sized_by_the_setting(tmp_path: Path, ops: int) -> None:
    big = tmp_path / "big.png"
    _image(2400, 300).write_to_file(str(big))
    (made,) = await generate_derivatives([big], tmp_path / "d", ArtifactDerivativeSettings(vips_cache_max_ops=ops))
    assert not made.note
    assert pyvips.cache_get_max() == ops
