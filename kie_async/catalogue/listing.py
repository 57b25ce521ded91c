"""The model catalogue as people browse it: families, output kinds, task modes, price ranges, examples.

``kie-async models`` and the generated page ``docs/catalogue.md`` both read these rows, so the terminal and
the docs always say the same thing. Everything here is derived from the specs, the pricing snapshot and the
request fixtures; nothing lists models by hand.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kie_async.catalogue.chat_specs import ChatOption, ChatRegistry, ChatSpec, load_chat_registry
from kie_async.catalogue.fixtures import REQUEST_FIXTURES
from kie_async.catalogue.pricing import PricingError, latest_snapshot
from kie_async.catalogue.prose_audit import committed_counts
from kie_async.catalogue.specs import FieldSpec, ModelRegistry, ModelSpec, load_registry
from kie_async.core.compiled_cache import content_key, read_index, write_index

_UNIT_SHORT = {"per_image": "/image", "per_video": "/video", "per_second": "/s"}


class CatalogueRow(BaseModel):
    """One model key, summarised."""

    model_config = ConfigDict(frozen=True)

    key: str
    label: str
    family: str
    kind: Literal["media", "chat"] = "media"
    """``media``: a ``createTask`` model (``kie-async run``); ``chat``: an LLM chat model (``kie-async chat``)."""
    output: str
    task_modes: list[str]
    """A media model's task modes; a chat model's wire format."""
    provider_models: list[str]
    price: str
    priced: bool
    aliases: list[str]
    source: str | None = None
    price_source: str | None = None
    page_limits: str = "—"
    """The prose-limit audit's counts: statements found on the page, how many the spec enforces, how many it
    explains (``kie_async.catalogue.prose_audit``)."""
    price_basis: str | None = None
    """What a chat call is billed by (media prices are per output, in ``price``)."""


CHAT_UNPRICED_BASIS = (
    "tokens; no token price is published, so the unknown-price rule applies and the answer's "
    "credits_consumed says what was charged"
)


def chat_price(spec: ChatSpec) -> str:
    """``"0.5 in / 2 out cr per 1k tokens"`` where a token price is known, else ``"unknown"``."""
    if spec.price is None:
        return "unknown"
    return f"{spec.price.input_per_1k:g} in / {spec.price.output_per_1k:g} out cr per 1k tokens"


def chat_price_basis(spec: ChatSpec) -> str:
    """What a chat model's calls are billed by, in words."""
    if spec.price is None:
        return CHAT_UNPRICED_BASIS
    return (
        f"tokens, {chat_price(spec)} ({spec.price.provenance.status}, {spec.price.provenance.checked_on}); "
        "the answer's credits_consumed settles a budget"
    )


def _chat_row(spec: ChatSpec) -> CatalogueRow:
    return CatalogueRow(
        key=spec.key,
        label=spec.label,
        family=spec.family,
        kind="chat",
        output="text",
        task_modes=[spec.wire_format],
        provider_models=list(spec.provider_models),
        price=chat_price(spec),
        priced=spec.price is not None,
        aliases=list(spec.aliases),
        source=spec.source_page.url if spec.source_page else None,
        price_source=spec.price.provenance.source if spec.price else None,
        price_basis=chat_price_basis(spec),
    )


def chat_catalogue_rows(registry: ChatRegistry | None = None) -> list[CatalogueRow]:
    """Every chat spec as a row (kind ``chat``), sorted by family then key."""
    reg = registry or load_chat_registry()
    return sorted((_chat_row(s) for s in reg.specs.values()), key=lambda r: (r.family, r.key))


def chat_option_text(opt: ChatOption) -> str:
    """A chat option's values in a few words: its enum, or the fields of an object."""
    if opt.allowed is not None:
        return ", ".join(map(str, opt.allowed))
    if opt.fields:
        return "{" + ", ".join(f"{n}{'*' if f.required else ''}" for n, f in opt.fields.items()) + "}"
    return ""


def chat_example_command(spec: ChatSpec) -> str:
    """A ``kie-async chat --offline`` command line for the model (answered by the emulator, nothing spent)."""
    return shlex.join(["kie-async", "chat", "--offline", "--model", spec.key, "Name three rivers"])


def price_range(key: str) -> str:
    """``"8-18 cr/image"`` from the latest snapshot, or ``"unknown"`` when it has no price for the key."""
    try:
        snapshot = latest_snapshot()
    except PricingError:  # no snapshot at all: every price is unknown, the listing still works
        return "unknown"
    pricing = snapshot.models.get(key)
    if pricing is None:
        return "unknown"
    credits = [snapshot.rule_credits(r) for r in pricing.rules]  # a usd-only rule converts at the credit price
    if not credits:
        return "unknown"
    low, high = min(credits), max(credits)
    amount = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    return f"{amount} cr{_UNIT_SHORT.get(pricing.unit, ' ' + pricing.unit)}"


def _price_source(key: str) -> str | None:
    try:
        snapshot = latest_snapshot()
    except PricingError:
        return None
    return f"{snapshot.source_kind} {snapshot.captured_on.isoformat()}" if key in snapshot.models else None


def _audit_text(counts: dict[str, int] | None) -> str:
    if not counts:
        return "—"
    return f"{counts.get('found', 0)}: {counts.get('enforced', 0)} enforced, {counts.get('explained', 0)} explained"


def _row(spec: ModelSpec, audit: dict[str, dict[str, int]] | None = None) -> CatalogueRow:
    price = price_range(spec.key)
    return CatalogueRow(
        key=spec.key,
        label=spec.label,
        family=spec.family,
        output=spec.output_kind,
        task_modes=[m.name for m in spec.task_modes],
        provider_models=sorted(set(spec.provider_models)),
        price=price,
        priced=price != "unknown",
        aliases=list(spec.aliases),
        source=spec.source_page.url if spec.source_page else (spec.audit_page.url if spec.audit_page else None),
        price_source=_price_source(spec.key),
        page_limits=_audit_text((audit or {}).get(spec.key)),
    )


def catalogue_rows(registry: ModelRegistry | None = None) -> list[CatalogueRow]:
    """Every spec as a row, sorted by family then key."""
    reg = registry or load_registry()
    audit = committed_counts()
    return sorted((_row(s, audit) for s in reg.specs.values()), key=lambda r: (r.family, r.key))


def group_by_family(rows: Iterable[CatalogueRow]) -> dict[str, list[CatalogueRow]]:
    grouped: dict[str, list[CatalogueRow]] = {}
    for row in rows:
        grouped.setdefault(row.family, []).append(row)
    return grouped


def limits_text(opt: FieldSpec) -> str:
    """What values a field takes, in a few words: ``"5, 10"``, ``"0-1"``, ``"<= 500 chars"``, ``"1-5 items"``."""
    if opt.allowed:
        shown = ", ".join(map(str, opt.allowed[:12]))
        return shown + (f", … ({len(opt.allowed)} values)" if len(opt.allowed) > 12 else "")
    parts: list[str] = []
    if opt.min is not None or opt.max is not None:
        low = "" if opt.min is None else f"{opt.min:g}"
        high = "" if opt.max is None else f"{opt.max:g}"
        parts.append(f"{low}-{high}" if low and high else (f">= {low}" if low else f"<= {high}"))
    if opt.min_chars is not None or opt.max_chars is not None:
        parts.append(f"{opt.min_chars or 0}-{opt.max_chars or '∞'} chars")
    if opt.min_items is not None or opt.max_items is not None:
        parts.append(f"{opt.min_items or 0}-{opt.max_items if opt.max_items is not None else '∞'} items")
    shape = opt.items.fields if opt.items is not None else opt.fields
    if shape:  # objects: name their fields, required ones starred
        parts.append("{" + ", ".join(f"{n}{'*' if f.required else ''}" for n, f in shape.items()) + "}")
    return "; ".join(parts)


def _fixtures() -> dict[str, Any]:

    return REQUEST_FIXTURES


def example_request(key: str) -> Any:
    """The first submittable request fixture for ``key`` (a :class:`RawUserRequest`), or ``None``."""
    for state in ("ready", "ready_with_defaults", "ready_with_warning"):
        for fixture in _fixtures().values():
            if (
                fixture.expected_model_key == key
                and fixture.request.model_key == key
                and fixture.expected_state == state
                and not fixture.request.multi_prompt
            ):
                return fixture.request
    return None


def example_command(key: str) -> str | None:
    """A ``kie-async run --offline`` command line built from the model's first submittable fixture.

    Building the fixtures costs more than the rest of ``models show``; the command lines of every model are
    kept in the compiled cache, keyed by the fixture sources, so later calls read one entry instead.
    """
    here = Path(__file__).parent
    sources = [(name, (here / name).read_bytes()) for name in ("fixtures.py", "catalogue_fixtures.yaml", "listing.py")]
    cache_key = content_key(sources, "example-commands")
    cached = read_index("examples", cache_key)
    if cached is not None:
        found = cached.entry("commands").get(key)
        return found if isinstance(found, str) else None
    keys = {fixture.expected_model_key for fixture in _fixtures().values()}
    commands = {model: command for model in sorted(keys) if (command := _example_command(model)) is not None}
    write_index("examples", cache_key, {"commands": commands}, {})
    return commands.get(key)


def _example_command(key: str) -> str | None:
    request = example_request(key)
    if request is None:
        return None
    words = ["kie-async", "run", "--offline", "--model", key]
    if request.prompt:
        words += ["--prompt", request.prompt]
    for kind, items in (("image", request.images), ("video", request.videos), ("audio", request.audios)):
        for item in items:
            source = item if isinstance(item, str) else getattr(item, "source", None)
            role = None if isinstance(item, str) else getattr(item, "role", None)
            if isinstance(source, str):
                words += [f"--{kind}", f"{role}={source}" if role else source]
    for name, value in request.options.items():
        shown = (
            json.dumps(value)
            if isinstance(value, list | dict)
            else (str(value).lower() if isinstance(value, bool) else str(value))
        )
        words += ["--option", f"{name}={shown}"]
    return shlex.join(words)


def render_markdown(registry: ModelRegistry | None = None, chat: ChatRegistry | None = None) -> str:
    """The text of ``docs/catalogue.md`` (a test fails when the committed page differs from this)."""
    rows = catalogue_rows(registry)
    chats = chat_catalogue_rows(chat)
    families = group_by_family(rows)
    priced = sum(1 for r in rows if r.priced)
    lines = [
        "# Model catalogue",
        "",
        "<!-- Generated by `python -m kie_async.catalogue.listing > docs/catalogue.md`; tests/test_catalogue.py "
        "fails when it is stale. Do not edit by hand. -->",
        "",
        f"kie-async knows **{len(rows)} media model keys** in **{len(families)} families**; {priced} have a "
        "price in the bundled pricing snapshot, the others estimate as *unknown* (so the preflight blocks them "
        "unless you pass `allow_unknown_cost`). `kie-async models show KEY` prints a model's fields, limits, "
        "defaults and an example; [Model onboarding](model-onboarding.md) explains how specs are imported from "
        "Kie.ai's own docs pages.",
        "",
        f"It also knows **{len(chats)} chat models** (kind *chat*: GPT, Claude, Codex and Gemini chat), listed "
        "[at the end](#chat-models): they are not `createTask` media models but OpenAI/Anthropic/Gemini-style "
        "chat endpoints with their own paths, called with `kie.chat` or `kie-async chat` ([Chat](chat.md)). "
        "Left out: `elevenlabs/speech-to-text` (it returns a transcript) and the two Sora 2 character pages "
        "(they return a character id), because the pipeline downloads media. Grok Imagine's extend and "
        "upscale work on an earlier task's id and return a video: they are in, with the task mode `follow_up`. "
        "Veo 3.1, Runway, Suno, 4o Image and Flux Kontext have their own endpoints (a `transport` in their spec) "
        "and are listed with the rest; their page link is the create page the audit reads.",
        "",
        "*Page limits* counts the limits a model's page states in words (lengths, counts, sizes, pixel bounds, "
        "conditions) that the prose-limit audit (`python -m kie_async.catalogue.prose_audit`) found: each is "
        "enforced by the spec or listed in its `page_limits` with why not. *Price source* is the pricing "
        "snapshot's kind and date (`kie-async pricing status` shows every key's).",
        "",
        "Families: " + ", ".join(f"[{f}](#{f.replace('.', '')})" for f in families) + "; [chat models](#chat-models)",
        "",
    ]
    for family, members in families.items():
        lines += [
            f"## {family}",
            "",
            "| key | output | task modes | provider model | price | price source | page limits | page |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in members:
            page = f"[docs]({row.source})" if row.source else "—"
            lines.append(
                f"| `{row.key}` | {row.output} | {', '.join(row.task_modes)} | "
                f"{', '.join(f'`{m}`' for m in row.provider_models)} | {row.price} | "
                f"{row.price_source or '—'} | {row.page_limits} | {page} |"
            )
        lines.append("")
    return "\n".join(lines + _chat_markdown(chats))


def _chat_markdown(rows: list[CatalogueRow]) -> list[str]:
    lines = [
        "## Chat models",
        "",
        "Kind *chat*: messages in, text (and tool calls) out, billed by tokens. Price basis: "
        + (CHAT_UNPRICED_BASIS if all(not r.priced for r in rows) else "per row")
        + ". `kie-async models show KEY` prints a chat model's options; `kie-async chat --model KEY` asks it.",
        "",
        "| key | family | wire format | provider model | price | page |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        page = f"[docs]({row.source})" if row.source else "—"
        lines.append(
            f"| `{row.key}` | {row.family} | {', '.join(row.task_modes)} | "
            f"{', '.join(f'`{m}`' for m in row.provider_models)} | {row.price} | {page} |"
        )
    lines.append("")
    return lines


if __name__ == "__main__":  # pragma: no cover - the docs regeneration entry point
    print(render_markdown(), end="")
