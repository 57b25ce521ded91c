"""Preflight: the last gate before a credit is spent.

It combines the validation state, the cost estimate, the account balance (live via any object with
``async get_credits()``, or a number the caller already has) and an optional budget cap, and answers
allowed or blocked with every reason. It is async only because the balance may come from the network;
everything else it does is pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from kie_async._limits import check_credits, number_problem
from kie_async.api_models import CreditBalance
from kie_async.errors import KieError
from kie_async.pricing import CostEstimate, PricingSnapshot, estimate_request_cost
from kie_async.request_models import NormalizedRequest, RawUserRequest, ValidationResult, ValidationState
from kie_async.specs import ModelRegistry
from kie_async.validate import validate_request


@runtime_checkable
class CreditSource(Protocol):
    """Anything that can report the balance, e.g. ``KieSession`` (kept structural to avoid importing it)."""

    async def get_credits(self) -> CreditBalance: ...


PreflightCode = Literal[
    "not_ready", "cost_unknown", "over_budget", "insufficient_credits", "balance_unavailable",
    "balance_not_checked", "estimate_not_verified",
]


class PreflightReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: PreflightCode
    blocking: bool
    message: str


class PreflightResult(BaseModel):
    """Allowed or not, and why; carries the validation and estimate it was based on."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
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
) -> PreflightResult:
    """Gate a request on validation, estimated cost, balance and budget.

    ``available_credits`` wins over ``credit_source`` (no network call then). When a balance or budget is in
    play and the cost cannot be computed, the request is blocked unless ``allow_unknown_cost`` is set.
    ``available_credits`` and ``budget_credits`` must be finite and >= 0 (``KieInputError`` otherwise): with
    NaN every ``cost > limit`` test is false, which would let anything through.
    """
    available_credits = check_credits("available_credits", available_credits)
    budget_credits = check_credits("budget_credits", budget_credits)
    validation = request if isinstance(request, ValidationResult) else validate_request(
        request, registry=registry, check_files=check_files)
    estimate = estimate_request_cost(validation, snapshot=snapshot, pricing_dir=pricing_dir, registry=registry)
    reasons: list[PreflightReason] = []

    def add(code: PreflightCode, blocking: bool, message: str) -> None:
        reasons.append(PreflightReason(code=code, blocking=blocking, message=message))

    if not validation.is_submittable:
        add("not_ready", True, f"validation state is {validation.state}: {validation.summary()}")
    balance: float | None = available_credits
    source: Literal["live", "given", "none"] = "given" if available_credits is not None else "none"
    if balance is None and credit_source is not None:
        try:
            live = (await credit_source.get_credits()).credits
        except KieError as exc:
            add("balance_unavailable", True, f"could not read the credit balance: {exc.message}")
        else:
            if number_problem(live, minimum=0.0) is None:
                balance, source = live, "live"
            else:
                add("balance_unavailable", True, f"the service reported an unusable credit balance ({live!r})")
    cost = estimate.credits if estimate.has_numeric_estimate else None
    checks_money = balance is not None or budget_credits is not None
    if cost is not None and number_problem(cost, minimum=0.0) is not None:
        # Even allow_unknown_cost does not cover this: a NaN reservation would switch the batch cap off.
        add("cost_unknown", True, f"the estimate is not a usable number ({cost!r}); check the pricing snapshot")
    elif cost is None:
        note = "; ".join(estimate.notes) or "no price known"
        if checks_money and not allow_unknown_cost:
            add("cost_unknown", True, f"cannot estimate the cost ({note}); pass allow_unknown_cost=True to proceed")
        else:
            add("cost_unknown", False, f"cost not estimated ({note})")
    else:
        if budget_credits is not None and cost > budget_credits:
            add("over_budget", True, f"estimated {cost:g} credits exceeds the budget of {budget_credits:g}")
        if balance is not None and cost > balance:
            add("insufficient_credits", True, f"estimated {cost:g} credits but only {balance:g} available")
        if not estimate.is_known:
            add("estimate_not_verified", False,
                f"estimate from {estimate.snapshot_id} is a planning figure, not verified billing")
    if balance is None and not any(r.code == "balance_unavailable" for r in reasons):
        add("balance_not_checked", False, "no credit balance given or fetched")
    return PreflightResult(
        allowed=not any(r.blocking for r in reasons), state=validation.state, reasons=reasons,
        validation=validation, estimate=estimate, available_credits=balance, budget_credits=budget_credits,
        balance_source=source,
    )
