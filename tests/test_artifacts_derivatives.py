"""pyvips derivatives: sizes, formats, video posters, and an event loop that keeps ticking meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import pyvips

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactKind, DerivativeSource, generate_derivatives
from kie_async.artifacts.derivatives import ffmpeg_binary

UHD = (3840, 2160)


def _photo_like(width: int, height: int, seed: int) -> pyvips.Image:
    """Gradient plus mild noise: decodes and encodes like a real photo, unlike a flat colour."""
    xyz = pyvips.Image.xyz(width, height)
    red = xyz[0] * (255.0 / width)
    green = xyz[1] * (255.0 / height)
    blue = (red + green) / 2 + seed * 17 % 255
    noise = pyvips.Image.gaussnoise(width, height, sigma=6, mean=0)
    return (red.bandjoin([green, blue]) + noise).cast("uchar")


@pytest.fixture(scope="session")
def uhd_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A few distinct 4K JPEGs, written once per test session (4K encodes are too slow to repeat)."""
    folder = tmp_path_factory.mktemp("uhd")
    paths = []
    for n in range(4):
        path = folder / f"uhd_{n}.jpg"
        _photo_like(*UHD, seed=n).write_to_file(str(path), Q=85)
        paths.append(path)
    return paths


def _long_edge(path: Path) -> tuple[int, int, str]:
    img = pyvips.Image.new_from_file(str(path))
    return img.width, img.height, img.get("vips-loader")


async def test_web_and_thumb_sizes_webp(uhd_images: list[Path], tmp_path: Path) -> None:
    sets = await generate_derivatives(uhd_images[:1], tmp_path)
    (made,) = sets
    assert made.kind is ArtifactKind.IMAGE
    by_name = {d.name: d for d in made.derivatives}
    assert set(by_name) == {"web", "thumb"}
    assert (by_name["web"].width, by_name["web"].height) == (2048, 1152)
    assert (by_name["thumb"].width, by_name["thumb"].height) == (384, 216)
    for record in by_name.values():
        width, height, loader = _long_edge(tmp_path / record.path)
        assert (width, height) == (record.width, record.height)
        assert loader == "webpload" and record.format == "webp"
        assert record.path.endswith(".webp") and record.bytes == (tmp_path / record.path).stat().st_size


async def test_portrait_jpeg_custom_sizes_and_alpha_flatten(tmp_path: Path) -> None:
    portrait = tmp_path / "portrait.png"
    rgb = _photo_like(1000, 3000, seed=1)
    rgb.bandjoin(rgb[0] * 0 + 128).copy(interpretation="srgb").write_to_file(str(portrait))  # RGBA
    settings = ArtifactDerivativeSettings(format="jpeg", web_long_edge=1200, thumb_long_edge=300, web_quality=70)
    (made,) = await generate_derivatives([portrait], tmp_path / "d", settings)
    by_name = {d.name: d for d in made.derivatives}
    assert (by_name["web"].width, by_name["web"].height) == (400, 1200)
    assert (by_name["thumb"].width, by_name["thumb"].height) == (100, 300)
    web = pyvips.Image.new_from_file(str(tmp_path / "d" / by_name["web"].path))
    assert web.get("vips-loader") == "jpegload" and web.bands == 3  # alpha flattened for JPEG


async def test_16bit_and_cmyk_originals_become_8bit_srgb(tmp_path: Path) -> None:
    deep = tmp_path / "deep.png"
    (_photo_like(600, 400, seed=4).cast("ushort") * 256).copy(interpretation="rgb16").write_to_file(str(deep))
    cmyk = tmp_path / "print.jpg"
    _photo_like(600, 400, seed=5).colourspace("cmyk").write_to_file(str(cmyk))
    assert pyvips.Image.new_from_file(str(cmyk)).interpretation == "cmyk"
    sets = await generate_derivatives([deep, cmyk], tmp_path / "d")
    for made in sets:
        assert [d.name for d in made.derivatives] == ["web", "thumb"], made.note
        for record in made.derivatives:
            image = pyvips.Image.new_from_file(str(tmp_path / "d" / record.path))
            assert (image.format, image.bands, image.interpretation) == ("uchar", 3, "srgb")


async def test_small_images_are_not_upscaled(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    _photo_like(200, 100, seed=2).write_to_file(str(small))
    (made,) = await generate_derivatives([small], tmp_path / "d")
    assert [(d.name, d.width, d.height) for d in made.derivatives] == [("web", 200, 100), ("thumb", 200, 100)]
    (up,) = await generate_derivatives([small], tmp_path / "u", ArtifactDerivativeSettings(upscale=True))
    assert [(d.width, d.height) for d in up.derivatives] == [(2048, 1024), (384, 192)]


async def test_same_stem_does_not_overwrite(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _photo_like(64, 64, seed=3).write_to_file(str(tmp_path / sub / "x.png"))
    sets = await generate_derivatives([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], tmp_path / "d")
    paths = {d.path for s in sets for d in s.derivatives}
    assert len(paths) == 4


async def test_broken_image_is_reported_not_raised(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (made,) = await generate_derivatives([DerivativeSource(path=broken, kind=ArtifactKind.IMAGE)], tmp_path / "d")
    assert made.derivatives == [] and made.note is not None and "failed" in made.note


async def test_video_without_cover_or_ffmpeg_has_no_poster(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(12))
    settings = ArtifactDerivativeSettings(video_frames="never")
    (made,) = await generate_derivatives([DerivativeSource(path=video, kind=ArtifactKind.VIDEO)], tmp_path, settings)
    assert made.derivatives == [] and made.note is not None and "no poster" in made.note


@pytest.mark.skipif(ffmpeg_binary() is None, reason="ffmpeg not on PATH (frame posters are optional)")
async def test_video_frame_poster_with_ffmpeg(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_binary() or "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=10",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-y",
        str(video),
    )
    assert await proc.wait() == 0
    (made,) = await generate_derivatives([DerivativeSource(path=video, kind=ArtifactKind.VIDEO)], tmp_path / "d")
    by_name = {d.name: d for d in made.derivatives}
    assert set(by_name) == {"poster", "thumb"}
    assert by_name["poster"].source == "video_frame"
    assert (by_name["poster"].width, by_name["poster"].height) == (640, 360)
    assert (by_name["thumb"].width, by_name["thumb"].height) == (384, 216)
    assert not list((tmp_path / "d").glob(".*frame*"))  # the grabbed frame is cleaned up


async def _ticker_lags(stop: asyncio.Event, lags: list[float], interval: float = 0.005) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append(time.perf_counter() - before - interval)


async def _idle_lag(seconds: float) -> float:
    """Worst lag of a ticker with nothing else running: the machine's own scheduling noise."""
    lags: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(_ticker_lags(stop, lags))
    await asyncio.sleep(seconds)
    stop.set()
    await tick
    return max(lags)


async def _max_loop_lag_while_processing(sources: list[DerivativeSource], out: Path) -> tuple[float, int, float, float]:
    """Run a 5 ms ticker while the derivatives are made; return (worst lag, ticks, seconds taken, the loop
    thread's share of the process's CPU time meanwhile)."""
    lags: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(_ticker_lags(stop, lags))
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    loop_cpu, process_cpu = time.thread_time(), time.process_time()  # this coroutine runs on the loop thread
    sets = await generate_derivatives(sources, out, ArtifactDerivativeSettings(format="jpeg"))
    loop_cpu, process_cpu = time.thread_time() - loop_cpu, time.process_time() - process_cpu
    took = time.perf_counter() - started
    stop.set()
    await tick
    assert len(sets) == 50 and all(len(s.derivatives) == 2 for s in sets)
    assert len({d.path for s in sets for d in s.derivatives}) == 100
    return max(lags), len(lags), took, loop_cpu / max(process_cpu, 1e-9)


LAG_LIMIT = 0.020
LOOP_CPU_SHARE_LIMIT = 0.25
"""Encoding 50 UHD images on the loop thread would be most of the CPU time; the ticker and awaits are a few %."""


async def test_event_loop_keeps_ticking_during_50_uhd_images(uhd_images: list[Path], tmp_path: Path) -> None:
    """The whole point of the thread pool: a 5 ms ticker never falls more than 20 ms behind.

    Work done on the loop would stall it for 60+ ms per 4K image, every time. A machine shared with other
    CPU-heavy jobs stalls even an idle loop now and then, so after three attempts over the limit the verdict
    comes from where the CPU time went, which load does not change: the loop thread's share of the process's
    CPU time while the images were made (encoding on the loop would be most of it).
    """
    sources = [DerivativeSource(path=uhd_images[n % len(uhd_images)], stem=f"img{n:02d}") for n in range(50)]
    worst: list[float] = []
    tooks: list[float] = []
    shares: list[float] = []
    for attempt in range(3):
        lag, ticks, took, share = await _max_loop_lag_while_processing(sources, tmp_path / f"attempt{attempt}")
        assert ticks > 20, f"only {ticks} ticks in 50 images: the loop was blocked"
        if lag < LAG_LIMIT:
            return
        worst.append(lag)
        tooks.append(took)
        shares.append(share)
    idle = await _idle_lag(max(tooks))  # once, for the report: the machine's own noise over the longest span

    def ms(values: list[float]) -> list[float]:
        return [round(v * 1000, 1) for v in values]

    report = (
        f"loop lag peaked at {ms(worst)} ms; an idle loop over the longest span: {ms([idle])} ms; the loop "
        f"thread's share of the CPU time: {[round(s, 3) for s in shares]}"
    )
    # Wall-clock lag on a machine shared with other jobs measures the scheduler as much as this code. Where the
    # CPU went does not depend on load: encoding on the loop would put most of the process's CPU time there.
    assert min(shares) < LOOP_CPU_SHARE_LIMIT, f"the encoding ran on the event loop: {report}"
