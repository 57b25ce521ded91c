"""Generated boundary requests for the SDK-vs-provider-schema cross-check (tests/test_emulator_crosscheck.py).

For every model key and task mode with a ready fixture, the fixture's wire ``input`` is the base; each case
changes one thing: each enum value, an invalid enum value, min/max and one step past them, a missing required
field, one media item too many, a missing required media field. Both judges (the SDK's wire check and the
emulator's schema check) rule on every case; where they differ the case is a disagreement.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from kie_async.catalogue.fixtures import REQUEST_FIXTURES
from kie_async.catalogue.payload import build_submission_payload, check_wire_payload, to_wire
from kie_async.catalogue.specs import ModelSpec, TaskModeSpec, load_registry
from kie_async.catalogue.validate import validate_request

URL = "https://example.com/media/item-{}.png"


class Case(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_key: str
    task_mode: str
    provider_model: str
    case: str
    input: dict[str, Any]
    callback_url: str | None = None
    """What the SDK would send as the callback (a separate API's body carries it; Suno's page requires it)."""

    @property
    def id(self) -> str:
        return f"{self.model_key}/{self.task_mode}: {self.case}"


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    case: Case
    sdk_problems: list[str]
    emulator_problems: list[str]

    @property
    def agree(self) -> bool:
        return bool(self.sdk_problems) == bool(self.emulator_problems)


def _ready_bases() -> Iterator[tuple[str, ModelSpec, TaskModeSpec, str, dict[str, Any], str | None]]:
    """(fixture name, spec, mode, provider model, wire input, callback URL) for every submittable fixture."""
    registry = load_registry()
    for fixture in REQUEST_FIXTURES.values():
        if fixture.expected_model_key not in registry.specs:
            continue
        result = validate_request(fixture.request, registry=registry, check_files=False)
        if not result.is_submittable:
            continue
        payload = build_submission_payload(result, registry=registry)
        spec = registry.get(result.model_key)
        mode = spec.mode(result.normalized.task_mode or "")
        if mode is None:
            continue
        yield fixture.name, spec, mode, payload.model, dict(payload.input), payload.callback_url


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


def _without(base: dict[str, Any], field: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.pop(field, None)
    return out


def _boundary(spec: ModelSpec, mode: TaskModeSpec, base: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, opt in spec.options.items():
        if opt.deprecated:
            continue
        if opt.type == "enum" and opt.allowed:
            for value in opt.allowed:
                yield f"{name}={to_wire(opt, value)!r}", _with(base, **{name: to_wire(opt, value)})
            yield f"{name}=<not a listed value>", _with(base, **{name: "not-a-listed-value"})
        if opt.type in ("integer", "number"):
            step = 1 if opt.type == "integer" else 0.5
            for label, value in (("min", opt.min), ("max", opt.max)):
                if value is None:
                    continue
                number = int(value) if opt.type == "integer" else value
                yield f"{name}={label}", _with(base, **{name: to_wire(opt, number)})
                past = number - step if label == "min" else number + step
                sign = "-" if label == "min" else "+"
                yield f"{name}={label}{sign}{step}", _with(base, **{name: to_wire(opt, past)})
        if opt.required:
            yield f"missing {name}", _without(base, name)
    if spec.prompt.required:
        yield f"missing {spec.prompt.field}", _without(base, spec.prompt.field)
    if spec.prompt.max_chars is not None:
        yield f"{spec.prompt.field} too long", _with(base, **{spec.prompt.field: "x" * (spec.prompt.max_chars + 1)})
    for field in dict.fromkeys(s.field for s in mode.slots):
        slots = [s for s in mode.slots if s.field == field]
        if slots[0].shape == "list":
            high = sum(s.max for s in slots)
            too_many = [URL.format(i) for i in range(high + 1)]
            yield f"{field}: one too many ({high + 1})", _with(base, **{field: too_many})
        if sum(s.min for s in slots):
            yield f"missing {field}", _without(base, field)


def _page_examples(model_keys: list[str] | None) -> Iterator[Case]:
    """The request examples of each model's docs page (bundled with its schema), judged like the rest."""
    from kie_async.emulator.provider_schemas import load_provider_schemas

    registry = load_registry()
    bundle = load_provider_schemas()
    for spec in registry.specs.values():
        if model_keys is not None and spec.key not in model_keys:
            continue
        create = spec.transport.create
        for provider_model in spec.provider_models:
            if create.input_field is None:  # a separate API: its examples are whole bodies for its create path
                yield from _api_page_examples(spec, provider_model)
                continue
            schema = bundle.for_model(provider_model)
            for index, example in enumerate(schema.example_inputs if schema else ()):
                yield Case(
                    model_key=spec.key,
                    task_mode="page",
                    provider_model=provider_model,
                    case=f"page example {index + 1} of {provider_model}",
                    input=dict(example),
                )


def _api_page_examples(spec: ModelSpec, provider_model: str) -> Iterator[Case]:
    """A separate API page's example bodies, split the way the emulator reads a body; an example naming
    another model of the same endpoint (veo3 vs veo3_fast) belongs to that model's key."""
    from kie_async.emulator.provider_schemas import load_provider_schemas

    create = spec.transport.create
    schema = load_provider_schemas().for_endpoint(create.path)
    for index, example in enumerate(schema.example_inputs if schema else ()):
        model, fields, callback = create.split(example)
        if create.model_field is not None and model != provider_model:
            continue
        yield Case(
            model_key=spec.key,
            task_mode="page",
            provider_model=provider_model,
            case=f"page example {index + 1} of {create.path}",
            input=dict(fields),
            callback_url=callback if isinstance(callback, str) else None,
        )


def all_cases(model_keys: list[str] | None = None) -> list[Case]:
    """Every fixture, boundary and page-example case, for ``model_keys`` (default: every registry key)."""
    cases: dict[str, Case] = {}
    for example in _page_examples(model_keys):
        if not any(c.provider_model == example.provider_model and c.case == example.case for c in cases.values()):
            cases[example.id] = example
    for fixture_name, spec, mode, provider_model, base, callback_url in _ready_bases():
        if model_keys is not None and spec.key not in model_keys:
            continue
        found = [(f"fixture {fixture_name}", base), *_boundary(spec, mode, base)]
        for label, wire in found:
            case = Case(
                model_key=spec.key,
                task_mode=mode.name,
                provider_model=provider_model,
                case=label,
                input=wire,
                callback_url=callback_url,
            )
            cases.setdefault(case.id, case)  # the first fixture of a mode is the base of its boundary cases
    return list(cases.values())


def judge(case: Case) -> Verdict:
    """Both judges; a model sold through a separate API is judged as its whole create body at that API's path,
    with the callback URL the SDK would send."""
    from kie_async.emulator.policy import api_body_problems, schema_input_checker

    sdk = check_wire_payload(case.provider_model, case.input)
    create = load_registry().get(case.model_key).transport.create
    if create.input_field is None:
        try:
            body = create.body(case.provider_model, case.input, case.callback_url)
        except ValueError as exc:  # a field colliding with the API's own body fields: nothing could be sent
            return Verdict(case=case, sdk_problems=sdk, emulator_problems=[str(exc)])
        return Verdict(case=case, sdk_problems=sdk, emulator_problems=api_body_problems(create.path, body))
    return Verdict(case=case, sdk_problems=sdk, emulator_problems=schema_input_checker(case.provider_model, case.input))
