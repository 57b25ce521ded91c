"""``kie-async models import`` and ``kie-async pricing refresh``: the commands that write spec and pricing files.

Kept apart from ``_models_cmd`` (loaded by ``_commands.load_action``) so that ``validate``, ``estimate`` and
``models`` do not import the docs-page importer, the YAML writer or the session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from kie_async.catalogue.chat_import import chat_operation
from kie_async.catalogue.pricing import PricingError, latest_snapshot, refresh_snapshot, write_snapshot
from kie_async.catalogue.pricing_status import unmapped_keys
from kie_async.catalogue.spec_import import CREATE_TASK_PATH, SpecImportError, import_page, render_yaml
from kie_async.catalogue.specs import ModelSpec, load_registry, load_spec_file
from kie_async.core.data import data_dir
from kie_async.core.errors import KieInputError
from kie_async.core.provider_pages import ProviderPageError, read_page
from kie_async.interfaces.cli._chat_cmd import import_chat_command
from kie_async.interfaces.cli._common import check_folder_arg
from kie_async.interfaces.cli._live import resolve_settings
from kie_async.session import KieSession


def models_import_command(args: argparse.Namespace) -> int:
    """``models import PAGE``: derive a spec from a docs page; print it, or write it with ``--out``."""
    if not args.target:
        raise KieInputError("`models import` needs a docs page (.md) or an OpenAPI file (.yaml/.json)")
    source = Path(args.target)
    if not source.is_file():
        raise KieInputError(f"no such file: {source}")
    try:
        page = read_page(source)
        if chat_operation(page) is not None and page.operation(CREATE_TASK_PATH) is None:  # the chat kind
            return import_chat_command(page, args)
        imported = import_page(page, family=args.family, key=args.key, model_id=args.model_id)
    except (ProviderPageError, SpecImportError, OSError, UnicodeDecodeError) as exc:
        raise KieInputError(f"cannot import {source}: {exc}") from None
    text = render_yaml(imported)
    try:
        ModelSpec.model_validate(imported.data)  # refuse before writing: a half-valid file helps nobody
    except ValidationError as exc:
        raise KieInputError(
            f"cannot import {source}: the derived spec is not valid: {exc.errors()[0]['msg']}",
            hint="import with --key/--model-id, or write the spec by hand",
        ) from None
    if args.out is None:
        print(text, end="")
        return 0
    out_dir = check_folder_arg(args.out, "--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{imported.key}.yaml"
    if target.exists() and not args.force:
        raise KieInputError(f"{target} exists (it may hold hand edits); pass --force to overwrite it")
    target.write_text(text, encoding="utf-8")
    load_spec_file(target)  # the importer's output must load; a failure here is an importer bug
    if args.json:
        print(
            json.dumps(
                {"path": str(target), "key": imported.key, "todos": imported.todos, "page_notes": imported.page_notes},
                indent=2,
            )
        )
        return 0
    console = Console()
    console.print(f"wrote [bold]{target}[/] ({len(imported.todos)} TODO(import) to resolve by hand)")
    for todo in imported.todos:
        console.print(f"  [yellow]TODO[/] {todo}", highlight=False)
    for note in imported.page_notes:
        console.print(f"  [dim]page[/] {note}", highlight=False)
    return 0


def pricing_refresh_command(args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    if args.source is None:
        return _pricing_refresh_live(args)
    try:
        doc = json.loads(Path(args.source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise PricingError(f"cannot read {args.source}: {exc}") from None
    return _write_refresh(args, doc, f"saved pricing-API document {Path(args.source).name}")


async def _pricing_refresh_live(args: argparse.Namespace) -> int:
    """Ask the pricing API through KieSession (so the live gate, retries and limits apply), then write."""
    async with resolve_settings(args.offline) as settings, KieSession(settings) as kie:
        records = await kie.get_pricing_records()
        source = f"kie.ai pricing API at {settings.base_url} (client/v1/model-pricing/page)"
    return await asyncio.to_thread(_write_refresh, args, {"records": records}, source)


def _write_refresh(args: argparse.Namespace, doc: Any, source: str) -> int:
    out_dir = check_folder_arg(args.out, "--out") if args.out is not None else data_dir("pricing")
    base = latest_snapshot(args.base_dir)
    report = refresh_snapshot(doc, base, captured_on=args.date, source=source)
    path = write_snapshot(report.snapshot, out_dir)
    unmapped = unmapped_keys(load_registry(), report.snapshot)
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(path),
                    "snapshot_id": report.snapshot.snapshot_id,
                    "updated": report.updated,
                    "carried_over": report.carried_over,
                    "unmatched_records": report.unmatched_records,
                    "unpriced": sorted(report.snapshot.unpriced),
                    "unmapped_keys": unmapped,
                },
                indent=2,
            )
        )
        return 0
    console = Console()
    console.print(f"wrote [bold]{path}[/] from base {base.snapshot_id}")
    console.print(
        f"  updated {len(report.updated)} rule(s), carried over {len(report.carried_over)}, "
        f"{len(report.unmatched_records)} record(s) matched no rule"
    )
    for desc in report.unmatched_records:
        console.print(f"  [yellow]unmatched[/] {desc}", highlight=False)
    console.print(
        f"  {len(report.snapshot.models)} key(s) priced, {len(report.snapshot.unpriced)} listed as unpriced with why"
        f" (`kie-async pricing status --unpriced`), {len(unmapped)} neither"
    )
    for key in unmapped:
        console.print(f"  [yellow]no price and no why[/] {key}", highlight=False)
    return 0
