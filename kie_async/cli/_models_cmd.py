"""``kie-async models | validate | estimate | pricing refresh``: look at specs, check and price a request offline."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from kie_async._data import data_dir
from kie_async.cli._common import check_folder_arg, credits_arg, json_kind, strict_json
from kie_async.preflight import run_preflight
from kie_async.pricing import PricingError, latest_snapshot, refresh_snapshot, write_snapshot
from kie_async.request_models import MediaInput, MediaItem, RawUserRequest, ValidationResult
from kie_async.specs import MediaRole, load_registry
from kie_async.validate import validate_request

_ROLES: tuple[str, ...] = get_args(MediaRole)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    models = sub.add_parser("models", help="list model keys, task modes and provider ids",
                            description="Show the model specs the SDK knows (from model_specs/*.yaml).")
    models.add_argument("model", nargs="?", help="show one model's fields and verification notes")
    models.add_argument("--json", action="store_true", help="machine-readable output")
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
    refresh = pricing_sub.add_parser("refresh", help="build a dated snapshot from a pricing-API JSON document",
                                     description="Read a saved kie.ai pricing-API response and write a new "
                                                 "dated snapshot based on the latest one.")
    refresh.add_argument("--from", dest="source", required=True, type=Path, help="pricing-API JSON file")
    refresh.add_argument("--out", type=Path, default=None, help="folder to write to (default: bundled pricing/)")
    refresh.add_argument("--date", type=_date_arg, default=None, help="snapshot date YYYY-MM-DD (default: today)")
    refresh.add_argument("--base-dir", type=Path, default=None, help="snapshot folder to start from")
    refresh.add_argument("--json", action="store_true", help="machine-readable output")
    refresh.set_defaults(handler=pricing_refresh_command)


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
    specs_all = list(registry.specs.values())
    if args.json:
        rows = [{"key": s.key, "label": s.label, "output": s.output_kind, "aliases": s.aliases,
                 "task_modes": {m.name: m.provider_model for m in s.task_modes}} for s in specs_all]
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"Model specs ({registry.spec_dir})")
    for column in ("key", "output", "task modes", "provider model", "aliases"):
        table.add_column(column, overflow="fold", no_wrap=column in ("key", "field"))
    for s in specs_all:
        table.add_row(s.key, s.output_kind, "\n".join(m.name for m in s.task_modes),
                      "\n".join(m.provider_model for m in s.task_modes), ", ".join(s.aliases))
    console.print(table)
    return 0


def _print_spec(console: Console, key: str) -> None:
    spec = load_registry().get(key)
    console.print(f"[bold]{spec.key}[/] — {spec.label} ({spec.output_kind})")
    table = Table(title="fields")
    for column in ("field", "type", "wire", "default", "allowed / range", "required", "source"):
        table.add_column(column, overflow="fold", no_wrap=column in ("key", "field"))
    prompt = spec.prompt
    table.add_row(prompt.field, "string", "native", "", f"{prompt.min_chars or 0}-{prompt.max_chars or '∞'} chars",
                  "yes" if prompt.required else "no", prompt.provenance.status if prompt.provenance else "")
    for name, opt in spec.options.items():
        allowed = ", ".join(map(str, opt.allowed)) if opt.allowed else (
            f"{opt.min:g}-{opt.max:g}" if opt.min is not None and opt.max is not None else "")
        table.add_row(name, opt.type, opt.wire, "" if opt.default is None else str(opt.default), allowed,
                      "yes" if opt.required else "no", opt.provenance.status if opt.provenance else "")
    console.print(table)
    for mode in spec.task_modes:
        slots = "; ".join(f"{s.name}: {s.min}-{s.max} {s.kind} -> {s.field}" for s in mode.slots) or "no media"
        console.print(f"  {mode.name} -> {mode.provider_model}: {slots}")
    for note in spec.verification_notes:
        console.print(f"  [yellow]note[/] {note}")


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


def pricing_refresh_command(args: argparse.Namespace) -> int:
    try:
        doc = json.loads(Path(args.source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise PricingError(f"cannot read {args.source}: {exc}") from None
    out_dir = check_folder_arg(args.out, "--out") if args.out is not None else data_dir("pricing")
    base = latest_snapshot(args.base_dir)
    report = refresh_snapshot(doc, base, captured_on=args.date)
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
