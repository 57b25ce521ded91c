"""Text to image with Nano Banana 2, through the whole pipeline: validate, price, submit, wait, download, record.

python docs/examples/text_to_image.py --offline [--prompt "..."] [--out FOLDER]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _shared import make_parser, open_session, run

from kie_async import ArtifactSettings, PipelineOptions, RawUserRequest, run_pipeline


async def main(args: argparse.Namespace) -> int:
    request = RawUserRequest(
        model_key="nano-banana-2", prompt=args.prompt, options={"resolution": "1K", "output_format": "png"}
    )
    options = PipelineOptions(artifacts=ArtifactSettings(root=args.out), budget_credits=20)
    async with open_session(args.offline) as kie:
        result = await run_pipeline(request, kie, options=options)
    for stage in result.stages:
        print(f"  {stage.name:<10} {stage.status:<8} {stage.seconds:6.3f}s {stage.detail or ''}")
    print(f"status: {result.status}; credits estimated {result.credits_estimated}, charged {result.credits_charged}")
    if not result.succeeded:
        print(f"error: {result.error}")
        return 1
    print(f"image: {result.outputs[0].path}")
    print(f"run folder: {result.run_dir}")
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__ or "")
    parser.add_argument("--prompt", default="A red fox in fresh snow, golden hour, 35mm photo")
    parser.add_argument("--out", type=Path, default=None, help="artifacts root (default $KIE_OUTPUT_DIR or ./outputs)")
    run(main, parser.parse_args())
