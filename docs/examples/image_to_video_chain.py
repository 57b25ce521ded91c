"""Chain two runs: a Nano Banana 2 image becomes the first frame of a Kling 3.0 video; lineage is recorded.

python docs/examples/image_to_video_chain.py --offline [--out FOLDER]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _shared import make_parser, open_session, run

from kie_async import ArtifactSettings, PipelineOptions, RawUserRequest, run_pipeline


async def main(args: argparse.Namespace) -> int:
    options = PipelineOptions(artifacts=ArtifactSettings(root=args.out))
    async with open_session(args.offline) as kie:
        image = await run_pipeline(
            RawUserRequest(
                model_key="nano-banana-2", prompt="A lighthouse on a cliff at dawn", options={"aspect_ratio": "16:9"}
            ),
            kie,
            options=options,
        )
        print(f"image run: {image.status} {image.run_id}")
        if not image.succeeded:
            print(f"error: {image.error}")
            return 1
        # The downloaded output is an input for the next run; its run id becomes the video's parent.
        video = await run_pipeline(
            RawUserRequest(
                model_key="kling-3.0",
                prompt="Slow dolly-in as waves crash below the lighthouse",
                images=[image.outputs[0].as_media("first_frame")],
                options={"duration": 5, "mode": "std", "sound": False},
            ),
            kie,
            options=options,
        )
    print(f"video run: {video.status} {video.run_id} ({video.model_key}, {video.credits_charged} credits)")
    if not video.succeeded:
        print(f"error: {video.error}")
        return 1
    assert video.prepared is not None
    for upload in video.prepared.uploads:
        print(f"  input {upload.media_id}: {upload.action} -> {upload.url}")
    print(f"video: {video.outputs[0].path}")
    print(f"parents of the video run: {video.parent_run_ids}")
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__ or "")
    parser.add_argument("--out", type=Path, default=None, help="artifacts root (default $KIE_OUTPUT_DIR or ./outputs)")
    run(main, parser.parse_args())
