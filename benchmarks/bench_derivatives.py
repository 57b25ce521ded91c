"""Derivatives: the SDK's pyvips path (``generate_derivatives``) vs Pillow doing the same resize + encode.

    python benchmarks/bench_derivatives.py              # 12 4K JPEGs, 3 repeats (under a minute)
    python benchmarks/bench_derivatives.py --quick      # 2 images, 1 repeat

Same work for both engines, on synthetic 3840x2160 JPEGs (gradient + noise, q90): a web rendition with
long edge 2048 and a thumbnail with long edge 384 made from it, both WebP (web q82, thumb q75, libwebp
effort/method 2), no metadata, no upscaling — the SDK defaults. Pillow uses ``thumbnail()`` with LANCZOS
(libvips' default kernel is lanczos3), which also applies JPEG draft-mode shrink-on-load like libvips does.

Each (engine, mode) runs in a fresh child process, because tracemalloc does not see libvips' memory and a
process's peak RSS (VmHWM) cannot be reset. Modes:
  * sequential: one image at a time, one worker -> time per image (median over images);
  * parallel: all images with ``--workers`` threads (SDK default: min(4, CPUs)) -> images per second.
Peak memory = VmHWM at the end − VmRSS before the first image (imports and inputs listing excluded).
Note: libvips also parallelises inside one operation, Pillow does not; both are measured as shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import add_common_flags, fmt, median, print_table, proc_status_kb, ratio, write_results

from kie_async import ArtifactDerivativeSettings

UHD = (3840, 2160)


def make_inputs(folder: Path, count: int) -> list[Path]:
    import pyvips

    paths = []
    for n in range(count):
        xyz = pyvips.Image.xyz(*UHD)
        red = xyz[0] * (255.0 / UHD[0])
        green = xyz[1] * (255.0 / UHD[1])
        blue = (red + green) / 2 + (n * 41) % 128
        image = (red.bandjoin([green, blue]) + pyvips.Image.gaussnoise(*UHD, sigma=8)).cast("uchar")
        path = folder / f"uhd_{n:03d}.jpg"
        image.copy(interpretation="srgb").write_to_file(str(path), Q=90)
        paths.append(path)
    return paths


def pillow_one(source: Path, out_dir: Path, settings: ArtifactDerivativeSettings) -> None:
    from PIL import Image

    fmt_name = "WEBP" if settings.format == "webp" else "JPEG"
    with Image.open(source) as opened:
        large = opened.copy() if opened.mode == "RGB" else opened.convert("RGB")
    edge = settings.web_long_edge
    large.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    thumb = large.copy()
    thumb.thumbnail((settings.thumb_long_edge, settings.thumb_long_edge), Image.Resampling.LANCZOS)
    for name, image, quality in (("web", large, settings.web_quality), ("thumb", thumb, settings.thumb_quality)):
        target = out_dir / f"{source.stem}.{name}{settings.suffix}"
        if fmt_name == "WEBP":
            image.save(target, fmt_name, quality=quality, method=settings.webp_effort)
        else:
            image.save(target, fmt_name, quality=quality, optimize=True, progressive=True)


async def child(
    engine: str, mode: str, inputs: list[Path], out_dir: Path, workers: int, fmt_name: str
) -> dict[str, Any]:
    settings = ArtifactDerivativeSettings(format=fmt_name, max_workers=workers if mode == "parallel" else 1)
    if engine == "pyvips":
        # Warm the import and libvips' first-call setup on a tiny image outside the measurement.
        import pyvips

        from kie_async import generate_derivatives

        warm = out_dir / "warm"
        warm.mkdir(parents=True, exist_ok=True)
        pyvips.Image.black(64, 64).write_to_file(str(warm / "w.jpg"))
        await generate_derivatives([warm / "w.jpg"], warm, settings)
    else:
        from PIL import Image

        warm = out_dir / "warm"
        warm.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64)).save(warm / "w.jpg")
        pillow_one(warm / "w.jpg", warm, settings)
    rss_before = proc_status_kb("VmRSS")
    per_image: list[float] = []
    t0 = time.perf_counter()
    if engine == "pyvips":
        if mode == "sequential":
            for path in inputs:
                t = time.perf_counter()
                sets = await generate_derivatives([path], out_dir, settings)
                per_image.append(time.perf_counter() - t)
                if sets[0].note:
                    raise RuntimeError(sets[0].note)
        else:
            sets = await generate_derivatives(inputs, out_dir, settings)
            if any(s.note for s in sets):
                raise RuntimeError([s.note for s in sets])
    elif mode == "sequential":
        for path in inputs:
            t = time.perf_counter()
            pillow_one(path, out_dir, settings)
            per_image.append(time.perf_counter() - t)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda p: pillow_one(p, out_dir, settings), inputs))
    wall = time.perf_counter() - t0
    outputs = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return {
        "engine": engine,
        "mode": mode,
        "images": len(inputs),
        "wall_s": wall,
        "per_image_s": per_image,
        "images_per_s": len(inputs) / wall,
        "rss_before_kb": rss_before,
        "hwm_after_kb": proc_status_kb("VmHWM"),
        "peak_growth_mb": ((proc_status_kb("VmHWM") or 0) - (rss_before or 0)) / 1024,
        "outputs": len(outputs),
    }


def run_child(engine: str, mode: str, inputs_dir: Path, out_dir: Path, workers: int, fmt_name: str) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, __file__, "--child", engine, "--mode", mode, "--inputs", str(inputs_dir),
         "--child-out", str(out_dir), "--workers", str(workers), "--format", fmt_name],
        check=True,
        capture_output=True,
        text=True,
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    count = 2 if args.quick else args.images
    repeats = 1 if args.quick else args.repeats
    workers = args.workers or ArtifactDerivativeSettings().workers()
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kie-bench-derivatives-"))
    samples: list[dict[str, Any]] = []
    try:
        inputs_dir = root / "inputs"
        inputs_dir.mkdir()
        t = time.perf_counter()
        await asyncio.to_thread(make_inputs, inputs_dir, count)
        print(f"made {count} 4K JPEGs in {time.perf_counter() - t:.1f}s", flush=True)
        for r in range(repeats):
            engines = ("pyvips", "pillow") if r % 2 == 0 else ("pillow", "pyvips")
            for mode in ("sequential", "parallel"):
                for engine in engines:
                    sample = await asyncio.to_thread(
                        run_child, engine, mode, inputs_dir, root / f"out_{engine}_{mode}_{r}", workers, args.format
                    )
                    if sample["outputs"] != 2 * count:
                        raise RuntimeError(f"{engine} {mode}: {sample['outputs']} files, expected {2 * count}")
                    sample["repeat"] = r
                    samples.append(sample)
                    print(f"repeat {r + 1}/{repeats} {engine:<6} {mode:<10}: {sample['images_per_s']:.2f} img/s, "
                          f"peak RSS growth {sample['peak_growth_mb']:.0f} MB", flush=True)
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)

    def pick(engine: str, mode: str) -> list[dict[str, Any]]:
        return [s for s in samples if s["engine"] == engine and s["mode"] == mode]

    figures: dict[str, Any] = {}
    for engine in ("pyvips", "pillow"):
        seq, par = pick(engine, "sequential"), pick(engine, "parallel")
        figures[f"{engine}_ms_per_image"] = round(median([x * 1000 for s in seq for x in s["per_image_s"]]), 1)
        figures[f"{engine}_images_per_s_sequential"] = round(median([s["images_per_s"] for s in seq]), 3)
        figures[f"{engine}_images_per_s_parallel"] = round(median([s["images_per_s"] for s in par]), 3)
        figures[f"{engine}_peak_rss_growth_mb_sequential"] = round(median([s["peak_growth_mb"] for s in seq]), 1)
        figures[f"{engine}_peak_rss_growth_mb_parallel"] = round(median([s["peak_growth_mb"] for s in par]), 1)
    # Ratios per repeat (both engines ran back to back in it), then the median over repeats.
    def per_repeat(engine_a: str, engine_b: str, mode: str, key: str) -> float:
        values = []
        for r in range(repeats):
            a = next(s for s in samples if s["engine"] == engine_a and s["mode"] == mode and s["repeat"] == r)
            b = next(s for s in samples if s["engine"] == engine_b and s["mode"] == mode and s["repeat"] == r)
            if key == "per_image_s":
                values.append(ratio(median(a[key]), median(b[key])))
            else:
                values.append(ratio(a[key], b[key]))
        return round(median(values), 3)

    figures["speedup_per_image_pillow_over_pyvips"] = per_repeat("pillow", "pyvips", "sequential", "per_image_s")
    figures["throughput_ratio_sequential_pyvips_over_pillow"] = per_repeat(
        "pyvips", "pillow", "sequential", "images_per_s"
    )
    figures["throughput_ratio_parallel_pyvips_over_pillow"] = per_repeat("pyvips", "pillow", "parallel", "images_per_s")
    figures["memory_ratio_parallel_pillow_over_pyvips"] = per_repeat("pillow", "pyvips", "parallel", "peak_growth_mb")
    figures["memory_ratio_sequential_pillow_over_pyvips"] = per_repeat(
        "pillow", "pyvips", "sequential", "peak_growth_mb"
    )
    print_table(
        f"derivatives of {count} 3840x2160 JPEGs -> {args.format} 2048 + 384, median of {repeats} repeat(s), "
        f"parallel = {workers} workers; ratios = median of per-repeat ratios",
        ["figure", "pyvips (SDK)", "Pillow", "Pillow ÷ pyvips"],
        [
            ["time per image, sequential (ms)", fmt(figures["pyvips_ms_per_image"], 1),
             fmt(figures["pillow_ms_per_image"], 1), fmt(figures["speedup_per_image_pillow_over_pyvips"])],
            ["images/s, sequential", fmt(figures["pyvips_images_per_s_sequential"]),
             fmt(figures["pillow_images_per_s_sequential"]),
             fmt(figures["throughput_ratio_sequential_pyvips_over_pillow"]) + " (pyvips ÷ Pillow)"],
            ["images/s, parallel", fmt(figures["pyvips_images_per_s_parallel"]),
             fmt(figures["pillow_images_per_s_parallel"]),
             fmt(figures["throughput_ratio_parallel_pyvips_over_pillow"]) + " (pyvips ÷ Pillow)"],
            ["peak RSS growth, sequential (MB)", fmt(figures["pyvips_peak_rss_growth_mb_sequential"], 1),
             fmt(figures["pillow_peak_rss_growth_mb_sequential"], 1),
             fmt(figures["memory_ratio_sequential_pillow_over_pyvips"])],
            ["peak RSS growth, parallel (MB)", fmt(figures["pyvips_peak_rss_growth_mb_parallel"], 1),
             fmt(figures["pillow_peak_rss_growth_mb_parallel"], 1),
             fmt(figures["memory_ratio_parallel_pillow_over_pyvips"])],
        ],
    )
    params = {
        "images": count,
        "input": "3840x2160 JPEG q90, gradient + noise",
        "format": args.format,
        "web_long_edge": 2048,
        "thumb_long_edge": 384,
        "quality": {"web": 82, "thumb": 75},
        "parallel_workers": workers,
        "repeats": repeats,
        "isolation": "fresh child process per engine and mode",
    }
    write_results("bench_derivatives", args.out, quick=args.quick, params=params, figures=figures,
                  samples={"runs": samples})
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--images", type=int, default=12, help="4K input images (default 12)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="parallel workers (default: the SDK's default)")
    parser.add_argument("--format", choices=["webp", "jpeg"], default="webp")
    parser.add_argument("--child", choices=["pyvips", "pillow"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["sequential", "parallel"], help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        inputs = sorted(args.inputs.glob("*.jpg"))
        result = asyncio.run(child(args.child, args.mode, inputs, args.child_out, args.workers, args.format))
        print(json.dumps(result))
        return 0
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
