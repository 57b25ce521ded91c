"""Reading a createTask ``input`` back the way the provider would: typed values, media per slot, problems.

:func:`best_wire_parse` picks the reading with the fewest problems among every spec/mode that uses a provider
model id. :mod:`.payload` (``check_wire_payload``) and :mod:`.pricing` (``estimate_wire_cost``) both build on it,
so it sits below them and imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kie_async.catalogue.normalize import coerce_value, condition_context, fill_defaults
from kie_async.catalogue.spec_limits import spec_limit_problems
from kie_async.catalogue.specs import (
    ConditionContext,
    MediaSlot,
    ModelRegistry,
    ModelSpec,
    TaskModeSpec,
    all_hold,
    load_registry,
)
from kie_async.catalogue.validate import check_field_value


class WireParse(BaseModel):
    """A createTask ``input`` read against one spec and task mode: typed values, media per slot, problems."""

    model_config = ConfigDict(frozen=True)

    model_key: str
    task_mode: str
    provider_model: str
    prompt: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="fields present in the body, typed")
    effective_options: dict[str, Any] = Field(
        default_factory=dict, description="options plus the documented defaults the provider would apply"
    )
    slot_urls: dict[str, list[str]] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)
    foreign_fields: int = Field(default=0, description="media fields of another task mode; ranks readings")


def _split_field(mode: TaskModeSpec, field: str, raw: Any, problems: list[str]) -> dict[str, list[str]]:
    slots = [s for s in mode.slots if s.field == field]
    if slots[0].shape == "scalar":
        if not isinstance(raw, str):
            problems.append(f"{field}: must be a URL string, got {type(raw).__name__}")
            return {}
        items: list[Any] = [raw]
    else:
        if not isinstance(raw, list):
            problems.append(f"{field}: must be a list of URLs, got {type(raw).__name__}")
            return {}
        items = list(raw)
    low, high = sum(s.min for s in slots), sum(s.max for s in slots)
    if len(items) > high:
        problems.append(f"{field}: at most {high} item(s) allowed, got {len(items)}")
    out: dict[str, list[str]] = {}
    index = 0
    for slot in slots:
        take = items[index : index + slot.max]
        index += len(take)
        good = [u for u in take if _url_ok(slot, u, field, problems)]
        if good:
            out[slot.name] = good
    if len(items) < low:
        problems.append(f"{field}: at least {low} item(s) required, got {len(items)}")
    return out


def _url_ok(slot: MediaSlot, url: Any, field: str, problems: list[str]) -> bool:
    if not isinstance(url, str) or not url.lower().startswith(tuple(p.lower() for p in slot.url_prefixes)):
        problems.append(f"{field}: {url!r} is not a URL the provider can fetch")
        return False
    return True


def parse_wire_input(spec: ModelSpec, mode: TaskModeSpec, body: Mapping[str, Any]) -> WireParse:
    """Read ``body`` as the provider would for this spec and mode; list every problem found."""
    problems: list[str] = []
    prompt = _read_prompt(spec, body, problems)
    options = _read_options(spec, body, problems)
    slot_urls = _read_media(mode, body, problems)
    mode_fields = {s.field for s in mode.slots}
    other_fields = {s.field for m in spec.task_modes for s in m.slots} - mode_fields
    foreign = 0
    for field in sorted(other_fields):
        if body.get(field) not in (None, [], ""):
            foreign += 1
            problems.append(f"{field}: not accepted in {mode.name} mode")
    total = sum(len(v) for v in slot_urls.values())
    if total < mode.min_total_media:
        problems.append(f"{'/'.join(mode_fields)}: at least {mode.min_total_media} media item(s) required")
    filled = frozenset(slot_urls)
    defaults = fill_defaults(spec, options, prompt=prompt, callback_url=None, task_mode=mode.name, filled_slots=filled)
    effective = {
        name: options[name] if name in options else defaults[name][0]
        for name in spec.options
        if name in options or name in defaults
    }
    ctx = condition_context(effective, prompt=prompt, callback_url=None, task_mode=mode.name, filled_slots=filled)
    problems.extend(_prompt_problems(spec, prompt, ctx))
    for name, opt in spec.options.items():
        if opt.required and name not in options and body.get(name) is None:
            problems.append(f"{name}: is required")
    problems.extend(_rule_problems(spec, ctx))
    problems.extend(spec_limit_problems(spec, mode, ctx, prompt, options, slot_urls))
    return WireParse(
        model_key=spec.key,
        task_mode=mode.name,
        provider_model=mode.provider_model,
        prompt=prompt,
        options=options,
        effective_options=effective,
        slot_urls=slot_urls,
        problems=problems,
        foreign_fields=foreign,
    )


def _read_prompt(spec: ModelSpec, body: Mapping[str, Any], problems: list[str]) -> str | None:
    """The prompt as sent, if it is a string the spec takes (a prompt the model takes none of is a problem)."""
    prompt_raw = body.get(spec.prompt.field)
    prompt: str | None = None
    if not spec.prompt.accepted:
        if prompt_raw not in (None, ""):
            problems.append(f"{spec.prompt.field}: {spec.key} takes no prompt")
        prompt_raw = None
    if prompt_raw is not None and not isinstance(prompt_raw, str):
        problems.append(f"{spec.prompt.field}: must be a string")
    elif isinstance(prompt_raw, str):
        prompt = prompt_raw
    return prompt


def _read_options(spec: ModelSpec, body: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """The spec's options present in the body, typed strictly (as the wire carries them) and checked."""
    options: dict[str, Any] = {}
    for name, opt in spec.options.items():
        raw = body.get(name)
        if raw is None:
            continue
        value, errors = coerce_value(opt, raw, strict_wire=True)
        if errors:
            problems.extend(f"{name}{path}: {msg}" for path, msg in errors)
            continue
        options[name] = value
        problems.extend(f"{p.field}: {p.message}" for p in check_field_value(opt, value, name))
    return options


def _read_media(mode: TaskModeSpec, body: Mapping[str, Any], problems: list[str]) -> dict[str, list[str]]:
    """The URLs in each of the mode's media fields, split into its slots; an empty required field is a problem."""
    slot_urls: dict[str, list[str]] = {}
    for field in dict.fromkeys(s.field for s in mode.slots):
        raw = body.get(field)
        if raw is None or raw == [] or raw == "":
            low = sum(s.min for s in mode.slots if s.field == field)
            if low:
                problems.append(f"{field}: is required ({low} item(s))")
            continue
        slot_urls.update(_split_field(mode, field, raw, problems))
    return slot_urls


def _prompt_problems(spec: ModelSpec, prompt: str | None, ctx: ConditionContext) -> list[str]:
    """A missing prompt the spec needs here (``required_unless`` read against ``ctx``), or one out of length bounds."""
    problems: list[str] = []
    prompt_needed = spec.prompt.required and not (
        spec.prompt.required_unless and all_hold(spec.prompt.required_unless, ctx)
    )
    if prompt is None or not prompt.strip():
        if prompt_needed:
            problems.append(f"{spec.prompt.field}: is required")
    else:
        if spec.prompt.max_chars is not None and len(prompt) > spec.prompt.max_chars:
            problems.append(f"{spec.prompt.field}: longer than {spec.prompt.max_chars} characters")
        if spec.prompt.min_chars is not None and len(prompt) < spec.prompt.min_chars:
            problems.append(f"{spec.prompt.field}: shorter than {spec.prompt.min_chars} characters")
    return problems


def _rule_problems(spec: ModelSpec, ctx: ConditionContext) -> list[str]:
    """The spec rules that hold for this input and are not warnings."""
    problems: list[str] = []
    for rule in spec.rules:
        # The callback URL sits beside the input, not in it (a rule about it is checked on the whole request).
        about_callback = any(cond.field == "callback_url" for cond in rule.when)
        if rule.severity != "warning" and not about_callback and all_hold(rule.when, ctx):
            problems.append(f"{rule.field}: {rule.message}")
    return problems


def best_wire_parse(
    model_id: str, body: Mapping[str, Any], *, registry: ModelRegistry | None = None
) -> WireParse | None:
    """The reading of ``body`` with the fewest problems among every spec/mode using ``model_id``."""
    reg = registry or load_registry()
    best: WireParse | None = None
    for spec, mode in reg.by_provider_model(model_id):
        parsed = parse_wire_input(spec, mode, body)
        if not parsed.problems:
            return parsed
        if best is None or (parsed.foreign_fields, len(parsed.problems)) < (best.foreign_fields, len(best.problems)):
            best = parsed
    return best
