"""Benchmark run artifacts: derivative throughput on 4K inputs and query time at 10,000 runs.

    python benchmarks/bench_artifacts.py            # full run (about a minute on 2 cores)
    python benchmarks/bench_artifacts.py --quick    # smaller numbers, for a smoke check

Prints a table of medians and writes the raw samples and medians to bench_artifacts.results.json next to
this file. Inputs are synthetic (pyvips gradient + noise, synthetic manifests), generated in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyvips
from rich.console import Console
from rich.table import Table

from kie_async._version import __version__
from kie_async.artifacts import (
    ArtifactDerivativeSettings,
    ArtifactFile,
    ArtifactKind,
    ArtifactSettings,
    ArtifactSource,
    DerivativeRecord,
    DerivativeSource,
    MediaInfo,
    PromptRecord,
    ProviderTrace,
    RunArtifactCreateRequest,
    RunManifest,
    RunStatus,
    StoredAs,
    create_run_artifact,
    generate_derivatives,
    get_latest_assets,
    query_runs,
    rebuild_artifact_index,
)
from kie_async.artifacts.index import (
    append_index_entry_sync,
    clear_index_cache,
    entry_from_manifest,
    read_index_sync,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_artifacts.results.json"
UHD = (3840, 2160)
MODELS = [
    ("nano-banana-2", "text_to_image", ArtifactKind.IMAGE),
    ("nano-banana-pro", "image_edit", ArtifactKind.IMAGE),
    ("seedream-4.5", "text_to_image", ArtifactKind.IMAGE),
    ("kling-3.0", "image_to_video", ArtifactKind.VIDEO),
    ("seedance-2.0", "text_to_video", ArtifactKind.VIDEO),
]


def make_uhd_jpegs(folder: Path, count: int) -> list[Path]:
    paths = []
    for n in range(count):
        xyz = pyvips.Image.xyz(*UHD)
        red = xyz[0] * (255.0 / UHD[0])
        green = xyz[1] * (255.0 / UHD[1])
        blue = (red + green) / 2 + (n * 37) % 128
        img = (red.bandjoin([green, blue]) + pyvips.Image.gaussnoise(*UHD, sigma=6)).cast("uchar")
        path = folder / f"uhd_{n:03d}.jpg"
        img.write_to_file(str(path), Q=88)
        paths.append(path)
    return paths


async def _tick(stop: asyncio.Event, lags: list[float], interval: float = 0.005) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append(time.perf_counter() - before - interval)


async def bench_derivatives(images: list[Path], work: Path, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fmt in ("webp", "jpeg"):
        settings = ArtifactDerivativeSettings(format=fmt)
        samples = []
        await generate_derivatives(images[:2], work / f"warm-{fmt}", settings)  # warm the pool and libvips
        lags: list[float] = []
        for r in range(repeats):
            sources = [DerivativeSource(path=p, stem=f"{p.stem}-{r}") for p in images]
            stop = asyncio.Event()
            ticker = asyncio.create_task(_tick(stop, lags))  # how far the event loop falls behind meanwhile
            start = time.perf_counter()
            sets = await generate_derivatives(sources, work / f"{fmt}-{r}", settings)
            elapsed = time.perf_counter() - start
            stop.set()
            await ticker
            assert all(len(s.derivatives) == 2 for s in sets)
            samples.append(len(images) / elapsed)
        lags.sort()
        out[fmt] = {
            "images_per_s": samples,
            "median_images_per_s": statistics.median(samples),
            "workers": settings.workers(),
            "loop_lag_ms": {"max": lags[-1] * 1000, "p99": lags[int(len(lags) * 0.99)] * 1000, "ticks": len(lags)},
        }
    return out


async def bench_create_run(images: list[Path], work: Path, repeats: int) -> dict[str, Any]:
    root = work / "create-root"
    samples = []
    for r in range(repeats):
        src = work / f"download-{r}.jpg"
        os.link(images[r % len(images)], src)
        request = RunArtifactCreateRequest(
            status=RunStatus.SUCCEEDED,
            model_key="nano-banana-2",
            provider_model="nano-banana-2",
            task_mode="text_to_image",
            prompts=PromptRecord(raw="bench", final_used="bench"),
            outputs=[ArtifactSource(role="output", source_path=src)],
            provider_trace=ProviderTrace(task_id=f"bench-{r}"),
        )
        start = time.perf_counter()
        await create_run_artifact(request, ArtifactSettings(root=root))
        samples.append((time.perf_counter() - start) * 1000)
    return {"ms": samples, "median_ms": statistics.median(samples)}


def synth_manifest(n: int, base: datetime, rng: random.Random) -> RunManifest:
    model, mode, kind = MODELS[n % len(MODELS)]
    when = base + timedelta(seconds=n * 30)
    run_id = f"{when:%Y%m%d-%H%M%S}-000_{model}_{n:06x}"
    status = RunStatus.FAILED if rng.random() < 0.1 else RunStatus.SUCCEEDED
    outputs = []
    if status is RunStatus.SUCCEEDED:
        ext = "jpg" if kind is ArtifactKind.IMAGE else "mp4"
        large = "web" if kind is ArtifactKind.IMAGE else "poster"
        outputs.append(
            ArtifactFile(
                role="output",
                kind=kind,
                path=f"outputs/output_0.{ext}",
                stored_as=StoredAs.HARDLINK,
                sha256=f"{rng.getrandbits(256):064x}",
                bytes=rng.randint(200_000, 9_000_000),
                media=MediaInfo(
                    mime_type="image/jpeg" if kind is ArtifactKind.IMAGE else "video/mp4",
                    width=2048,
                    height=1152,
                    duration_seconds=5.0 if kind is ArtifactKind.VIDEO else None,
                ),
                derivatives=[
                    DerivativeRecord(
                        name=large,
                        path=f"derivatives/output_0.{large}.webp",
                        format="webp",
                        width=2048,
                        height=1152,
                        bytes=400_000,
                    ),
                    DerivativeRecord(
                        name="thumb",
                        path="derivatives/output_0.thumb.webp",
                        format="webp",
                        width=384,
                        height=216,
                        bytes=9_000,
                    ),
                ],
            )
        )
    prompt = f"run {n}: a cinematic shot of a lighthouse in a storm, volumetric light, 35mm, detailed " * 2
    return RunManifest(
        run_id=run_id,
        status=status,
        created_at=when,
        recorded_at=when + timedelta(seconds=20),
        model_key=model,
        provider_model=model,
        task_mode=mode,
        prompts=PromptRecord(raw=prompt, enhanced=prompt, final_used=prompt),
        outputs=outputs,
        provider_trace=ProviderTrace(task_id=f"task_{n:08d}", credits_consumed=rng.choice([8, 18, 55, 110])),
        parent_run_ids=[f"parent_{n - 1}"] if kind is ArtifactKind.VIDEO and n else [],
    )


def write_synthetic_runs(root: Path, count: int) -> None:
    rng = random.Random(7)
    base = datetime.now(UTC) - timedelta(seconds=count * 30 + 3600)
    runs = root / "runs"
    for n in range(count):
        manifest = synth_manifest(n, base, rng)
        folder = runs / manifest.run_id
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(manifest.model_dump_json(indent=2, exclude_none=True))


async def timed(fn: Callable[[], Awaitable[Any]], repeats: int, *, cold: bool = False) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(repeats):
        if cold:
            clear_index_cache()  # as a fresh process (e.g. one CLI call) would see it
        start = time.perf_counter()
        result = await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples, result


async def bench_queries(root: Path, runs: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs}
    start = time.perf_counter()
    write_synthetic_runs(root, runs)
    out["write_manifests_s"] = time.perf_counter() - start

    rebuild_ms, report = await timed(lambda: rebuild_artifact_index(root, fsync=False), max(1, repeats // 3))
    assert report.runs_indexed == runs
    out["rebuild_ms"] = {"samples": rebuild_ms, "median": statistics.median(rebuild_ms)}
    out["index_bytes"] = (root / "index.jsonl").stat().st_size

    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "query_runs (newest 50)": lambda: query_runs(root),
        "query_runs model=kling-3.0": lambda: query_runs(root, model="kling-3.0", limit=None),
        "query_runs status=failed, since=1d": lambda: query_runs(root, status="failed", since="1d", limit=None),
        "query_runs task_mode=text_to_image limit=10": lambda: query_runs(root, task_mode="text_to_image", limit=10),
        "get_latest_assets kind=video": lambda: get_latest_assets(root, kind="video"),
    }
    out["queries_ms"] = {}
    for name, fn in queries.items():
        cold, result = await timed(fn, repeats, cold=True)
        await fn()
        warm, _ = await timed(fn, repeats)
        out["queries_ms"][name] = {
            "cold_samples": cold,
            "cold_median": statistics.median(cold),
            "warm_samples": warm,
            "warm_median": statistics.median(warm),
            "results": len(result),
        }

    read_ms = []
    for _ in range(repeats):
        start = time.perf_counter()
        read_index_sync(root, use_cache=False)
        read_ms.append((time.perf_counter() - start) * 1000)
    out["read_index_ms"] = {"samples": read_ms, "median": statistics.median(read_ms)}

    entry = entry_from_manifest(synth_manifest(runs + 1, datetime.now(UTC), random.Random(1)), "runs/x")
    for fsync in (False, True):
        samples = []
        for _ in range(repeats * 10):
            start = time.perf_counter()
            append_index_entry_sync(root, entry, fsync=fsync)
            samples.append((time.perf_counter() - start) * 1000)
        out[f"append_ms_fsync_{str(fsync).lower()}"] = {"median": statistics.median(samples)}
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24, help="distinct 4K JPEG inputs")
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the query benchmark")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="8 images, 1,000 runs, 3 repeats")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.images, args.runs, args.repeats = 8, 1000, 3

    console = Console()
    with tempfile.TemporaryDirectory(prefix="kie-bench-artifacts-") as tmp:
        work = Path(tmp)
        console.print(f"generating {args.images} 4K JPEGs ...")
        images = make_uhd_jpegs(work, args.images)
        console.print("derivative throughput ...")
        deriv = await bench_derivatives(images, work, args.repeats)
        console.print("create_run_artifact with one 4K image ...")
        create = await bench_create_run(images, work, args.repeats)
        console.print(f"query benchmark at {args.runs:,} runs ...")
        queries = await bench_queries(work / "query-root", args.runs, args.repeats)

    results = {
        "benchmark": "bench_artifacts",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "sdk_version": __version__,
        "python": sys.version.split()[0],
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # other jobs on the machine skew figures
        "platform": platform.platform(),
        "params": {"images": args.images, "input_size": list(UHD), "runs": args.runs, "repeats": args.repeats},
        "derivatives": deriv,
        "create_run_artifact_4k": create,
        "queries": queries,
    }
    args.out.write_text(json.dumps(results, indent=2))

    table = Table(
        title=f"bench_artifacts (medians of {args.repeats}; {os.cpu_count()} CPUs, libvips "
        f"{results['libvips']}; cold = fresh process, no cached index)"
    )
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("warm (cached index)", justify="right")
    for fmt, data in deriv.items():
        table.add_row(
            f"derivatives web+thumb, 4K JPEG in, {fmt} out ({data['workers']} workers)",
            f"{data['median_images_per_s']:.2f} images/s",
            "",
        )
        lag = data["loop_lag_ms"]
        table.add_row(
            f"  event-loop lag meanwhile (5 ms ticker, {lag['ticks']} ticks): max / p99",
            f"{lag['max']:.1f} / {lag['p99']:.1f} ms",
            "",
        )
    table.add_row(
        "create_run_artifact, one 4K image (hash, probe, derivatives, index)", f"{create['median_ms']:.0f} ms", ""
    )
    table.add_row(
        f"rebuild_artifact_index from {args.runs:,} run folders", f"{queries['rebuild_ms']['median']:.0f} ms", ""
    )
    table.add_row(
        f"read_index ({args.runs:,} lines, {queries['index_bytes'] / 1e6:.1f} MB)",
        f"{queries['read_index_ms']['median']:.1f} ms",
        "",
    )
    for name, data in queries["queries_ms"].items():
        table.add_row(
            f"{name} @ {args.runs:,} runs ({data['results']} results)",
            f"{data['cold_median']:.1f} ms",
            f"{data['warm_median']:.1f} ms",
        )
    table.add_row("index append (no fsync)", f"{queries['append_ms_fsync_false']['median']:.3f} ms", "")
    table.add_row("index append (fsync)", f"{queries['append_ms_fsync_true']['median']:.3f} ms", "")
    Console(width=max(console.width, 130)).print(table)
    load = results["load_average_1_5_15"]
    console.print(f"load average during the run: {load} (other jobs on the machine lower these figures)")
    console.print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
