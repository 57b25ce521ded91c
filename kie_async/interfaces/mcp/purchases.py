"""``run_request`` and ``resume_run``: the only way the MCP server buys, under the operator's rules.

* Without a server budget (``--budget``), nothing is bought: a confirmed call is refused.
* A confirmed call needs the ``quote_id`` of its dry run: same request, same price, in time, not used already.
* The budget is a total over the server's life: each purchase reserves its price (or, unpriced, the operator's
  ceiling) in the spending store before createTask, and settles on delivery.
* While a request is paid but undelivered, an identical call (and ``resume_run``) collects that task instead
  of buying another; one request key is bought by one call at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kie_async.artifacts.settings import ArtifactSettings
from kie_async.catalogue.preflight import run_preflight
from kie_async.catalogue.pricing import estimate_request_cost
from kie_async.catalogue.request_models import RawUserRequest, ValidationResult
from kie_async.core.errors import KieError
from kie_async.core.spelling import MCP
from kie_async.interfaces.mcp.limits import UNKNOWN_COST_FIX, McpLimits
from kie_async.interfaces.mcp.quotes import QuoteProblem, QuoteSigner
from kie_async.interfaces.mcp.spending import PaidRun, SpendingStore
from kie_async.interfaces.mcp.views import preflight_view, server_text, tool_error, validation_view
from kie_async.ledger.journal import JournalRecord, request_key
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.run import run_pipeline
from kie_async.pipeline.run_models import PipelineHooks, PipelineOptions, RunResult

log = logging.getLogger("kie_async.interfaces.mcp.purchases")

_NO_BUDGET = (
    "confirm: this server only dry-runs: its operator started it without --budget, so it may spend nothing "
    "(fix: ask the operator to restart `kie-async mcp` with --budget N; until then call run_request without confirm)"
)


_UNCERTAIN = (
    "request: an earlier purchase of this exact request may have been made (its answer was lost), so this server "
    "will not buy it again (fix: ask the operator to check the account's task list; change the request to buy a "
    "new one)"
)


class _Tracker:
    """Follows one purchase through the pipeline's state hook, writing the task id to the store at once."""

    def __init__(self, owner: Purchases, key: str, request: dict[str, Any]) -> None:
        self.owner, self.key, self.request = owner, key, request
        self.sent = False
        self.task_id: str | None = None

    async def on_state(self, record: JournalRecord) -> None:
        if record.state is RequestState.SUBMITTING:
            self.sent = self.sent or record.sending
        elif record.state is RequestState.SUBMITTED and record.task_id and self.task_id is None:
            self.task_id = record.task_id
            await self.owner.store_call(self.owner.store.paid, self.key, record.task_id, record.run_id, self.request)


class Purchases:
    """The buying tools' state: limits, store, quote signer, one lock per request key."""

    def __init__(
        self,
        kie: Any,
        open_session: Callable[[], Awaitable[None]],
        artifacts: ArtifactSettings,
        limits: McpLimits,
        store: SpendingStore | None,
    ) -> None:
        self.kie, self.open_session, self.artifacts = kie, open_session, artifacts
        self.limits, self.store_or_none = limits, store
        self.signer = QuoteSigner(limits.quote_ttl_seconds)
        self._keys: dict[str, asyncio.Lock] = {}
        self._money = asyncio.Lock()
        self._used_quotes: set[str] = set()

    def __repr__(self) -> str:
        return f"Purchases(budget={self.limits.budget_credits}, store={self.store_or_none!r})"

    @property
    def store(self) -> SpendingStore:
        if self.store_or_none is None:
            raise tool_error(_NO_BUDGET)
        return self.store_or_none

    async def store_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Store steps block (an fsynced append) and must not interleave: one at a time, off the loop."""
        async with self._money:
            return await asyncio.to_thread(fn, *args, **kwargs)

    def budget_view(self) -> dict[str, Any]:
        cap = self.limits.budget_credits
        if cap is None or self.store_or_none is None:
            return {"budget_credits": None, "buys": False}
        view = self.store_or_none.view()
        return {
            "budget_credits": cap,
            "buys": True,
            "spent_credits": round(view.spent, 4),
            "reserved_credits": round(view.reserved, 4),
            "remaining_credits": round(max(0.0, cap - view.spent - view.reserved), 4),
            "unpriced_runs": view.unpriced_runs,
        }

    def _remaining(self) -> float:
        return float(self.budget_view().get("remaining_credits") or 0.0)

    def _amount(self, credits: float | None) -> float:
        """What the budget reserves: the price, or the operator's ceiling for an unpriced request."""
        if credits is not None:
            return credits
        if not self.limits.allow_unknown_cost or self.limits.unknown_cost_ceiling is None:
            raise tool_error(
                f"model_key: this request has no price in the pricing snapshot, and this server does "
                f"not buy unpriced requests (fix: {UNKNOWN_COST_FIX})"
            )
        return self.limits.unknown_cost_ceiling

    def _lock(self, key: str) -> asyncio.Lock:
        return self._keys.setdefault(key, asyncio.Lock())

    async def dry_run(self, validation: ValidationResult) -> dict[str, Any]:
        key = request_key(validation.normalized)
        budget = self.limits.budget_credits
        preflight = await run_preflight(
            validation,
            credit_source=self.kie,
            budget_credits=None if budget is None else self._remaining(),
            allow_unknown_cost=self.limits.allow_unknown_cost,
            money_limited=budget is not None,
            spelling=MCP,
        )
        est = preflight.estimate
        credits = est.credits if est.has_numeric_estimate else None
        view: dict[str, Any] = {
            "dry_run": True,
            "validation": validation_view(validation),
            "preflight": preflight_view(preflight),
            "budget": self.budget_view(),
        }
        paid = self.store_or_none.undelivered(key) if self.store_or_none else None
        blocking = [r for r in preflight.blocking_reasons if r.code != "needs_confirmation"]
        if paid is not None:
            view["next"] = (
                f"this request was bought earlier (task {paid.task_id}) and not delivered yet: call "
                f"resume_run with task_id {paid.task_id!r}, or repeat this call with confirm=true; "
                f"neither buys again"
            )
        elif budget is None:
            view["next"] = "nothing was bought; " + _NO_BUDGET.removeprefix("confirm: ")
        elif self.store_or_none is not None and self.store_or_none.is_uncertain(key) and not self._lock(key).locked():
            view["next"] = "blocked: " + _UNCERTAIN
        elif credits is None and not self.limits.allow_unknown_cost:
            view["next"] = f"blocked: this request has no price (fix: {UNKNOWN_COST_FIX}); nothing was bought"
        elif self._amount(credits) > self._remaining() + 1e-9:
            view["next"] = (
                f"blocked: it needs {self._amount(credits):g} credits and the server's budget has "
                f"{self._remaining():g} left (fix: ask the operator to raise --budget); nothing was "
                f"bought"
            )
        elif blocking:
            why = "; ".join(server_text(r.message) for r in blocking)
            view["next"] = f"blocked: {why} (fix: see preflight.reasons); nothing was bought"
        else:
            view["quote_id"] = self.signer.issue(key, credits)
            price = "an unknown price" if credits is None else f"{credits:g} credits"
            view["next"] = (
                f"nothing was bought; to buy this at {price}, call run_request again with the same "
                f"arguments, confirm=true and this quote_id (valid {self.limits.quote_ttl_seconds:g} s)"
            )
        return view

    async def confirmed(
        self, request: RawUserRequest, validation: ValidationResult, tags: list[str], quote_id: str | None
    ) -> dict[str, Any]:
        if self.limits.budget_credits is None or self.store_or_none is None:
            raise tool_error(_NO_BUDGET)
        key = request_key(validation.normalized)
        async with self._lock(key):
            paid = self.store.undelivered(key)
            if paid is not None:
                return await self._collect(paid)  # buys nothing, so no quote is needed (a restart voids them all)
            if self.store.is_uncertain(key):
                raise tool_error(_UNCERTAIN)
            est = estimate_request_cost(validation)
            credits = est.credits if est.has_numeric_estimate else None
            try:
                quote = self.signer.check(quote_id, key, credits, used=self._used_quotes)
            except QuoteProblem as exc:
                raise tool_error(str(exc)) from None
            amount = self._amount(credits)
            if not await self.store_call(
                self.store.reserve, key, amount, self.limits.budget_credits, unpriced=credits is None
            ):
                raise tool_error(
                    f"budget: this request needs {amount:g} credits and the server's budget has "
                    f"{self._remaining():g} of {self.limits.budget_credits:g} left; nothing was bought (fix: ask "
                    f"the operator to raise --budget)"
                )
            return await self._buy(request, key, amount, credits is None, tags, quote.nonce)

    async def _buy(
        self, request: RawUserRequest, key: str, amount: float, unpriced: bool, tags: list[str], nonce: str
    ) -> dict[str, Any]:
        tracker = _Tracker(self, key, request.model_dump(mode="json", exclude_defaults=True))
        opts = PipelineOptions(
            artifacts=self.artifacts,
            budget_credits=amount,
            allow_unknown_cost=unpriced,
            unknown_cost_ceiling=amount if unpriced else None,
            confirmed=True,
            tags=tags,
            spelling=MCP,
        )
        try:
            result = await run_pipeline(
                request, self.kie, options=opts, hooks=PipelineHooks(on_state=tracker.on_state), request_key=key
            )
        except BaseException as exc:
            await self._after_error(tracker)
            if tracker.task_id is not None and isinstance(exc, Exception):
                log.exception("run_request: collecting task %s failed", tracker.task_id)
                raise tool_error(
                    f"run: task {tracker.task_id} was bought but collecting it failed ({type(exc).__name__}) "
                    f"(fix: call resume_run with task_id {tracker.task_id!r}; it buys nothing)"
                ) from None
            raise
        await self._finish(key, amount, result, tracker, nonce)
        return self._result_view(result)

    async def _after_error(self, tracker: _Tracker) -> None:
        if tracker.task_id is not None:
            return  # paid and recorded: an identical call or resume_run collects it
        if tracker.sent:
            await self.store_call(self.store.uncertain, tracker.key)
        else:
            await self.store_call(self.store.release, tracker.key)

    async def _finish(
        self, key: str, amount: float, result: RunResult, tracker: _Tracker | None, nonce: str | None
    ) -> None:
        if result.spent_nothing:
            await self.store_call(self.store.release, key)
        elif result.task_id is None:
            await self.store_call(self.store.uncertain, key)
        elif result.resumable:
            paid = self.store.undelivered(key)
            if paid is None or paid.run_id != result.run_id:
                request = tracker.request if tracker else (paid.request if paid else {})
                await self.store_call(self.store.paid, key, result.task_id, result.run_id, request)
        else:
            charged = result.credits_charged
            await self.store_call(self.store.settle, key, amount if charged is None else charged)
            if nonce is not None:
                self._used_quotes.add(nonce)

    async def _collect(self, paid: PaidRun) -> dict[str, Any]:
        """Collect a task bought earlier (never buys): the identical call's and ``resume_run``'s path."""
        await self.open_session()
        request = RawUserRequest.model_validate(paid.request)
        opts = PipelineOptions(artifacts=self.artifacts, confirmed=True, allow_unknown_cost=True, spelling=MCP)
        try:
            result = await run_pipeline(
                request, self.kie, options=opts, resume_task_id=paid.task_id, run_id=paid.run_id, request_key=paid.key
            )
        except Exception as exc:
            if isinstance(exc, KieError):
                raise
            log.exception("resuming task %s failed", paid.task_id)
            raise tool_error(
                f"run: collecting task {paid.task_id} failed ({type(exc).__name__}); it stays paid "
                f"and recorded (fix: call resume_run with task_id {paid.task_id!r} again later; it "
                f"buys nothing)"
            ) from None
        await self._finish(paid.key, paid.reserved, result, None, None)
        return self._result_view(result)

    async def resume(self, run_or_task_id: str) -> dict[str, Any]:
        if self.store_or_none is None:
            raise tool_error(
                "run_id: this server was started without --budget, so it bought nothing to resume (fix: "
                "ask the operator to restart it with the --budget and --out it had when it bought)"
            )
        found = self.store.find(run_or_task_id) if run_or_task_id.strip() else None
        if found is None:
            raise tool_error(
                f"run_id: {run_or_task_id!r} is not a paid, undelivered run of this server (fix: pass the run_id "
                f"or task_id of an `incomplete` run_request result; get_run shows runs already delivered)"
            )
        async with self._lock(found.key):
            paid = self.store.undelivered(found.key)
            if paid is None:
                raise tool_error(f"run_id: {run_or_task_id!r} was delivered meanwhile (fix: call get_run)")
            return await self._collect(paid)

    def _result_view(self, result: RunResult) -> dict[str, Any]:
        view = run_view(result)
        view["budget"] = self.budget_view()
        if result.resumable and result.task_id:
            view["resume"] = (
                f"task {result.task_id} is paid for and not delivered: call resume_run with task_id "
                f"{result.task_id!r} (or repeat this exact call) to collect it; neither buys again"
            )
        return view


def run_view(result: RunResult) -> dict[str, Any]:
    return {
        "dry_run": False,
        "status": result.status,
        "state": result.state.value,
        "run_id": result.run_id,
        "task_id": result.task_id,
        "outputs": [str(o.path) for o in result.outputs],
        "output_urls": result.output_urls,
        "credits_estimated": result.credits_estimated,
        "credits_charged": result.credits_charged,
        "error": result.error,
        "resumable": result.resumable,
    }
