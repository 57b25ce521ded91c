"""Preflight: the last gate before a credit is spent.

It combines the validation state, the cost estimate, the account balance (live via any object with
``async get_credits()``, or a number the caller already has) and an optional budget cap, and answers
allowed or blocked with every reason. It is async only because the balance may come from the network;
everything else it does is pure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from kie_async.catalogue.pricing import CostEstimate, PricingSnapshot, estimate_request_cost
from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest, ValidationResult, ValidationState
from kie_async.catalogue.specs import ModelRegistry
from kie_async.catalogue.validate import validate_request
from kie_async.core.errors import KieAuthenticationError, KieConfigError, KieError
from kie_async.core.limits import check_credits, number_problem
from kie_async.core.spelling import PYTHON, Spelling
from kie_async.wire.api_models import CreditBalance


@runtime_checkable
class CreditSource(Protocol):
    """Anything that can report the balance, e.g. ``KieSession`` (kept structural to avoid importing it)."""

    async def get_credits(self) -> CreditBalance: ...


PreflightCode = Literal[
    "not_ready",
    "cost_unknown",
    "over_budget",
    "insufficient_credits",
    "balance_unavailable",
    "balance_not_checked",
    "estimate_not_verified",
    "cost_warning",
    "needs_confirmation",
]
PreflightDecision = Literal["allow", "warn", "require_confirmation", "block"]
"""``allow``: go. ``warn``: go, but say so. ``require_confirmation``: only with the caller's explicit yes
(``confirmed=True``, a confirm callback, the CLI's prompt or ``--yes``). ``block``: never as it stands."""

THRESHOLD_ENV = {
    "warn_credits": "KIE_WARN_CREDIT_THRESHOLD",
    "confirm_credits": "KIE_CONFIRM_CREDIT_THRESHOLD",
    "warn_usd": "KIE_WARN_COST_USD_THRESHOLD",
    "confirm_usd": "KIE_CONFIRM_COST_USD_THRESHOLD",
}


class PreflightThresholds(BaseModel):
    """Cost tiers between allow and block: at or above a ``warn`` figure the run goes on with a warning, at
    or above a ``confirm`` figure it needs an explicit yes. Credits and USD both count (whichever is reached).

    The environment variables are the seed toolkit's names, so an existing ``.env`` keeps working.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    warn_credits: float | None = Field(default=None, ge=0)
    confirm_credits: float | None = Field(default=None, ge=0)
    warn_usd: float | None = Field(default=None, ge=0)
    confirm_usd: float | None = Field(default=None, ge=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PreflightThresholds:
        """Read ``KIE_WARN_CREDIT_THRESHOLD`` & co; a value that is not a finite number >= 0 is an error."""
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for field, name in THRESHOLD_ENV.items():
            text = env.get(name, "").strip()
            if not text:
                continue
            try:
                values[field] = float(text)
            except ValueError:
                raise KieConfigError(
                    f"{name}={text!r} is not a number",
                    hint=f"set {name} to a number of {'USD' if 'usd' in field else 'credits'}, or unset it",
                ) from None
            if number_problem(values[field], minimum=0.0) is not None:
                raise KieConfigError(f"{name}={text!r} is not a finite number >= 0", hint=f"fix or unset {name}")
        return cls(**values)

    def tier(self, credits: float | None, usd: float | None) -> Literal["allow", "warn", "require_confirmation"]:
        def reached(value: float | None, limit: float | None) -> bool:
            return value is not None and limit is not None and value >= limit

        if reached(credits, self.confirm_credits) or reached(usd, self.confirm_usd):
            return "require_confirmation"
        if reached(credits, self.warn_credits) or reached(usd, self.warn_usd):
            return "warn"
        return "allow"


class PreflightReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: PreflightCode
    blocking: bool
    message: str


class PreflightResult(BaseModel):
    """Allowed or not, and why; carries the validation and estimate it was based on."""

    model_config = ConfigDict(frozen=True)

    allowed: bool = Field(description="True only when the run may go ahead now (a needed confirmation included)")
    decision: PreflightDecision = "allow"
    requires_confirmation: bool = Field(default=False, description="the cost reached a confirmation threshold")
    state: ValidationState
    reasons: list[PreflightReason] = Field(default_factory=list)
    validation: ValidationResult
    estimate: CostEstimate
    available_credits: float | None = None
    budget_credits: float | None = None
    balance_source: Literal["live", "given", "none"] = "none"

    @property
    def blocking_reasons(self) -> list[PreflightReason]:
        return [r for r in self.reasons if r.blocking]


def _balance_problem(exc: KieError) -> str:
    if isinstance(exc, KieAuthenticationError):  # a wrong key is the usual cause: say so, and how to fix it
        return f"the API key was refused ({exc.message}) — {exc.hint}"
    return exc.message


async def run_preflight(
    request: RawUserRequest | NormalizedRequest | ValidationResult,
    *,
    credit_source: CreditSource | None = None,
    available_credits: float | None = None,
    budget_credits: float | None = None,
    allow_unknown_cost: bool = False,
    snapshot: PricingSnapshot | None = None,
    pricing_dir: str | Path | None = None,
    registry: ModelRegistry | None = None,
    check_files: bool = True,
    thresholds: PreflightThresholds | None = None,
    confirmed: bool = False,
    money_limited: bool = False,
    spelling: Spelling = PYTHON,
) -> PreflightResult:
    """Gate a request on validation, estimated cost, balance and budget.

    ``available_credits`` wins over ``credit_source`` (no network call then). When a balance or budget is in
    play and the cost cannot be computed, the request is blocked unless ``allow_unknown_cost`` is set.
    ``money_limited`` says a limit checked elsewhere is in play (a batch budget, the MCP server's total): the
    same rule holds for it. ``spelling`` words the fix as the caller writes it (a CLI flag, a server setting).
    ``available_credits`` and ``budget_credits`` must be finite and >= 0 (``KieInputError`` otherwise): with
    NaN every ``cost > limit`` test is false, which would let anything through.

    ``thresholds`` (default: from ``KIE_WARN_CREDIT_THRESHOLD`` & co) add the warn and require_confirmation
    tiers; ``confirmed=True`` is the caller's yes to the latter. An unknown cost cannot be tiered: with a
    confirmation threshold set it needs confirmation, as the price might be anything.
    """
    tiers = thresholds if thresholds is not None else PreflightThresholds.from_env()
    available_credits = check_credits("available_credits", available_credits)
    budget_credits = check_credits("budget_credits", budget_credits)
    validation = (
        request
        if isinstance(request, ValidationResult)
        else validate_request(request, registry=registry, check_files=check_files)
    )
    estimate = estimate_request_cost(validation, snapshot=snapshot, pricing_dir=pricing_dir, registry=registry)
    reasons: list[PreflightReason] = []
    if not validation.is_submittable:
        reasons.append(_reason("not_ready", True, f"validation state is {validation.state}: {validation.summary()}"))
    balance, source = await _balance(available_credits, credit_source, reasons)
    cost = estimate.credits if estimate.has_numeric_estimate else None
    checks_money = balance is not None or budget_credits is not None or money_limited
    unknown_ok = allow_unknown_cost or not checks_money
    reasons += _cost_reasons(estimate, cost, balance, budget_credits, unknown_ok=unknown_ok, spelling=spelling)
    if balance is None and not any(r.code == "balance_unavailable" for r in reasons):
        reasons.append(_reason("balance_not_checked", False, "no credit balance given or fetched"))
    tier = _tier(tiers, estimate, cost)
    reasons += _tier_reasons(tier, estimate, cost, confirmed=confirmed)
    blocked = any(r.blocking and r.code != "needs_confirmation" for r in reasons)
    decision: PreflightDecision = (
        "block" if blocked else ("require_confirmation" if tier == "require_confirmation" else tier)
    )
    return PreflightResult(
        allowed=not any(r.blocking for r in reasons),
        decision=decision,
        requires_confirmation=tier == "require_confirmation",
        state=validation.state,
        reasons=reasons,
        validation=validation,
        estimate=estimate,
        available_credits=balance,
        budget_credits=budget_credits,
        balance_source=source,
    )


def _reason(code: PreflightCode, blocking: bool, message: str) -> PreflightReason:
    return PreflightReason(code=code, blocking=blocking, message=message)


async def _balance(
    given: float | None, credit_source: CreditSource | None, reasons: list[PreflightReason]
) -> tuple[float | None, Literal["live", "given", "none"]]:
    """The balance to check against: the one given, else a live read (a failed or unusable read is a reason)."""
    if given is not None:
        return given, "given"
    if credit_source is None:
        return None, "none"
    try:
        live = (await credit_source.get_credits()).credits
    except KieError as exc:
        why = f"could not read the credit balance: {_balance_problem(exc)}"
        reasons.append(_reason("balance_unavailable", True, why))
        return None, "none"
    if number_problem(live, minimum=0.0) is not None:
        reasons.append(
            _reason("balance_unavailable", True, f"the service reported an unusable credit balance ({live!r})")
        )
        return None, "none"
    return live, "live"


def _cost_reasons(
    estimate: CostEstimate,
    cost: float | None,
    balance: float | None,
    budget: float | None,
    *,
    unknown_ok: bool,
    spelling: Spelling,
) -> list[PreflightReason]:
    """The estimate against the budget and the balance; ``unknown_ok``: an unknown cost does not block."""
    if cost is not None and number_problem(cost, minimum=0.0) is not None:
        # Even allow_unknown_cost does not cover this: a NaN reservation would switch the batch cap off.
        why = f"the estimate is not a usable number ({cost!r}); check the pricing snapshot"
        return [_reason("cost_unknown", True, why)]
    if cost is None:
        note = "; ".join(estimate.notes) or "no price known"
        if not unknown_ok:
            why = (
                f"cannot estimate the cost ({note}) and a credit limit is in play; "
                f"{spelling.allow_unknown_cost} lets it run (a budget then holds {spelling.unknown_cost_ceiling} "
                "for it)"
            )
            return [_reason("cost_unknown", True, why)]
        return [_reason("cost_unknown", False, f"cost not estimated ({note})")]
    reasons: list[PreflightReason] = []
    if budget is not None and cost > budget:
        reasons.append(_reason("over_budget", True, f"estimated {cost:g} credits exceeds the budget of {budget:g}"))
    if balance is not None and cost > balance:
        why = f"estimated {cost:g} credits but only {balance:g} available"
        reasons.append(_reason("insufficient_credits", True, why))
    if not estimate.is_known:
        reasons.append(
            _reason(
                "estimate_not_verified",
                False,
                f"estimate from {estimate.snapshot_id} is a planning figure, not verified billing",
            )
        )
    return reasons


def _tier_reasons(
    tier: Literal["allow", "warn", "require_confirmation"],
    estimate: CostEstimate,
    cost: float | None,
    *,
    confirmed: bool,
) -> list[PreflightReason]:
    """A warning at the warn tier; a blocking "confirm to proceed" at the confirmation tier, unless confirmed."""
    usd = f" (${estimate.usd:.2f})" if estimate.usd is not None else ""
    if tier == "warn":
        return [_reason("cost_warning", False, f"estimated {cost:g} credits{usd} reaches the warning threshold")]
    if tier == "require_confirmation" and not confirmed:
        what = f"estimated {cost:g} credits{usd}" if cost is not None else "an unknown cost"
        return [_reason("needs_confirmation", True, f"{what} reaches the confirmation threshold; confirm to proceed")]
    return []


def _tier(
    tiers: PreflightThresholds, estimate: CostEstimate, cost: float | None
) -> Literal["allow", "warn", "require_confirmation"]:
    if cost is None or number_problem(cost, minimum=0.0) is not None:
        confirming = tiers.confirm_credits is not None or tiers.confirm_usd is not None
        return "require_confirmation" if confirming else "allow"
    return tiers.tier(cost, estimate.usd)
