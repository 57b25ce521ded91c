"""Read the account's credit balance (the simplest "am I connected?" check).

python docs/examples/credits.py --offline
"""

from __future__ import annotations

import argparse

from _shared import make_parser, open_session, run


async def main(args: argparse.Namespace) -> int:
    async with open_session(args.offline) as kie:
        balance = await kie.get_credits()
    print(f"credits: {balance.credits:g} (about ${balance.usd:.2f} at $0.005 per credit)")
    return 0


if __name__ == "__main__":
    run(main, make_parser(__doc__ or "").parse_args())
