"""Query the local run artifacts: recent runs, filters, the latest image, one run's manifest, a rebuild.

Queries read the artifacts folder only (no network). With --offline the example first makes two runs on an
embedded emulator so there is something to find; without it, it queries the runs you already have.

    python docs/examples/artifacts_query.py --offline [--root FOLDER]
"""

from __future__ import annotations

import argparse

from _shared import make_parser, open_session, run

from kie_async import ArtifactSettings, PipelineOptions, RawUserRequest, query_runs, run_pipeline
from kie_async.artifacts import get_latest_assets, get_latest_successful_run, rebuild_artifact_index
from kie_async.artifacts.layout import resolve_root


async def main(args: argparse.Namespace) -> int:
    root = resolve_root(args.root)
    if args.offline:
        options = PipelineOptions(artifacts=ArtifactSettings(root=root))
        async with open_session(True) as kie:
            for prompt in ("a red fox", "a snow owl"):
                request = RawUserRequest(model_key="nano-banana-2", prompt=prompt)
                made = await run_pipeline(request, kie, options=options)
                print(f"made run {made.run_id} ({made.status})")
    runs = await query_runs(root, model="nano-banana-2", status="succeeded", since="1d", limit=10)
    print(f"{len(runs)} succeeded nano-banana-2 run(s) in the last day under {root}:")
    for entry in runs:
        print(f"  {entry.run_id}  {entry.task_mode}  {entry.credits_consumed} cr  {entry.prompt!r}")
    for asset in await get_latest_assets(root, kind="image", limit=1):
        print(f"latest image: {asset.original} ({asset.width}x{asset.height})")
        print(f"  web: {asset.web}\n  thumb: {asset.thumb}")
    latest = await get_latest_successful_run(root)
    if latest is not None:
        trace = latest.manifest.provider_trace
        print(f"latest run {latest.run_id}: task {trace.task_id if trace else None}, manifest {latest.manifest_path}")
    report = await rebuild_artifact_index(root)
    print(f"rebuilt index: {report.runs_indexed} run(s) (previous index had {report.previous_lines} line(s))")
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__ or "")
    parser.add_argument("--root", default=None, help="artifacts root (default $KIE_OUTPUT_DIR or ./outputs)")
    run(main, parser.parse_args())
