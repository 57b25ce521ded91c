"""Every run goes through the account's ledger: claim the request, decide from what the ledger holds, record.

``run_pipeline`` calls :func:`run_in_ledger` with the pipeline itself as ``inner``; so do ``run_many``'s runs
(beside their batch journal, which stays the batch's view), the CLI, ``KieClient`` and the MCP server. The rules
(:mod:`kie_async.ledger.account`): a paid but undelivered task is resumed, never bought again; a delivered one
leads to a new purchase (a new variation) unless an ``idempotency_key`` asks for the earlier result; a maybe-bought
one buys nothing unless the caller says ``resubmit``.

A shared batch (a coordinator's journal, in Redis) is its own ledger: its runs skip this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

from kie_async.catalogue.model_data import preload_model_data
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest
from kie_async.client import BaseSession
from kie_async.core.errors import KieError
from kie_async.ledger.account import AccountLedger, LedgerClaim
from kie_async.ledger.journal import JournalRecord, request_key
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.batch_plan import Plan, plan_request
from kie_async.pipeline.run_models import PipelineHooks, PipelineOptions, RunResult

LEGACY_RUN_JOURNALS = Path(".kie") / "run-journal"
"""Where ``kie-async run`` kept its journals before the ledger (read once, on the first claim of a request)."""


class Inner(Protocol):
    """The pipeline run the ledger wraps (``run_pipeline``'s own body)."""

    def __call__(
        self,
        request: RawUserRequest | NormalizedRequest,
        *,
        hooks: PipelineHooks | None,
        resume_task_id: str | None,
        request_key: str | None,
        prior_state: RequestState | None,
        run_id: str | None,
    ) -> Awaitable[RunResult]: ...


async def run_in_ledger(
    request: RawUserRequest | NormalizedRequest,
    session: BaseSession,
    inner: Inner,
    *,
    options: PipelineOptions,
    hooks: PipelineHooks | None,
    resume_task_id: str | None,
    request_key_: str | None,
    prior_state: RequestState | None,
    run_id: str | None,
    idempotency_key: str | None,
    resubmit: bool,
    resubmit_uncertain: bool,
) -> RunResult:
    """One run, claimed in the account's ledger for its whole life (see the module's rules)."""
    normalized = await _normalized(request)
    if normalized is None or (hooks is not None and hooks.journal_scope):
        # Not a request the pipeline can price (it says why, buying nothing), or a shared batch's run.
        return await inner(
            request,
            hooks=hooks,
            resume_task_id=resume_task_id,
            request_key=request_key_,
            prior_state=prior_state,
            run_id=run_id,
        )
    ledger = AccountLedger.for_settings(session.settings)
    claim = await ledger.claim(
        request_key(normalized),
        idempotency_key=idempotency_key,
        prefer_task=resume_task_id,
        resubmit=resubmit,
        legacy=_legacy_journal(options, request_key(normalized)) if idempotency_key is None else None,
    )
    try:
        return await _run_claimed(
            claim,
            normalized,
            request,
            inner,
            options=options,
            hooks=hooks,
            resume_task_id=resume_task_id,
            request_key_=request_key_,
            prior_state=prior_state,
            run_id=run_id,
            resubmit_uncertain=resubmit or resubmit_uncertain,
        )
    finally:
        await claim.release()


async def _run_claimed(
    claim: LedgerClaim,
    normalized: NormalizedRequest,
    request: RawUserRequest | NormalizedRequest,
    inner: Inner,
    *,
    options: PipelineOptions,
    hooks: PipelineHooks | None,
    resume_task_id: str | None,
    request_key_: str | None,
    prior_state: RequestState | None,
    run_id: str | None,
    resubmit_uncertain: bool,
) -> RunResult:
    key = request_key_ or claim.key
    if resume_task_id is not None:  # the caller knows the task: the ledger learns it if it had none
        if claim.entry is None or claim.entry.task_id is None:
            await claim.record(
                JournalRecord(key=key, state=RequestState.SUBMITTED, task_id=resume_task_id, adopted=True)
            )
        plan = Plan(state=prior_state or RequestState.SUBMITTED, task_id=resume_task_id, run_id=run_id)
    else:
        root = options.artifacts.resolved_root() if options.write_artifact else None
        decided = await plan_request(
            claim.entry,
            normalized.model_key,
            retry_failed=False,
            resubmit_uncertain=resubmit_uncertain,
            artifacts_root=root,
        )
        if isinstance(decided, RunResult):  # delivered under this idempotency key, or maybe bought already
            return decided
        plan = _merge(decided, prior_state, run_id)
        if plan.task_id is not None:
            adoption = plan.adoption(key)
            await claim.record(adoption)
            if hooks is not None and hooks.on_state is not None:
                await hooks.on_state(adoption)  # the batch's journal learns the task the ledger resumes
    return await inner(
        request if isinstance(request, NormalizedRequest) else normalized,
        hooks=_with_ledger(hooks, claim),
        resume_task_id=plan.task_id,
        request_key=key,
        prior_state=plan.state if plan.task_id is not None else prior_state,
        run_id=plan.run_id,
    )


def _merge(plan: Plan, prior_state: RequestState | None, run_id: str | None) -> Plan:
    """The ledger's plan, with the caller's run folder when the ledger has none."""
    if plan.task_id is None:
        return Plan(state=prior_state or RequestState.PENDING, run_id=run_id)
    return plan.model_copy(update={"run_id": plan.run_id or run_id})


async def _normalized(request: RawUserRequest | NormalizedRequest) -> NormalizedRequest | None:
    if isinstance(request, NormalizedRequest):
        return request
    try:
        await preload_model_data()
        return normalize_request(request)
    except (KieError, ValueError):
        return None  # the pipeline's own normalize stage reports it (nothing can be bought)


def _legacy_journal(options: PipelineOptions, base: str) -> Path | None:
    if not options.write_artifact:
        return None
    return options.artifacts.resolved_root() / LEGACY_RUN_JOURNALS / f"{base}.jsonl"


def _with_ledger(hooks: PipelineHooks | None, claim: LedgerClaim) -> PipelineHooks:
    """The caller's hooks, with every state change (and a late callback's adoption) recorded in the ledger first."""
    theirs = hooks.on_state if hooks is not None else None
    late = hooks.on_late_adoption if hooks is not None else None

    async def on_state(record: JournalRecord) -> None:
        if theirs is None:
            await claim.record(record)
            return
        if record.sending:
            # "The bytes go out now": the ledger's marker is written last, so a kill between the two markers
            # leaves the ledger saying "never sent" only when the caller's journal already says "maybe sent".
            await theirs(record)
            await claim.record(record)
            return
        # Both appends start now (each is shielded): a cancelled run still lands its record in both, and the
        # caller's journal, closed when its batch ends, has already started (and so drains) its append.
        outcomes = await asyncio.gather(claim.record(record), theirs(record), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def on_late_adoption(token: str, task_id: str) -> None:
        await claim.record(JournalRecord(key=claim.key, state=RequestState.SUBMITTED, task_id=task_id, adopted=True))
        if late is not None:
            await late(token, task_id)

    base = hooks or PipelineHooks()
    return base.model_copy(update={"on_state": on_state, "on_late_adoption": on_late_adoption})
