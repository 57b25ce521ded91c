"""Estimate what requests would cost from the bundled pricing snapshot. Pure: no network, no credits.

python docs/examples/estimate.py --offline
"""

from __future__ import annotations

import argparse

from _shared import make_parser, run

from kie_async import RawUserRequest, estimate_request_cost

REQUESTS = [
    RawUserRequest(model_key="nano-banana-2", prompt="a fox", options={"resolution": "4K"}),
    RawUserRequest(model_key="kling-3.0-t2v", prompt="a fox runs", options={"duration": 10, "sound": True}),
    RawUserRequest(model_key="seedance-2.0", prompt="a fox dances", options={"duration": 8, "resolution": "480p"}),
]


async def main(args: argparse.Namespace) -> int:
    del args  # prices come from pricing/*.yaml, so --offline changes nothing here
    for request in REQUESTS:
        est = estimate_request_cost(request)
        if not est.has_numeric_estimate:
            print(f"{request.model_key}: unknown ({'; '.join(est.notes)})")
            continue
        trust = "verified" if est.is_known else "planning figure"
        print(
            f"{request.model_key}: {est.credits:g} credits (${est.usd:.3f}) = {est.rate_credits:g} {est.unit} "
            f"x {est.quantity:g} [{est.snapshot_id}, {trust}]"
        )
    return 0


if __name__ == "__main__":
    run(main, make_parser(__doc__ or "").parse_args())
