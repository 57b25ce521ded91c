"""CLI start-up: CPU of whole ``kie-async`` calls in a fresh process vs an interpreter doing nothing or importing deps.

    python benchmarks/bench_cli.py            # 11 interleaved repeats per command (~1 min)
    python benchmarks/bench_cli.py --quick    # 2 repeats

A user pays the whole process: interpreter start-up, imports, reading the specs, printing. So each command
runs as the installed ``kie-async`` script would (``-c`` with the console script's two lines, so the figure does
not depend on where the script is installed), and its CPU (user + system, from ``wait4``; not wall: the machine
is shared) is compared with a baseline process measured just before it in the same repeat:

* ``kie-async --version`` ÷ ``python -c pass`` (goal ≤ 3);
* ``estimate``, ``validate`` and ``models show KEY`` ÷ ``python -c 'import aiohttp, pydantic'`` (goal ≤ 1.2);
* ``models`` (every catalogue key) ÷ the same (goal ≤ 1.5).

Stdout goes to a pipe (as in a script or a log). Bytecode is compiled once by a warm-up run into a scratch
folder (``PYTHONPYCACHEPREFIX``), as an installed wheel has it, even where ``PYTHONDONTWRITEBYTECODE`` is set.
The spec index lives in a scratch cache folder (``KIE_ASYNC_CACHE_DIR``) that the warm-up run fills; one more
row measures ``estimate`` with that folder empty each time (the first call after the specs changed: the index
is rebuilt), for information.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import add_common_flags, fmt, fmt_spread, median, print_table, ratio, spread, write_results

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = "import sys; from kie_async.interfaces.cli import main; sys.exit(main())"
"""What the ``kie-async`` console script runs."""
MODEL = "nano-banana-2"
PROMPT = "A lighthouse on a cliff at dawn, watercolor"
BASELINES = {
    "pass": "pass",
    "deps": "import aiohttp, pydantic",
}
COMMANDS: dict[str, tuple[str, list[str], float]] = {
    # name: (baseline, arguments, goal as a ratio to the baseline)
    "version": ("pass", ["--version"], 3.0),
    "estimate": ("deps", ["estimate", "--model", MODEL, "--prompt", PROMPT], 1.2),
    "validate": ("deps", ["validate", "--model", MODEL, "--prompt", PROMPT], 1.2),
    "models_show": ("deps", ["models", "show", MODEL], 1.2),
    "models": ("deps", ["models"], 1.5),
}
COLD = "estimate_index_rebuilt"


def run_child(argv: list[str], env: dict[str, str], allowed_codes: tuple[int, ...] = (0,)) -> float:
    """Start ``argv``, drain its pipes, reap it with ``wait4`` (its CPU); raise on an unexpected exit code."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in allowed_codes:
        raise RuntimeError(
            f"{argv[2:]} exited {proc.returncode}:\n{err.decode(errors='replace')[-2000:]}"
            f"{out.decode(errors='replace')[-500:]}"
        )
    return usage.ru_utime + usage.ru_stime


def _short(argv: list[str]) -> str:
    """The command line as the table shows it: the prompt's text left out."""
    shown = [word if previous != "--prompt" else "TEXT" for previous, word in zip(["", *argv[:-1]], argv, strict=True)]
    return " ".join(shown)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="kie-bench-cli-") as scratch:
        cache = Path(scratch) / "cache"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "KIE_ASYNC_CACHE_DIR": str(cache),
            "COLUMNS": "120",
            # bytecode as an installed wheel has it (pip compiles at install), for the SDK and baseline alike;
            # in a scratch folder, so the checkout gets no __pycache__
            "PYTHONPYCACHEPREFIX": str(Path(scratch) / "pycache"),
        }
        for name in ("KIE_MODEL_SPECS_DIR", "KIE_PRICING_DIR", "PYTHONDONTWRITEBYTECODE"):
            env.pop(name, None)
        python = [sys.executable]
        base_argv = {name: [*python, "-c", stmt] for name, stmt in BASELINES.items()}
        cmd_argv = {name: [*python, "-c", LAUNCH, *argv] for name, (_, argv, _) in COMMANDS.items()}
        for argv in (*base_argv.values(), *cmd_argv.values()):  # warm-up: bytecode and the spec index
            run_child(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in (*BASELINES, *COMMANDS, COLD)}
        ratios: dict[str, list[float]] = {name: [] for name in (*COMMANDS, COLD)}
        for r in range(repeats):
            for name, (baseline, _, _) in COMMANDS.items():
                base = run_child(base_argv[baseline], env)
                cpu = run_child(cmd_argv[name], env)
                samples[baseline].append(base)
                samples[name].append(cpu)
                ratios[name].append(ratio(cpu, base))
            base = run_child(base_argv["deps"], env)
            cold_env = {**env, "KIE_ASYNC_CACHE_DIR": str(Path(scratch) / f"cold-{r}")}
            cpu = run_child(cmd_argv["estimate"], cold_env)
            samples["deps"].append(base)
            samples[COLD].append(cpu)
            ratios[COLD].append(ratio(cpu, base))
            print(
                f"repeat {r + 1}/{repeats}: "
                + ", ".join(f"{name} {values[-1]:.2f}x" for name, values in ratios.items()),
                flush=True,
            )

    figures: dict[str, Any] = {f"{name}_cpu_ms": round(median(samples[name]) * 1000, 1) for name in BASELINES}
    rows = []
    met = 0
    for name in (*COMMANDS, COLD):
        baseline, argv, goal = COMMANDS.get(name, ("deps", [], 0.0))
        figures[f"{name}_cpu_ms"] = round(median(samples[name]) * 1000, 1)
        figures[f"{name}_ratio"] = spread(ratios[name])
        label = f"kie-async {_short(argv)}" if name != COLD else "kie-async estimate … (spec index rebuilt first)"
        goal_text = f"≤ {goal:g}" if goal else "-"
        if goal and figures[f"{name}_ratio"]["median"] <= goal:
            met += 1
        rows.append(
            [
                label,
                fmt(figures[f"{name}_cpu_ms"], 1),
                f"`{BASELINES[baseline]}`",
                fmt_spread(figures[f"{name}_ratio"]),
                goal_text,
            ]
        )
    figures["goals_met"] = f"{met}/{len(COMMANDS)}"
    print_table(
        f"CLI CPU per call in a fresh process, stdout a pipe, {repeats} interleaved repeats "
        f"(baselines: `python -c pass` {fmt(figures['pass_cpu_ms'], 1)} ms, "
        f"`python -c 'import aiohttp, pydantic'` {fmt(figures['deps_cpu_ms'], 1)} ms)",
        ["command", "CPU (ms, median)", "÷ baseline", "ratio: median (min–max)", "goal"],
        rows,
    )
    print(f"goals met: {figures['goals_met']}")
    params = {
        "repeats": repeats,
        "baselines": BASELINES,
        "launch": LAUNCH,
        "commands": {name: {"baseline": b, "argv": argv, "goal": goal} for name, (b, argv, goal) in COMMANDS.items()},
    }
    headline = {key: value for key, value in figures.items() if key.endswith("_ratio") or key == "goals_met"}
    write_results(
        "bench_cli",
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
