"""Seedance 2.0 multimodal reference: two reference images and one reference audio clip, uploaded first.

The inputs are made locally (a pyvips gradient, a PNG copy of it, a short WAV tone) so the example needs no
files of yours; swap in your own paths. Roles matter for Seedance: first frame, first + last frame and
references are three modes that must not be mixed.

    python docs/examples/seedance_references.py --offline [--out FOLDER]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import struct
import wave
from pathlib import Path

import pyvips
from _shared import make_parser, open_session, run

from kie_async import ArtifactSettings, MediaInput, PipelineOptions, RawUserRequest, run_pipeline
from kie_async.catalogue.validate import validate_request


def make_inputs(folder: Path) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ramp = pyvips.Image.xyz(640, 360)[0].linear(255 / 640, 0).cast("uchar")
    style = folder / "style.png"
    ramp.bandjoin([ramp.flip("horizontal"), ramp]).write_to_file(str(style))
    subject = folder / "subject.jpg"
    ramp.bandjoin([ramp, ramp.flip("horizontal")]).write_to_file(str(subject))
    tone = folder / "tone.wav"
    with wave.open(str(tone), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * i / 16000)) for i in range(16000 * 3))
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return style, subject, tone


async def main(args: argparse.Namespace) -> int:
    style, subject, tone = await asyncio.to_thread(make_inputs, Path(args.inputs))
    request = RawUserRequest(
        model_key="seedance-2.0",
        prompt="The subject walks through the styled scene in time with the tone",
        images=[MediaInput(source=style, role="reference"), MediaInput(source=subject, role="reference")],
        audios=[MediaInput(source=tone, role="reference", duration_seconds=3.0)],
        options={"duration": 5, "resolution": "480p", "aspect_ratio": "16:9"},
    )
    check = await asyncio.to_thread(validate_request, request)
    print(f"validation: {check.state}, task mode {check.task_mode} -> {check.provider_model}")
    if not check.is_submittable:
        print(check.summary())
        return 1
    options = PipelineOptions(artifacts=ArtifactSettings(root=args.out), budget_credits=150)
    async with open_session(args.offline) as kie:
        result = await run_pipeline(request, kie, options=options)
    print(f"status: {result.status}; estimated {result.credits_estimated} credits")
    if result.prepared is not None:
        for upload in result.prepared.uploads:
            print(f"  {upload.media_id}: {upload.action} ({upload.bytes} bytes)")
    if not result.succeeded:
        print(f"error: {result.error}")
        return 1
    print(f"video: {result.outputs[0].path}")
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__ or "")
    parser.add_argument("--inputs", default="outputs/example-inputs", help="where the generated inputs are written")
    parser.add_argument("--out", type=Path, default=None, help="artifacts root (default $KIE_OUTPUT_DIR or ./outputs)")
    run(main, parser.parse_args())
