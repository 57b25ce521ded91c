"""The purchase: ``createTask`` once, journaled so that no attempt is ever left open or bought twice.

The intent is written per attempt only when the rate limiter has granted a slot; an attempt that provably did
no work is closed as refused at once; an answer that was lost leaves ``uncertain``, which a correlated callback
can settle; a cancel waits for an answer already on its way instead of leaving money in limbo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kie_async.artifacts.writer import make_run_id
from kie_async.catalogue.payload import build_submission_payload
from kie_async.catalogue.request_models import NormalizedRequest
from kie_async.client.adoption import with_correlation
from kie_async.core.errors import KieError, KieSubmissionUncertainError
from kie_async.ledger.budget import CreditBudget
from kie_async.ledger.journal import boot_stamp, correlation_token
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.prepared import PreparedRequest
from kie_async.pipeline.run_context import RunContext
from kie_async.pipeline.run_models import RunResult
from kie_async.wire.api_models import TaskCreated

log = logging.getLogger("kie_async.pipeline.run")

_CANCEL_GRACE_SECONDS = 30.0
"""How long a cancelled run still waits for a createTask answer already on its way."""


async def submit_once(
    run: RunContext,
    normalized: NormalizedRequest,
    prepared: PreparedRequest,
    budget: CreditBudget | None,
    reserved: float,
    estimate: float | None,
) -> str | RunResult:
    """createTask, once. Returns the task id, or the result when nothing (or maybe something) was bought.

    The intent is journaled per attempt, only once the rate limiter has granted a slot; an attempt that
    provably did no work is closed as refused at once; an answer that was lost leaves ``uncertain``, which a
    correlated callback can settle (the task's callBackUrl carries ``<journal key>.<attempt>``).
    """
    ledger, hooks, session = run.ledger, run.hooks, run.session
    attempt = _Attempt(run, normalized, prepared, estimate)
    adoption = _expect_adoption(run, attempt)
    run.submitted_at = datetime.now(UTC)
    run.submitted_here = True
    send = asyncio.ensure_future(
        session.create_task(attempt.payload, on_wire=attempt.on_wire, on_unsent=attempt.on_unsent, validate=False)
    )
    try:
        async with run.rec.stage("submit"):
            created = await asyncio.shield(send)
    except KieSubmissionUncertainError as exc:
        return await _after_lost_answer(run, attempt, exc, adoption, budget, reserved)
    except asyncio.CancelledError:
        if not attempt.on_wire_now:
            send.cancel()  # now, in this step: a shielded task would start later, after the send may have gone out
        await asyncio.shield(_close_cancelled_submit(run, send, lambda: attempt.on_wire_now, attempt.id, estimate))
        raise
    except Exception as exc:
        if isinstance(exc, KieError) or not attempt.on_wire_now:
            return await _refused(run, attempt, exc, budget, reserved)
        # Sent, and the answer could not be read (a bug, a shape no parser expected): it may have bought a task.
        lost = KieSubmissionUncertainError(f"createTask's answer could not be read ({type(exc).__name__}: {exc})")
        return await _after_lost_answer(run, attempt, lost, adoption, budget, reserved)
    finally:
        if adoption is not None:
            still_open = ledger.state is RequestState.UNCERTAIN  # only then can a late callback settle anything
            session.forget_adoption(attempt.token, late=hooks.on_late_adoption if hooks and still_open else None)
    await _mark_submitted(run, created.task_id, estimate, attempt=attempt.id, adopted=False)
    return created.task_id


async def _refused(
    run: RunContext, attempt: _Attempt, exc: Exception, budget: CreditBudget | None, reserved: float
) -> RunResult:
    """A definite answer (Kie.ai created nothing), or a failure before the request left."""
    if not isinstance(exc, KieError):
        raise exc  # not sent: nothing bought, and not a result this layer knows how to word
    if run.ledger.state is RequestState.SUBMITTING:  # a definite answer: Kie.ai created nothing
        await run.ledger.move(RequestState.REFUSED, attempt=attempt.id, error=str(exc), error_type=type(exc).__name__)
    if budget is not None:
        await budget.release(reserved)
    return run.result("failed", error=str(exc), error_type=type(exc).__name__)


class _Attempt:
    """One createTask attempt: its id, correlation token, payload and journal intent, and whether it is on the wire.

    ``on_wire`` / ``on_unsent`` are the session's seams: the intent and its ``sending`` marker are journaled only
    once the rate limiter has granted a slot, and an attempt that provably did no work is closed as refused.
    """

    def __init__(
        self, run: RunContext, normalized: NormalizedRequest, prepared: PreparedRequest, estimate: float | None
    ) -> None:
        self.run = run
        self.estimate = estimate
        self.normalized = normalized
        self.id = secrets.token_hex(4)
        self.token = correlation_token(run.ledger.key, self.id, run.ledger.scope)
        self.callback = run.opts.callback_url or normalized.callback_url
        self.payload = build_submission_payload(
            prepared.validation, callback_url=with_correlation(self.callback, self.token) if self.callback else None
        )
        if not run.base.get("run_id"):
            # Allocated with the intent: a run folder written after a torn ``submitted`` line still names the task.
            run.base["run_id"] = make_run_id(run.ledger.model_key)
        self.intent: dict[str, Any] = {
            "attempt": self.id,
            "run_id": run.base["run_id"],
            "provider_model": self.payload.model,
            "prompt": (normalized.prompt or "")[:200] or None,
            "credits_estimated": estimate,
            "boot": boot_stamp(),
        }
        self.on_wire_now = False

    async def on_wire(self) -> None:
        run = self.run
        await run.ledger.move(RequestState.SUBMITTING, **self.intent)
        if run.hooks and run.hooks.on_submitting:
            await run.hooks.on_submitting(self.estimate)
        await run.ledger.mark_sending(self.id)
        self.on_wire_now = True

    async def on_unsent(self, exc: KieError) -> None:
        self.on_wire_now = False
        why = f"not sent: {exc}"
        await self.run.ledger.move(RequestState.REFUSED, attempt=self.id, error=why, error_type=type(exc).__name__)


def _expect_adoption(run: RunContext, attempt: _Attempt) -> asyncio.Future[str] | None:
    """Listen for a correlated callback that can settle a lost answer, when one can reach this process.

    Only a receiver that reaches this process can settle a lost answer while we wait; otherwise the journal
    is settled later (a receiver elsewhere appends the adoption) and the next run resumes.
    With a shared coordinator the receiver may be any worker on the account: its adoption is relayed here.
    """
    session = run.session
    listening = session.receives_callbacks or session.coordinator.kind != "local"
    if not attempt.callback or not listening:
        return None
    return session.expect_adoption(attempt.token, transport=attempt.payload.transport)


async def _after_lost_answer(
    run: RunContext,
    attempt: _Attempt,
    exc: KieSubmissionUncertainError,
    adoption: asyncio.Future[str] | None,
    budget: CreditBudget | None,
    reserved: float,
) -> str | RunResult:
    """createTask's answer was lost: uncertain, unless a correlated callback names the task it created."""
    if run.ledger.state is RequestState.SUBMITTING:
        await run.ledger.move(RequestState.UNCERTAIN, attempt=attempt.id, error=str(exc), error_type=type(exc).__name__)
    adopted = await _await_adoption(run, adoption, attempt.token) if adoption is not None else None
    if adopted is None:
        if budget is not None:
            await budget.settle(reserved, None)  # may have been charged: count it
        callbacks = attempt.callback is not None
        hint = _uncertain_hint(attempt.normalized, attempt.payload.model, run.submitted_at, callbacks)
        return run.result("submit_uncertain", error=f"{exc} {hint}", error_type=type(exc).__name__)
    await _mark_submitted(run, adopted, attempt.estimate, attempt=attempt.id, adopted=True)
    return adopted


async def _close_cancelled_submit(
    run: RunContext, send: asyncio.Future[TaskCreated], sent: Callable[[], bool], attempt: str, estimate: float | None
) -> None:
    """A cancel (Ctrl-C, a cancelled batch) must not leave money in limbo when it can be avoided.

    Not yet sent: the caller already stopped it (nothing bought). Already on the wire: let its answer arrive
    (bounded), so a graceful stop records the task id instead of an uncertain purchase. Only when that answer
    cannot come is the attempt closed as uncertain. ``sent()`` is read at the end, not at the cancel: whether
    the request went out is decided by what the send task actually did.
    """
    grace = min(run.session.settings.request_timeout, _CANCEL_GRACE_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait({send}, timeout=grace)
    if not send.done():
        send.cancel()
    ledger = run.ledger
    outcome = None if send.cancelled() or not send.done() else send.exception()
    if send.done() and not send.cancelled() and outcome is None:
        await _mark_submitted(run, send.result().task_id, estimate, attempt=attempt, adopted=False)
    elif ledger.state is RequestState.SUBMITTING:
        if isinstance(outcome, KieError) and not isinstance(outcome, KieSubmissionUncertainError):
            closing, why = RequestState.REFUSED, f"{outcome} (while cancelling)"
        elif sent() or isinstance(outcome, KieSubmissionUncertainError):
            closing, why = RequestState.UNCERTAIN, "cancelled while createTask was on the wire"
        else:
            closing, why = RequestState.REFUSED, "cancelled before sending"
        await ledger.move(closing, attempt=attempt, error=why, error_type="CancelledError")


async def _await_adoption(run: RunContext, adoption: asyncio.Future[str], token: str) -> str | None:
    """Wait (up to the wait timeout) for a verified callback to name the task this attempt created."""
    timeout = run.opts.wait_timeout if run.opts.wait_timeout is not None else run.session.settings.poll.timeout
    async with run.rec.stage("wait"):
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(adoption)
        except TimeoutError:
            log.info("no callback adopted %s within %ss", token, timeout)
            return None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled, not the adoption
            return None  # the session closed its adoption futures


async def _mark_submitted(
    run: RunContext, task_id: str, estimate: float | None, *, attempt: str, adopted: bool
) -> None:
    run.base["task_id"] = task_id
    run.base.setdefault("run_id", None)
    if not run.base["run_id"]:
        run.base["run_id"] = make_run_id(run.ledger.model_key)
    await run.ledger.move(
        RequestState.SUBMITTED,
        task_id=task_id,
        attempt=attempt,
        adopted=adopted,
        run_id=run.base["run_id"],
        credits_estimated=estimate,
    )
    await run.call_hook("on_submitted", run.hooks.on_submitted if run.hooks else None, task_id, estimate)


def _uncertain_hint(normalized: NormalizedRequest, provider_model: str, at: datetime, callbacks: bool) -> str:
    prompt = (normalized.prompt or "")[:80]
    what = f"model {provider_model}" + (f", prompt {prompt!r}" if prompt else "")
    when = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    tail = " A correlated callback, if one arrives, settles it." if callbacks else ""
    return f"Check the Kie.ai dashboard logs for a task created around {when} ({what}) before buying it again." + tail
