"""Derivatives: the SDK (pyvips) vs the seed toolkit's own Pillow function and plain Pillow, on 4K JPEG and PNG.

    python benchmarks/bench_derivatives.py              # 8 4K JPEGs + 8 4K PNGs, 3 repeats (a few minutes)
    python benchmarks/bench_derivatives.py --quick      # 1 + 1 image, 1 repeat
    python benchmarks/bench_derivatives.py --compare /work/main   # also another SDK checkout ("before")

Same inputs for everyone: synthetic 3840x2160 images (gradient + noise) saved as JPEG q90 and as PNG; each
engine makes a web rendition (long edge 2048) and a thumbnail (384), WebP, web q82 / thumb q75, no upscaling.

* **sdk** — ``generate_derivatives`` with the SDK's defaults (web effort 2, thumb effort 4, libvips cache 0).
* **seed** — the seed toolkit's own ``kie_api.artifacts.images.generate_image_derivatives`` (Pillow, opens
  the original once per rendition, WebP method 6, sha256 of each file), called with the same sizes and
  qualities. Its source is ``../shared/seed/kie-api`` (MIT); it is installed into a scratch venv under
  ``/tmp`` for this benchmark only (never a dependency of the project), and skipped with a message where
  ``../shared`` is absent (a fresh clone) — and in ``--quick`` when that venv does not exist yet.
* **pillow** — plain Pillow doing what the SDK does (``thumbnail()`` LANCZOS with draft mode, web then thumb
  from it, WebP method = the SDK's efforts).

Each (engine, input kind, mode) runs in a fresh child process, because tracemalloc does not see libvips'
memory and a process's peak RSS (VmHWM) cannot be reset: peak RSS growth = VmHWM at the end − VmRSS before
the first image. Sequential mode gives the time per image (median over images); parallel mode (JPEG, SDK and
Pillow, ``--workers`` threads) gives images/s. Engines are interleaved per repeat and the ratios are taken
per repeat; tables show the median with min–max over repeats.

The WebP effort table encodes the SDK's own web and thumb renditions of one input at every effort 0–6 and
compares quality as PSNR against the same pixels before encoding, plus bytes and encode time: that is how
the per-rendition efforts were chosen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    add_common_flags,
    fmt,
    fmt_spread,
    median,
    print_table,
    proc_status_kb,
    ratio,
    spread,
    write_results,
)

from kie_async.types import ArtifactDerivativeSettings

UHD = (3840, 2160)
ROOT = Path(__file__).resolve().parent.parent
SEED_SOURCE = ROOT.parent / "shared" / "seed" / "kie-api"
SEED_VENV = Path(tempfile.gettempdir()) / "kie-bench-seed-venv"
KINDS = {"jpeg": ".jpg", "png": ".png"}


def make_inputs(folder: Path, count: int) -> None:
    import pyvips

    for kind, suffix in KINDS.items():
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            xyz = pyvips.Image.xyz(*UHD)
            red = xyz[0] * (255.0 / UHD[0])
            green = xyz[1] * (255.0 / UHD[1])
            blue = (red + green) / 2 + (n * 41) % 128
            image = (red.bandjoin([green, blue]) + pyvips.Image.gaussnoise(*UHD, sigma=8)).cast("uchar")
            options = {"Q": 90} if kind == "jpeg" else {}
            image.copy(interpretation="srgb").write_to_file(str(folder / kind / f"uhd_{n:03d}{suffix}"), **options)


def seed_python(source: Path, quick: bool) -> tuple[Path | None, str]:
    """The scratch venv's python with the seed toolkit installed (made on first use), or None and why not."""
    if not source.is_dir():
        return None, f"seed toolkit not found at {source} (../shared is absent in a fresh clone): seed skipped"
    python = SEED_VENV / "bin" / "python"
    probe = [str(python), "-c", "import kie_api.artifacts.images"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python, ""
    if quick:
        return None, f"--quick: no seed venv at {SEED_VENV} yet (a full run creates it): seed skipped"
    print(f"installing the seed toolkit into a scratch venv at {SEED_VENV} (benchmark only) ...", flush=True)
    build = Path(tempfile.mkdtemp(prefix="kie-bench-seed-src-"))
    try:
        shutil.copytree(source, build / "kie-api")  # shared/ is read-only and pip builds in the source folder
        subprocess.run([sys.executable, "-m", "venv", str(SEED_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(build / "kie-api")], check=True)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return python, ""


SEED_CHILD = r"""
import json, sys, time
from pathlib import Path
from PIL import Image
from kie_api.artifacts.images import generate_image_derivatives

def kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

inputs = sorted(Path(sys.argv[1]).iterdir())
out = Path(sys.argv[2])
opts = dict(web_max_dimension=2048, thumb_max_dimension=384, web_quality=82, thumb_quality=75)
warm = out / "warm"
warm.mkdir(parents=True, exist_ok=True)
Image.new("RGB", (64, 64)).save(warm / "w.jpg")
generate_image_derivatives(warm / "w.jpg", warm / "w.web.webp", warm / "w.thumb.webp", **opts)
before = kb("VmRSS")
per = []
cpu = []
t0 = time.perf_counter()
for path in inputs:
    t = time.perf_counter()
    c = time.process_time()
    generate_image_derivatives(path, out / f"{path.stem}.web.webp", out / f"{path.stem}.thumb.webp", **opts)
    cpu.append(time.process_time() - c)
    per.append(time.perf_counter() - t)
wall = time.perf_counter() - t0
hwm = kb("VmHWM")
print(json.dumps({"wall_s": wall, "per_image_s": per, "cpu_per_image_s": cpu, "images": len(inputs),
                  "images_per_s": len(inputs) / wall,
                  "rss_before_kb": before, "hwm_after_kb": hwm, "peak_growth_mb": (hwm - before) / 1024,
                  "outputs": sum(1 for p in out.iterdir() if p.is_file())}))
"""


def pillow_one(source: Path, out_dir: Path, settings: ArtifactDerivativeSettings) -> None:
    from PIL import Image

    fmt_name = "WEBP" if settings.format == "webp" else "JPEG"
    edge = settings.web_long_edge
    with Image.open(source) as opened:
        opened.draft("RGB", (edge, edge))  # JPEG shrink-on-load, as libvips does
        large = opened.copy() if opened.mode == "RGB" else opened.convert("RGB")
    large.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    thumb = large.copy()
    thumb.thumbnail((settings.thumb_long_edge, settings.thumb_long_edge), Image.Resampling.LANCZOS)
    efforts = {"web": settings.webp_effort, "thumb": getattr(settings, "thumb_webp_effort", settings.webp_effort)}
    for name, image, quality in (("web", large, settings.web_quality), ("thumb", thumb, settings.thumb_quality)):
        target = out_dir / f"{source.stem}.{name}{settings.suffix}"
        if fmt_name == "WEBP":
            image.save(target, fmt_name, quality=quality, method=efforts[name])
        else:
            image.save(target, fmt_name, quality=quality, optimize=True, progressive=True)


async def child(
    engine: str, mode: str, inputs: list[Path], out_dir: Path, workers: int, fmt_name: str
) -> dict[str, Any]:
    settings = ArtifactDerivativeSettings(format=fmt_name, max_workers=workers if mode == "parallel" else 1)
    if engine in ("pyvips", "sdk", "before"):
        # Warm the import and libvips' first-call setup on a tiny image outside the measurement.
        import pyvips

        from kie_async.artifacts import generate_derivatives

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
    cpu_per_image: list[float] = []
    t0 = time.perf_counter()
    if engine in ("pyvips", "sdk", "before"):
        if mode == "sequential":
            for path in inputs:
                t = time.perf_counter()
                c = time.process_time()
                sets = await generate_derivatives([path], out_dir, settings)
                cpu_per_image.append(time.process_time() - c)
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
            c = time.process_time()
            pillow_one(path, out_dir, settings)
            cpu_per_image.append(time.process_time() - c)
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
        "cpu_per_image_s": cpu_per_image,
        "images_per_s": len(inputs) / wall,
        "rss_before_kb": rss_before,
        "hwm_after_kb": proc_status_kb("VmHWM"),
        "peak_growth_mb": ((proc_status_kb("VmHWM") or 0) - (rss_before or 0)) / 1024,
        "outputs": len(outputs),
    }


def run_child(
    engine: str, mode: str, inputs_dir: Path, out_dir: Path, workers: int, fmt_name: str, args: argparse.Namespace
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if engine == "seed":
        cmd = [str(args.seed_python), "-c", SEED_CHILD, str(inputs_dir), str(out_dir)]
    else:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            engine,
            "--mode",
            mode,
            "--inputs",
            str(inputs_dir),
            "--child-out",
            str(out_dir),
            "--workers",
            str(workers),
            "--format",
            fmt_name,
        ]
        if engine == "before":
            env["PYTHONPATH"] = str(args.compare)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    shutil.rmtree(out_dir, ignore_errors=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def effort_sweep(source: Path, quick: bool) -> list[dict[str, Any]]:
    """Every WebP effort on the SDK's own web and thumb pixels of ``source``: encode ms, KiB and PSNR."""
    import pyvips

    large = pyvips.Image.thumbnail(str(source), 2048, height=2048, size="down").copy_memory()
    thumb = large.thumbnail_image(384, height=384, size="down").copy_memory()
    rows = []
    for name, image, quality in (("web", large, 82), ("thumb", thumb, 75)):
        for effort in (2, 4) if quick else range(7):
            times = []
            for _ in range(1 if quick else 3):
                t = time.perf_counter()
                data = image.webpsave_buffer(Q=quality, effort=effort, keep="none")
                times.append(time.perf_counter() - t)
            back = pyvips.Image.new_from_buffer(data, "")
            diff = image.cast("float") - back.cast("float")
            mse = (diff * diff).avg()
            rows.append(
                {
                    "rendition": name,
                    "effort": effort,
                    "encode_ms": round(min(times) * 1000, 1),
                    "kib": round(len(data) / 1024, 1),
                    "psnr_db": round(10 * math.log10(255 * 255 / mse), 2) if mse else 99.0,
                }
            )
    return rows


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    count = 1 if args.quick else args.images
    repeats = 1 if args.quick else args.repeats
    workers = args.workers or ArtifactDerivativeSettings().workers()
    args.seed_python, seed_note = await asyncio.to_thread(seed_python, args.seed_source, args.quick)
    if seed_note:
        print(seed_note, flush=True)
    engines = ["sdk", "pillow"] + (["seed"] if args.seed_python else []) + (["before"] if args.compare else [])
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kie-bench-derivatives-"))
    samples: list[dict[str, Any]] = []
    try:
        inputs_dir = root / "inputs"
        t = time.perf_counter()
        await asyncio.to_thread(make_inputs, inputs_dir, count)
        print(f"made {count} 4K JPEG(s) and {count} 4K PNG(s) in {time.perf_counter() - t:.1f}s", flush=True)
        sweep = {
            kind: await asyncio.to_thread(effort_sweep, next((inputs_dir / kind).iterdir()), args.quick)
            for kind in KINDS
        }
        jobs = [(kind, "sequential") for kind in KINDS] + [("jpeg", "parallel")]
        for r in range(repeats):
            order = engines if r % 2 == 0 else engines[::-1]
            for kind, mode in jobs:
                for engine in order:
                    if mode == "parallel" and engine in ("seed", "before"):
                        continue
                    out_dir = root / f"out_{engine}_{kind}_{mode}_{r}"
                    sample = await asyncio.to_thread(
                        run_child, engine, mode, inputs_dir / kind, out_dir, workers, args.format, args
                    )
                    if sample["outputs"] != 2 * count:
                        raise RuntimeError(f"{engine} {kind} {mode}: {sample['outputs']} files, expected {2 * count}")
                    sample.update(engine=engine, kind=kind, mode=mode, repeat=r)
                    samples.append(sample)
                    print(
                        f"repeat {r + 1}/{repeats} {engine:<6} {kind:<4} {mode:<10}: "
                        f"{median(sample['per_image_s']) * 1000 if sample['per_image_s'] else math.nan:7.1f} "
                        f"ms/image, {sample['images_per_s']:.2f} img/s, "
                        f"peak RSS growth {sample['peak_growth_mb']:.0f} MB",
                        flush=True,
                    )
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)

    def one(engine: str, kind: str, mode: str, r: int) -> dict[str, Any]:
        return next(s for s in samples if (s["engine"], s["kind"], s["mode"], s["repeat"]) == (engine, kind, mode, r))

    def has(engine: str) -> bool:
        return engine in engines

    def per_repeat(a: str, b: str, kind: str, mode: str, key: str) -> dict[str, float]:
        values = []
        for r in range(repeats):
            x, y = one(a, kind, mode, r), one(b, kind, mode, r)
            values.append(
                ratio(median(x[key]), median(y[key])) if key.endswith("per_image_s") else ratio(x[key], y[key])
            )
        return spread(values)

    figures: dict[str, Any] = {"engines": engines, "seed_note": seed_note or None}
    for engine in engines:
        for kind in KINDS:
            seq = [s for s in samples if (s["engine"], s["kind"], s["mode"]) == (engine, kind, "sequential")]
            figures[f"{engine}_{kind}_ms_per_image"] = round(
                median([x * 1000 for s in seq for x in s["per_image_s"]]), 1
            )
            figures[f"{engine}_{kind}_peak_rss_growth_mb"] = round(median([s["peak_growth_mb"] for s in seq]), 1)
            figures[f"{engine}_{kind}_cpu_ms_per_image"] = round(
                median([x * 1000 for s in seq for x in s.get("cpu_per_image_s", [])]), 1
            )
    for kind in KINDS:
        figures[f"pillow_over_sdk_time_{kind}"] = per_repeat("pillow", "sdk", kind, "sequential", "per_image_s")
        figures[f"sdk_over_pillow_rss_{kind}"] = per_repeat("sdk", "pillow", kind, "sequential", "peak_growth_mb")
        for other in ("seed", "before"):
            if not has(other):
                continue
            if other == "seed":
                figures[f"seed_over_sdk_time_{kind}"] = per_repeat("seed", "sdk", kind, "sequential", "per_image_s")
                figures[f"seed_over_sdk_cpu_{kind}"] = per_repeat("seed", "sdk", kind, "sequential", "cpu_per_image_s")
                figures[f"sdk_over_seed_rss_{kind}"] = per_repeat("sdk", "seed", kind, "sequential", "peak_growth_mb")
                if has("before"):
                    figures[f"seed_over_before_time_{kind}"] = per_repeat(
                        "seed", "before", kind, "sequential", "per_image_s"
                    )
                    figures[f"seed_over_before_cpu_{kind}"] = per_repeat(
                        "seed", "before", kind, "sequential", "cpu_per_image_s"
                    )
                    figures[f"before_over_seed_rss_{kind}"] = per_repeat(
                        "before", "seed", kind, "sequential", "peak_growth_mb"
                    )
            else:
                figures[f"before_over_sdk_time_{kind}"] = per_repeat("before", "sdk", kind, "sequential", "per_image_s")
    for engine in ("sdk", "pillow"):
        par = [s for s in samples if (s["engine"], s["kind"], s["mode"]) == (engine, "jpeg", "parallel")]
        figures[f"{engine}_images_per_s_parallel"] = round(median([s["images_per_s"] for s in par]), 3)
        figures[f"{engine}_peak_rss_growth_mb_parallel"] = round(median([s["peak_growth_mb"] for s in par]), 1)
    # The keys earlier results used (JPEG): pyvips = the SDK.
    figures["pyvips_ms_per_image"] = figures["sdk_jpeg_ms_per_image"]
    figures["pillow_ms_per_image"] = figures["pillow_jpeg_ms_per_image"]
    figures["pyvips_images_per_s_parallel"] = figures["sdk_images_per_s_parallel"]
    figures["pyvips_peak_rss_growth_mb_parallel"] = figures["sdk_peak_rss_growth_mb_parallel"]
    figures["speedup_per_image_pillow_over_pyvips"] = figures["pillow_over_sdk_time_jpeg"]["median"]
    figures["throughput_ratio_parallel_pyvips_over_pillow"] = per_repeat(
        "sdk", "pillow", "jpeg", "parallel", "images_per_s"
    )
    figures["webp_effort"] = sweep

    rows = []
    for kind in KINDS:
        label = kind.upper()
        rows.append([f"time per image, {label} (ms)"] + [fmt(figures[f"{e}_{kind}_ms_per_image"], 1) for e in engines])
        rows.append(
            [f"CPU per image, all threads, {label} (ms)"]
            + [fmt(figures[f"{e}_{kind}_cpu_ms_per_image"], 1) for e in engines]
        )
        rows.append(
            [f"peak RSS growth, {label} (MB)"] + [fmt(figures[f"{e}_{kind}_peak_rss_growth_mb"], 1) for e in engines]
        )
    print_table(
        f"derivatives of {count} 3840x2160 image(s) per kind -> {args.format} 2048 + 384, sequential, "
        f"median over {repeats} repeat(s)",
        ["figure", *engines],
        rows,
    )
    ratio_rows = []
    for kind in KINDS:
        label = kind.upper()
        if has("seed"):
            ratio_rows.append(
                [f"time, seed ÷ SDK, {label} (goal ≥ 5)", fmt_spread(figures[f"seed_over_sdk_time_{kind}"])]
            )
            ratio_rows.append(
                [f"CPU (all threads), seed ÷ SDK, {label}", fmt_spread(figures[f"seed_over_sdk_cpu_{kind}"])]
            )
            ratio_rows.append(
                [f"peak RSS growth, SDK ÷ seed, {label} (goal ≤ 0.8)", fmt_spread(figures[f"sdk_over_seed_rss_{kind}"])]
            )
            if has("before"):
                ratio_rows.append(
                    [
                        f"  before (--compare): time seed ÷ before, {label}",
                        fmt_spread(figures[f"seed_over_before_time_{kind}"]),
                    ]
                )
                ratio_rows.append(
                    [
                        f"  before (--compare): CPU seed ÷ before, {label}",
                        fmt_spread(figures[f"seed_over_before_cpu_{kind}"]),
                    ]
                )
                ratio_rows.append(
                    [
                        f"  before (--compare): RSS before ÷ seed, {label}",
                        fmt_spread(figures[f"before_over_seed_rss_{kind}"]),
                    ]
                )
        ratio_rows.append([f"time, Pillow ÷ SDK, {label}", fmt_spread(figures[f"pillow_over_sdk_time_{kind}"])])
        ratio_rows.append(
            [f"peak RSS growth, SDK ÷ Pillow, {label}", fmt_spread(figures[f"sdk_over_pillow_rss_{kind}"])]
        )
    ratio_rows.append(
        [
            f"images/s with {workers} workers, SDK ÷ Pillow, JPEG",
            fmt_spread(figures["throughput_ratio_parallel_pyvips_over_pillow"]),
        ]
    )
    print_table("ratios per repeat: median (min–max)", ["ratio", "value"], ratio_rows)
    print_table(
        "WebP effort per rendition (first input): PSNR vs the pixels before encoding, size, encode time (min of 3)",
        ["input / rendition / effort", "PSNR (dB)", "KiB", "encode ms"],
        [
            [
                f"{kind} {row['rendition']} effort {row['effort']}",
                fmt(row["psnr_db"]),
                fmt(row["kib"], 1),
                fmt(row["encode_ms"], 1),
            ]
            for kind, rows_ in sweep.items()
            for row in rows_
        ],
    )
    params = {
        "images_per_kind": count,
        "input": "3840x2160 gradient + noise, JPEG q90 and PNG",
        "format": args.format,
        "web_long_edge": 2048,
        "thumb_long_edge": 384,
        "quality": {"web": 82, "thumb": 75},
        "parallel_workers": workers,
        "repeats": repeats,
        "engines": engines,
        "compare": str(args.compare) if args.compare else None,
        "seed": "kie_api.artifacts.images.generate_image_derivatives (own venv)" if has("seed") else seed_note,
        "isolation": "fresh child process per engine, input kind and mode",
    }
    headline = {k: v for k, v in figures.items() if "_over_" in k or k.endswith("ms_per_image")}
    write_results(
        "bench_derivatives",
        args.out,
        quick=args.quick,
        params=params,
        figures=figures,
        samples={"runs": samples},
        headline=headline,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--images", type=int, default=8, help="4K input images per kind (default 8)")
    parser.add_argument("--compare", type=Path, help="another SDK checkout, run the same way (before/after)")
    parser.add_argument("--seed-source", type=Path, default=SEED_SOURCE, help="the seed toolkit's source folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="parallel workers (default: the SDK's default)")
    parser.add_argument("--format", choices=["webp", "jpeg"], default="webp")
    parser.add_argument("--child", choices=["pyvips", "sdk", "before", "pillow"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["sequential", "parallel"], help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        inputs = sorted(p for p in args.inputs.iterdir() if p.is_file())
        result = asyncio.run(child(args.child, args.mode, inputs, args.child_out, args.workers, args.format))
        print(json.dumps(result))
        return 0
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
