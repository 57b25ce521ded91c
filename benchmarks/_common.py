"""What every benchmark shares: an emulator in its own process, statistics, loop-lag probe, RSS, results JSON.

Results go to ``benchmarks/results/<name>.json`` (the latest run, committed so figures can be compared over
time in git history) and full runs also append one summary line to ``results/history.jsonl``. ``--out`` sends
everything elsewhere (the smoke test uses a temp dir so it never overwrites the committed figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from kie_async._version import __version__
from kie_async.core.settings import KieSettings, RateLimitSettings

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
console = Console(highlight=False)


# -- statistics ------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """Median, min and max of repeated figures (ratios taken per repeat): what the README quotes."""
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan}
    return {
        "median": round(median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def fmt_spread(value: dict[str, float], digits: int = 2) -> str:
    """``1.23 (1.10–1.40)``: a median with its min–max over the repeats."""
    return f"{fmt(value['median'], digits)} ({fmt(value['min'], digits)}–{fmt(value['max'], digits)})"


def fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=title, title_justify="left")
    for n, column in enumerate(columns):
        table.add_column(column, justify="left" if n == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# -- machine and results ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "sdk_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_mb": _mem_total_mb(),
        "aiohttp": aiohttp.__version__,
    }
    with contextlib.suppress(OSError):
        info["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    with contextlib.suppress(Exception):
        import pyvips

        info["libvips"] = f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
    with contextlib.suppress(Exception):
        import PIL

        info["pillow"] = PIL.__version__
    return info


def write_results(
    name: str,
    out_dir: Path,
    *,
    quick: bool,
    params: dict[str, Any],
    figures: dict[str, Any],
    samples: dict[str, Any] | None = None,
    headline: dict[str, Any] | None = None,
) -> Path:
    """Write ``<name>.json`` (``<name>.quick.json`` in quick mode); full runs also append to history.jsonl."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine_info(),
        "params": params,
        "figures": figures,
        "samples": samples or {},
    }
    path = out_dir / f"{name}{'.quick' if quick else ''}.json"
    path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    if not quick:
        line = {"benchmark": name, "timestamp": document["timestamp"], "figures": headline or figures}
        with (out_dir / "history.jsonl").open("a") as fh:
            fh.write(json.dumps(line, default=_json_default) + "\n")
    console.print(f"results: {path}")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def add_common_flags(parser: Any) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes, finishes in seconds (smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"results folder (default {RESULTS_DIR})")


# -- memory ----------------------------------------------------------------------------------------------


def proc_status_kb(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM); ``None`` where /proc does not exist."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def process_cpu_seconds(pid: int | str = "self") -> float | None:
    """user + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


class RssSampler:
    """Samples VmRSS of this process every ``interval`` s on a thread (sees libvips and aiohttp buffers alike)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[int] = []
        self._stop = False
        self._thread: Any = None

    def __enter__(self) -> RssSampler:
        import threading

        def run() -> None:
            while not self._stop:
                value = proc_status_kb("VmRSS")
                if value is not None:
                    self.samples.append(value)
                time.sleep(self.interval)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()

    @property
    def peak_kb(self) -> int | None:
        return max(self.samples) if self.samples else None


# -- event-loop lag --------------------------------------------------------------------------------------


class LoopLagProbe:
    """A ticker in the benchmark's own loop: how late each ``interval`` sleep wakes up is the loop's lag."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.lags_ms.append(max(0.0, (loop.time() - before - self.interval) * 1000))

    async def __aenter__(self) -> LoopLagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(percentile(self.lags_ms, 50), 3),
            "p99_ms": round(percentile(self.lags_ms, 99), 3),
            "max_ms": round(max(self.lags_ms, default=math.nan), 3),
            "ticks": len(self.lags_ms),
        }


# -- the emulator in its own process ---------------------------------------------------------------------


class EmulatorProcess:
    """``async with EmulatorProcess(generation_seconds=2) as emu: emu.settings(...)``; stats over HTTP."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("credits", 1e12)  # the bench is about speed, not about running out of money
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_emulator_proc.py"), json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise RuntimeError("emulator process exited before it was ready")
        self.info = json.loads(line)
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return str(self.info["base_url"])

    @property
    def api_key(self) -> str:
        return str(self.info["api_key"])

    def settings(self, **overrides: Any) -> KieSettings:
        """Like ``KieEmulator.settings()``: aimed at the emulator, with its createTask limit."""
        limit = self.info.get("create_rate_limit") or 1_000_000
        values: dict[str, Any] = {
            "api_key": SecretStr(self.api_key),
            "base_url": self.base_url,
            "upload_base_url": self.info["upload_base_url"],
            "rate_limit": RateLimitSettings(
                create_per_window=limit, create_window_seconds=float(self.info["create_rate_window"])
            ),
        }
        values.update(overrides)
        return KieSettings(**values)

    async def stats(self) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(f"{self.base_url}/_emulator/stats") as response:
            data: dict[str, Any] = await response.json()
            return data

    async def reset_stats(self) -> None:
        assert self._http is not None
        async with self._http.delete(f"{self.base_url}/_emulator/stats") as response:
            await response.read()


def status_request_summary(stats: dict[str, Any]) -> dict[str, float]:
    per_task = list(stats.get("status_requests", {}).values())
    return {
        "mean": round(statistics.fmean(per_task), 3) if per_task else math.nan,
        "median": median(per_task),
        "max": max(per_task, default=0),
        "total": sum(per_task),
    }
