"""``kie-async artifacts list|show|latest|rebuild|notes|tag|gallery``: browse and repair the local run artifacts."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kie_async.artifacts.gallery import write_gallery
from kie_async.artifacts.index import read_index, rebuild_artifact_index
from kie_async.artifacts.layout import DEFAULT_ROOT_ENV, resolve_root
from kie_async.artifacts.manifest import NOTES_FILENAME, RunStatus
from kie_async.artifacts.notes import update_run_notes, update_run_tags
from kie_async.artifacts.query import get_latest_assets, load_run, print_run_summary, query_runs
from kie_async.core.errors import KieInputError
from kie_async.interfaces.cli._common import check_folder_arg, count_arg
from kie_async.interfaces.cli._output import on_terminal, out

_Command = Callable[[argparse.Namespace, Path], Coroutine[Any, Any, int]]


def _at_root(command: _Command) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]]:
    """Resolve ``--root`` and refuse a file there before the event loop starts (a missing root is fine)."""

    def handler(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
        root = resolve_root(args.root)
        if root.exists() and not root.is_dir():
            raise KieInputError(
                f"--root {root} is not a folder",
                hint=f"give --root (or ${DEFAULT_ROOT_ENV}) the artifacts folder, e.g. ./outputs",
            )
        return command(args, root)

    return handler


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    group = sub.add_parser("artifacts", help="list, show and repair local run artifacts")
    actions = group.add_subparsers(dest="artifacts_command", metavar="ACTION", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--root", default=None, help=f"artifacts root (default ${DEFAULT_ROOT_ENV} or ./outputs)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", action="append", help="model key or provider model id (repeatable)")
        parser.add_argument("--task-mode", action="append", help="e.g. text_to_image (repeatable)")

    p_list = actions.add_parser("list", help="runs, newest first")
    common(p_list)
    filters(p_list)
    p_list.add_argument(
        "--status",
        action="append",
        choices=[s.value for s in RunStatus],
        help="succeeded|failed|partial|cancelled, repeatable (default: any)",
    )
    p_list.add_argument("--since", help="ISO time or a span back from now: 30m, 24h, 7d")
    p_list.add_argument("--limit", type=count_arg, default=20, help="at most this many runs (default 20)")
    p_list.add_argument("--tag", action="append", help="only runs carrying this tag (repeatable: all of them)")
    p_list.set_defaults(handler=_at_root(_list))

    p_notes = actions.add_parser("notes", help="write (or --append to) a run's notes.md")
    common(p_notes)
    p_notes.add_argument("run_id", help="run id or a unique prefix of it")
    p_notes.add_argument("text", help="the notes (markdown); '-' reads them from standard input")
    p_notes.add_argument("--append", action="store_true", help="add to the existing notes instead of replacing them")
    p_notes.set_defaults(handler=_at_root(_notes))

    p_tag = actions.add_parser("tag", help="add or remove tags of a stored run")
    common(p_tag)
    p_tag.add_argument("run_id", help="run id or a unique prefix of it")
    p_tag.add_argument("--add", action="append", default=[], metavar="TAG", help="tag to add (repeatable)")
    p_tag.add_argument("--remove", action="append", default=[], metavar="TAG", help="tag to remove (repeatable)")
    p_tag.set_defaults(handler=_at_root(_tag))

    p_show = actions.add_parser("show", help="one run's manifest")
    common(p_show)
    p_show.add_argument("run_id", help="run id or a unique prefix of it")
    p_show.set_defaults(handler=_at_root(_show))

    p_latest = actions.add_parser("latest", help="the newest assets of succeeded runs")
    common(p_latest)
    filters(p_latest)
    p_latest.add_argument("--kind", choices=["image", "video", "audio", "text", "other"])
    p_latest.add_argument("--limit", type=count_arg, default=1, help="at most this many assets (default 1)")
    p_latest.set_defaults(handler=_at_root(_latest))

    p_rebuild = actions.add_parser("rebuild", help="rebuild index.jsonl from the run folders")
    common(p_rebuild)
    p_rebuild.add_argument(
        "--clean-staging", action="store_true", help="also delete unfinished run folders in .tmp older than 1 hour"
    )
    p_rebuild.set_defaults(handler=_at_root(_rebuild))

    p_gallery = actions.add_parser(
        "gallery",
        help="write a static HTML page of the runs (thumbnails, prompts, lineage, links), openable from disk",
    )
    common(p_gallery)
    p_gallery.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder to write gallery.html in (default: the artifacts root)",
    )
    p_gallery.add_argument("--tag", action="append", help="only runs carrying this tag (repeatable: all of them)")
    p_gallery.add_argument("--since", help="ISO time or a span back from now: 30m, 24h, 7d")
    filters(p_gallery)
    p_gallery.set_defaults(handler=_at_root(_gallery))


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


async def _list(args: argparse.Namespace, root: Path) -> int:
    entries = await query_runs(
        root,
        model=args.model,
        status=args.status,
        since=args.since,
        task_mode=args.task_mode,
        limit=args.limit,
        tag=args.tag,
    )
    if args.json:
        _dump([e.model_dump(mode="json", exclude_none=True) for e in entries])
        return 0
    if not on_terminal():  # a pipe or a log: every cell in full, one line per run
        if entries:
            out.table(
                f"runs under {root}",
                ("run id", "status", "mode", "outputs", "prompt"),
                [
                    (
                        e.run_id,
                        e.status.value,
                        e.task_mode or "",
                        ",".join(a.kind.value for a in e.assets),
                        e.prompt or "",
                    )
                    for e in entries
                ],
            )
        else:
            print(f"no runs under {root}")
        report = await read_index(root)
        if report.skipped:
            print(f"{len(report.skipped)} unreadable index line(s) skipped; run `artifacts rebuild`")
        return 0
    console = Console()
    if not entries:
        console.print(f"no runs under {root}")
        return 0
    table = Table(title=f"runs under {root}")
    # One line per run: the id already carries the time and the model, and it is what `show` takes, so it
    # is never cut; the task mode shows when the terminal is wide enough; the prompt takes what is left.
    wide = console.width >= 110
    rows = [
        (
            e.run_id,
            e.status.value,
            *((e.task_mode or "",) if wide else ()),
            ",".join(a.kind.value for a in e.assets),
            e.prompt or "",
        )
        for e in entries
    ]
    headers = ("run id", "status", *(("mode",) if wide else ()), "outputs")
    widths = [max(len(header), *(len(r[n]) for r in rows)) for n, header in enumerate(headers)]
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, no_wrap=True, min_width=width)
    room = max(console.width - sum(widths) - 3 * (len(widths) + 1) - 1, 8)  # borders and padding
    table.add_column("prompt", no_wrap=True, max_width=room)
    for row in rows:
        prompt = row[-1] if len(row[-1]) <= room else row[-1][: room - 1] + "…"
        table.add_row(*row[:-1], prompt)
    console.print(table)
    report = await read_index(root)
    if report.skipped:
        console.print(f"[yellow]{len(report.skipped)} unreadable index line(s) skipped; run `artifacts rebuild`[/]")
    return 0


async def _show(args: argparse.Namespace, root: Path) -> int:
    run = await load_run(root, args.run_id)
    if args.json:
        _dump({"run_dir": str(run.run_dir), "manifest": run.manifest.model_dump(mode="json", exclude_none=True)})
    else:
        # In a pipe, a console as wide as the longest line: paths and prompts are never wrapped or cut.
        print_run_summary(run, None if on_terminal() else Console(width=100_000, soft_wrap=True))
    return 0


async def _notes(args: argparse.Namespace, root: Path) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    run = await update_run_notes(args.run_id, text, root=root, append=args.append)
    if args.json:
        _dump({"run_id": run.run_id, "notes": str(run.run_dir / NOTES_FILENAME), "indexed": run.indexed})
    else:
        print(f"notes of {run.run_id}: {run.run_dir / NOTES_FILENAME}")
    return 0


async def _tag(args: argparse.Namespace, root: Path) -> int:
    if not args.add and not args.remove:
        raise KieInputError("nothing to do", hint="give --add TAG and/or --remove TAG")
    run = await update_run_tags(args.run_id, add=args.add, remove=args.remove, root=root)
    if args.json:
        _dump({"run_id": run.run_id, "tags": run.manifest.tags})
    else:
        print(f"tags of {run.run_id}: {', '.join(run.manifest.tags) or '(none)'}")
    return 0


async def _latest(args: argparse.Namespace, root: Path) -> int:
    assets = await get_latest_assets(root, model=args.model, task_mode=args.task_mode, kind=args.kind, limit=args.limit)
    if args.json:
        _dump([a.model_dump(mode="json", exclude_none=True) for a in assets])
        return 0
    if not assets:
        print(f"no matching assets under {root}")
        return 1
    for asset in assets:  # plain print: paths are meant to be copied, not wrapped by a console
        print(f"{asset.run_id} {asset.kind.value} ({asset.model_key})")
        for label, path in (
            ("original", asset.original),
            ("web", asset.web),
            ("thumb", asset.thumb),
            ("poster", asset.poster),
        ):
            if path is not None:
                print(f"  {label:8} {path}")
    return 0


async def _rebuild(args: argparse.Namespace, root: Path) -> int:
    report = await rebuild_artifact_index(root, clean_staging_older_than=3600.0 if args.clean_staging else None)
    if args.json:
        _dump(report.model_dump(mode="json"))
        return 0
    print(
        f"indexed {report.runs_indexed} run(s) under {report.root} "
        f"(previous index: {report.previous_lines} line(s), {report.previous_skipped} unreadable)"
    )
    for bad in report.bad_manifests:
        print(f"  skipped unreadable manifest {bad}")
    if report.cleaned_staging_dirs:
        print(f"  removed {len(report.cleaned_staging_dirs)} stale unfinished run folder(s) from .tmp")
    if report.stale_staging_dirs:
        print(
            f"  {len(report.stale_staging_dirs)} unfinished run folder(s) in .tmp (crashed or in progress; "
            "--clean-staging removes those older than 1 hour)"
        )
    return 0 if not report.bad_manifests else 1


async def _gallery(args: argparse.Namespace, root: Path) -> int:
    out = check_folder_arg(args.out, "--out") if args.out is not None else None
    page = await write_gallery(
        root, out=out, tag=args.tag, since=args.since, model=args.model, task_mode=args.task_mode
    )
    if args.json:
        _dump(page.model_dump(mode="json"))
    else:  # plain print: the path is meant to be opened or copied
        print(f"gallery: {page.path} ({page.runs} run(s), {page.images} picture(s))")
        print(f"open it: {page.path.as_uri()}")
    return 0
