"""The money soak, reduced: ``benchmarks/soak_money.py --quick`` through the real CLI, its zeros asserted.

30 requests through ``kie-async run-batch`` with ~20% faults on every endpoint, 2 SIGKILLs and a SIGINT, a
standing ``kie-async receive-callbacks`` process, then re-runs until done. The full size (300 requests,
5 SIGKILLs) is ``python benchmarks/soak_money.py``; its figures are in benchmarks/results/soak_money.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZERO = (
    "requests_with_two_tasks",
    "false_submit_uncertain",
    "succeeded_missing_or_wrong_output",
    "orphan_temp_files",
    "paid_tasks_not_final",
)


def test_quick_soak_never_buys_twice_and_leaves_nothing_behind(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak_money.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = tmp_path / "soak_money.quick.json"
    assert results.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(results.read_text())["figures"]
    assert {k: figures[k] for k in ZERO} == dict.fromkeys(ZERO, 0), json.dumps(figures, indent=1)[:4000]
    # A SIGKILL between an attempt's "sending" marker and its first byte strands that request as uncertain (the
    # money-safe reading of an unknowable send); each kill can strand at most the sends in flight at that instant.
    assert figures["killed_between_marker_and_send"] <= figures["interruptions_fired"]
    assert done.returncode == 0
    # the faults and interruptions really happened, and the batch really finished
    first = figures["run_log"][0]
    assert first["signal"] == "SIGINT" and first["fired"] and first["exit"] == 130  # a graceful stop, mid-batch
    assert figures["interruptions_fired"] >= 2 and figures["faults_fired"] > 10
    assert figures["statuses"].get("succeeded", 0) >= 25 and sum(figures["statuses"].values()) == 30
