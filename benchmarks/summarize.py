"""Print the latest committed figures (``results/*.json``) as Markdown tables, for the README or a closing note.

python benchmarks/summarize.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def roundtrip(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    return _table(
        ["round trip (create_task + get_task)", "SDK", "raw aiohttp", "SDK / raw"],
        [
            ["latency median (ms)", _f(f["sdk_median_ms"], 3), _f(f["raw_median_ms"], 3), _f(f["median_ratio"])],
            ["latency p90 (ms)", _f(f["sdk_p90_ms"], 3), _f(f["raw_p90_ms"], 3), _f(f["p90_ratio"])],
            [
                "round trips/s at concurrency " + str(doc["params"]["concurrency"]),
                _f(f["sdk_rt_per_s"], 1),
                _f(f["raw_rt_per_s"], 1),
                _f(f["throughput_ratio"]),
            ],
        ],
    )


def fanout(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    scenarios = [("scaled", f"{doc['params']['scaled_limit']}/{doc['params']['scaled_window_s']:g} s")]
    if "real_limit" in f:
        scenarios.append(("real_limit", "20/10 s"))
    rows_spec: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("runs (succeeded)", lambda s: f"{s['runs']:,} ({s['succeeded_min']:,})"),
        ("wall time (s)", lambda s: _f(s["wall_s"])),
        ("floor = N/rate + gen + transfer (s)", lambda s: _f(s["floor_s"])),
        ("**wall / floor**", lambda s: _f(s["wall_over_floor"])),
        ("wall / window floor", lambda s: _f(s["wall_over_window_floor"])),
        ("**achieved / allowed submit rate**", lambda s: _f(s["achieved_over_allowed"])),
        ("**429s** (all repeats)", lambda s: str(s["emulator_429s_total"])),
        ("loop lag p50 / p99 (ms)", lambda s: f"{_f(s['loop_lag_p50_ms'])} / {_f(s['loop_lag_p99_ms'])}"),
        (
            "status requests per task (mean / max)",
            lambda s: f"{_f(s['status_requests_per_task_mean'])} / {s['status_requests_per_task_max']}",
        ),
        (
            "client / emulator CPU per run (ms)",
            lambda s: f"{_f(s.get('client_cpu_ms_per_run'), 1)} / {_f(s.get('emulator_cpu_ms_per_run'), 1)}",
        ),
    ]
    return _table(
        ["fan-out (run_many)", *(label for _, label in scenarios)],
        [[name, *(cell(f[key]) for key, _ in scenarios)] for name, cell in rows_spec],
    )


def sync(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    n = doc["params"]["extrapolate_to"]
    rows = [
        [
            f"{f['sample_runs']} runs, measured",
            f"{_f(f['sync_sample_wall_s'], 1)} s",
            f"{_f(f['fanout_sample_wall_s'], 1)} s",
            _f(f["sample_speedup_sync_over_fanout"]),
        ],
        [
            f"{n:,} runs, projected at 20/10 s",
            f"{_f(f['sync_projected_s'], 0)} s",
            f"{_f(f['fanout_projected_real_limit_s'], 0)} s",
            _f(f["speedup_projected_real_limit"]),
        ],
    ]
    if "speedup_vs_scaled_fanout" in f:
        rows.append(
            [
                f"{n:,} runs, fan-out at {f['fanout_scaled_json_rate_per_s']:g}/s (bench_fanout)",
                f"{_f(f['sync_projected_s'], 0)} s",
                f"{_f(f['fanout_scaled_json_wall_s'], 1)} s",
                _f(f["speedup_vs_scaled_fanout"], 1),
            ]
        )
    return _table(["sync baseline", "sequential urllib", "SDK fan-out", "sync ÷ fan-out"], rows) + (
        f"\n\nSync per run: median {_f(f['sync_per_run_median_s'])} s ({_f(f['sync_polls_per_run_median'], 0)} polls, "
        f"poll every {doc['params']['poll_every_s']:g} s)."
    )


def _s(value: Any, digits: int = 2) -> str:
    """A ``spread`` dict as ``median (min–max)``; plain numbers as they are."""
    if isinstance(value, dict) and "median" in value:
        return f"{_f(value['median'], digits)} ({_f(value['min'], digits)}–{_f(value['max'], digits)})"
    return _f(value, digits)


def download(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    rows = [
        [
            "throughput (MB/s)",
            _f(f["sdk_mb_per_s"], 1),
            _f(f["raw_mb_per_s"], 1),
            _f(f["throughput_ratio_sdk_over_raw"]),
        ],
        ["wall time (s)", _f(f["sdk_seconds"], 3), _f(f["raw_seconds"], 3), _s(f.get("wall_ratio"))],
        [
            "CPU, all threads (s)",
            _f(f.get("sdk_cpu_seconds"), 3),
            _f(f.get("raw_cpu_seconds"), 3),
            _s(f.get("cpu_ratio")),
        ],
        ["CPU vs naive + sha256 of the body", "", "", _s(f.get("cpu_ratio_vs_naive_plus_sha256"))],
        [
            "peak RSS growth, VmHWM (MB)",
            _f(f["sdk_peak_rss_growth_mb"], 1),
            _f(f["raw_peak_rss_growth_mb"], 1),
            _f(f["rss_growth_ratio_sdk_over_raw"]),
        ],
    ]
    if "before_wall_ratio" in f:
        rows.append(
            [
                "before (--compare): wall / CPU ÷ naive",
                "",
                "",
                f"{_s(f['before_wall_ratio'])} / {_s(f['before_cpu_ratio'])}",
            ]
        )
    return _table(
        [
            f"download {f['size_bytes'] / 2**20:,.0f} MiB",
            "SDK download()",
            "naive aiohttp",
            "SDK / naive: median (min–max)",
        ],
        rows,
    )


def imports(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    statements = doc["params"]["statements"]
    rows = []
    for tree in ("this", "compare"):
        for name, statement in statements.items():
            key = f"{tree}:{name}"
            if f"{key}_ratio" in f:
                label = f"`{statement}`" + (" (before: --compare tree)" if tree == "compare" else "")
                rows.append([label, _f(f[f"{key}_cpu_ms"], 1), _s(f[f"{key}_ratio"])])
    return _table(
        [
            "import, fresh interpreter",
            "CPU (ms)",
            f"÷ `{doc['params']['baseline']}` ({_f(f['baseline_cpu_ms'], 1)} ms)",
        ],
        rows,
    )


def cli(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    baselines = doc["params"]["baselines"]
    rows = []
    for name, command in doc["params"]["commands"].items():
        if f"{name}_ratio" in f:
            shown = " ".join(
                "TEXT" if before == "--prompt" else word
                for before, word in zip(["", *command["argv"][:-1]], command["argv"], strict=True)
            )
            rows.append(
                [
                    f"`kie-async {shown}`",
                    _f(f[f"{name}_cpu_ms"], 1),
                    f"`{baselines[command['baseline']]}`",
                    _s(f[f"{name}_ratio"]),
                    f"≤ {command['goal']:g}",
                ]
            )
    if "estimate_index_rebuilt_ratio" in f:
        rows.append(
            [
                "`kie-async estimate …`, spec index rebuilt first",
                _f(f["estimate_index_rebuilt_cpu_ms"], 1),
                f"`{baselines['deps']}`",
                _s(f["estimate_index_rebuilt_ratio"]),
                "-",
            ]
        )
    return _table(
        [
            f"CLI call, fresh process (`python -c pass` {_f(f['pass_cpu_ms'], 1)} ms, "
            f"`{baselines['deps']}` {_f(f['deps_cpu_ms'], 1)} ms)",
            "CPU (ms)",
            "÷",
            "ratio",
            "goal",
        ],
        rows,
    )


def derivatives(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    engines = f.get("engines", ["sdk", "pillow"])
    rows = []
    for kind in ("jpeg", "png"):
        rows.append(
            [f"time per image, {kind.upper()} (ms)"] + [_f(f.get(f"{e}_{kind}_ms_per_image"), 1) for e in engines]
        )
        rows.append(
            [f"peak RSS growth, {kind.upper()} (MB)"]
            + [_f(f.get(f"{e}_{kind}_peak_rss_growth_mb"), 1) for e in engines]
        )
    ratio_rows = []
    for kind in ("jpeg", "png"):
        for key, label in (
            (f"seed_over_sdk_time_{kind}", "time, seed ÷ SDK"),
            (f"seed_over_sdk_cpu_{kind}", "CPU (all threads), seed ÷ SDK"),
            (f"sdk_over_seed_rss_{kind}", "peak RSS growth, SDK ÷ seed"),
            (f"pillow_over_sdk_time_{kind}", "time, Pillow ÷ SDK"),
            (f"sdk_over_pillow_rss_{kind}", "peak RSS growth, SDK ÷ Pillow"),
        ):
            if key in f:
                ratio_rows.append(
                    [f"{label}, {kind.upper()} (median, min–max per repeat)", _s(f[key])] + [""] * (len(engines) - 1)
                )
    header = [f"derivatives, {doc['params'].get('images_per_kind', '?')} × 4K per kind", *engines]
    return _table(header, rows + ratio_rows)


def coordination(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    co, ctl = f.get("submit_coordinated") or {}, f.get("submit_control") or {}
    fan, budget, restart = f.get("fan_in") or {}, f.get("budget") or {}, f.get("restart") or {}
    seconds = co.get("seconds", doc["params"].get("seconds"))
    return _table(
        ["several processes, one account, Redis", "measured", "goal"],
        [
            [
                f"429s in {_f(seconds, 0)} s at 20 per 10 s, 4 processes: coordinated / control",
                f"{_f(co.get('emulator_429s'))} / {_f(ctl.get('emulator_429s'))}",
                "0 coordinated",
            ],
            ["submit rate ÷ allowed, coordinated (after the first burst)", _f(co.get("rate_over_allowed")), "≥ 0.95"],
            [
                f"wake-up after the callback, p50 / p99 ({_f(fan.get('waiters'))} waiters in "
                f"{_f(fan.get('waiter_processes'))} processes, receiver in another)",
                f"{_f(fan.get('wake_p50_ms'), 1)} / {_f(fan.get('wake_p99_ms'), 1)} ms",
                "p99 ≤ 50 ms",
            ],
            [
                "extra status requests per task (callback-driven waits)",
                _f(fan.get("extra_status_requests_per_task"), 3),
                "≤ 0.1",
            ],
            [
                f"shared budget: spent / cap ({_f(budget.get('processes'))} processes, "
                f"{_f(budget.get('succeeded'))} bought, {_f(budget.get('over_budget'))} over budget)",
                f"{_f(budget.get('spent'), 0)} / {_f(budget.get('cap'), 0)}",
                "≤ cap",
            ],
            [
                f"Redis restarted mid-batch: createTask while down ({_f(restart.get('outage_s'), 0)} s)",
                _f(restart.get("creates_while_down")),
                "0",
            ],
            [
                "Redis restarted mid-batch: succeeded / requests (distinct tasks)",
                f"{_f(restart.get('succeeded'))} / {_f(restart.get('requests'))} "
                f"({_f(restart.get('distinct_task_ids'))})",
                "all, one task each",
            ],
        ],
    )


def chat_stream(doc: dict[str, Any]) -> str:
    f = doc["figures"]
    return _table(
        [
            f"chat stream ({doc['params']['model']}, {_f(f['chunks'], 0)} chunks)",
            "SDK",
            "raw aiohttp SSE",
            "SDK / raw (goal)",
        ],
        [
            [
                "time to first token (ms)",
                _f(f["sdk_ttft_ms"], 3),
                _f(f["raw_ttft_ms"], 3),
                f"{_f(f['ttft_ratio'])} (≤ 1.1)",
            ],
            ["whole stream (ms)", _f(f["sdk_stream_ms"], 3), _f(f["raw_stream_ms"], 3), _f(f["stream_ratio"])],
            ["extra per chunk (µs)", _f(f["per_chunk_overhead_us"], 1), "-", "≤ 50"],
        ],
    )


SECTIONS = {
    "bench_roundtrip": roundtrip,
    "bench_chat_stream": chat_stream,
    "bench_fanout": fanout,
    "bench_sync_baseline": sync,
    "bench_download": download,
    "bench_import": imports,
    "bench_cli": cli,
    "bench_derivatives": derivatives,
    "bench_coordination": coordination,
}


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def goals(folder: Path, fanout_before: Path | None) -> str:
    """Issue 11's table: each row as the ratio it names, the goal, main when the issue was filed, before
    (the ``--compare`` checkout measured in the same run, or a fan-out results file of it) and now."""
    dl, im, de, fo = (_load(folder, n) for n in ("bench_download", "bench_import", "bench_derivatives", "bench_fanout"))
    fb = json.loads(fanout_before.read_text()) if fanout_before and fanout_before.exists() else None
    g = lambda doc, *keys: _dig(doc["figures"] if doc else None, keys)  # noqa: E731
    rows = [
        [
            "`download()` 256 MiB ÷ naive loop (writes on the loop, fsyncs): wall",
            "≤ 1.0",
            "1.82",
            _s(g(dl, "before_wall_ratio")),
            _s(g(dl, "wall_ratio")),
        ],
        ["same, CPU", "≤ 1.2", "2.82", _s(g(dl, "before_cpu_ratio")), _s(g(dl, "cpu_ratio"))],
        ["same, CPU ÷ (naive + sha256 of the body)", "-", "-", "-", _s(g(dl, "cpu_ratio_vs_naive_plus_sha256"))],
        [
            "CPU of `import kie_async` ÷ `import aiohttp, aiofiles, pydantic`",
            "≤ 1.4",
            "2.30",
            _s(g(im, "compare:package_ratio")),
            _s(g(im, "this:package_ratio")),
        ],
        [
            "same for `from kie_async import KieSession, RawUserRequest, run_many`",
            "-",
            "-",
            _s(g(im, "compare:script_ratio")),
            _s(g(im, "this:script_ratio")),
        ],
        [
            "same for `import kie_async.interfaces.cli`",
            "-",
            "-",
            _s(g(im, "compare:cli_ratio")),
            _s(g(im, "this:cli_ratio")),
        ],
        [
            "derivatives, 4K, time seed ÷ SDK: JPEG",
            "≥ 5",
            "3.5",
            _s(g(de, "seed_over_before_time_jpeg")),
            _s(g(de, "seed_over_sdk_time_jpeg")),
        ],
        ["same, PNG", "≥ 5", "3.4", _s(g(de, "seed_over_before_time_png")), _s(g(de, "seed_over_sdk_time_png"))],
        [
            "same, CPU (all threads) seed ÷ SDK: JPEG / PNG",
            "-",
            "-",
            f"{_s(g(de, 'seed_over_before_cpu_jpeg'))} / {_s(g(de, 'seed_over_before_cpu_png'))}",
            f"{_s(g(de, 'seed_over_sdk_cpu_jpeg'))} / {_s(g(de, 'seed_over_sdk_cpu_png'))}",
        ],
        [
            "same, peak RSS growth SDK ÷ seed: JPEG",
            "≤ 0.8",
            "1.13",
            _s(g(de, "before_over_seed_rss_jpeg")),
            _s(g(de, "sdk_over_seed_rss_jpeg")),
        ],
        ["same, PNG", "≤ 0.8", "0.93", _s(g(de, "before_over_seed_rss_png")), _s(g(de, "sdk_over_seed_rss_png"))],
        [
            "fan-out 200/s, 1,000 runs, derivatives on: client CPU per run (ms)",
            "≤ 8",
            "23–30",
            _s(g(fb, "scaled", "spread", "client_cpu_ms_per_run"), 1),
            _s(g(fo, "scaled", "spread", "client_cpu_ms_per_run"), 1),
        ],
        [
            "same: wall ÷ floor",
            "≤ 1.3",
            "2.5–2.7",
            _s(g(fb, "scaled", "spread", "wall_over_floor")),
            _s(g(fo, "scaled", "spread", "wall_over_floor")),
        ],
        [
            "same: loop lag p99 (ms)",
            "≤ 20",
            "41–81",
            _s(g(fb, "scaled", "spread", "loop_lag_p99_ms"), 1),
            _s(g(fo, "scaled", "spread", "loop_lag_p99_ms"), 1),
        ],
        [
            "status requests per task at the real limit (20 per 10 s)",
            "≤ 1.5",
            "2.0",
            _s(g(fb, "real_limit", "spread", "status_requests_per_task_mean")),
            _s(g(fo, "real_limit", "spread", "status_requests_per_task_mean")),
        ],
    ]
    return _table(
        ["figure (ratio as named)", "goal", "filed", "before: median (min–max)", "now: median (min–max)"], rows
    )


def _dig(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    parser.add_argument("--quick", action="store_true", help="summarise the <name>.quick.json files instead")
    parser.add_argument("--goals", action="store_true", help="only issue 11's goal-vs-now table")
    parser.add_argument("--fanout-before", type=Path, help="bench_fanout.json of the checkout compared against")
    args = parser.parse_args()
    if args.goals:
        print(goals(args.out, args.fanout_before))
        return 0
    for name, render in SECTIONS.items():
        path = args.out / f"{name}{'.quick' if args.quick else ''}.json"
        if not path.exists():
            print(f"### {name}\n\n(no results yet: run `python benchmarks/{name}.py`)\n")
            continue
        doc = json.loads(path.read_text())
        load = doc["machine"].get("loadavg")
        print(f"### {name} ({doc['timestamp']}, load average {' '.join(load) if load else '?'})\n")
        print(render(doc) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
