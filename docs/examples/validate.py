"""Validate requests before anything is sent: the verdict, and what to fix. Pure: no network, no credits.

python docs/examples/validate.py --offline
"""

from __future__ import annotations

import argparse

from _shared import make_parser, run

from kie_async import RawUserRequest
from kie_async.catalogue.validate import validate_request

REQUESTS = [
    RawUserRequest(model_key="nano-banana-2", prompt="a red fox in snow", options={"resolution": "2K"}),
    RawUserRequest(model_key="kling-2.6-i2v", prompt="the fox turns its head"),  # no image: needs_input
    RawUserRequest(model_key="seedance-2.0", prompt="a fox", options={"duration": 40}),  # out of range: invalid
]


async def main(args: argparse.Namespace) -> int:
    del args  # validation never talks to Kie.ai, so --offline changes nothing here
    for request in REQUESTS:
        result = validate_request(request)
        print(f"{request.model_key}: {result.state} (submittable: {result.is_submittable})")
        for detail in result.all_details():
            print(f"  {detail.rule:<22} {detail.field}: {detail.message} -> fix: {detail.fix}")
    return 0


if __name__ == "__main__":
    run(main, make_parser(__doc__ or "").parse_args())
