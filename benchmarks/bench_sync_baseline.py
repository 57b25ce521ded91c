"""The "what users do today" baseline: runs one at a time with blocking stdlib HTTP, vs the SDK's fan-out.

    python benchmarks/bench_sync_baseline.py            # 20 sequential runs + a 20-run fan-out (~1.5 min)
    python benchmarks/bench_sync_baseline.py --quick    # seconds

The sync client is plain ``urllib.request`` (requests-style): POST createTask, GET recordInfo every
``--poll-every`` seconds until success, download the output to a file; one run after the other. The emulator
(own process) is set up like the fan-out benchmark: 2 s generation, 1 MiB outputs, the real 20 per 10 s limit.

In the same run, the same number of runs goes through ``run_many`` (SDK defaults, derivatives on, so the
SDK does strictly more work per run). Reported:
  * per-run time of the sync loop (median, mean) and its extrapolation to 1,000 runs (mean x 1,000, or the
    rate-limit floor if runs were ever shorter than 10 s / 20);
  * the sample ratio: sync wall ÷ fan-out wall for the same runs;
  * 1,000-run projections: the fan-out at the real limit = window floor for 1,000 runs + the overhead above
    the floor measured here; and, if ``results/bench_fanout.json`` exists, its scaled (200/s) 1,000-run wall.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    EmulatorProcess,
    add_common_flags,
    fmt,
    median,
    print_table,
    ratio,
    write_results,
)

from kie_async import ArtifactSettings, KieSession, PipelineOptions, RawUserRequest, run_many
from kie_async.client.request_path import CREATE_TASK_PATH, RECORD_INFO_PATH

LIMIT, WINDOW = 20, 10.0


def sync_run(base_url: str, api_key: str, n: int, poll_every: float, folder: Path) -> dict[str, Any]:
    """One run the blocking way; returns timings and the number of status requests."""
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    body = {
        "model": "nano-banana-2",
        "input": {
            "prompt": f"sync baseline run {n}",
            "aspect_ratio": "1:1",
            "resolution": "1K",
            "output_format": "png",
        },
    }
    t0 = time.perf_counter()
    request = urllib.request.Request(base_url + CREATE_TASK_PATH, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        created = json.loads(response.read())
    if created.get("code") != 200:
        raise RuntimeError(f"createTask: {created}")
    task_id = created["data"]["taskId"]
    polls = 0
    query = urllib.parse.urlencode({"taskId": task_id})
    while True:
        info_request = urllib.request.Request(f"{base_url}{RECORD_INFO_PATH}?{query}", headers=headers)
        with urllib.request.urlopen(info_request, timeout=60) as response:
            record = json.loads(response.read())
        polls += 1
        data = record.get("data") or {}
        if data.get("state") == "success" and data.get("resultJson"):
            break
        if data.get("state") == "fail":
            raise RuntimeError(f"task failed: {data}")
        time.sleep(poll_every)
    t_done = time.perf_counter()
    url = json.loads(data["resultJson"])["resultUrls"][0]
    target = folder / f"sync_{n}.png"
    with urllib.request.urlopen(url, timeout=600) as response, target.open("wb") as fh:
        shutil.copyfileobj(response, fh, 1 << 20)
    t_end = time.perf_counter()
    return {"seconds": t_end - t0, "wait_s": t_done - t0, "download_s": t_end - t_done, "polls": polls}


def window_floor(runs: int, generation: float, transfer: float) -> float:
    return (math.ceil(runs / LIMIT) - 1) * WINDOW + generation + transfer


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sample = 3 if args.quick else args.sample
    generation = 0.3 if args.quick else args.generation
    poll_every = 0.3 if args.quick else args.poll_every
    target_runs = args.extrapolate_to
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kie-bench-sync-"))
    config = {
        "_render": "template",
        "generation_seconds": generation,
        "create_rate_limit": LIMIT,
        "create_rate_window": WINDOW,
        "output_bytes": args.output_bytes,
        "render_on_completion": True,
    }
    try:
        async with EmulatorProcess(**config) as emu:
            sync_runs = []
            t0 = time.perf_counter()
            for n in range(sample):
                sync_runs.append(await asyncio.to_thread(sync_run, emu.base_url, emu.api_key, n, poll_every, root))
            sync_wall = time.perf_counter() - t0
            await asyncio.sleep(WINDOW if not args.quick else 0)  # let the sync creates leave the rate window
            requests = [
                RawUserRequest(
                    model_key="nano-banana-2",
                    prompt=f"sync-baseline fan-out run {i}",
                    options={"aspect_ratio": "1:1", "output_format": "png"},
                )
                for i in range(sample)
            ]
            async with KieSession(emu.settings()) as kie:
                t1 = time.perf_counter()
                await kie.download(f"{emu.base_url}/_emulator/blob/{args.output_bytes}", root / "transfer.bin")
                transfer = time.perf_counter() - t1
                t1 = time.perf_counter()
                results = await run_many(
                    requests,
                    kie,
                    concurrency=sample,
                    options=PipelineOptions(artifacts=ArtifactSettings(root=root / "outputs")),
                )
                fanout_wall = time.perf_counter() - t1
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)

    per_run = [r["seconds"] for r in sync_runs]
    mean_run = statistics.fmean(per_run)
    # Sequential runs shorter than WINDOW / LIMIT would hit the limit too, so never project below its floor.
    sync_projected = max(mean_run * target_runs, (math.ceil(target_runs / LIMIT) - 1) * WINDOW + mean_run)
    overhead = max(0.0, fanout_wall - window_floor(sample, generation, transfer))
    async_projected = window_floor(target_runs, generation, transfer) + overhead
    figures: dict[str, Any] = {
        "sample_runs": sample,
        "sync_per_run_median_s": round(median(per_run), 4),
        "sync_per_run_mean_s": round(mean_run, 4),
        "sync_wait_median_s": round(median([r["wait_s"] for r in sync_runs]), 4),
        "sync_download_median_s": round(median([r["download_s"] for r in sync_runs]), 4),
        "sync_polls_per_run_median": median([r["polls"] for r in sync_runs]),
        "sync_sample_wall_s": round(sync_wall, 3),
        "fanout_sample_wall_s": round(fanout_wall, 3),
        "fanout_sample_succeeded": sum(1 for r in results if r.succeeded),
        "sample_speedup_sync_over_fanout": round(ratio(sync_wall, fanout_wall), 3),
        "extrapolated_runs": target_runs,
        "sync_projected_s": round(sync_projected, 1),
        "fanout_projected_real_limit_s": round(async_projected, 1),
        "speedup_projected_real_limit": round(ratio(sync_projected, async_projected), 3),
    }
    fanout_json = RESULTS_DIR / "bench_fanout.json"
    if fanout_json.exists():
        scaled = json.loads(fanout_json.read_text()).get("figures", {}).get("scaled", {})
        if scaled.get("wall_s"):
            figures["fanout_scaled_json_runs"] = scaled.get("runs")
            figures["fanout_scaled_json_wall_s"] = scaled["wall_s"]
            figures["fanout_scaled_json_rate_per_s"] = scaled.get("allowed_rate_per_s")
            per_run_scaled = scaled["wall_s"] / max(1, scaled.get("runs") or 1)
            figures["speedup_vs_scaled_fanout"] = round(ratio(sync_projected, per_run_scaled * target_runs), 2)

    rows = [
        [
            f"{sample} runs, measured",
            f"{fmt(sync_wall, 1)} s",
            f"{fmt(fanout_wall, 1)} s",
            fmt(figures["sample_speedup_sync_over_fanout"]),
        ],
        [
            f"{target_runs:,} runs, projected at 20/10s",
            f"{fmt(sync_projected, 0)} s",
            f"{fmt(async_projected, 0)} s",
            fmt(figures["speedup_projected_real_limit"]),
        ],
    ]
    if "speedup_vs_scaled_fanout" in figures:
        rows.append(
            [
                f"{target_runs:,} runs, fan-out at {figures['fanout_scaled_json_rate_per_s']:g}/s (bench_fanout.json)",
                f"{fmt(sync_projected, 0)} s",
                f"{fmt(figures['fanout_scaled_json_wall_s'] * target_runs / figures['fanout_scaled_json_runs'], 1)} s",
                fmt(figures["speedup_vs_scaled_fanout"]),
            ]
        )
    print_table(
        f"sequential urllib (poll every {poll_every:g}s) vs run_many; sync per run: median "
        f"{fmt(figures['sync_per_run_median_s'])} s, {figures['sync_polls_per_run_median']} polls",
        ["scenario", "sync, one at a time", "SDK fan-out", "sync ÷ fan-out"],
        rows,
    )
    params = {
        "sample_runs": sample,
        "poll_every_s": poll_every,
        "generation_seconds": generation,
        "output_bytes": args.output_bytes,
        "rate_limit": f"{LIMIT} per {WINDOW:g}s",
        "extrapolate_to": target_runs,
        "fanout": "run_many, SDK default settings, derivatives on",
        "transfer_s": round(transfer, 4),
    }
    write_results(
        "bench_sync_baseline",
        args.out,
        quick=args.quick,
        params=params,
        figures=figures,
        samples={"sync_runs": sync_runs},
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--sample", type=int, default=20, help="sequential runs actually made (default 20)")
    parser.add_argument("--poll-every", type=float, default=2.5, help="sync poll interval, seconds (default 2.5)")
    parser.add_argument("--generation", type=float, default=2.0, help="emulator generation seconds (default 2)")
    parser.add_argument("--output-bytes", type=int, default=1024 * 1024, help="output size (default 1 MiB)")
    parser.add_argument("--extrapolate-to", type=int, default=1000, help="runs to project to (default 1000)")
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
