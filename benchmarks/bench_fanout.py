"""Fan-out: many runs through ``run_many`` against the emulator, compared with the floor the rate limit allows.

    python benchmarks/bench_fanout.py                 # 1,000 runs at 200/s (x3) + 100 runs at 20 per 10 s
    python benchmarks/bench_fanout.py --runs 300      # fewer scaled runs
    python benchmarks/bench_fanout.py --quick         # seconds: 50 scaled runs + 10 at the real limit

Every run is the full pipeline (normalize, validate, preflight, submit, poll, download a 1 MB output, run
folder with webp derivatives and an index line). The emulator runs in its own process with 2 s generation
time, renders outputs when a task completes, and admits createTask at the configured rate.

Floor for N runs = N / allowed rate + generation time + transfer time of one output (measured with the SDK
on the emulator's blob route just before the batch). Because Kie.ai's limit is a window (a burst of
``limit`` then wait), the exact window floor ``(ceil(N / limit) - 1) * window + generation + transfer`` is
reported too; it is lower than the rate floor, so wall ÷ rate-floor can dip under 1.

Figures: wall ÷ floor, achieved submit rate ÷ allowed rate (steady state after the first burst:
(N - limit) / (last submit - first submit)), 429s seen by the emulator (goal 0), event-loop lag p50/p99
(a 10 ms ticker in the same loop), status requests per task (emulator counters), client CPU per run (every
thread) and the event-loop thread's share of it (where spans and metrics are recorded; the derivative threads'
image encoding, which varies most on a busy machine, is left out).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import (
    EmulatorProcess,
    LoopLagProbe,
    add_common_flags,
    fmt,
    fmt_spread,
    median,
    print_table,
    process_cpu_seconds,
    ratio,
    spread,
    status_request_summary,
    write_results,
)

from kie_async import (
    ArtifactSettings,
    BatchProgress,
    KieSession,
    PipelineOptions,
    PollSettings,
    RateLimitSettings,
    RawUserRequest,
    run_many,
)
from kie_async.client.request_path import UnsentHook, WireHook
from kie_async.types import ArtifactDerivativeSettings, CreateTaskPayload, TaskCreated
from kie_async.wire.api_models import JSONValue
from kie_async.wire.task_apis import TransportSpec


class TimedSession(KieSession):
    """Records when each createTask was accepted, to measure the achieved submit rate."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submit_times: list[float] = []

    async def create_task(
        self,
        payload: CreateTaskPayload | None = None,
        *,
        model: str | None = None,
        input: dict[str, JSONValue] | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
        on_wire: WireHook | None = None,
        on_unsent: UnsentHook | None = None,
        transport: TransportSpec | None = None,
        validate: bool = True,
    ) -> TaskCreated:
        created = await super().create_task(
            payload,
            model=model,
            input=input,
            callback_url=callback_url,
            timeout=timeout,
            on_wire=on_wire,
            on_unsent=on_unsent,
            transport=transport,
            validate=validate,
        )
        self.submit_times.append(time.perf_counter())
        return created


STAGES = ("normalize", "prompt", "validate", "preflight", "prepare", "submit", "wait", "download", "artifact")


def requests_for(count: int, tag: str) -> list[RawUserRequest]:
    return [
        RawUserRequest(
            model_key="nano-banana-2",
            prompt=f"fan-out benchmark {tag} run {i}: a lighthouse at dawn",
            options={"aspect_ratio": "1:1", "output_format": "png"},
        )
        for i in range(count)
    ]


async def measure_transfer(kie: KieSession, base_url: str, size: int, folder: Path) -> float:
    """Median seconds to download one output-sized file with the SDK (the floor's transfer term)."""
    times = []
    for n in range(5):
        t0 = time.perf_counter()
        await kie.download(f"{base_url}/_emulator/blob/{size}", folder / f"transfer_{n}.bin")
        times.append(time.perf_counter() - t0)
    await asyncio.to_thread(shutil.rmtree, folder, True)
    return median(times)


async def run_scenario(
    *,
    label: str,
    runs: int,
    limit: int,
    window: float,
    generation: float,
    output_bytes: int,
    image_edge: int,
    poll: PollSettings | None,
    reads_per_second: float | None,
    downloads: int | None,
    sdk_limit: int | None,
    concurrency: int,
    progress: bool,
    render: str,
    derivatives: bool,
    artifact_fsync: bool,
) -> dict[str, Any]:
    emulator_config = {
        "_render": render,
        "generation_seconds": generation,
        "create_rate_limit": limit,
        "create_rate_window": window,
        "output_bytes": output_bytes,
        "render_on_completion": True,
        "image_long_edge": image_edge,
        "output_cache_bytes": max(256 * 1024 * 1024, int(runs * output_bytes * 1.25)),
    }
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kie-bench-fanout-"))
    try:
        async with EmulatorProcess(**emulator_config) as emu:
            overrides: dict[str, Any] = {}
            if reads_per_second is not None:
                overrides["rate_limit"] = RateLimitSettings(
                    create_per_window=sdk_limit or limit,
                    create_window_seconds=window,
                    reads_per_second=reads_per_second,
                )
            if poll is not None:
                overrides["poll"] = poll
            if downloads is not None:
                overrides["max_concurrent_downloads"] = downloads
            settings = emu.settings(**overrides)
            artifact_settings = ArtifactSettings(
                root=root / "outputs",
                fsync=artifact_fsync,
                derivatives=ArtifactDerivativeSettings(enabled=derivatives),
            )
            options = PipelineOptions(artifacts=artifact_settings)
            events = 0

            def on_progress(update: BatchProgress) -> None:
                nonlocal events
                events += 1

            async with TimedSession(settings) as kie:
                transfer = await measure_transfer(kie, emu.base_url, output_bytes, root / "transfer")
                await emu.reset_stats()
                batch = requests_for(runs, label)
                cpu_client0, cpu_emu0 = process_cpu_seconds(), process_cpu_seconds(emu.pid)
                cpu_loop0 = time.thread_time()
                async with LoopLagProbe() as lag:
                    t0 = time.perf_counter()
                    results = await run_many(
                        batch,
                        kie,
                        concurrency=concurrency,
                        options=options,
                        on_progress=on_progress if progress else None,
                    )
                    wall = time.perf_counter() - t0
                cpu_loop1 = time.thread_time()
                cpu_client1, cpu_emu1 = process_cpu_seconds(), process_cpu_seconds(emu.pid)
                submits = sorted(kie.submit_times)
                sdk_stats = kie.stats.model_copy(deep=True)
            emu_stats = await emu.stats()
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)

    allowed = limit / window
    rate_floor = runs / allowed + generation + transfer
    window_floor = (math.ceil(runs / limit) - 1) * window + generation + transfer
    span = submits[-1] - submits[0] if len(submits) > 1 else math.nan
    steady = (len(submits) - limit) / span if len(submits) > limit and span > 0 else math.nan
    statuses = Counter(r.status for r in results)
    stage_medians = {
        name: round(median([s.seconds for r in results if (s := r.stage(name)) is not None]), 4)  # type: ignore[arg-type]
        for name in STAGES
    }
    return {
        "runs": runs,
        "succeeded": statuses.get("succeeded", 0),
        "statuses": dict(statuses),
        "errors": dict(Counter(r.error_type for r in results if not r.succeeded)),
        "wall_s": round(wall, 3),
        "transfer_s": round(transfer, 4),
        "transfer_all_serial_s": round(transfer * runs, 3),
        "floor_s": round(rate_floor, 3),
        "window_floor_s": round(window_floor, 3),
        "wall_over_floor": round(wall / rate_floor, 4),
        "wall_over_window_floor": round(wall / window_floor, 4),
        "allowed_rate_per_s": allowed,
        "submit_span_s": round(span, 3),
        "achieved_rate_per_s": round(steady, 3),
        "achieved_over_allowed": round(ratio(steady, allowed), 4),
        "overall_submit_rate_per_s": round(len(submits) / (submits[-1] - t0), 3) if submits else math.nan,
        "emulator_429s": emu_stats.get("rate_limited", 0),
        "sdk_429s": sdk_stats.rate_limited,
        "sdk_retries": sdk_stats.retries,
        "tasks_created": emu_stats.get("tasks_created", 0),
        "outputs_rendered": emu_stats.get("outputs_rendered", 0),
        "loop_lag": lag.summary(),
        "status_requests_per_task": status_request_summary(emu_stats),
        "sdk_requests": dict(sdk_stats.requests),
        "progress_events": events,
        "stage_median_s": stage_medians,
        "throughput_runs_per_s": round(runs / wall, 3),
        "client_cpu_ms_per_run": _per_run_ms(cpu_client0, cpu_client1, runs),
        "loop_cpu_ms_per_run": _per_run_ms(cpu_loop0, cpu_loop1, runs),
        "emulator_cpu_ms_per_run": _per_run_ms(cpu_emu0, cpu_emu1, runs),
        "loadavg_after": _loadavg(),
    }


def _per_run_ms(before: float | None, after: float | None, runs: int) -> float:
    return round((after - before) * 1000 / runs, 2) if before is not None and after is not None else math.nan


def _loadavg() -> list[str]:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each numeric figure over repeats (429s: the sum, since the goal is zero in every run)."""
    keys = [
        "wall_s",
        "transfer_s",
        "floor_s",
        "window_floor_s",
        "wall_over_floor",
        "wall_over_window_floor",
        "achieved_rate_per_s",
        "achieved_over_allowed",
        "throughput_runs_per_s",
        "client_cpu_ms_per_run",
        "loop_cpu_ms_per_run",
        "emulator_cpu_ms_per_run",
    ]
    out: dict[str, Any] = {k: round(median([s[k] for s in samples]), 4) for k in keys}
    out["runs"] = samples[0]["runs"]
    out["allowed_rate_per_s"] = samples[0]["allowed_rate_per_s"]
    out["succeeded_min"] = min(s["succeeded"] for s in samples)
    out["emulator_429s_total"] = sum(s["emulator_429s"] for s in samples)
    out["loop_lag_p50_ms"] = round(median([s["loop_lag"]["p50_ms"] for s in samples]), 3)
    out["loop_lag_p99_ms"] = round(median([s["loop_lag"]["p99_ms"] for s in samples]), 3)
    out["loop_lag_max_ms"] = round(max(s["loop_lag"]["max_ms"] for s in samples), 3)
    out["status_requests_per_task_mean"] = round(median([s["status_requests_per_task"]["mean"] for s in samples]), 3)
    out["status_requests_per_task_max"] = max(s["status_requests_per_task"]["max"] for s in samples)
    out["repeats"] = len(samples)
    # The rows with min and max over the repeats (the medians above are what earlier results kept).
    out["spread"] = {
        "client_cpu_ms_per_run": spread([s["client_cpu_ms_per_run"] for s in samples], 2),
        "loop_cpu_ms_per_run": spread([s["loop_cpu_ms_per_run"] for s in samples], 2),
        "wall_over_floor": spread([s["wall_over_floor"] for s in samples]),
        "wall_over_window_floor": spread([s["wall_over_window_floor"] for s in samples]),
        "loop_lag_p99_ms": spread([s["loop_lag"]["p99_ms"] for s in samples], 2),
        "status_requests_per_task_mean": spread([s["status_requests_per_task"]["mean"] for s in samples]),
    }
    return out


FIGURE_ROWS: list[tuple[str, Any]] = [
    ("runs succeeded", lambda f: f"{f['succeeded_min']}/{f['runs']}"),
    ("allowed submit rate", lambda f: f"{f['allowed_rate_per_s']:g}/s"),
    ("wall time (s)", lambda f: fmt(f["wall_s"])),
    ("floor N/rate+gen+transfer (s)", lambda f: fmt(f["floor_s"])),
    ("wall / floor (min–max)", lambda f: fmt_spread(f["spread"]["wall_over_floor"])),
    ("window floor (s)", lambda f: fmt(f["window_floor_s"])),
    ("wall / window floor (min–max)", lambda f: fmt_spread(f["spread"]["wall_over_window_floor"])),
    ("achieved submit rate (/s)", lambda f: fmt(f["achieved_rate_per_s"])),
    ("achieved / allowed rate", lambda f: fmt(f["achieved_over_allowed"])),
    ("429s (all repeats)", lambda f: str(f["emulator_429s_total"])),
    ("loop lag p50 (ms)", lambda f: fmt(f["loop_lag_p50_ms"])),
    ("loop lag p99 (ms, min–max)", lambda f: fmt_spread(f["spread"]["loop_lag_p99_ms"], 1)),
    ("status requests / task (mean, min–max)", lambda f: fmt_spread(f["spread"]["status_requests_per_task_mean"])),
    ("status requests / task (max)", lambda f: str(f["status_requests_per_task_max"])),
    ("runs / s", lambda f: fmt(f["throughput_runs_per_s"])),
    ("client CPU per run (ms, min–max)", lambda f: fmt_spread(f["spread"]["client_cpu_ms_per_run"], 1)),
    ("event-loop thread CPU per run (ms, min–max)", lambda f: fmt_spread(f["spread"]["loop_cpu_ms_per_run"], 1)),
    ("emulator CPU per run (ms)", lambda f: fmt(f["emulator_cpu_ms_per_run"], 1)),
]


_EXPORTERS: list[Any] = []


def setup_otel(mode: str) -> None:
    """off: no OpenTelemetry in the process; api: the API imported, no SDK (the no-op path); sdk: the SDK with an
    in-memory span exporter and metric reader (what an instrumented service pays, less the export). Fresh
    providers each time, so ``alternate`` can switch between api and sdk in one process."""
    for exporter in _EXPORTERS:  # what an earlier sdk repeat kept would weigh on every later one (its GC)
        exporter.clear()
    _EXPORTERS.clear()
    if mode == "off":
        return
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401  (imported is what "configured" looks like to kie-async)

    from kie_async.core import telemetry

    if mode == "sdk":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        tracer_provider = TracerProvider()
        exporter = InMemorySpanExporter()
        _EXPORTERS.append(exporter)
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry.configure(
            tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()])
        )
    else:
        telemetry.configure()  # back to the global providers: the API's no-op ones
    print(f"OpenTelemetry: {mode}", flush=True)


def otel_pairs(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``--otel alternate``: each sdk repeat over the api repeat just before it (a busy machine drifts slowly, so
    neighbours share its load): client and event-loop CPU per run, per pair, and their medians."""
    api = [s for s in samples if s["otel"] == "api"]
    sdk = [s for s in samples if s["otel"] == "sdk"]
    out: dict[str, Any] = {}
    for key in ("client_cpu_ms_per_run", "loop_cpu_ms_per_run"):
        pairs = [round(b[key] / a[key], 4) for a, b in zip(api, sdk, strict=False)]
        out[key] = {"sdk_over_api": pairs, "median": round(median(pairs), 4) if pairs else math.nan}
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    otel = getattr(args, "otel", "off")
    modes = ["api", "sdk"] if otel == "alternate" else [otel]
    if otel != "alternate":
        setup_otel(otel)
    runs = 50 if args.quick else args.runs
    real_runs = 10 if args.quick else args.real_runs
    generation = 0.3 if args.quick else args.generation
    repeats = 1 if args.quick else args.repeats
    scaled_poll = PollSettings(schedule=((30.0, args.poll_interval), (math.inf, 2.0)), timeout=600)
    common = {
        "generation": generation,
        "output_bytes": args.output_bytes,
        "image_edge": args.image_edge,
        "progress": not args.no_progress,
        "render": args.emulator_render,
        "derivatives": not args.no_derivatives,
        "artifact_fsync": not args.no_artifact_fsync,
    }
    scaled_args: dict[str, Any] = {
        "limit": args.scaled_limit,
        "window": args.scaled_window,
        "poll": scaled_poll,
        "reads_per_second": args.reads_per_second,
        "downloads": args.downloads,
        "sdk_limit": args.sdk_create_limit,
        **common,
    }
    if otel == "alternate":  # the first scenario of a process pays its warm-up: not in a pair
        setup_otel("sdk")
        await run_scenario(label="warm-up", runs=min(runs, 50), concurrency=min(runs, 50), **scaled_args)
    scaled = []
    for n, mode in ((n, mode) for n in range(repeats) for mode in modes):
        if otel == "alternate":
            setup_otel(mode)
        sample = await run_scenario(label=f"scaled-{n}", runs=runs, concurrency=args.concurrency or runs, **scaled_args)
        sample["otel"] = mode
        scaled.append(sample)
        print(
            f"scaled repeat {n + 1}/{repeats} (otel {mode}): wall {sample['wall_s']:.2f}s, floor "
            f"{sample['floor_s']:.2f}s, 429s {sample['emulator_429s']}, ok {sample['succeeded']}/{runs}, client "
            f"CPU/run {sample['client_cpu_ms_per_run']} ms (event loop {sample['loop_cpu_ms_per_run']})",
            flush=True,
        )
    real: list[dict[str, Any]] = []
    for n in range(0 if args.skip_real else (1 if args.quick else args.real_repeats)):
        real.append(
            await run_scenario(
                label=f"real-{n}",
                runs=real_runs,
                limit=20,
                window=10.0,
                poll=None,  # the SDK's default schedule (2.5 s early): what a user gets out of the box
                reads_per_second=None,
                downloads=None,
                sdk_limit=None,
                concurrency=args.concurrency or real_runs,
                **common,
            )
        )
        print(
            f"real-limit run {n + 1}: wall {real[-1]['wall_s']:.2f}s, floor {real[-1]['floor_s']:.2f}s, status "
            f"requests/task {real[-1]['status_requests_per_task']['mean']:.2f}",
            flush=True,
        )

    figures: dict[str, Any] = {"scaled": summarise([s for s in scaled if s["otel"] == modes[-1]])}
    if otel == "alternate":  # "scaled" is the sdk repeats; the api ones and the pairs beside them
        figures["scaled_api"] = summarise([s for s in scaled if s["otel"] == "api"])
        figures["otel_pairs"] = otel_pairs(scaled)
        print(f"sdk / api, per pair: {figures['otel_pairs']}", flush=True)
    columns = ["figure", f"scaled {args.scaled_limit}/{args.scaled_window:g}s"]
    if real:
        figures["real_limit"] = summarise(real)
        columns.append("real 20/10s")
    scenarios = [figures["scaled"], *([figures["real_limit"]] if real else [])]
    print_table(
        f"run_many fan-out: generation {generation:g}s, {args.output_bytes / 2**20:g} MiB outputs, derivatives on; "
        f"scaled = median of {repeats} repeat(s)",
        columns,
        [[label, *(cell(f) for f in scenarios)] for label, cell in FIGURE_ROWS],
    )
    params = {
        "runs": runs,
        "real_runs": real_runs if real else None,
        "generation_seconds": generation,
        "output_bytes": args.output_bytes,
        "image_long_edge": args.image_edge,
        "scaled_limit": args.scaled_limit,
        "scaled_window_s": args.scaled_window,
        "scaled_poll_schedule": [list(step) for step in scaled_poll.schedule],
        "scaled_reads_per_second": args.reads_per_second,
        "scaled_max_concurrent_downloads": args.downloads or "SDK default",
        "scaled_sdk_create_limit": args.sdk_create_limit or args.scaled_limit,
        "real_poll_schedule": "SDK default",
        "concurrency": args.concurrency or "= runs",
        "repeats": repeats,
        "otel": otel,
        "progress_callback": not args.no_progress,
        "derivatives": "off" if args.no_derivatives else "on (webp 2048 + 384 thumb, SDK defaults)",
        "artifact_fsync": not args.no_artifact_fsync,
        "emulator": "separate process, render_on_completion",
    }
    write_results(
        "bench_fanout",
        args.out,
        quick=args.quick,
        params=params,
        figures=figures,
        samples={"scaled": scaled, "real_limit": real},
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--runs", type=int, default=1000, help="runs in the scaled scenario (default 1000)")
    parser.add_argument("--real-runs", type=int, default=100, help="runs at the real 20 per 10 s (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the scaled scenario (default 3)")
    parser.add_argument("--skip-real", action="store_true", help="skip the real-limit scenario (~45 s)")
    parser.add_argument("--real-repeats", type=int, default=2, help="repeats of the real-limit scenario (default 2)")
    parser.add_argument("--generation", type=float, default=2.0, help="emulator generation seconds (default 2)")
    parser.add_argument("--output-bytes", type=int, default=1024 * 1024, help="size of each output (default 1 MiB)")
    parser.add_argument("--image-edge", type=int, default=256, help="long edge of emulator images (default 256)")
    parser.add_argument("--scaled-limit", type=int, default=200, help="createTask per window, scaled (default 200)")
    parser.add_argument("--scaled-window", type=float, default=1.0, help="window seconds, scaled (default 1)")
    parser.add_argument("--reads-per-second", type=float, default=2000.0, help="SDK read limit, scaled (2000)")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="scaled poll interval for 30 s (0.5)")
    parser.add_argument(
        "--sdk-create-limit",
        type=int,
        default=0,
        help="SDK createTask limit per window in the scaled scenario (default: the emulator's)",
    )
    parser.add_argument(
        "--downloads",
        type=int,
        default=None,
        help="scaled max_concurrent_downloads (default: the SDK's, 8; see benchmarks/README.md)",
    )
    parser.add_argument("--concurrency", type=int, default=0, help="run_many concurrency (default: all runs)")
    parser.add_argument("--no-progress", action="store_true", help="no on_progress callback")
    parser.add_argument("--no-derivatives", action="store_true", help="diagnosis: derivatives off")
    parser.add_argument("--no-artifact-fsync", action="store_true", help="diagnosis: ArtifactSettings(fsync=False)")
    parser.add_argument(
        "--otel",
        choices=["off", "api", "sdk", "alternate"],
        default="off",
        help="OpenTelemetry: none (default), the API alone, the SDK with in-memory export, or alternate (api and "
        "sdk repeats in turn in one process, compared pair by pair)",
    )
    parser.add_argument(
        "--emulator-render",
        choices=["template", "full"],
        default="template",
        help="template: cached image padded to size (default); full: the emulator's pyvips render",
    )
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
