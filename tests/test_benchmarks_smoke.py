"""Every benchmark script still runs: quickest mode, as a subprocess, results JSON parseable with its keys.

No timing assertions (figures depend on the machine); the scripts are started together once per module so the
whole file costs about as long as the slowest script. Results go to a temp dir, never over the committed ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
TIMEOUT = 600
"""Seconds a script may take: generous (a busy 2-core machine runs them slowly); a hang still ends the test."""

COMMON_KEYS = {"benchmark", "timestamp", "quick", "machine", "params", "figures", "samples"}
FIGURE_KEYS: dict[str, set[str]] = {
    "bench_roundtrip": {
        "sdk_median_ms",
        "raw_median_ms",
        "sdk_p90_ms",
        "raw_p90_ms",
        "median_ratio",
        "p90_ratio",
        "sdk_rt_per_s",
        "raw_rt_per_s",
        "throughput_ratio",
    },
    "bench_fanout": {"scaled", "real_limit"},
    "bench_sync_baseline": {
        "sync_per_run_median_s",
        "sync_projected_s",
        "fanout_sample_wall_s",
        "sample_speedup_sync_over_fanout",
        "fanout_projected_real_limit_s",
        "speedup_projected_real_limit",
    },
    "bench_download": {
        "sdk_mb_per_s",
        "raw_mb_per_s",
        "sdk_peak_rss_growth_mb",
        "raw_peak_rss_growth_mb",
        "throughput_ratio_sdk_over_raw",
        "wall_ratio",
        "cpu_ratio",
    },
    "bench_derivatives": {
        "pyvips_ms_per_image",
        "pillow_ms_per_image",
        "pyvips_images_per_s_parallel",
        "pillow_images_per_s_parallel",
        "pyvips_peak_rss_growth_mb_parallel",
        "pillow_peak_rss_growth_mb_parallel",
        "speedup_per_image_pillow_over_pyvips",
        "pillow_over_sdk_time_jpeg",
        "pillow_over_sdk_time_png",
        "webp_effort",
    },
    "bench_coordination": {"submit_coordinated", "submit_control", "fan_in", "budget", "restart"},
    "bench_chat_stream": {
        "sdk_ttft_ms",
        "raw_ttft_ms",
        "ttft_ratio",
        "sdk_stream_ms",
        "raw_stream_ms",
        "per_chunk_overhead_us",
        "chunks",
    },
    "bench_import": {"baseline_cpu_ms", "import_ratio", "this:package_ratio", "this:script_ratio", "this:cli_ratio"},
    "bench_cli": {
        "pass_cpu_ms",
        "deps_cpu_ms",
        "version_ratio",
        "estimate_ratio",
        "validate_ratio",
        "models_show_ratio",
        "models_ratio",
        "estimate_index_rebuilt_ratio",
        "goals_met",
    },
}
FANOUT_SCENARIO_KEYS = {
    "wall_s",
    "floor_s",
    "wall_over_floor",
    "achieved_over_allowed",
    "emulator_429s_total",
    "loop_lag_p50_ms",
    "loop_lag_p99_ms",
    "status_requests_per_task_mean",
    "succeeded_min",
    "runs",
    "spread",
}


class Finished:
    """One script started in the background; its output goes to a log file so no pipe can fill up."""

    def __init__(self, cmd: list[str], out: Path, log: Path, env: dict[str, str]) -> None:
        self.out = out
        self.log = log
        with log.open("w") as fh:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        self.stdout = ""

    def wait(self) -> int:
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stdout = self.log.read_text(errors="replace")
        return self.proc.returncode


class BenchRuns(dict[str, Finished]):
    """The finished scripts by name, plus the committed results' mtimes taken before they started."""

    def __init__(self, started: dict[str, Finished], committed: dict[str, int]) -> None:
        super().__init__(started)
        self.committed = committed


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchRuns]:
    out = tmp_path_factory.mktemp("bench-results")
    committed = {p.name: p.stat().st_mtime_ns for p in (BENCH / "results").glob("*")}
    # Their own state folder: a fresh benchmark Redis on a port a remembered shared ledger once used (this
    # machine's default state folder) would read as that ledger lost, and the scripts would rightly stop buying.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", "KIE_STATE_DIR": str(out / "state")}
    started: dict[str, Finished] = {}
    for name in FIGURE_KEYS:
        cmd = [sys.executable, str(BENCH / f"{name}.py"), "--quick", "--out", str(out)]
        started[name] = Finished(cmd, out / f"{name}.quick.json", out / f"{name}.log", env)
    artifacts_out = out / "bench_artifacts.json"
    cmd = [sys.executable, str(BENCH / "bench_artifacts.py"), "--quick", "--out", str(artifacts_out)]
    started["bench_artifacts"] = Finished(cmd, artifacts_out, out / "bench_artifacts.log", env)
    t0 = time.monotonic()
    for finished in started.values():
        finished.wait()
    print(f"benchmarks (quick) finished in {time.monotonic() - t0:.1f}s")
    yield BenchRuns(started, committed)


def _load(finished: Finished) -> dict[str, Any]:
    assert finished.proc.returncode == 0, finished.stdout[-3000:]
    assert finished.out.is_file(), f"no results file {finished.out}\n{finished.stdout[-3000:]}"
    document: dict[str, Any] = json.loads(finished.out.read_text())
    return document


@pytest.mark.parametrize("name", sorted(FIGURE_KEYS))
def test_benchmark_runs_and_writes_results(runs: dict[str, Finished], name: str) -> None:
    document = _load(runs[name])
    assert document.keys() >= COMMON_KEYS
    assert document["benchmark"] == name
    assert document["quick"] is True
    assert {"python", "cpu_count", "sdk_version"} <= document["machine"].keys()
    missing = FIGURE_KEYS[name] - document["figures"].keys()
    assert not missing, f"{name} figures lack {missing}"
    assert "results:" in runs[name].stdout  # the table was printed and the path reported


def test_fanout_scenarios_have_every_figure(runs: dict[str, Finished]) -> None:
    figures = _load(runs["bench_fanout"])["figures"]
    for scenario in ("scaled", "real_limit"):
        missing = FANOUT_SCENARIO_KEYS - figures[scenario].keys()
        assert not missing, f"{scenario} lacks {missing}"
        assert figures[scenario]["succeeded_min"] == figures[scenario]["runs"]


def test_quick_runs_leave_committed_results_alone(runs: BenchRuns) -> None:
    after = {p.name: p.stat().st_mtime_ns for p in (BENCH / "results").glob("*")}
    assert after == runs.committed


def test_artifacts_benchmark_runs(runs: dict[str, Finished]) -> None:
    document = _load(runs["bench_artifacts"])
    assert document.get("benchmark") == "bench_artifacts"
    assert "params" in document


def test_summarize_renders_every_benchmark(runs: BenchRuns) -> None:
    out = runs["bench_roundtrip"].out.parent
    done = subprocess.run(
        [sys.executable, str(BENCH / "summarize.py"), "--out", str(out), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name in FIGURE_KEYS:
        assert f"### {name} (" in done.stdout
    assert "no results yet" not in done.stdout
    assert sum(line.startswith("|---") for line in done.stdout.splitlines()) == len(FIGURE_KEYS)
