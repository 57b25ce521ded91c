"""Large download: ``KieSession.download`` of a 256 MiB output vs a naive aiohttp loop: wall, CPU, peak RSS.

    python benchmarks/bench_download.py               # 256 MiB, 5 repeats per client (about 30 s)
    python benchmarks/bench_download.py --size 256M   # any size: bytes or k/M/G
    python benchmarks/bench_download.py --quick       # 32 MiB, one repeat

The file comes from the emulator's ``/_emulator/blob/<size>`` route (deterministic bytes at flat memory),
served by a separate process. Each download runs in a fresh child process, because a process's peak RSS
(VmHWM) cannot be reset: the child reads VmRSS after its imports and session setup, samples VmRSS every
20 ms during the download, and reads VmHWM at the end. "Peak RSS growth" = VmHWM at the end − VmRSS before.

Clients: the SDK (atomic temp file, aiofiles writes, fsync, rename) and raw aiohttp (``iter_chunked(1 MiB)``,
blocking writes, fsync) — both durable, both streaming. Throughput in MB/s (10^6 bytes) includes the fsync.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    EmulatorProcess,
    RssSampler,
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

from kie_async import KieSession, KieSettings
from kie_async.emulator.media import parse_size


async def child_download(client: str, url: str, dest: Path) -> dict[str, Any]:
    settings = KieSettings.from_env()  # KIE_BASE_URL / KIE_UPLOAD_BASE_URL / KIE_API_KEY set by the parent
    if client in ("sdk", "before"):
        async with KieSession(settings) as kie:
            rss_before = proc_status_kb("VmRSS")
            with RssSampler() as sampler:
                t0 = time.perf_counter()
                c0 = time.process_time()
                result = await kie.download(url, dest)
                cpu = time.process_time() - c0
                seconds = time.perf_counter() - t0
            written = result.bytes_written
    else:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            headers = {"Authorization": f"Bearer {settings.key_value()}"}
            rss_before = proc_status_kb("VmRSS")
            with RssSampler() as sampler:
                t0 = time.perf_counter()
                c0 = time.process_time()
                written = 0
                async with http.get(url, headers=headers) as response:
                    response.raise_for_status()
                    with dest.open("wb") as fh:
                        async for chunk in response.content.iter_chunked(1 << 20):
                            fh.write(chunk)
                            written += len(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
                cpu = time.process_time() - c0
                seconds = time.perf_counter() - t0
    # What the SDK's integrity hash alone costs on this machine for the same number of bytes (the naive loop
    # does not hash): a row divides by naive + this, to show what is left beyond the sha256.
    block = bytes(1 << 20)
    h0 = time.process_time()
    digest = hashlib.sha256()
    for _ in range(max(1, written >> 20)):
        digest.update(block)
    hash_cpu = time.process_time() - h0
    return {
        "hash_cpu_seconds": hash_cpu,
        "client": client,
        "bytes": written,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "mb_per_s": written / seconds / 1e6,
        "rss_before_kb": rss_before,
        "rss_peak_sampled_kb": sampler.peak_kb,
        "hwm_after_kb": proc_status_kb("VmHWM"),
        "rss_after_kb": proc_status_kb("VmRSS"),
    }


def run_child(client: str, url: str, dest: Path, env: dict[str, str], compare: Path | None = None) -> dict[str, Any]:
    extra = {"PYTHONPATH": str(compare)} if client == "before" and compare is not None else {}
    out = subprocess.run(
        [sys.executable, __file__, "--child", client, "--url", url, "--dest", str(dest)],
        env={**os.environ, **env, **extra},
        check=True,
        capture_output=True,
        text=True,
    )
    dest.unlink(missing_ok=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    before = result["rss_before_kb"] or 0
    result["peak_growth_mb"] = ((result["hwm_after_kb"] or 0) - before) / 1024
    result["sampled_growth_mb"] = ((result["rss_peak_sampled_kb"] or 0) - before) / 1024
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    size = parse_size("32M" if args.quick else args.size)
    repeats = 1 if args.quick else args.repeats
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kie-bench-download-"))
    samples: dict[str, list[dict[str, Any]]] = {"sdk": [], "raw": []}
    if args.compare is not None:
        samples["before"] = []
    async with EmulatorProcess(create_rate_limit=None) as emu:
        url = f"{emu.base_url}/_emulator/blob/{size}"
        env = {
            "KIE_BASE_URL": emu.base_url,
            "KIE_UPLOAD_BASE_URL": emu.info["upload_base_url"],
            "KIE_API_KEY": emu.api_key,
        }
        for r in range(repeats):
            order = [c for c in ("sdk", "raw", "before") if c in samples]
            for client in order if r % 2 == 0 else order[::-1]:
                sample = await asyncio.to_thread(
                    run_child, client, url, folder / f"{client}_{r}.bin", env, args.compare
                )
                if sample["bytes"] != size:
                    raise RuntimeError(f"{client} wrote {sample['bytes']} bytes, expected {size}")
                samples[client].append(sample)
                print(
                    f"repeat {r + 1}/{repeats} {client}: {sample['mb_per_s']:.0f} MB/s, "
                    f"CPU {sample['cpu_seconds']:.2f} s, "
                    f"peak RSS growth {sample['peak_growth_mb']:.1f} MB",
                    flush=True,
                )
    await asyncio.to_thread(folder.rmdir)

    figures: dict[str, Any] = {"size_bytes": size}
    for client, runs in samples.items():
        figures[f"{client}_mb_per_s"] = round(median([s["mb_per_s"] for s in runs]), 1)
        figures[f"{client}_seconds"] = round(median([s["seconds"] for s in runs]), 3)
        figures[f"{client}_peak_rss_growth_mb"] = round(median([s["peak_growth_mb"] for s in runs]), 1)
        figures[f"{client}_sampled_rss_growth_mb"] = round(median([s["sampled_growth_mb"] for s in runs]), 1)
    # Ratios per repeat (SDK and raw ran back to back), then the median: one noisy repeat cannot skew them.
    pairs = list(zip(samples["sdk"], samples["raw"], strict=True))
    figures["throughput_ratio_sdk_over_raw"] = round(median([ratio(a["mb_per_s"], b["mb_per_s"]) for a, b in pairs]), 3)
    figures["rss_growth_ratio_sdk_over_raw"] = round(
        median([ratio(a["peak_growth_mb"], b["peak_growth_mb"]) for a, b in pairs]), 3
    )
    figures["time_ratio_sdk_over_raw"] = round(median([ratio(a["seconds"], b["seconds"]) for a, b in pairs]), 3)
    # The rows: wall and CPU of download() over the naive loop, median with min and max over repeats.
    figures["wall_ratio"] = spread([ratio(a["seconds"], b["seconds"]) for a, b in pairs])
    figures["cpu_ratio"] = spread([ratio(a["cpu_seconds"], b["cpu_seconds"]) for a, b in pairs])
    figures["cpu_ratio_vs_naive_plus_sha256"] = spread(
        [ratio(a["cpu_seconds"], b["cpu_seconds"] + b["hash_cpu_seconds"]) for a, b in pairs]
    )
    figures["sha256_cpu_seconds"] = round(median([s["hash_cpu_seconds"] for s in samples["raw"]]), 3)
    for client, runs in samples.items():
        figures[f"{client}_cpu_seconds"] = round(median([s["cpu_seconds"] for s in runs]), 3)
    if "before" in samples:  # the --compare checkout against the same naive loop, same repeats
        before = list(zip(samples["before"], samples["raw"], strict=True))
        figures["before_wall_ratio"] = spread([ratio(a["seconds"], b["seconds"]) for a, b in before])
        figures["before_cpu_ratio"] = spread([ratio(a["cpu_seconds"], b["cpu_seconds"]) for a, b in before])
    figures["sdk_rss_growth_per_gb_of_file_mb"] = round(figures["sdk_peak_rss_growth_mb"] / (size / 1e9), 2)
    if "before" in samples:
        print_table(
            f"--compare {args.compare}: its download() over the same naive loop",
            ["figure", "before (--compare)", "this tree"],
            [
                ["wall ÷ naive", fmt_spread(figures["before_wall_ratio"]), fmt_spread(figures["wall_ratio"])],
                ["CPU ÷ naive", fmt_spread(figures["before_cpu_ratio"]), fmt_spread(figures["cpu_ratio"])],
            ],
        )
    print_table(
        f"download of {size / 2**20:,.0f} MiB from the emulator blob route, median of {repeats} repeat(s)",
        ["figure", "SDK download()", "raw aiohttp", "SDK / raw: median (min–max) of per-repeat ratios"],
        [
            [
                "throughput (MB/s)",
                fmt(figures["sdk_mb_per_s"], 1),
                fmt(figures["raw_mb_per_s"], 1),
                fmt(figures["throughput_ratio_sdk_over_raw"]),
            ],
            [
                "wall time (s)",
                fmt(figures["sdk_seconds"]),
                fmt(figures["raw_seconds"]),
                fmt_spread(figures["wall_ratio"]),
            ],
            [
                "CPU, all threads (s)",
                fmt(figures["sdk_cpu_seconds"]),
                fmt(figures["raw_cpu_seconds"]),
                fmt_spread(figures["cpu_ratio"]),
            ],
            [
                "CPU vs naive + sha256 of the body (s)",
                fmt(figures["sdk_cpu_seconds"]),
                fmt(figures["raw_cpu_seconds"] + figures["sha256_cpu_seconds"]),
                fmt_spread(figures["cpu_ratio_vs_naive_plus_sha256"]),
            ],
            [
                "peak RSS growth, VmHWM (MB)",
                fmt(figures["sdk_peak_rss_growth_mb"], 1),
                fmt(figures["raw_peak_rss_growth_mb"], 1),
                fmt(figures["rss_growth_ratio_sdk_over_raw"]),
            ],
            [
                "peak RSS growth, sampled (MB)",
                fmt(figures["sdk_sampled_rss_growth_mb"], 1),
                fmt(figures["raw_sampled_rss_growth_mb"], 1),
                "-",
            ],
        ],
    )
    params = {
        "size": args.size if not args.quick else "32M",
        "size_bytes": size,
        "repeats": repeats,
        "isolation": "fresh child process per download; emulator in its own process",
        "rss_sampling_interval_s": 0.02,
    }
    write_results("bench_download", args.out, quick=args.quick, params=params, figures=figures, samples=samples)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--size", default="256M", help="download size: bytes or k/M/G (default 256M = 256 MiB)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another SDK checkout, downloaded the same way (before/after)")
    parser.add_argument("--child", choices=["sdk", "raw", "before"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--dest", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child_download(args.child, args.url, args.dest))))
        return 0
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
