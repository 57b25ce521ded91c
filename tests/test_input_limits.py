"""Every credit, budget, timeout and concurrency number is finite and in range before anything is sent.

NaN compares false with everything, so a NaN budget or balance silently switched off the money gates
(``cost > nan`` is never true). Each case below either raises before a session is needed, or runs against
the emulator and proves that no task was created.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from kie_async.artifacts import ArtifactSettings
from kie_async.catalogue.preflight import run_preflight
from kie_async.catalogue.pricing import CostEstimate, PriceRule, PricingError, latest_snapshot, refresh_snapshot
from kie_async.catalogue.request_models import MediaInput, RawUserRequest
from kie_async.core.limits import check_concurrency, check_credits, check_run_many_args, check_timeout
from kie_async.core.settings import KieSettings, PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import KieEmulator
from kie_async.errors import KieInputError
from kie_async.ledger.budget import CreditBudget
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession
from kie_async.wire.api_models import CreditBalance

NAN = float("nan")
INF = float("inf")
NON_FINITE = [NAN, INF, -INF]
BAD_CREDITS = [*NON_FINITE, -1.0]
BAD_TIMEOUTS = [*NON_FINITE, -1.0, 0.0]


def fox() -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt="a red fox")


def ids(values: list[Any]) -> list[str]:
    return [repr(v) for v in values]


# -- the shared helpers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [*BAD_CREDITS, True, "10", None], ids=ids([*BAD_CREDITS, True, "10", None]))
def test_check_credits_names_the_parameter_and_the_fix(value: Any) -> None:
    with pytest.raises(KieInputError) as info:
        check_credits("budget_credits", value, optional=False)
    assert "budget_credits" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_check_credits_accepts_zero_ints_and_optional_none() -> None:
    assert check_credits("budget_credits", 0) == 0.0
    assert check_credits("budget_credits", 12) == 12.0
    assert check_credits("budget_credits", None) is None


@pytest.mark.parametrize("value", [*BAD_TIMEOUTS, False, "5"], ids=ids([*BAD_TIMEOUTS, False, "5"]))
def test_check_timeout_rejects(value: Any) -> None:
    with pytest.raises(KieInputError, match="timeout"):
        check_timeout("timeout", value)


@pytest.mark.parametrize(
    "value", [0, -3, True, False, 2.0, 2.5, NAN, "4", None], ids=ids([0, -3, True, False, 2.0, 2.5, NAN, "4", None])
)
def test_check_concurrency_wants_an_int_of_at_least_one(value: Any) -> None:
    with pytest.raises(KieInputError, match="concurrency"):
        check_concurrency("concurrency", value)
    assert check_concurrency("concurrency", 1) == 1


# -- PipelineOptions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["budget_credits", "available_credits"])
@pytest.mark.parametrize("value", BAD_CREDITS, ids=ids(BAD_CREDITS))
def test_pipeline_options_reject_bad_credit_numbers(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        PipelineOptions(**{field: value})


@pytest.mark.parametrize("value", BAD_TIMEOUTS, ids=ids(BAD_TIMEOUTS))
def test_pipeline_options_reject_bad_wait_timeout(value: float) -> None:
    with pytest.raises(ValueError, match="wait_timeout"):
        PipelineOptions(wait_timeout=value)


def test_pipeline_options_keep_good_numbers() -> None:
    opts = PipelineOptions(budget_credits=0, available_credits=10, wait_timeout=2.5)
    assert (opts.budget_credits, opts.available_credits, opts.wait_timeout) == (0.0, 10.0, 2.5)


async def test_pipeline_with_unvalidated_nan_budget_buys_nothing(emulator: KieEmulator, tmp_path: Path) -> None:
    """``model_copy(update=...)`` skips validation; preflight checks the numbers again before any spend."""
    opts = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path)).model_copy(update={"budget_credits": NAN})
    async with KieSession(emulator.settings()) as kie:
        with pytest.raises(KieInputError, match="budget_credits"):
            await run_pipeline(fox(), kie, options=opts)
    assert emulator.stats.tasks_created == 0


async def test_pipeline_positive_control_does_buy(emulator: KieEmulator, tmp_path: Path) -> None:
    """The same call with a sane budget does create a task, so the zero counts above mean something."""
    opts = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path), budget_credits=100)
    async with KieSession(emulator.settings()) as kie:
        result = await run_pipeline(fox(), kie, options=opts)
    assert result.succeeded and emulator.stats.tasks_created == 1


# -- run_many ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"budget_credits": NAN}, "budget_credits"),
        ({"budget_credits": INF}, "budget_credits"),
        ({"budget_credits": -1.0}, "budget_credits"),
        ({"budget_credits": "10"}, "budget_credits"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -3}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
async def test_run_many_refuses_bad_numbers_and_buys_nothing(
    emulator: KieEmulator, tmp_path: Path, kwargs: dict[str, Any], name: str
) -> None:
    async with KieSession(emulator.settings()) as kie:
        with pytest.raises(KieInputError, match=name):
            await run_many(
                [fox(), fox()], kie, options=PipelineOptions(artifacts=ArtifactSettings(root=tmp_path)), **kwargs
            )
    assert emulator.stats.tasks_created == 0
    assert emulator.stats.requests.get("credit", 0) == 0  # refused before even reading the balance


def test_check_run_many_args_accepts_the_defaults() -> None:
    check_run_many_args(8, None)
    check_run_many_args(1, 0.0)


# -- CreditBudget -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", BAD_CREDITS, ids=ids(BAD_CREDITS))
def test_budget_cap_must_be_finite_and_non_negative(cap: float) -> None:
    with pytest.raises(KieInputError, match="cap"):
        CreditBudget(cap)


@pytest.mark.parametrize("spent", BAD_CREDITS, ids=ids(BAD_CREDITS))
def test_budget_already_spent_must_be_finite(spent: float) -> None:
    with pytest.raises(KieInputError, match="already_spent"):
        CreditBudget(10, already_spent=spent)


@pytest.mark.parametrize("amount", BAD_CREDITS, ids=ids(BAD_CREDITS))
async def test_budget_amounts_must_be_finite(amount: float) -> None:
    budget = CreditBudget(10)
    with pytest.raises(KieInputError):
        await budget.reserve(amount)
    with pytest.raises(KieInputError):
        await budget.release(amount)
    with pytest.raises(KieInputError):
        await budget.settle(amount, 1.0)
    snap = budget.snapshot()
    assert (snap.spent, snap.reserved) == (0.0, 0.0)


@pytest.mark.parametrize("actual", BAD_CREDITS, ids=ids(BAD_CREDITS))
async def test_budget_counts_the_reservation_when_the_provider_figure_is_unusable(actual: float) -> None:
    """A NaN 'credits consumed' from the server must not poison the running total (and with it the cap)."""
    budget = CreditBudget(10)
    assert await budget.reserve(6)
    await budget.settle(6, actual)
    assert budget.snapshot().spent == 6
    assert not await budget.reserve(6)  # the cap still holds


# -- preflight --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["budget_credits", "available_credits"])
@pytest.mark.parametrize("value", BAD_CREDITS, ids=ids(BAD_CREDITS))
async def test_preflight_rejects_bad_numbers(field: str, value: float) -> None:
    with pytest.raises(KieInputError, match=field):
        await run_preflight(fox(), **{field: value})


async def test_preflight_nan_budget_and_credits_are_not_allowed() -> None:
    """The CLI's ``estimate --budget nan --credits nan`` said 'allowed'."""
    with pytest.raises(KieInputError):
        await run_preflight(fox(), available_credits=NAN, budget_credits=NAN)


class _Balance:
    def __init__(self, credits: float) -> None:
        self.credits = credits

    async def get_credits(self) -> CreditBalance:
        return CreditBalance(credits=self.credits)


@pytest.mark.parametrize("balance", BAD_CREDITS, ids=ids(BAD_CREDITS))
async def test_preflight_blocks_on_an_unusable_live_balance(balance: float) -> None:
    result = await run_preflight(fox(), credit_source=_Balance(balance))
    assert not result.allowed
    assert any(r.code == "balance_unavailable" and r.blocking for r in result.reasons)


@pytest.mark.parametrize("credits", [*NON_FINITE, -8.0], ids=ids([*NON_FINITE, -8.0]))
async def test_preflight_blocks_an_unusable_estimate(monkeypatch: pytest.MonkeyPatch, credits: float) -> None:
    """Even with allow_unknown_cost: a NaN estimate would be reserved as NaN and switch the batch cap off."""

    def broken(*_: Any, **__: Any) -> CostEstimate:
        return CostEstimate(model_key="nano-banana-2", credits=credits, has_numeric_estimate=True)

    monkeypatch.setattr("kie_async.catalogue.preflight.estimate_request_cost", broken)
    result = await run_preflight(fox(), available_credits=100, allow_unknown_cost=True)
    assert not result.allowed
    assert any(r.code == "cost_unknown" and r.blocking for r in result.reasons)


# -- pricing data -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", BAD_CREDITS, ids=ids(BAD_CREDITS))
def test_price_rules_must_be_finite_and_non_negative(value: float) -> None:
    with pytest.raises(ValidationError):
        PriceRule(credits=value)
    with pytest.raises(ValidationError):
        PriceRule(usd=value)


@pytest.mark.parametrize("price", ["NaN", "inf", "-1", "abc", ""], ids=repr)
def test_refresh_refuses_unusable_prices(price: str) -> None:
    base = latest_snapshot()
    rule = next(r for p in base.models.values() for r in p.rules if r.description)
    doc = {"data": {"records": [{"modelDescription": rule.description, "creditPrice": price}]}}
    with pytest.raises(PricingError, match="creditPrice"):
        refresh_snapshot(doc, base)


# -- settings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["connect_timeout", "request_timeout", "download_timeout", "upload_timeout"])
@pytest.mark.parametrize("value", BAD_TIMEOUTS, ids=ids(BAD_TIMEOUTS))
def test_settings_timeouts_are_finite_and_positive(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        KieSettings(**{field: value})


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (RetrySettings, "initial_backoff"),
        (RetrySettings, "max_backoff"),
        (RetrySettings, "multiplier"),
        (RetrySettings, "max_retry_after"),
        (RateLimitSettings, "create_window_seconds"),
        (RateLimitSettings, "reads_per_second"),
        (PollSettings, "timeout"),
        (PollSettings, "callback_safety_interval"),
    ],
)
@pytest.mark.parametrize("value", NON_FINITE, ids=ids(NON_FINITE))
def test_sub_settings_are_finite(model: type[Any], field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        model(**{field: value})


@pytest.mark.parametrize(
    "schedule",
    [
        (),
        ((30.0, NAN),),
        ((30.0, INF),),
        ((30.0, 0.0),),
        ((30.0, -1.0),),
        ((NAN, 1.0),),
        ((-INF, 1.0),),
        ((0.0, 1.0),),
        ((60.0, 1.0), (30.0, 2.0)),
        ((INF, 1.0), (INF, 2.0)),
    ],
    ids=repr,
)
def test_poll_schedule_must_make_sense(schedule: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ValidationError, match="schedule"):
        PollSettings(schedule=schedule)


def test_poll_schedule_keeps_the_inf_sentinel() -> None:
    assert math.isinf(PollSettings().schedule[-1][0])
    assert PollSettings(schedule=((float("inf"), 0.25),)).schedule == ((INF, 0.25),)
    assert PollSettings(schedule=((60, 5.0), (float("inf"), 15.0)), timeout=600).timeout == 600


# -- per-call timeouts on the session ---------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=ids(BAD_TIMEOUTS))
async def test_session_calls_refuse_bad_timeouts_before_sending(
    emulator: KieEmulator, tmp_path: Path, timeout: float
) -> None:
    async with KieSession(emulator.settings()) as kie:
        with pytest.raises(KieInputError, match="timeout"):
            await kie.create_task(model="google/nano-banana", input={"prompt": "x"}, timeout=timeout)
        with pytest.raises(KieInputError, match="timeout"):
            await kie.wait_for_task("task-that-does-not-matter", timeout=timeout)
        with pytest.raises(KieInputError, match="timeout"):
            await kie.get_task("task-that-does-not-matter", timeout=timeout)
        with pytest.raises(KieInputError, match="timeout"):
            await kie.get_credits(timeout=timeout)
        with pytest.raises(KieInputError, match="timeout"):
            await kie.get_download_url(f"{emulator.base_url}/files/x.png", timeout=timeout)
        with pytest.raises(KieInputError, match="timeout"):
            await kie.download(f"{emulator.base_url}/files/x.png", tmp_path / "x.png", timeout=timeout)
    assert emulator.stats.tasks_created == 0
    assert sum(emulator.stats.requests.values()) == 0
    assert not (tmp_path / "x.png").exists()


# -- request models ---------------------------------------------------------------------------------------------


def test_raw_request_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="optons"):
        RawUserRequest.model_validate({"model_key": "nano-banana-2", "prompt": "x", "optons": {"resolution": "4K"}})


def test_media_input_rejects_unknown_keys_and_unusable_lengths() -> None:
    with pytest.raises(ValidationError, match="rol"):
        MediaInput.model_validate({"source": "a.png", "rol": "first_frame"})
    for bad in NON_FINITE:
        with pytest.raises(ValidationError, match="duration_seconds"):
            MediaInput(source="a.mp4", duration_seconds=bad)
