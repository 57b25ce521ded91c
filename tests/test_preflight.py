"""Preflight: gate on validation, estimate, balance (live or given) and budget, and say why."""

from __future__ import annotations

import pytest

from kie_async.catalogue.preflight import CreditSource, PreflightResult, run_preflight
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.errors import KieAuthenticationError
from kie_async.wire.api_models import CreditBalance

NB2 = RawUserRequest(model_key="nano-banana-2", prompt="x")  # 8 credits


class FakeSource:
    def __init__(self, credits: float) -> None:
        self.credits = credits
        self.calls = 0

    async def get_credits(self) -> CreditBalance:
        self.calls += 1
        return CreditBalance(credits=self.credits)


class BrokenSource:
    async def get_credits(self) -> CreditBalance:
        raise KieAuthenticationError("bad key", code=401)


def _codes(result: PreflightResult) -> set[str]:
    return {r.code for r in result.reasons}


async def test_allowed_with_enough_live_credits() -> None:
    source = FakeSource(60.62)
    assert isinstance(source, CreditSource)
    result = await run_preflight(NB2, credit_source=source)
    assert result.allowed
    assert source.calls == 1
    assert result.balance_source == "live"
    assert result.available_credits == 60.62
    assert result.estimate.credits == 8
    assert not result.blocking_reasons
    assert "estimate_not_verified" in _codes(result)


async def test_blocked_on_insufficient_credits() -> None:
    result = await run_preflight(NB2, credit_source=FakeSource(5))
    assert not result.allowed
    [reason] = result.blocking_reasons
    assert reason.code == "insufficient_credits"
    assert "8" in reason.message and "5" in reason.message


async def test_given_balance_wins_over_source() -> None:
    source = FakeSource(0)
    result = await run_preflight(NB2, credit_source=source, available_credits=100)
    assert result.allowed and source.calls == 0
    assert result.balance_source == "given"


async def test_budget_cap() -> None:
    request = RawUserRequest(model_key="kling-3.0-t2v", prompt="x", options={"duration": 10})  # 180
    over = await run_preflight(request, available_credits=1000, budget_credits=100)
    assert not over.allowed and _codes(over) >= {"over_budget"}
    under = await run_preflight(request, available_credits=1000, budget_credits=200)
    assert under.allowed


async def test_not_ready_blocks_even_with_credits() -> None:
    result = await run_preflight(RawUserRequest(model_key="kling-2.6-i2v", prompt="x"), available_credits=1e6)
    assert not result.allowed
    assert result.state == "needs_input"
    assert result.blocking_reasons[0].code == "not_ready"
    assert "image_urls" in result.blocking_reasons[0].message


async def test_unknown_cost_blocks_when_money_is_checked_unless_allowed() -> None:
    request = RawUserRequest(
        model_key="kling-3.0-motion",
        images=["https://c.test/a.png"],
        videos=["https://c.test/v.mp4"],
        callback_url="https://h.test/cb",
    )
    blocked = await run_preflight(request, budget_credits=500)
    assert not blocked.allowed and "cost_unknown" in {r.code for r in blocked.blocking_reasons}
    allowed = await run_preflight(request, budget_credits=500, allow_unknown_cost=True)
    assert allowed.allowed
    no_money = await run_preflight(request)
    assert no_money.allowed
    assert {"cost_unknown", "balance_not_checked"} <= _codes(no_money)


async def test_balance_failure_blocks_with_reason() -> None:
    result = await run_preflight(NB2, credit_source=BrokenSource())
    assert not result.allowed
    assert result.blocking_reasons[0].code == "balance_unavailable"
    assert "bad key" in result.blocking_reasons[0].message


async def test_accepts_a_validation_result() -> None:
    from kie_async.catalogue.validate import validate_request

    validation = validate_request(NB2)
    result = await run_preflight(validation, available_credits=8)
    assert result.allowed
    assert result.validation is validation


@pytest.mark.parametrize(("credits", "allowed"), [(7.99, False), (8, True)])
async def test_boundary(credits: float, allowed: bool) -> None:
    assert (await run_preflight(NB2, available_credits=credits)).allowed is allowed
