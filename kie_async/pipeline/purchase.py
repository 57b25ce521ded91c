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

from kie_async.artifacts import make_run_id
from kie_async.catalogue.payload import build_submission_payload
from kie_async.catalogue.request_models import NormalizedRequest
from kie_async.client.base import with_correlation
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
    attempt = secrets.token_hex(4)
    token = correlation_token(ledger.key, attempt)
    callback = run.opts.callback_url or normalized.callback_url
    payload = build_submission_payload(
        prepared.validation, callback_url=with_correlation(callback, token) if callback else None
    )
    intent: dict[str, Any] = {
        "attempt": attempt,
        "provider_model": payload.model,
        "prompt": (normalized.prompt or "")[:200] or None,
        "credits_estimated": estimate,
        "boot": boot_stamp(),
    }
    on_wire_now = False

    async def on_wire() -> None:
        nonlocal on_wire_now
        await ledger.move(RequestState.SUBMITTING, **intent)
        if hooks and hooks.on_submitting:
            await hooks.on_submitting(estimate)
        await ledger.mark_sending(attempt)
        on_wire_now = True

    async def on_unsent(exc: KieError) -> None:
        nonlocal on_wire_now
        on_wire_now = False
        why = f"not sent: {exc}"
        await ledger.move(RequestState.REFUSED, attempt=attempt, error=why, error_type=type(exc).__name__)

    # Only a receiver that reaches this process can settle a lost answer while we wait; otherwise the journal
    # is settled later (a receiver elsewhere appends the adoption) and the next run resumes.
    # With a shared coordinator the receiver may be any worker on the account: its adoption is relayed here.
    listening = session.receives_callbacks or session.coordinator.kind != "local"
    adoption = session.expect_adoption(token, transport=payload.transport) if callback and listening else None
    run.submitted_at = datetime.now(UTC)
    run.submitted_here = True
    send = asyncio.ensure_future(session.create_task(payload, on_wire=on_wire, on_unsent=on_unsent))
    try:
        async with run.rec.stage("submit"):
            created = await asyncio.shield(send)
    except KieSubmissionUncertainError as exc:
        if ledger.state is RequestState.SUBMITTING:
            await ledger.move(RequestState.UNCERTAIN, attempt=attempt, error=str(exc), error_type=type(exc).__name__)
        adopted = await _await_adoption(run, adoption, token) if adoption is not None else None
        if adopted is None:
            if budget is not None:
                await budget.settle(reserved, None)  # may have been charged: count it
            hint = _uncertain_hint(normalized, payload.model, run.submitted_at, callback is not None)
            return run.result("submit_uncertain", error=f"{exc} {hint}", error_type=type(exc).__name__)
        task_id = adopted
        await _mark_submitted(run, task_id, estimate, attempt=attempt, adopted=True)
        return task_id
    except asyncio.CancelledError:
        if not on_wire_now:
            send.cancel()  # now, in this step: a shielded task would start later, after the send may have gone out
        await asyncio.shield(_close_cancelled_submit(run, send, lambda: on_wire_now, attempt, estimate))
        raise
    except KieError as exc:
        if ledger.state is RequestState.SUBMITTING:  # a definite answer: Kie.ai created nothing
            await ledger.move(RequestState.REFUSED, attempt=attempt, error=str(exc), error_type=type(exc).__name__)
        if budget is not None:
            await budget.release(reserved)
        return run.result("failed", error=str(exc), error_type=type(exc).__name__)
    finally:
        if adoption is not None:
            still_open = ledger.state is RequestState.UNCERTAIN  # only then can a late callback settle anything
            session.forget_adoption(token, late=hooks.on_late_adoption if hooks and still_open else None)
    await _mark_submitted(run, created.task_id, estimate, attempt=attempt, adopted=False)
    return created.task_id


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
    if run.hooks and run.hooks.on_submitted:
        await run.hooks.on_submitted(task_id, estimate)


def _uncertain_hint(normalized: NormalizedRequest, provider_model: str, at: datetime, callbacks: bool) -> str:
    prompt = (normalized.prompt or "")[:80]
    what = f"model {provider_model}" + (f", prompt {prompt!r}" if prompt else "")
    when = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    tail = " A correlated callback, if one arrives, settles it." if callbacks else ""
    return (
        f"Check the Kie.ai dashboard logs for a task created around {when} ({what}) before buying it again."
        + tail
    )
