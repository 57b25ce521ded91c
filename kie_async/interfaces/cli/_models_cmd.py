"""``kie-async models | validate | estimate | pricing refresh | pricing status``: specs, checks, prices offline."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Coroutine
from datetime import date
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from kie_async.catalogue.listing import catalogue_rows, example_command, group_by_family, limits_text, price_range
from kie_async.catalogue.preflight import run_preflight
from kie_async.catalogue.pricing import PricingError, latest_snapshot, refresh_snapshot, write_snapshot
from kie_async.catalogue.pricing_status import HOW_TO_PRICE, pricing_status
from kie_async.catalogue.request_models import MediaInput, MediaItem, RawUserRequest, ValidationResult
from kie_async.catalogue.spec_import import SpecImportError, import_page, render_yaml
from kie_async.catalogue.specs import MediaRole, ModelSpec, load_registry, load_spec_file
from kie_async.catalogue.validate import validate_request
from kie_async.core.data import data_dir
from kie_async.core.errors import KieInputError
from kie_async.core.provider_pages import ProviderPageError, read_page
from kie_async.interfaces.cli._common import (
    add_offline_flag,
    check_folder_arg,
    credits_arg,
    json_kind,
    resolve_settings,
    strict_json,
)

_ROLES: tuple[str, ...] = get_args(MediaRole)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    models = sub.add_parser(
        "models", help="list model keys by family; show one; import a provider docs page",
        description="Show the model specs the SDK knows (from model_specs/*.yaml), grouped by family. "
                    "`models show KEY` prints one model's fields, limits, defaults and an example; "
                    "`models import PAGE_OR_OPENAPI_FILE` turns a Kie.ai docs page into a spec.")
    models.add_argument("model", nargs="?", metavar="KEY | show | import",
                        help="a model key or alias to show; `show KEY`; or `import PAGE`")
    models.add_argument("target", nargs="?", help="the KEY of `show`, or the page/OpenAPI file of `import`")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument("--family", default=None, help="import: the spec's family (default: the page's folder)")
    models.add_argument("--out", type=Path, default=None, help="import: folder to write KEY.yaml to "
                                                                "(default: print the spec)")
    models.add_argument("--key", default=None, help="import: model key (default: derived from the provider id)")
    models.add_argument("--model-id", default=None, help="import: provider model id, when the page's is wrong")
    models.add_argument("--force", action="store_true", help="import: overwrite an existing spec file")
    models.set_defaults(handler=models_command)

    validate = sub.add_parser("validate", help="check a request without spending credits",
                              description="Normalize and validate a request; exit 0 if it can be submitted.")
    _request_args(validate)
    validate.set_defaults(handler=validate_command)

    estimate = sub.add_parser("estimate", help="estimate a request's cost and gate it on balance/budget",
                              description="Price a request from the latest pricing snapshot; exit 0 if allowed.")
    _request_args(estimate)
    estimate.add_argument("--credits", type=credits_arg, default=None, help="available credits to check against")
    estimate.add_argument("--budget", type=credits_arg, default=None, help="refuse if the estimate exceeds this")
    estimate.add_argument("--allow-unknown-cost", action="store_true", help="do not block when no price is known")
    estimate.set_defaults(handler=estimate_command)

    pricing = sub.add_parser("pricing", help="pricing snapshots")
    pricing_sub = pricing.add_subparsers(dest="pricing_command", metavar="ACTION", required=True)
    refresh = pricing_sub.add_parser("refresh", help="build a dated snapshot from Kie.ai's pricing API",
                                     description="Read Kie.ai's pricing API (live: needs KIE_ALLOW_LIVE=1; or "
                                                 "--offline, or a saved response with --from) and write a new "
                                                 "dated snapshot based on the latest one.")
    refresh.add_argument("--from", dest="source", default=None, type=Path,
                         help="a saved pricing-API JSON file instead of asking the API")
    add_offline_flag(refresh)
    refresh.add_argument("--out", type=Path, default=None, help="folder to write to (default: bundled pricing/)")
    refresh.add_argument("--date", type=_date_arg, default=None, help="snapshot date YYYY-MM-DD (default: today)")
    refresh.add_argument("--base-dir", type=Path, default=None, help="snapshot folder to start from")
    refresh.add_argument("--json", action="store_true", help="machine-readable output")
    refresh.set_defaults(handler=pricing_refresh_command)
    status = pricing_sub.add_parser("status", help="which model keys have a price, from which source, how old",
                                    description="Per model key: priced or not by the newest snapshot, its source "
                                                "and age; unpriced keys say how to get a price.")
    status.add_argument("--model", action="append", default=[], help="only these keys (repeatable)")
    status.add_argument("--unpriced", action="store_true", help="list only keys without a price")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=pricing_status_command)


def _request_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model key or alias (see `kie-async models`)")
    parser.add_argument("--prompt", default=None)
    parser.add_argument("--task-mode", default=None, help="force a task mode (default: detect from media)")
    for kind in ("image", "video", "audio"):
        parser.add_argument(f"--{kind}", action="append", default=[], metavar="[ROLE=]SRC",
                            help=f"{kind} path or URL, optionally prefixed with first_frame=, last_frame= or "
                                 f"reference=; repeatable")
    parser.add_argument("--option", action="append", type=_option_arg, default=[], metavar="KEY=VALUE",
                        help="model option (JSON values allowed for lists); repeatable")
    parser.add_argument("--extra-option", action="append", type=_option_arg, default=[], metavar="KEY=VALUE",
                        help="a field Kie.ai takes that the spec does not know yet: sent verbatim, unchecked, "
                             "with a warning; repeatable")
    parser.add_argument("--multi-prompt", type=_multi_prompt_arg, default=None,
                        help="JSON list of {prompt, duration} shots")
    parser.add_argument("--callback-url", type=_callback_url_arg, default=None,
                        help="http(s) URL Kie.ai calls when the task ends")
    parser.add_argument("--no-file-check", action="store_true", help="do not look at local files")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _media(values: list[str]) -> list[MediaItem]:
    items: list[MediaItem] = []
    for raw in values:
        role, sep, rest = raw.partition("=")
        if sep and role in _ROLES and rest:
            items.append(MediaInput.model_validate({"source": rest, "role": role}))
        else:
            items.append(raw)
    return items


def _option_value(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return text


def _option_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as an argparse type, so a malformed one is a usage error naming ``--option``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _option_value(value)


def _multi_prompt_arg(text: str) -> list[dict[str, Any]]:
    """The ``--multi-prompt`` JSON, checked for shape here: a list of objects, else a usage error."""
    try:
        shots = strict_json(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not isinstance(shots, list):
        raise argparse.ArgumentTypeError(f'expected a JSON list of {{"prompt": ..., "duration": ...}} objects, '
                                         f"got {json_kind(shots)}")
    for index, shot in enumerate(shots):
        if not isinstance(shot, dict):
            raise argparse.ArgumentTypeError(f"item {index} should be an object, got {json_kind(shot)}")
    return shots


def _callback_url_arg(text: str) -> str:
    """An http(s) URL with a host that parses (``http://[::1`` used to be submitted, then crash the callback)."""
    try:
        parts = urlsplit(text)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a valid URL ({exc}): {text!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL with a host, got {text!r}")
    return text


def _date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def build_request(args: argparse.Namespace) -> RawUserRequest:
    options: dict[str, Any] = dict(args.option)
    multi: list[dict[str, Any]] | None = args.multi_prompt
    return RawUserRequest(
        model_key=args.model, task_mode=args.task_mode, prompt=args.prompt, images=_media(args.image),
        videos=_media(args.video), audios=_media(args.audio), options=options, callback_url=args.callback_url,
        multi_prompt=multi, extra_options=dict(getattr(args, "extra_option", [])),
    )


def models_command(args: argparse.Namespace) -> int:
    if args.model == "import":
        return models_import_command(args)
    import_only = [f for f in ("family", "out", "key", "model_id") if getattr(args, f) is not None]
    if import_only or args.force:
        raise KieInputError(f"--{(import_only or ['force'])[0].replace('_', '-')} is only for `models import`")
    if args.model == "show":
        if not args.target:
            raise KieInputError("`models show` needs a model KEY (see `kie-async models`)")
        args.model = args.target
    elif args.target:
        raise KieInputError(f"unexpected argument {args.target!r}; did you mean `models show {args.model}`?")
    registry = load_registry()
    console = Console()
    if args.model:
        candidates = registry.candidates(args.model)
        if not candidates:
            console.print(f"[red]unknown model {args.model!r}[/]; known: {', '.join(registry.model_keys())}")
            return 1
        specs = candidates
        if args.json:
            print(json.dumps([s.model_dump(mode="json", exclude_none=True) for s in specs], indent=2))
            return 0
        for spec in specs:
            _print_spec(console, spec.key)
        return 0
    rows = catalogue_rows(registry)
    if args.json:
        print(json.dumps([{"key": r.key, "label": r.label, "family": r.family, "output": r.output,
                           "aliases": r.aliases, "price": r.price, "priced": r.priced,
                           "task_modes": {m.name: m.provider_model for m in registry.get(r.key).task_modes}}
                          for r in rows], indent=2))
        return 0
    console = Console(width=max(console.width, 132))  # one row per model reads better than folded cells
    console.print(f"{len(rows)} models in {len({r.family for r in rows})} families ({registry.spec_dir})")
    for family, members in group_by_family(rows).items():
        table = Table(title=f"{family} ({len(members)})", title_justify="left")
        for column in ("key", "output", "task modes", "provider model", "price"):
            table.add_column(column, overflow="fold", no_wrap=column == "key")
        for row in members:
            table.add_row(row.key, row.output, "\n".join(row.task_modes), "\n".join(row.provider_models),
                          row.price)
        console.print(table)
    return 0


def models_import_command(args: argparse.Namespace) -> int:
    """``models import PAGE``: derive a spec from a docs page; print it, or write it with ``--out``."""
    if not args.target:
        raise KieInputError("`models import` needs a docs page (.md) or an OpenAPI file (.yaml/.json)")
    source = Path(args.target)
    if not source.is_file():
        raise KieInputError(f"no such file: {source}")
    try:
        page = read_page(source)
        imported = import_page(page, family=args.family, key=args.key, model_id=args.model_id)
    except (ProviderPageError, SpecImportError, OSError, UnicodeDecodeError) as exc:
        raise KieInputError(f"cannot import {source}: {exc}") from None
    text = render_yaml(imported)
    try:
        ModelSpec.model_validate(imported.data)  # refuse before writing: a half-valid file helps nobody
    except ValidationError as exc:
        raise KieInputError(f"cannot import {source}: the derived spec is not valid: {exc.errors()[0]['msg']}",
                            hint="import with --key/--model-id, or write the spec by hand") from None
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
        print(json.dumps({"path": str(target), "key": imported.key, "todos": imported.todos,
                          "page_notes": imported.page_notes}, indent=2))
        return 0
    console = Console()
    console.print(f"wrote [bold]{target}[/] ({len(imported.todos)} TODO(import) to resolve by hand)")
    for todo in imported.todos:
        console.print(f"  [yellow]TODO[/] {todo}", highlight=False)
    for note in imported.page_notes:
        console.print(f"  [dim]page[/] {note}", highlight=False)
    return 0


def _print_spec(console: Console, key: str) -> None:
    spec = load_registry().get(key)
    console.print(f"[bold]{spec.key}[/] — {spec.label} ({spec.family}, {spec.output_kind}; price {price_range(key)})")
    if spec.source_page is not None:
        console.print(f"  source: {spec.source_page.url or spec.source_page.page} "
                      f"(captured {spec.source_page.captured})", highlight=False)
    table = Table(title="fields")
    for column in ("field", "type", "wire", "default", "allowed / range", "required", "source"):
        table.add_column(column, overflow="fold", no_wrap=column in ("key", "field"))
    prompt = spec.prompt
    if prompt.accepted:
        table.add_row(prompt.field, "string", "native", "",
                      f"{prompt.min_chars or 0}-{prompt.max_chars or '∞'} chars",
                      "yes" if prompt.required else "no", (prompt.provenance or spec.provenance).status)
    for name, opt in spec.options.items():
        table.add_row(name, opt.type, opt.wire, "" if opt.default is None else str(opt.default), limits_text(opt),
                      "yes" if opt.required else "no", (opt.provenance or spec.provenance).status)
    console.print(table)
    if not prompt.accepted:
        console.print("  takes no prompt")
    for mode in spec.task_modes:
        console.print(f"  {mode.name} -> {mode.provider_model}")
        for slot in mode.slots:
            extras = ", ".join(x for x in (
                "/".join(slot.formats), f"<= {slot.max_mb:g} MB" if slot.max_mb else "") if x)
            console.print(f"    {slot.field}: {slot.min}-{slot.max} {slot.kind} ({'/'.join(slot.roles)})"
                          f"{'; ' + extras if extras else ''}", highlight=False)
    for rule in spec.rules:
        console.print(f"  [cyan]rule[/] {rule.id}: {rule.message}", highlight=False)
    example = example_command(spec.key)
    if example:
        console.print("  [bold]example[/]")
        console.print(f"    {example}", highlight=False, soft_wrap=True)
    for note in spec.verification_notes:
        console.print(f"  [yellow]note[/] {note}", highlight=False)


def _print_validation(console: Console, result: ValidationResult) -> None:
    colour = {"ready": "green", "ready_with_defaults": "green", "ready_with_warning": "yellow",
              "needs_input": "yellow", "invalid": "red"}[result.state]
    console.print(f"[bold {colour}]{result.state}[/] {result.model_key} "
                  f"({result.task_mode or '?'} -> {result.provider_model or '?'})")
    groups = (("impossible", result.impossible_inputs, "red"), ("missing", result.missing_inputs, "yellow"),
              ("warning", result.warning_details, "yellow"), ("default", result.defaulted_fields, "dim"))
    for label, details, style in groups:
        for d in details:
            console.print(f"  [{style}]{label:<10}[/] {d.field}: {d.message} — fix: {d.fix}", highlight=False)


def validate_command(args: argparse.Namespace) -> int:
    request = build_request(args)
    result = validate_request(request, check_files=not args.no_file_check)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        _print_validation(Console(), result)
    return 0 if result.is_submittable else 1


def estimate_command(args: argparse.Namespace) -> int:
    request = build_request(args)
    result = asyncio.run(run_preflight(
        request, available_credits=args.credits, budget_credits=args.budget,
        allow_unknown_cost=args.allow_unknown_cost, check_files=not args.no_file_check,
    ))
    if args.json:
        print(result.model_dump_json(indent=2, exclude={"validation": {"normalized"}}))
        return 0 if result.allowed else 1
    console = Console()
    _print_validation(console, result.validation)
    est = result.estimate
    if est.has_numeric_estimate:
        console.print(f"[bold]estimate[/] {est.credits:g} credits (${est.usd:.4f}) = {est.rate_credits:g} cr "
                      f"{est.unit} x {est.quantity:g}; snapshot {est.snapshot_id}; "
                      f"{'verified' if est.is_known else 'planning figure, not verified billing'}")
    else:
        console.print(f"[bold]estimate[/] unknown ({'; '.join(est.notes) or 'no price'})")
    for note in est.assumptions:
        console.print(f"  [yellow]assumption[/] {note}")
    for reason in result.reasons:
        style = "red" if reason.blocking else "dim"
        console.print(f"  [{style}]{reason.code}[/] {reason.message}", highlight=False)
    if result.allowed:
        console.print("[bold green]allowed[/]" + (" (with a cost warning)" if result.decision == "warn" else ""))
    elif result.decision == "require_confirmation":
        console.print("[bold yellow]needs confirmation[/] (`kie-async run` asks on a terminal, or takes --yes)")
    else:
        console.print("[bold red]blocked[/]")
    return 0 if result.allowed else 1


def pricing_status_command(args: argparse.Namespace) -> int:
    rows = pricing_status(load_registry(), latest_snapshot())
    if args.model:
        wanted = set(args.model)
        rows = [r for r in rows if r.model_key in wanted]
    if args.unpriced:
        rows = [r for r in rows if not r.priced]
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return 0
    table = Table("key", "priced", "source", "snapshot", "age (days)", "billing verified")
    for r in rows:
        table.add_row(r.model_key, "yes" if r.priced else "no", r.source_kind or "-", r.snapshot_id or "-",
                      "-" if r.age_days is None else str(r.age_days), "yes" if r.billing_verified else "no")
    console = Console()
    console.print(table)
    priced = sum(r.priced for r in rows)
    console.print(f"{priced} of {len(rows)} key(s) priced", highlight=False)
    if priced < len(rows):
        console.print(f"without a price: {HOW_TO_PRICE}", highlight=False)
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
    from kie_async.session import KieSession

    async with resolve_settings(args.offline) as settings, KieSession(settings) as kie:
        records = await kie.get_pricing_records()
        source = f"kie.ai pricing API at {settings.base_url} (client/v1/model-pricing/page)"
    return await asyncio.to_thread(_write_refresh, args, {"records": records}, source)


def _write_refresh(args: argparse.Namespace, doc: Any, source: str) -> int:
    out_dir = check_folder_arg(args.out, "--out") if args.out is not None else data_dir("pricing")
    base = latest_snapshot(args.base_dir)
    report = refresh_snapshot(doc, base, captured_on=args.date, source=source)
    path = write_snapshot(report.snapshot, out_dir)
    if args.json:
        print(json.dumps({"path": str(path), "snapshot_id": report.snapshot.snapshot_id, "updated": report.updated,
                          "carried_over": report.carried_over, "unmatched_records": report.unmatched_records},
                         indent=2))
        return 0
    console = Console()
    console.print(f"wrote [bold]{path}[/] from base {base.snapshot_id}")
    console.print(f"  updated {len(report.updated)} rule(s), carried over {len(report.carried_over)}, "
                  f"{len(report.unmatched_records)} record(s) matched no rule")
    for desc in report.unmatched_records:
        console.print(f"  [yellow]unmatched[/] {desc}", highlight=False)
    return 0
