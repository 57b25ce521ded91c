"""Preflight: gate requests on validation, estimated cost, the live balance and a budget before spending.

python docs/examples/preflight.py --offline
"""

from __future__ import annotations

import argparse

from _shared import make_parser, open_session, run

from kie_async import RawUserRequest, run_preflight

BUDGET = 100.0
REQUESTS = [
    RawUserRequest(model_key="nano-banana-2", prompt="a fox", options={"resolution": "1K"}),
    RawUserRequest(model_key="kling-3.0-t2v", prompt="a fox runs", options={"duration": 15, "mode": "4K"}),
    RawUserRequest(model_key="kling-2.6-i2v", prompt="the fox turns"),  # missing its image
]


async def main(args: argparse.Namespace) -> int:
    async with open_session(args.offline) as kie:
        for request in REQUESTS:
            # credit_source=kie reads the balance once per call; nothing is submitted.
            result = await run_preflight(request, credit_source=kie, budget_credits=BUDGET)
            cost = f"{result.estimate.credits:g} cr" if result.estimate.has_numeric_estimate else "unknown cost"
            verdict = "allowed" if result.allowed else "blocked"
            print(f"{request.model_key}: {verdict} ({cost}, balance {result.available_credits:g}, budget {BUDGET:g})")
            for reason in result.reasons:
                print(f"  {'BLOCK' if reason.blocking else 'note '} {reason.code}: {reason.message}")
    return 0


if __name__ == "__main__":
    run(main, make_parser(__doc__ or "").parse_args())
