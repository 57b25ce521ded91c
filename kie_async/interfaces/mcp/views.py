"""How results reach the agent: plain JSON views, and tool errors that name the field and the fix."""

from __future__ import annotations

from typing import Any

from kie_async.catalogue.preflight import PreflightResult
from kie_async.catalogue.request_models import ValidationResult
from kie_async.core.errors import KieError
from kie_async.interfaces.mcp.limits import UNKNOWN_COST_FIX


def tool_error(message: str) -> Exception:
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError(message)


def kie_error(exc: KieError) -> Exception:
    hint = f" (fix: {server_text(exc.hint)})" if exc.hint else ""
    return tool_error(f"{type(exc).__name__}: {server_text(exc.message)}{hint}")


def server_text(text: str) -> str:
    """Library wording about unknown prices, in this server's terms: the agent has no such argument."""
    if "allow_unknown_cost" in text or "--allow-unknown-cost" in text:
        return (
            f"the price of this request is unknown and this server does not buy unpriced requests ({UNKNOWN_COST_FIX})"
        )
    return text


def problems(validation: ValidationResult) -> list[dict[str, Any]]:
    return [
        {"field": d.field, "rule": d.rule, "message": d.message, "fix": d.fix}
        for d in (*validation.impossible_inputs, *validation.missing_inputs)
    ]


def validation_view(validation: ValidationResult) -> dict[str, Any]:
    normalized = validation.normalized
    return {
        "state": validation.state,
        "submittable": validation.is_submittable,
        "model_key": validation.model_key,
        "task_mode": validation.task_mode,
        "provider_model": validation.provider_model,
        "options": normalized.options,
        "problems": problems(validation),
        "warnings": [{"field": d.field, "message": d.message, "fix": d.fix} for d in validation.warning_details],
        "defaulted": [{"field": d.field, "value": d.value} for d in validation.defaulted_fields],
    }


def refuse_unsubmittable(validation: ValidationResult) -> None:
    if not validation.is_submittable:
        lines = [f"{p['field']}: {p['message']} (fix: {p['fix']})" for p in problems(validation)]
        raise tool_error(f"request is {validation.state}: " + "; ".join(lines))


def preflight_view(preflight: PreflightResult) -> dict[str, Any]:
    est = preflight.estimate
    return {
        "allowed": preflight.allowed,
        "decision": getattr(preflight, "decision", "allow" if preflight.allowed else "block"),
        "estimated_credits": est.credits,
        "estimated_usd": est.usd,
        "price_verified": est.is_known,
        "pricing_snapshot": est.snapshot_id,
        "assumptions": est.assumptions,
        "reasons": [
            {"code": r.code, "blocking": r.blocking, "message": server_text(r.message)} for r in preflight.reasons
        ],
        "available_credits": preflight.available_credits,
    }
