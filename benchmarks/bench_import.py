"""Import cost: CPU of ``import kie_async`` (and of what a script or the CLI imports) vs its dependencies alone.

    python benchmarks/bench_import.py                      # 15 interleaved repeats per statement (~30 s)
    python benchmarks/bench_import.py --quick              # 2 repeats
    python benchmarks/bench_import.py --compare /work/main # also the same statements from another checkout

Every CLI call and every script pays this before doing anything. Each statement runs in a fresh interpreter
(``-X frozen_modules=on``, bytecode already cached by a warm-up run) that reads ``time.process_time()``
around the import, so interpreter start-up is not counted and CPU (not wall time) is compared: the machine
is shared and wall time is noise. Statements are interleaved (baseline, SDK, baseline, ...) and the ratio is
taken per repeat against the baseline run just before it; the table shows the median with min and max.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import add_common_flags, fmt, fmt_spread, median, print_table, ratio, spread, write_results

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "import aiohttp, aiofiles, pydantic"
STATEMENTS = {
    "package": "import kie_async",
    "script": "from kie_async import KieSession, RawUserRequest, run_many",
    # The CLI package moved to kie_async.interfaces.cli; an older checkout (--compare) still has kie_async.cli.
    "cli": "import importlib, importlib.util as u; importlib.import_module("
    "'kie_async.interfaces.cli' if u.find_spec('kie_async.interfaces') else 'kie_async.cli')",
}
PROBE = "import time; t = time.process_time(); {stmt}; print(time.process_time() - t)"


def cpu_of(statement: str, sdk_path: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(sdk_path)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(stmt=statement)],
        env=env,
        cwd=sdk_path,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--compare", type=Path, help="another checkout of the SDK, measured the same way (before)")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    trees = {"this": ROOT}
    if args.compare is not None:
        trees["compare"] = args.compare.resolve()
    for tree in trees.values():  # warm-up: compile bytecode once so no repeat pays for it
        for statement in (BASELINE, *STATEMENTS.values()):
            cpu_of(statement, tree)
    samples: dict[str, list[float]] = {"baseline": []}
    ratios: dict[str, list[float]] = {}
    for r in range(repeats):
        for tree_name, tree in trees.items():
            for name, statement in STATEMENTS.items():
                base = cpu_of(BASELINE, tree)
                cpu = cpu_of(statement, tree)
                samples["baseline"].append(base)
                samples.setdefault(f"{tree_name}:{name}", []).append(cpu)
                ratios.setdefault(f"{tree_name}:{name}", []).append(ratio(cpu, base))
        print(
            f"repeat {r + 1}/{repeats}: " + ", ".join(f"{key} {values[-1]:.2f}x" for key, values in ratios.items()),
            flush=True,
        )

    figures: dict[str, Any] = {"baseline_cpu_ms": round(median(samples["baseline"]) * 1000, 1)}
    for key, values in ratios.items():
        figures[f"{key}_ratio"] = spread(values)
        figures[f"{key}_cpu_ms"] = round(median(samples[key]) * 1000, 1)
    figures["import_ratio"] = figures["this:package_ratio"]
    rows = []
    for key in ratios:
        tree_name, name = key.split(":")
        label = f"{STATEMENTS[name]}" + (" (--compare tree)" if tree_name == "compare" else "")
        rows.append([label, fmt(figures[f"{key}_cpu_ms"], 1), fmt_spread(figures[f"{key}_ratio"])])
    print_table(
        f"import CPU in a fresh interpreter vs `{BASELINE}` ({fmt(figures['baseline_cpu_ms'], 1)} ms), "
        f"{repeats} interleaved repeats",
        ["statement", "CPU (ms, median)", "÷ baseline: median (min–max)"],
        rows,
    )
    params = {
        "repeats": repeats,
        "baseline": BASELINE,
        "statements": STATEMENTS,
        "compare": str(args.compare) if args.compare else None,
    }
    headline = {key: value for key, value in figures.items() if key.endswith("_ratio") or key == "baseline_cpu_ms"}
    write_results(
        "bench_import",
        args.out,
        quick=args.quick,
        params=params,
        figures=figures,
        samples={"cpu_s": samples, "ratios": ratios},
        headline=headline,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
