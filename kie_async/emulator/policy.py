"""What the emulator charges and which createTask inputs it accepts: the provider's word, not the SDK's.

A stand-in for the provider must not share the client's beliefs: if the emulator read the SDK's own model
specs and prices, a wrong spec would pass every test twice. So by default it judges a request by the
provider's published request schema for that model (bundled from the docs pages, see
``provider_schemas/``) plus the rules those pages state in words (``page_rules``), and charges from its own
price list (``price_table``). A model id with no bundled schema is refused, as a real service refuses a
model it does not offer. The emulator imports none of the SDK's request rules: a test that wants the emulator
to agree with the SDK passes the SDK's own checker in as ``EmulatorConfig.input_checker`` (e.g.
``kie_async.catalogue.payload.check_wire_payload``).
"""

from __future__ import annotations

from typing import Any

from kie_async.emulator.page_rules import endpoint_rule_problems, rule_problems
from kie_async.emulator.price_table import charge_for
from kie_async.emulator.provider_schemas import load_provider_schemas

UNKNOWN_MODEL = "model: {model!r} is not a model this service offers"
"""The refusal for an unknown model id (422). Kie.ai's exact code and wording are not in our facts: UNCONFIRMED."""


MAX_REASONS = 20
"""At most this many schema violations are listed in one 422 ``msg``."""


def basic_input_checker(model_id: str, params: Any) -> list[str]:
    """The checks any model shares: a model id and an ``input`` object (the flat-cost test mode uses only these)."""
    problems: list[str] = []
    if not isinstance(model_id, str) or not model_id.strip():
        problems.append("model is required")
    if not isinstance(params, dict):
        problems.append("input must be an object")
    return problems


def schema_input_checker(model_id: str, params: Any) -> list[str]:
    """Basic checks, then the model's bundled provider schema, then its page rules."""
    problems = basic_input_checker(model_id, params)
    if problems:
        return problems
    bundle = load_provider_schemas()
    schema = bundle.for_model(model_id)
    if schema is None:
        return [UNKNOWN_MODEL.format(model=model_id)]
    problems = bundle.violations(schema, {"model": model_id, "input": params})
    if len(problems) > MAX_REASONS:  # a 10 000-item list of bad URLs must not make a megabyte-long 422
        problems = [*problems[:MAX_REASONS], f"... and {len(problems) - MAX_REASONS} more"]
    if problems:
        return problems
    return rule_problems(model_id, params)


def api_body_problems(create_path: str, body: Any) -> list[str]:
    """A separate API's whole create body (Veo, Suno, ...: no ``input`` object) against that endpoint's bundled
    schema, then its page rules; an endpoint with no bundled schema only needs a JSON object."""
    if not isinstance(body, dict):
        return ["the request body must be a JSON object"]
    bundle = load_provider_schemas()
    schema = bundle.for_endpoint(create_path)
    if schema is None:
        return []
    problems = bundle.violations(schema, body)
    if len(problems) > MAX_REASONS:
        problems = [*problems[:MAX_REASONS], f"... and {len(problems) - MAX_REASONS} more"]
    return problems or endpoint_rule_problems(create_path, body)


def price_table_cost(model_id: str, params: dict[str, Any]) -> float | None:
    """Credits from the emulator's own price list; ``None`` (charge ``unknown_model_cost``) when it has none."""
    schema = load_provider_schemas().for_model(model_id)
    return charge_for(model_id, params, schema.input_defaults() if schema is not None else {})
