"""``kie-async models | pricing refresh``: look at the model specs, their prices and examples."""

from __future__ import annotations

import argparse
import json
from collections.abc import Coroutine
from datetime import date
from pathlib import Path
from typing import Any

from kie_async.catalogue.chat_specs import ChatSpec, load_chat_registry
from kie_async.catalogue.listing import (
    CatalogueRow,
    catalogue_rows,
    chat_catalogue_rows,
    chat_example_command,
    chat_option_text,
    chat_price_basis,
    example_command,
    group_by_family,
    limits_text,
    price_range,
)
from kie_async.catalogue.pricing import latest_snapshot
from kie_async.catalogue.pricing_status import HOW_TO_PRICE, pricing_status
from kie_async.catalogue.specs import ModelRegistry, close_matches, load_registry
from kie_async.core.errors import KieInputError
from kie_async.interfaces.cli._commands import load_action
from kie_async.interfaces.cli._common import add_offline_flag
from kie_async.interfaces.cli._output import Printer, err, out


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    models = sub.add_parser(
        "models",
        help="list model keys by family (media and chat); show one; import a provider docs page",
        description="Show the model specs the SDK knows (from model_specs/*.yaml, and the chat models from "
        "model_specs/chat/*.yaml, kind chat), grouped by family. "
        "`models show KEY` prints one model's fields, limits, defaults and an example; "
        "`models import PAGE_OR_OPENAPI_FILE` turns a Kie.ai docs page into a spec.",
    )
    models.add_argument(
        "model",
        nargs="?",
        metavar="KEY | show | import",
        help="a model key or alias to show; `show KEY`; or `import PAGE`",
    )
    models.add_argument("target", nargs="?", help="the KEY of `show`, or the page/OpenAPI file of `import`")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument(
        "--kind", choices=("media", "chat"), default=None, help="list only media (createTask) or chat models"
    )
    models.add_argument("--family", default=None, help="import: the spec's family (default: the page's folder)")
    models.add_argument(
        "--out", type=Path, default=None, help="import: folder to write KEY.yaml to (default: print the spec)"
    )
    models.add_argument("--key", default=None, help="import: model key (default: derived from the provider id)")
    models.add_argument("--model-id", default=None, help="import: provider model id, when the page's is wrong")
    models.add_argument("--force", action="store_true", help="import: overwrite an existing spec file")
    models.set_defaults(handler=models_command)

    pricing = sub.add_parser("pricing", help="pricing snapshots")
    pricing_sub = pricing.add_subparsers(dest="pricing_command", metavar="ACTION", required=True)
    refresh = pricing_sub.add_parser(
        "refresh",
        help="build a dated snapshot from Kie.ai's pricing API",
        description="Read Kie.ai's pricing API (live: needs KIE_ALLOW_LIVE=1; or "
        "--offline, or a saved response with --from) and write a new "
        "dated snapshot based on the latest one.",
    )
    refresh.add_argument(
        "--from", dest="source", default=None, type=Path, help="a saved pricing-API JSON file instead of asking the API"
    )
    add_offline_flag(refresh, state=False)  # a price list needs no account
    refresh.add_argument("--out", type=Path, default=None, help="folder to write to (default: bundled pricing/)")
    refresh.add_argument("--date", type=_date_arg, default=None, help="snapshot date YYYY-MM-DD (default: today)")
    refresh.add_argument("--base-dir", type=Path, default=None, help="snapshot folder to start from")
    refresh.add_argument("--json", action="store_true", help="machine-readable output")
    refresh.set_defaults(handler=pricing_refresh_command)
    status = pricing_sub.add_parser(
        "status",
        help="which model keys have a price, from which source, how old",
        description="Per model key: priced or not by the newest snapshot, its source "
        "and age; unpriced keys say how to get a price.",
    )
    status.add_argument("--model", action="append", default=[], help="only these keys (repeatable)")
    status.add_argument("--unpriced", action="store_true", help="list only keys without a price")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=pricing_status_command)


def pricing_status_command(args: argparse.Namespace) -> int:
    """``pricing status``: per key, priced or not, from which source and how old; unpriced keys say how to price."""
    rows = pricing_status(load_registry(), latest_snapshot())
    if args.model:
        wanted = set(args.model)
        rows = [r for r in rows if r.model_key in wanted]
    if args.unpriced:
        rows = [r for r in rows if not r.priced]
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return 0
    table = [
        [
            r.model_key,
            "yes" if r.priced else "no",
            r.source_kind or "-",
            r.snapshot_id or "-",
            "-" if r.age_days is None else str(r.age_days),
            "yes" if r.billing_verified else "no",
        ]
        for r in rows
    ]
    out.table("pricing", ["key", "priced", "source", "snapshot", "age (days)", "billing verified"], table)
    priced = sum(r.priced for r in rows)
    out.line(f"{priced} of {len(rows)} key(s) priced")
    if priced < len(rows):
        for row in rows:
            if not row.priced and row.why_unpriced and args.unpriced:
                out.line(f"  {row.model_key}: {row.why_unpriced}")
        out.line(f"without a price: {HOW_TO_PRICE}")
    return 0


def pricing_refresh_command(args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    """``pricing refresh``: in its own module (it writes files and may ask the API), loaded when run."""
    result: int | Coroutine[Any, Any, int] = load_action("pricing refresh")(args)
    return result


def _date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def models_command(args: argparse.Namespace) -> int:
    if args.model == "import":
        if args.kind is not None:
            raise KieInputError("--kind is only for the listing", hint="a page's kind is read from the page")
        code: int = load_action("models import")(args)
        return code
    import_only = [f for f in ("family", "out", "key", "model_id") if getattr(args, f) is not None]
    if import_only or args.force:
        raise KieInputError(f"--{(import_only or ['force'])[0].replace('_', '-')} is only for `models import`")
    if args.model == "show":
        if not args.target:
            raise KieInputError("`models show` needs a model KEY", hint="`kie-async models` lists the keys")
        args.model = args.target
    elif args.target:
        raise KieInputError(f"unexpected argument {args.target!r}; did you mean `models show {args.model}`?")
    registry = load_registry()
    if args.model:
        if args.kind is not None:
            raise KieInputError("--kind is only for the listing", hint=f"drop it: `models show {args.model}`")
        return _show(registry, args.model, as_json=args.json)
    rows = [] if args.kind == "chat" else catalogue_rows(registry)
    chats = [] if args.kind == "media" else chat_catalogue_rows()
    if args.json:
        print(json.dumps([*(_media_json(registry, r) for r in rows), *map(_chat_json, chats)], indent=2))
        return 0
    if rows:
        out.line(f"{len(rows)} media models in {len({r.family for r in rows})} families ({registry.spec_dir})")
    for family, members in group_by_family(rows).items():
        out.table(
            f"{family} ({len(members)})",
            ("key", "output", "task modes", "provider model", "price"),
            [
                (row.key, row.output, "\n".join(row.task_modes), "\n".join(row.provider_models), row.price)
                for row in members
            ],
            no_wrap=("key",),
        )
    if chats:
        out.line(f"{len(chats)} chat models (kind chat; ask one with `kie-async chat --model KEY`)")
    for family, members in group_by_family(chats).items():
        out.table(
            f"{family} (chat, {len(members)})",
            ("key", "wire format", "provider model", "price"),
            [(row.key, row.task_modes[0], "\n".join(row.provider_models), row.price) for row in members],
            no_wrap=("key",),
        )
    return 0


def _media_json(registry: ModelRegistry, row: CatalogueRow) -> dict[str, Any]:
    return {
        "key": row.key,
        "label": row.label,
        "family": row.family,
        "kind": row.kind,
        "output": row.output,
        "aliases": row.aliases,
        "price": row.price,
        "priced": row.priced,
        "task_modes": {m.name: m.provider_model for m in registry.get(row.key).task_modes},
    }


def _chat_json(row: CatalogueRow) -> dict[str, Any]:
    spec = load_chat_registry().specs[row.key]
    return {
        "key": row.key,
        "label": row.label,
        "family": row.family,
        "kind": row.kind,
        "output": row.output,
        "aliases": row.aliases,
        "price": row.price,
        "priced": row.priced,
        "price_basis": row.price_basis,
        "wire_format": spec.wire_format,
        "endpoint": spec.endpoint,
        "provider_models": list(spec.provider_models),
    }


def _find_chat(name: str) -> ChatSpec | None:
    try:
        return load_chat_registry().get(name)
    except KeyError:
        return None


def _show(registry: ModelRegistry, name: str, *, as_json: bool) -> int:
    """``models show NAME``: the media specs the name may mean, and the chat model it names."""
    specs = registry.candidates(name)
    chat = _find_chat(name)
    if not specs and chat is None:
        close = [*registry.suggest(name), *close_matches(name, load_chat_registry().specs)][:3]
        advice = f"did you mean {' or '.join(close)}?" if close else "`kie-async models` lists the keys"
        err.line(f"error: unknown model {name!r}: {advice}")
        return 1
    if as_json:
        found = [s.model_dump(mode="json", exclude_none=True) for s in specs]
        if chat is not None:
            found.append({**chat.model_dump(mode="json", exclude_none=True), "price_basis": chat_price_basis(chat)})
        print(json.dumps(found, indent=2))
        return 0
    for spec in specs:
        _print_spec(out, spec.key)
    if chat is not None:
        _print_chat_spec(out, chat)
    return 0


def _print_chat_spec(printer: Printer, spec: ChatSpec) -> None:
    printer.line((spec.key, "bold"), f" — {spec.label} (kind chat, family {spec.family})")
    if spec.source_page is not None:
        printer.line(
            f"  source: {spec.source_page.url or spec.source_page.page} (captured {spec.source_page.captured})"
        )
    printer.line(f"  wire format: {spec.wire_format}, POST {spec.endpoint}")
    printer.line(f"  provider models: {', '.join(spec.provider_models)}")
    if spec.aliases:
        printer.line(f"  aliases: {', '.join(spec.aliases)}")
    system = {
        "role": "is sent as a system message",
        "field": "is sent as a top-level `system` field",
        "fold": "is put before the first user turn",
    }
    printer.line(f"  roles: {', '.join(spec.roles)}; a system prompt {system[spec.system_prompt]}")
    stream = "streams" if spec.stream.supported else "answers whole (the page documents no `stream`)"
    if spec.stream.supported and spec.stream.default is not None:
        stream += f" (default stream={str(spec.stream.default).lower()})"
    printer.line(f"  {stream}")
    printer.line(f"  price basis: {chat_price_basis(spec)}")
    rows = [
        (
            name,
            opt.type,
            "" if opt.default is None else str(opt.default),
            chat_option_text(opt),
            "yes" if opt.required else "no",
        )
        for name, opt in spec.options.items()
    ]
    printer.table("options", ("option", "type", "default", "allowed", "required"), rows, no_wrap=("option",))
    printer.line("  ", ("example", "bold"))
    printer.line(f"    {chat_example_command(spec)}")
    for note in spec.verification_notes:
        printer.line("  ", ("note", "yellow"), f" {note}")


def _print_spec(printer: Printer, key: str) -> None:
    spec = load_registry().get(key)
    printer.line((spec.key, "bold"), f" — {spec.label} ({spec.family}, {spec.output_kind}; price {price_range(key)})")
    if spec.source_page is not None:
        printer.line(
            f"  source: {spec.source_page.url or spec.source_page.page} (captured {spec.source_page.captured})"
        )
    rows = []
    prompt = spec.prompt
    if prompt.accepted:
        rows.append(
            (
                prompt.field,
                "string",
                "native",
                "",
                f"{prompt.min_chars or 0}-{prompt.max_chars or '∞'} chars",
                "yes" if prompt.required else "no",
                (prompt.provenance or spec.provenance).status,
            )
        )
    for name, opt in spec.options.items():
        rows.append(
            (
                name,
                opt.type,
                opt.wire,
                "" if opt.default is None else str(opt.default),
                limits_text(opt),
                "yes" if opt.required else "no",
                (opt.provenance or spec.provenance).status,
            )
        )
    printer.table(
        "fields",
        ("field", "type", "wire", "default", "allowed / range", "required", "source"),
        rows,
        no_wrap=("field",),
    )
    if not prompt.accepted:
        printer.line("  takes no prompt")
    for mode in spec.task_modes:
        printer.line(f"  {mode.name} -> {mode.provider_model}")
        for slot in mode.slots:
            extras = ", ".join(
                x for x in ("/".join(slot.formats), f"<= {slot.max_mb:g} MB" if slot.max_mb else "") if x
            )
            printer.line(
                f"    {slot.field}: {slot.min}-{slot.max} {slot.kind} ({'/'.join(slot.roles)})"
                f"{'; ' + extras if extras else ''}"
            )
    for rule in spec.rules:
        printer.line("  ", ("rule", "cyan"), f" {rule.id}: {rule.message}")
    example = example_command(spec.key)
    if example:
        printer.line("  ", ("example", "bold"))
        printer.line(f"    {example}")
    for note in spec.verification_notes:
        printer.line("  ", ("note", "yellow"), f" {note}")
