"""What the emulator charges and which createTask inputs it accepts: the SDK's own model specs and pricing.

There is one source of truth for prices and input rules (``pricing/`` and ``model_specs/``), so the emulator
reads those instead of keeping a second table that could drift. A model the specs do not know is accepted
only when it passes the basic checks every model shares, and is charged ``unknown_model_cost``.
"""

from __future__ import annotations

from typing import Any


def basic_input_checker(model_id: str, params: Any) -> list[str]:
    """The checks any model shares: a model id and an ``input`` object."""
    problems: list[str] = []
    if not isinstance(model_id, str) or not model_id.strip():
        problems.append("model is required")
    if not isinstance(params, dict):
        problems.append("input must be an object")
    return problems


def spec_input_checker(model_id: str, params: Any) -> list[str]:
    """Basic checks, then the model spec's rules (field names, types, enums, ranges, media counts)."""
    from kie_async.payload import check_wire_payload
    from kie_async.specs import load_registry

    problems = basic_input_checker(model_id, params)
    if problems:
        return problems
    if not load_registry().by_provider_model(model_id):
        return []  # not a model we have a spec for: accepted like the real service accepts new models
    return check_wire_payload(model_id, params)


def default_cost(model_id: str, params: dict[str, Any]) -> float | None:
    """Credits from the latest pricing snapshot; ``None`` when the snapshot has no price for it."""
    from kie_async.pricing import estimate_wire_cost

    return estimate_wire_cost(model_id, params)
