"""A batch with run_many: bounded concurrency, a credit budget, progress, and a journal that makes re-runs safe.

It runs the batch twice with the same journal: the second pass submits nothing and reports every request
as resumed from the journal (that is what protects you from paying twice after a crash).

    python docs/examples/batch.py --offline [--journal FILE] [--budget CREDITS]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _shared import make_parser, open_session, run

from kie_async import ArtifactSettings, BatchProgress, PipelineOptions, RawUserRequest, run_many

PROMPTS = ["a red fox", "a snow owl", "a grey wolf", "a brown bear", "a lynx at dusk"]


async def main(args: argparse.Namespace) -> int:
    requests = [RawUserRequest(model_key="nano-banana-2", prompt=p, options={"resolution": "1K"}) for p in PROMPTS]
    options = PipelineOptions(artifacts=ArtifactSettings(root=args.out))
    last_line = ""

    def progress(p: BatchProgress) -> None:
        nonlocal last_line
        line = f"  done {p.done} failed {p.failed} skipped {p.skipped} of {p.total}, spent {p.credits_spent:g} cr"
        if p.finished and line != last_line:
            print(line)
            last_line = line

    async with open_session(args.offline) as kie:
        for attempt in ("first pass", "second pass (same journal)"):
            print(f"{attempt}:")
            results = await run_many(
                requests,
                kie,
                concurrency=4,
                budget_credits=args.budget,
                on_progress=progress,
                options=options,
                journal_path=args.journal,
            )
            for r in results:
                print(f"  {r.status:<11} resumed={r.resumed!s:<5} {r.credits_charged} cr  {r.request_key}")
    over = sum(r.status == "over_budget" for r in results)
    print(f"journal: {args.journal}; {over} request(s) held back by the {args.budget:g}-credit budget")
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__ or "")
    parser.add_argument("--journal", type=Path, default=Path("outputs/journals/example-batch.jsonl"))
    parser.add_argument("--budget", type=float, default=32.0, help="credit cap for the batch (default 32: 4 images)")
    parser.add_argument("--out", type=Path, default=None, help="artifacts root (default $KIE_OUTPUT_DIR or ./outputs)")
    run(main, parser.parse_args())
