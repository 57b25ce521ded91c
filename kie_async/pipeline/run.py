"""The pipeline coroutine: normalize → prompt → (enhance) → validate → preflight → prepare → submit → wait →
download → artifact, with every stage's outcome and timing recorded in a typed :class:`RunResult`.

The rule that shapes it: nothing before ``submit`` spends credits, and the pipeline stops there on
``needs_input`` / ``invalid`` / a failed preflight / an exhausted budget. The steps after that live in their
own modules: :mod:`kie_async.pipeline.purchase` buys once (journaled per attempt),
:mod:`kie_async.pipeline.collect` waits, downloads and records, where every failure but the provider's own
``fail`` is resumable on the task id.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import time

from kie_async.catalogue.arguments import check_request_arg
from kie_async.catalogue.model_data import preload_model_data
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.preflight import PreflightResult, run_preflight
from kie_async.catalogue.presets import PRESET_DIR_ENV, PromptContext, apply_enhanced_prompt, resolve_prompt_context
from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.catalogue.validate import validate_request
from kie_async.client import BaseSession
from kie_async.core import telemetry
from kie_async.core.errors import KieError, KieInputError, attach_paid_task
from kie_async.core.folders import folder_problem
from kie_async.core.limits import check_credits, check_timeout
from kie_async.ledger.budget import CreditBudget
from kie_async.ledger.request_state import Money, RequestState, facts
from kie_async.pipeline.collect import collect_task, outputs_intact
from kie_async.pipeline.enhance import enhance_with_kie, kie_model
from kie_async.pipeline.ledgered import run_in_ledger
from kie_async.pipeline.prepare import prepare_request_for_submission
from kie_async.pipeline.prepared import PreparedRequest
from kie_async.pipeline.purchase import submit_once
from kie_async.pipeline.run_context import RunContext
from kie_async.pipeline.run_models import (
    Enhancer,
    PipelineHooks,
    PipelineOptions,
    PipelineStatus,
    RunOutput,
    RunResult,
    StageName,
    StageOutcome,
    StageStatus,
)
from kie_async.pipeline.run_telemetry import describe_run

__all__ = [
    "Enhancer",
    "PipelineHooks",
    "PipelineOptions",
    "PipelineStatus",
    "RunOutput",
    "RunResult",
    "StageName",
    "StageOutcome",
    "StageStatus",
    "outputs_intact",
    "parent_run_ids_of",
    "run_pipeline",
]

log = logging.getLogger("kie_async.pipeline.run")


def parent_run_ids_of(raw: RawUserRequest) -> list[str]:
    """Run ids of earlier outputs used as media in ``raw`` (chaining lineage), in order, without repeats."""
    found = [m.run_id for m in (*raw.images, *raw.videos, *raw.audios) if isinstance(m, RunOutput) and m.run_id]
    return list(dict.fromkeys(found))


async def _run_pipeline(
    request: RawUserRequest | NormalizedRequest,
    session: BaseSession,
    *,
    options: PipelineOptions | None = None,
    budget: CreditBudget | None = None,
    hooks: PipelineHooks | None = None,
    resume_task_id: str | None = None,
    parent_run_ids: list[str] | None = None,
    request_key: str | None = None,
    prior_state: RequestState | None = None,
    run_id: str | None = None,
) -> RunResult:
    """The pipeline itself; :func:`run_pipeline` wraps it in the run's span and metrics."""
    opts = options or PipelineOptions()
    _recheck(opts)  # model_copy(update=...) skips validation: a NaN budget or -1 timeout must not get through
    run = RunContext(opts, session, hooks, request_key, parent_run_ids, prior_state, resume_task_id, request.model_key)
    if run_id:
        run.base["run_id"] = run_id

    checked = await _check(run, request, blocking=resume_task_id is None, budget=budget)
    if isinstance(checked, RunResult):
        return checked
    normalized, validation = checked
    try:
        if resume_task_id is not None:
            run.base["resumed"] = True
            return await collect_task(
                run, normalized, validation, None, resume_task_id, reserved=0.0, estimate=None, budget=budget
            )
        return await _buy_and_collect(run, normalized, validation, budget)
    except BaseException as exc:  # a cancel, Ctrl-C, a closed client: the caller learns the task it paid for
        task_id = run.base.get("task_id")
        if task_id:
            attach_paid_task(
                exc,
                task_id,
                f"resume it without buying again: resume_task_id={task_id!r} (command line: --resume-task {task_id})",
            )
        raise


async def _buy_and_collect(
    run: RunContext, normalized: NormalizedRequest, validation: ValidationResult, budget: CreditBudget | None
) -> RunResult:
    gated = await _gate(run, validation, budget)
    if isinstance(gated, RunResult):
        return gated
    reserved, estimate = gated
    try:
        prepared = await _prepare(run, validation, budget, reserved)
        if isinstance(prepared, RunResult):
            return prepared
        submitted = await submit_once(run, normalized, prepared, budget, reserved, estimate)
    except asyncio.CancelledError:
        if budget is not None and facts(run.ledger.state).money is Money.NOTHING:
            await budget.release(reserved)
        raise
    if isinstance(submitted, RunResult):
        return submitted
    return await collect_task(
        run, normalized, validation, prepared, submitted, reserved=reserved, estimate=estimate, budget=budget
    )


async def run_pipeline(
    request: RawUserRequest | NormalizedRequest,
    session: BaseSession,
    *,
    options: PipelineOptions | None = None,
    budget: CreditBudget | None = None,
    hooks: PipelineHooks | None = None,
    resume_task_id: str | None = None,
    parent_run_ids: list[str] | None = None,
    request_key: str | None = None,
    prior_state: RequestState | None = None,
    run_id: str | None = None,
    idempotency_key: str | None = None,
    resubmit: bool = False,
    resubmit_uncertain: bool = False,
) -> RunResult:
    """Run one request end to end; returns a :class:`RunResult` (errors after submit are recorded, not raised).

    ``resume_task_id`` skips everything up to submit and continues with a task bought earlier (journal resume);
    ``prior_state`` is where the request stood before (``run_many`` passes the journal's view) and ``run_id``
    the run folder already allocated to that task. Every state change goes through the request state machine
    (:mod:`kie_async.ledger.request_state`) and out to ``hooks.on_state``. Cancellation propagates: in-flight
    uploads, polls and downloads stop and no partial files remain.
    """
    check_request_arg(request, call="run_pipeline")  # a dict or a list: one typed line, not an AttributeError
    model = request.model_key
    with telemetry.span(f"generate_content {model}", _run_attributes(model, options, resume_task_id)) as span:
        started = time.perf_counter()
        opts = options or PipelineOptions()
        _recheck(opts)
        parents = parent_run_ids if parent_run_ids is not None else _parents_of(request)
        inner = functools.partial(_run_pipeline, session=session, options=opts, budget=budget, parent_run_ids=parents)
        result = await run_in_ledger(
            request,
            session,
            inner,
            options=opts,
            hooks=hooks,
            resume_task_id=_checked_task_id(resume_task_id),
            request_key_=request_key,
            prior_state=prior_state,
            run_id=run_id,
            idempotency_key=idempotency_key,
            resubmit=resubmit,
            resubmit_uncertain=resubmit_uncertain,
        )
        describe_run(span, result, time.perf_counter() - started)
        return result


def _parents_of(request: RawUserRequest | NormalizedRequest) -> list[str] | None:
    return parent_run_ids_of(request) if isinstance(request, RawUserRequest) else None


def _checked_task_id(resume_task_id: str | None) -> str | None:
    if resume_task_id is not None and not resume_task_id.strip():
        # "" is falsy: it started as a fresh request yet took the resume path, an illegal pending -> incomplete.
        raise KieInputError(
            "resume_task_id is empty", hint="pass the task id an earlier run printed, or None to buy a new task"
        )
    return resume_task_id


def _run_attributes(model: str, options: PipelineOptions | None, resume_task_id: str | None) -> dict[str, object]:
    opts = options or PipelineOptions()
    return {
        "gen_ai.provider.name": telemetry.PROVIDER,
        "gen_ai.operation.name": "generate_content",
        "gen_ai.request.model": model,
        "kie.preset": opts.preset_key,
        "kie.resumed": resume_task_id is not None,
    }


def _recheck(opts: PipelineOptions) -> None:
    check_timeout("wait_timeout", opts.wait_timeout)
    check_credits("budget_credits", opts.budget_credits)
    check_credits("available_credits", opts.available_credits)
    if check_credits("unknown_cost_ceiling", opts.unknown_cost_ceiling) == 0:
        raise KieInputError("unknown_cost_ceiling is 0", hint="a budget would hold nothing for an unpriced request")


async def _check(
    run: RunContext,
    request: RawUserRequest | NormalizedRequest,
    *,
    blocking: bool = True,
    budget: CreditBudget | None = None,
) -> tuple[NormalizedRequest, ValidationResult] | RunResult:
    """normalize, prompt, enhance, validate: pure work, no credits.

    When resuming a task that is already bought, nothing here may stop the run (a spec that changed since,
    say): the task is collected whatever validation thinks of the request now.
    """
    rec, opts = run.rec, run.opts
    async with rec.stage("normalize"):
        await preload_model_data()
        if isinstance(request, RawUserRequest):
            run.parents.extend(p for p in parent_run_ids_of(request) if p not in run.parents)
            normalized = normalize_request(request)  # pure, ~0.1 ms once the specs are loaded: inline
        else:
            normalized = request
    run.base["model_key"] = run.ledger.model_key = normalized.model_key
    async with rec.stage("prompt"):
        read = functools.partial(
            resolve_prompt_context,
            normalized,
            preset_key=opts.preset_key,
            preset_dirs=opts.preset_dirs,
            system_prompt_override=opts.system_prompt_override,
            allow_unknown_placeholders=opts.allow_unknown_placeholders,
        )
        # Bundled presets are cached by preload: resolving them is pure and tiny, so it runs inline; user folders
        # are read (and re-checked) from disk, in a thread.
        bundled = opts.preset_dirs is None and not os.environ.get(PRESET_DIR_ENV)
        context = read() if bundled else await asyncio.to_thread(read)
    if opts.prompt_policy != "off" and opts.enhance is not None and normalized.raw_prompt:
        try:
            async with rec.stage("enhance"):
                enhanced = await _enhance(run, opts.enhance, context, budget)
        except KieError as exc:  # the built-in enhancer's chat call failed: stop before anything is bought
            return run.stopped("blocked", f"prompt enhancement failed: {exc}", "enhance")
        sent = await _apply_policy(opts, context, normalized.raw_prompt, enhanced)
        if sent is None:
            return run.stopped("blocked", "prompt policy 'ask': the reviewer did not approve a prompt", "enhance")
        if enhanced or sent != normalized.raw_prompt:
            normalized = apply_enhanced_prompt(
                normalized, sent, enhanced_prompt=enhanced or sent, preset_key=context.preset_key
            )
    elif opts.prompt_policy == "ask" and opts.enhance is None and blocking:
        return run.stopped(
            "blocked", "prompt policy 'ask' needs an enhancer (enhance=) and a reviewer (review_prompt=)", "prompt"
        )
    if opts.callback_url and not normalized.callback_url:
        # The callback the task will be sent with is the options' one: rules about it (Suno requires one) see it.
        normalized = normalized.model_copy(update={"callback_url": opts.callback_url})
    async with rec.stage("validate"):
        if any(m.source_type == "local_path" for m in normalized.media):  # stats and reads the files
            validation = await asyncio.to_thread(validate_request, normalized)
        else:  # pure checks on values, URLs and in-memory bytes' first bytes: inline
            validation = validate_request(normalized)
    run.base["validation"] = validation
    if not validation.is_submittable and blocking:
        return run.stopped("blocked", f"{validation.state}: {validation.summary()}", "validation")
    return normalized, validation


async def _enhance(
    run: RunContext, enhance: Enhancer | str, context: PromptContext, budget: CreditBudget | None
) -> str | None:
    """The caller's enhancer, or the built-in one (``kie:<chat model>``), whose call is kept on the run."""
    if not isinstance(enhance, str):
        return await enhance(context)
    enhanced, record = await enhance_with_kie(
        kie_model(enhance), context, run.session, budget=budget, reserve_credits=run.opts.enhance_reserve_credits
    )
    run.base["prompt_chat"] = record
    return enhanced


async def _apply_policy(opts: PipelineOptions, context: PromptContext, raw: str, enhanced: str | None) -> str | None:
    """The prompt to send under the policy: None stops the run (``ask`` not approved)."""
    if opts.prompt_policy == "preview":
        return raw  # the enhanced prompt is recorded, the user's own is sent
    if opts.prompt_policy == "ask":
        if opts.review_prompt is None:
            return None
        return await opts.review_prompt(context, enhanced)
    return enhanced or raw


async def _gate(
    run: RunContext, validation: ValidationResult, budget: CreditBudget | None
) -> tuple[float, float | None] | RunResult:
    """Preflight and the batch budget: the gate in front of the money. Returns (reserved, estimate)."""
    opts = run.opts
    limited = budget is not None and budget.cap is not None  # a batch budget or the balance read for the batch
    async with run.rec.stage("preflight"):
        preflight = await run_preflight(
            validation,
            credit_source=run.session if opts.check_balance and opts.available_credits is None else None,
            available_credits=opts.available_credits,
            budget_credits=opts.budget_credits,
            allow_unknown_cost=opts.allow_unknown_cost,
            check_files=False,
            thresholds=opts.thresholds,
            confirmed=opts.confirmed,
            money_limited=limited,
            spelling=opts.spelling,
        )
        preflight = await _ask_confirmation(preflight, opts)
    run.base["preflight"] = preflight
    estimate = preflight.estimate.credits if preflight.estimate.has_numeric_estimate else None
    run.base["credits_estimated"] = estimate
    if not preflight.allowed:
        return run.stopped("blocked", "; ".join(r.message for r in preflight.blocking_reasons), "preflight")
    if opts.write_artifact:
        root = opts.artifacts.resolved_root()
        problem = await asyncio.to_thread(folder_problem, root)  # a read-only root failed only after the purchase
        if problem is not None:
            why = f"the run folder root {root} (ArtifactSettings.root): {problem}; give it a folder you can write to"
            return run.stopped("blocked", why, "artifacts")
    return await _reserve(run, budget, estimate)


async def _reserve(
    run: RunContext, budget: CreditBudget | None, estimate: float | None
) -> tuple[float, float | None] | RunResult:
    """Hold the request's credits in the batch budget: its estimate, or the stated ceiling when no price is known.

    Reserving 0 for an unpriced request let a 100-credit budget spend 330: with a cap, an unpriced request needs
    ``unknown_cost_ceiling`` (settled on the provider's charge where one is reported, else counted in full).
    """
    if budget is None:
        return 0.0, estimate
    reserved = estimate
    if reserved is None:
        if budget.cap is None or not budget.spending_limit:
            reserved = 0.0  # tracked, or capped by the balance alone: the result says "credits unknown"
        elif run.opts.unknown_cost_ceiling is None:
            why = (
                f"no price is known for {run.ledger.model_key} and the batch has a credit cap; "
                f"{run.opts.spelling.unknown_cost_ceiling} says how much of it one such request may take"
            )
            return run.stopped("blocked", why, "budget")
        else:
            reserved = run.opts.unknown_cost_ceiling
    if not await budget.reserve(reserved):
        snap = budget.snapshot()
        what = "estimated" if estimate is not None else "the unknown-cost ceiling of"
        why = f"{what} {reserved:g} credits would pass the batch budget (remaining {snap.remaining:g})"
        return run.stopped("over_budget", why, "budget")
    return reserved, estimate


async def _ask_confirmation(preflight: PreflightResult, opts: PipelineOptions) -> PreflightResult:
    """A run held only by the confirmation tier goes on if the caller's ``confirm`` callback says yes."""
    held = [r for r in preflight.blocking_reasons if r.code == "needs_confirmation"]
    if not held or len(held) != len(preflight.blocking_reasons) or opts.confirm is None:
        return preflight
    answer = opts.confirm(preflight)
    if inspect.isawaitable(answer):
        answer = await answer
    if answer is not True:
        return preflight
    reasons = [r for r in preflight.reasons if r.code != "needs_confirmation"]
    return preflight.model_copy(update={"allowed": True, "reasons": reasons})


async def _prepare(
    run: RunContext, validation: ValidationResult, budget: CreditBudget | None, reserved: float
) -> PreparedRequest | RunResult:
    """Upload-first: every local input becomes a hosted URL before anything is bought."""
    try:
        async with run.rec.stage("prepare"):
            prepared = await prepare_request_for_submission(validation, run.session, rehost_urls=run.opts.rehost_urls)
    except KieError as exc:
        if budget is not None:
            await budget.release(reserved)
        run.ledger.block()
        return run.result("failed", error=str(exc), error_type=type(exc).__name__)
    run.base["prepared"] = prepared
    return prepared
