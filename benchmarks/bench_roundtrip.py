"""SDK overhead: ``create_task`` + ``get_task`` through ``KieSession`` vs raw aiohttp sending the same requests.

    python benchmarks/bench_roundtrip.py            # full (about 30 s)
    python benchmarks/bench_roundtrip.py --quick    # seconds

The emulator runs in its own process. Both clients use one connection pool of the same size, the same
headers and the same JSON bodies; raw aiohttp parses the JSON and checks ``code`` (what any hand-written
client does), the SDK adds its limiter, envelope mapping, pydantic models and retry wrapper. The SDK's read
limiter is raised out of the way (reads_per_second=1e6) so only code overhead is measured.

Two phases, repeated, so machine noise hits both clients alike:
  * sequential: one round trip at a time, alternating SDK and raw call by call -> latency median and p90;
  * concurrent: many round trips in flight (``--concurrency``), SDK and raw blocks in alternating order
    -> round trips per second.
Every figure is the median over repeats of the per-repeat value; ratios (SDK / raw) are computed per repeat
and the median of those ratios is reported (so one noisy repeat cannot skew a ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _common import (
    EmulatorProcess,
    add_common_flags,
    fmt,
    median,
    percentile,
    print_table,
    ratio,
    write_results,
)

from kie_async import KieSession, RateLimitSettings
from kie_async.client.request_path import CREATE_TASK_PATH, RECORD_INFO_PATH
from kie_async.types import CreateTaskPayload

RoundTrip = Callable[[int], Awaitable[None]]


def payload(n: int) -> CreateTaskPayload:
    return CreateTaskPayload(
        model="nano-banana-2",
        input={"prompt": f"roundtrip benchmark {n}", "aspect_ratio": "1:1", "resolution": "1K", "output_format": "png"},
    )


def sdk_roundtrip(kie: KieSession) -> RoundTrip:
    async def run(n: int) -> None:
        created = await kie.create_task(payload(n))
        await kie.get_task(created.task_id)

    return run


def raw_roundtrip(http: aiohttp.ClientSession, base_url: str, api_key: str) -> RoundTrip:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    create_url, info_url = base_url + CREATE_TASK_PATH, base_url + RECORD_INFO_PATH

    async def run(n: int) -> None:
        async with http.post(create_url, data=json.dumps(payload(n).to_wire()), headers=headers) as response:
            body = json.loads(await response.read())
        if body.get("code") != 200:
            raise RuntimeError(f"createTask failed: {body}")
        task_id = body["data"]["taskId"]
        async with http.get(info_url, params={"taskId": task_id}, headers=headers) as response:
            record = json.loads(await response.read())
        if record.get("code") != 200:
            raise RuntimeError(f"recordInfo failed: {record}")

    return run


async def sequential(clients: dict[str, RoundTrip], order: list[str], count: int, start: int) -> dict[str, list[float]]:
    """One round trip at a time, alternating clients every call so both see the same machine conditions."""
    latencies: dict[str, list[float]] = {name: [] for name in order}
    for n in range(count):
        for name in order:
            t0 = time.perf_counter()
            await clients[name](start + 2 * n + (name == "raw"))
            latencies[name].append((time.perf_counter() - t0) * 1000)
    return latencies


async def concurrent(fn: RoundTrip, count: int, width: int, start: int) -> float:
    slots = asyncio.Semaphore(width)

    async def one(n: int) -> None:
        async with slots:
            await fn(start + n)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return count / (time.perf_counter() - t0)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    seq_n, conc_n, repeats, warmup = (
        (30, 100, 2, 10) if args.quick else (args.iterations, args.concurrent_runs, args.repeats, 50)
    )
    async with EmulatorProcess(create_rate_limit=None, generation_seconds=0.5) as emu:
        settings = emu.settings(
            max_connections=args.pool,
            rate_limit=RateLimitSettings(create_per_window=1_000_000, create_window_seconds=1.0, reads_per_second=1e6),
        )
        connector = aiohttp.TCPConnector(limit=args.pool, limit_per_host=0)
        async with KieSession(settings) as kie, aiohttp.ClientSession(connector=connector) as http:
            clients = {"sdk": sdk_roundtrip(kie), "raw": raw_roundtrip(http, emu.base_url, emu.api_key)}
            counter = 0
            await sequential(clients, ["sdk", "raw"], warmup, counter)  # warm both pools and code paths
            counter += 2 * warmup
            seq: dict[str, list[list[float]]] = {"sdk": [], "raw": []}
            conc: dict[str, list[float]] = {"sdk": [], "raw": []}
            for r in range(repeats):
                order = ["sdk", "raw"] if r % 2 == 0 else ["raw", "sdk"]
                lat = await sequential(clients, order, seq_n, counter)
                counter += 2 * seq_n
                for name in order:
                    seq[name].append(lat[name])
                for name in order:
                    conc[name].append(await concurrent(clients[name], conc_n, args.concurrency, counter))
                    counter += conc_n
            emu_stats = await emu.stats()
            sdk_requests = dict(kie.stats.requests)

    per_repeat = []
    for r in range(repeats):
        s, w = seq["sdk"][r], seq["raw"][r]
        per_repeat.append(
            {
                "sdk_median_ms": median(s),
                "raw_median_ms": median(w),
                "sdk_p90_ms": percentile(s, 90),
                "raw_p90_ms": percentile(w, 90),
                "median_ratio": ratio(median(s), median(w)),
                "p90_ratio": ratio(percentile(s, 90), percentile(w, 90)),
                "sdk_rt_per_s": conc["sdk"][r],
                "raw_rt_per_s": conc["raw"][r],
                "throughput_ratio": ratio(conc["sdk"][r], conc["raw"][r]),
            }
        )
    figures = {key: round(median([p[key] for p in per_repeat]), 4) for key in per_repeat[0]}
    figures["overhead_per_roundtrip_ms"] = round(figures["sdk_median_ms"] - figures["raw_median_ms"], 4)
    figures["emulator_rate_limited"] = emu_stats.get("rate_limited", 0)

    print_table(
        f"create_task + get_task round trip, medians of {repeats} repeats ({seq_n} sequential, "
        f"{conc_n} at concurrency {args.concurrency}, pool {args.pool})",
        ["figure", "SDK", "raw aiohttp", "SDK / raw (median of per-repeat ratios)"],
        [
            [
                "latency median (ms)",
                fmt(figures["sdk_median_ms"], 3),
                fmt(figures["raw_median_ms"], 3),
                fmt(figures["median_ratio"]),
            ],
            [
                "latency p90 (ms)",
                fmt(figures["sdk_p90_ms"], 3),
                fmt(figures["raw_p90_ms"], 3),
                fmt(figures["p90_ratio"]),
            ],
            [
                "round trips/s (concurrent)",
                fmt(figures["sdk_rt_per_s"], 1),
                fmt(figures["raw_rt_per_s"], 1),
                fmt(figures["throughput_ratio"]),
            ],
        ],
    )
    params = {
        "sequential_per_repeat": seq_n,
        "concurrent_per_repeat": conc_n,
        "concurrency": args.concurrency,
        "pool_size": args.pool,
        "repeats": repeats,
        "warmup": warmup,
        "emulator": "separate process, createTask limit off",
    }
    write_results(
        "bench_roundtrip",
        args.out,
        quick=args.quick,
        params=params,
        figures=figures,
        samples={"per_repeat": per_repeat, "sdk_requests": sdk_requests},
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--iterations", type=int, default=300, help="sequential round trips per repeat")
    parser.add_argument("--concurrent-runs", type=int, default=1000, help="round trips per concurrent repeat")
    parser.add_argument("--concurrency", type=int, default=32, help="round trips in flight (concurrent phase)")
    parser.add_argument("--pool", type=int, default=32, help="connection pool size for both clients")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
