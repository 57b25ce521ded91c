"""The pipeline coroutine: normalize → prompt → (enhance) → validate → preflight → prepare → submit → wait →
download → artifact, with every stage's outcome and timing recorded in a typed :class:`RunResult`.

The rule that shapes it: nothing before ``submit`` spends credits, and the pipeline stops there on
``needs_input`` / ``invalid`` / a failed preflight / an exhausted budget. After submit, failures are recorded
(a failed task still gets a run folder) rather than retried, because a retry would be a second purchase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kie_async._limits import check_credits, check_timeout
from kie_async.api_models import TaskCreated, TaskRecord
from kie_async.artifacts import (
    ArtifactSettings,
    ArtifactSource,
    KieArtifactError,
    PromptRecord,
    ProviderTrace,
    RunArtifact,
    RunArtifactCreateRequest,
    RunStatus,
    create_run_artifact,
    load_run,
    make_run_id,
)
from kie_async.artifacts.layout import staging_name
from kie_async.artifacts.media import sha256_file
from kie_async.budget import CreditBudget
from kie_async.errors import KieError, KieResponseShapeError, KieSubmissionUncertainError
from kie_async.journal import JournalRecord, boot_stamp, correlation_token
from kie_async.model_data import preload_model_data
from kie_async.normalize import normalize_request
from kie_async.payload import build_submission_payload
from kie_async.preflight import PreflightResult, run_preflight
from kie_async.prepare import PreparedRequest, prepare_request_for_submission
from kie_async.presets import PromptContext, apply_enhanced_prompt, resolve_prompt_context
from kie_async.request_models import MediaInput, NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.request_state import Money, RequestState, can_move, check_move, facts
from kie_async.session import KieSession, with_correlation
from kie_async.validate import validate_request

log = logging.getLogger("kie_async.pipeline")

StageName = Literal[
    "normalize", "prompt", "enhance", "validate", "preflight", "prepare", "submit", "wait", "download", "artifact"
]
StageStatus = Literal["running", "ok", "skipped", "blocked", "failed", "cancelled"]
PipelineStatus = Literal["succeeded", "failed", "blocked", "over_budget", "submit_uncertain", "incomplete"]
"""How a run ended, for people. ``incomplete``: the task is paid for but the run stopped on a transient error
(outage, timeout, download, disk); a re-run with the same journal resumes it and never buys it again.
Cancellation is not a status: it propagates as ``asyncio.CancelledError`` after cleaning up. The precise
money meaning is :attr:`RunResult.state` (see :mod:`kie_async.request_state`)."""

Enhancer = Callable[[PromptContext], Awaitable[str | None]]
"""An async prompt enhancer (e.g. an LLM call): gets the rendered preset context, returns the new prompt."""


class StageOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: StageName
    status: StageStatus
    seconds: float
    detail: str | None = None


class RunOutput(MediaInput):
    """A downloaded output; pass it as media to another request to chain runs (lineage is recorded)."""

    run_id: str | None = None
    url: str | None = None

    @property
    def path(self) -> Path:
        return Path(str(self.source))

    def as_media(self, role: Literal["first_frame", "last_frame", "reference"] | None = None) -> RunOutput:
        """This output as an input with a role, e.g. ``run.outputs[0].as_media("first_frame")``."""
        return self.model_copy(update={"role": role})


class RunResult(BaseModel):
    """Everything that happened to one request, stage by stage."""

    model_config = ConfigDict(frozen=True)

    status: PipelineStatus
    state: RequestState = Field(
        default=RequestState.PENDING, description="where the request stands in the state machine (money meaning)"
    )
    model_key: str
    request_key: str | None = Field(default=None, description="journal key when run inside run_many")
    task_id: str | None = None
    run_id: str | None = None
    run_dir: str | None = None
    outputs: list[RunOutput] = Field(default_factory=list)
    output_urls: list[str] = Field(default_factory=list)
    credits_estimated: float | None = None
    credits_charged: float | None = Field(default=None, description="reconciled: provider figure, else estimate")
    parent_run_ids: list[str] = Field(default_factory=list)
    validation: ValidationResult | None = None
    preflight: PreflightResult | None = None
    prepared: PreparedRequest | None = None
    error: str | None = None
    error_type: str | None = None
    stages: list[StageOutcome] = Field(default_factory=list)
    resumed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def spent_nothing(self) -> bool:
        """True when nothing was bought: stopped before createTask, or Kie.ai definitely refused it."""
        return facts(self.state).money is Money.NOTHING and self.task_id is None

    @property
    def resumable(self) -> bool:
        """Paid for and not finished: a re-run (same journal, or ``resume_task_id``) continues the same task."""
        return facts(self.state).resumable

    @property
    def total_seconds(self) -> float:
        return round(sum(s.seconds for s in self.stages), 4)

    def stage(self, name: StageName) -> StageOutcome | None:
        return next((s for s in self.stages if s.name == name), None)


class PipelineOptions(BaseModel):
    """Knobs for :func:`run_pipeline`; defaults are what a careful user wants."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    preset_key: str | None = None
    preset_dirs: list[Path] | None = None
    enhance: Enhancer | None = None
    check_balance: bool = Field(default=True, description="read the live balance in preflight")
    # Finite and in range, checked at construction: NaN passes every `cost > limit` test (no gate at all), and a
    # bad wait_timeout found at wait time is found after the task was bought.
    available_credits: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="use this balance instead of reading it"
    )
    budget_credits: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="refuse a single run estimated above this"
    )
    allow_unknown_cost: bool = False
    rehost_urls: bool = False
    callback_url: str | None = None
    callback_driven: bool = False
    wait_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="seconds; None = settings")
    write_artifact: bool = True


class PipelineHooks(BaseModel):
    """Seams for run_many's journal: every state change, and just before / just after createTask goes out."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    on_submitting: Callable[[float | None], Awaitable[None]] | None = None
    on_submitted: Callable[[str, float | None], Awaitable[None]] | None = None
    on_stage: Callable[[StageOutcome], None] | None = Field(
        default=None, description="called with status 'running' when a stage starts and again when it ends"
    )
    on_state: Callable[[JournalRecord], Awaitable[None]] | None = Field(
        default=None, description="every state change, before the step it announces (run_many's journal)"
    )
    on_late_adoption: Callable[[str, str], Awaitable[None]] | None = Field(
        default=None,
        description="(token, task_id) of a correlated callback that arrived after the run ended uncertain",
    )


class _Recorder:
    """Times stages and collects their outcomes."""

    def __init__(self, hooks: PipelineHooks | None) -> None:
        self.stages: list[StageOutcome] = []
        self._on_stage = hooks.on_stage if hooks else None

    def add(self, name: StageName, status: StageStatus, started: float, detail: str | None = None) -> None:
        outcome = StageOutcome(name=name, status=status, seconds=round(time.perf_counter() - started, 4), detail=detail)
        self.stages.append(outcome)
        if self._on_stage is not None:
            self._on_stage(outcome)

    @contextlib.asynccontextmanager
    async def stage(self, name: StageName) -> AsyncIterator[None]:
        started = time.perf_counter()
        if self._on_stage is not None:
            self._on_stage(StageOutcome(name=name, status="running", seconds=0.0))
        try:
            yield
        except asyncio.CancelledError:
            self.add(name, "cancelled", started)
            raise
        except BaseException as exc:
            self.add(name, "failed", started, f"{type(exc).__name__}: {exc}")
            raise
        self.add(name, "ok", started)


def parent_run_ids_of(raw: RawUserRequest) -> list[str]:
    """Run ids of earlier outputs used as media in ``raw`` (chaining lineage), in order, without repeats."""
    found = [m.run_id for m in (*raw.images, *raw.videos, *raw.audios) if isinstance(m, RunOutput) and m.run_id]
    return list(dict.fromkeys(found))


async def run_pipeline(
    request: RawUserRequest | NormalizedRequest,
    session: KieSession,
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
    """Run one request end to end; returns a :class:`RunResult` (errors after submit are recorded, not raised).

    ``resume_task_id`` skips everything up to submit and continues with a task bought earlier (journal resume);
    ``prior_state`` is where the request stood before (``run_many`` passes the journal's view) and ``run_id``
    the run folder already allocated to that task. Every state change goes through the request state machine
    (:mod:`kie_async.request_state`) and out to ``hooks.on_state``. Cancellation propagates: in-flight
    uploads, polls and downloads stop and no partial files remain.
    """
    opts = options or PipelineOptions()
    _recheck(opts)  # model_copy(update=...) skips validation: a NaN budget or -1 timeout must not get through
    run = _Run(opts, session, hooks, request_key, parent_run_ids, prior_state, resume_task_id, request.model_key)
    if run_id:
        run.base["run_id"] = run_id

    checked = await _check(run, request, blocking=resume_task_id is None)
    if isinstance(checked, RunResult):
        return checked
    normalized, validation = checked
    if resume_task_id is not None:
        run.base["resumed"] = True
        return await _complete(
            run, normalized, validation, None, resume_task_id, reserved=0.0, estimate=None, budget=budget
        )

    gated = await _gate(run, validation, budget)
    if isinstance(gated, RunResult):
        return gated
    reserved, estimate = gated
    try:
        prepared = await _prepare(run, validation, budget, reserved)
        if isinstance(prepared, RunResult):
            return prepared
        submitted = await _submit(run, normalized, prepared, budget, reserved, estimate)
    except asyncio.CancelledError:
        if budget is not None and facts(run.ledger.state).money is Money.NOTHING:
            await budget.release(reserved)
        raise
    if isinstance(submitted, RunResult):
        return submitted
    return await _complete(
        run, normalized, validation, prepared, submitted, reserved=reserved, estimate=estimate, budget=budget
    )


def _recheck(opts: PipelineOptions) -> None:
    check_timeout("wait_timeout", opts.wait_timeout)
    check_credits("budget_credits", opts.budget_credits)
    check_credits("available_credits", opts.available_credits)


_CANCEL_GRACE_SECONDS = 30.0
"""How long a cancelled run still waits for a createTask answer already on its way."""


class _Ledger:
    """The request's place in the state machine; every move is checked and reported to ``hooks.on_state``."""

    def __init__(self, key: str, model_key: str, hooks: PipelineHooks | None, state: RequestState) -> None:
        self.key = key
        self.model_key = model_key
        self.state = state
        self._on_state = hooks.on_state if hooks else None

    async def move(self, state: RequestState, **fields: Any) -> None:
        """Record a state change. Only the intent must reach the journal before the step; see below."""
        check_move(self.state, state, key=self.key)
        record = JournalRecord(key=self.key, state=state, model_key=self.model_key, **fields)
        self.state = state  # before the (shielded) write: a cancel mid-write still knows what the journal holds
        if self._on_state is None:
            return
        if state is RequestState.SUBMITTING:
            await self._on_state(record)  # no durable intent, no send: a failing disk stops the purchase here
            return
        try:
            await self._on_state(record)
        except OSError as exc:
            # After the wire the run goes on (the result keeps the task id); the journal still holds the
            # intent, which a re-run reads as uncertain: it will not buy again, and the log says why.
            log.error("journal: could not record %s for %s (%s); the result still carries it", state.value,
                      self.key, exc)

    async def mark_sending(self, attempt: str) -> None:
        """The request goes out now: the journal's proof-of-not-sent marker (see :mod:`kie_async.journal`)."""
        if self._on_state is not None:
            await self._on_state(
                JournalRecord(key=self.key, state=RequestState.SUBMITTING, attempt=attempt, sending=True)
            )

    def block(self) -> None:
        """Stopped before the wire: only a request with nothing at stake becomes ``blocked`` (not journaled)."""
        if can_move(self.state, RequestState.BLOCKED):
            self.state = RequestState.BLOCKED


class _Run:
    """What one pipeline run carries between its steps."""

    def __init__(
        self,
        opts: PipelineOptions,
        session: KieSession,
        hooks: PipelineHooks | None,
        request_key: str | None,
        parent_run_ids: list[str] | None,
        prior_state: RequestState | None,
        resume_task_id: str | None,
        model_key: str,
    ) -> None:
        self.opts = opts
        self.session = session
        self.hooks = hooks
        self.rec = _Recorder(hooks)
        self.parents = list(parent_run_ids or [])
        start = prior_state or (RequestState.SUBMITTED if resume_task_id else RequestState.PENDING)
        self.ledger = _Ledger(request_key or "", model_key, hooks, start)
        self.base: dict[str, Any] = {"model_key": model_key, "request_key": request_key}
        self.submitted_at = datetime.now(UTC)

    def result(self, status: PipelineStatus, **fields: Any) -> RunResult:
        merged = {**self.base, **fields, "parent_run_ids": self.parents, "stages": self.rec.stages}
        return RunResult(status=status, state=self.ledger.state, **merged)

    def stopped(self, status: PipelineStatus, why: str, error_type: str) -> RunResult:
        """The last stage blocked: nothing was sent."""
        self.rec.stages[-1] = self.rec.stages[-1].model_copy(update={"status": "blocked", "detail": why})
        self.ledger.block()
        return self.result(status, error=why, error_type=error_type)


async def _check(
    run: _Run, request: RawUserRequest | NormalizedRequest, *, blocking: bool = True
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
            normalized = await asyncio.to_thread(normalize_request, request)
        else:
            normalized = request
    run.base["model_key"] = run.ledger.model_key = normalized.model_key
    async with rec.stage("prompt"):
        context = await asyncio.to_thread(
            resolve_prompt_context, normalized, preset_key=opts.preset_key, preset_dirs=opts.preset_dirs
        )
    if opts.enhance is not None and normalized.raw_prompt:
        async with rec.stage("enhance"):
            enhanced = await opts.enhance(context)
            if enhanced and enhanced != normalized.raw_prompt:
                normalized = apply_enhanced_prompt(
                    normalized, enhanced, enhanced_prompt=enhanced, preset_key=context.preset_key
                )
    async with rec.stage("validate"):
        validation = await asyncio.to_thread(validate_request, normalized)
    run.base["validation"] = validation
    if not validation.is_submittable and blocking:
        return run.stopped("blocked", f"{validation.state}: {validation.summary()}", "validation")
    return normalized, validation


async def _gate(
    run: _Run, validation: ValidationResult, budget: CreditBudget | None
) -> tuple[float, float | None] | RunResult:
    """Preflight and the batch budget: the gate in front of the money. Returns (reserved, estimate)."""
    opts = run.opts
    async with run.rec.stage("preflight"):
        preflight = await run_preflight(
            validation,
            credit_source=run.session if opts.check_balance and opts.available_credits is None else None,
            available_credits=opts.available_credits,
            budget_credits=opts.budget_credits,
            allow_unknown_cost=opts.allow_unknown_cost,
            check_files=False,
        )
    run.base["preflight"] = preflight
    estimate = preflight.estimate.credits if preflight.estimate.has_numeric_estimate else None
    run.base["credits_estimated"] = estimate
    if not preflight.allowed:
        return run.stopped("blocked", "; ".join(r.message for r in preflight.blocking_reasons), "preflight")
    reserved = 0.0
    if budget is not None:
        reserved = estimate or 0.0
        if not await budget.reserve(reserved):
            snap = budget.snapshot()
            why = f"estimated {reserved:g} credits would pass the batch budget (remaining {snap.remaining:g})"
            return run.stopped("over_budget", why, "budget")
    return reserved, estimate


async def _prepare(
    run: _Run, validation: ValidationResult, budget: CreditBudget | None, reserved: float
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


async def _submit(
    run: _Run,
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

    # Only a receiver in this process can settle a lost answer while we wait; otherwise the journal is settled
    # later (a receiver elsewhere appends the adoption) and the next run resumes.
    adoption = session.expect_adoption(token) if callback and session.receives_callbacks else None
    run.submitted_at = datetime.now(UTC)
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
    run: _Run, send: asyncio.Future[TaskCreated], sent: Callable[[], bool], attempt: str, estimate: float | None
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


async def _await_adoption(run: _Run, adoption: asyncio.Future[str], token: str) -> str | None:
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


async def _mark_submitted(run: _Run, task_id: str, estimate: float | None, *, attempt: str, adopted: bool) -> None:
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
async def _complete(
    run: _Run,
    normalized: NormalizedRequest,
    validation: ValidationResult,
    prepared: PreparedRequest | None,
    task_id: str,
    *,
    reserved: float,
    estimate: float | None,
    budget: CreditBudget | None = None,
) -> RunResult:
    """Wait, download, record. From here on the task is paid for: every failure is resumable on ``task_id``."""
    run.base["task_id"] = task_id
    started_wait = time.perf_counter()
    polls_before = run.session.stats.requests.get("recordInfo", 0)
    try:
        async with run.rec.stage("wait"):
            record = await run.session.wait_for_task(
                task_id,
                timeout=run.opts.wait_timeout,
                raise_on_failure=False,
                callback_driven=run.opts.callback_driven,
            )
    except KieError as exc:
        if budget is not None:
            await budget.settle(reserved, None)
        return await _incomplete(run, exc)
    charged = record.credits_consumed if record.credits_consumed is not None else estimate
    if budget is not None:
        await budget.settle(reserved, charged)
    run.base["credits_charged"] = charged
    run.base["output_urls"] = record.output_urls
    trace = _TraceFacts(
        submitted_at=run.submitted_at,
        wall=time.perf_counter() - started_wait,
        polls=run.session.stats.requests.get("recordInfo", 0) - polls_before,
        estimate=estimate,
        charged=charged,
    )
    if record.state.is_failure:
        return await _provider_failed(run, normalized, validation, prepared, record, trace)
    if not record.has_usable_result:
        why = "; ".join(record.result_problems) or f"state {record.state_description}"
        problem = KieResponseShapeError(
            f"task {task_id} reported success but gave no usable output ({why})",
            code=200,
            endpoint="recordInfo",
            task_id=task_id,
            hint="re-run to read the task again; if it stays empty, check the task in the Kie.ai dashboard",
        )
        return await _incomplete(run, problem)
    try:
        outputs, files = await _deliver(run, normalized, validation, prepared, record, trace)
    except (KieError, OSError) as exc:
        return await _incomplete(run, exc)
    await run.ledger.move(
        RequestState.SUCCEEDED,
        task_id=task_id,
        run_id=run.base.get("run_id"),
        run_dir=run.base.get("run_dir"),
        outputs=[str(f.path) for f in files],
        output_urls=record.output_urls,
        output_sha256=[f.sha256 for f in files],
        output_bytes=[f.size for f in files],
        credits_estimated=estimate,
        credits_charged=charged,
    )
    return run.result("succeeded", outputs=outputs)


class _TraceFacts(BaseModel):
    submitted_at: datetime
    wall: float
    polls: int
    estimate: float | None
    charged: float | None


class _StoredOutput(BaseModel):
    path: Path
    sha256: str
    size: int


async def _incomplete(run: _Run, exc: BaseException) -> RunResult:
    """Paid for but not finished here (outage, timeout, download, disk): resumable on the task id."""
    error = str(exc) or type(exc).__name__
    await run.ledger.move(
        RequestState.INCOMPLETE,
        task_id=run.base.get("task_id"),
        run_id=run.base.get("run_id"),
        error=error,
        error_type=type(exc).__name__,
    )
    return run.result("incomplete", error=f"{error} (task {run.base.get('task_id')} is paid for: re-run to resume)",
                      error_type=type(exc).__name__)


async def _provider_failed(
    run: _Run,
    normalized: NormalizedRequest,
    validation: ValidationResult,
    prepared: PreparedRequest | None,
    record: TaskRecord,
    trace: _TraceFacts,
) -> RunResult:
    """The provider said the task failed: final. The run folder still records what was asked."""
    if run.opts.write_artifact:
        try:
            async with run.rec.stage("artifact"):
                await _write_artifact(run, normalized, validation, prepared, record, [], trace)
        except (KieError, OSError) as exc:
            log.warning("task %s failed and its run folder could not be written: %s", record.task_id, exc)
    error = f"task failed: {record.fail_code} {record.fail_msg}"
    await run.ledger.move(
        RequestState.FAILED,
        task_id=record.task_id,
        run_id=run.base.get("run_id"),
        run_dir=run.base.get("run_dir"),
        credits_estimated=trace.estimate,
        credits_charged=trace.charged,
        error=error,
        error_type="KieTaskFailedError",
    )
    return run.result("failed", error=error, error_type="KieTaskFailedError")


async def _deliver(
    run: _Run,
    normalized: NormalizedRequest,
    validation: ValidationResult,
    prepared: PreparedRequest | None,
    record: TaskRecord,
    trace: _TraceFacts,
) -> tuple[list[RunOutput], list[_StoredOutput]]:
    """Outputs on disk and (by default) in their run folder; an intact folder from an earlier attempt is kept."""
    kind = _kind(normalized.output_kind)
    if run.opts.write_artifact:
        existing = await _intact_run(run)
        if existing is not None:
            return existing
    root = run.opts.artifacts.resolved_root()
    staging = (
        root / ".tmp" / "downloads" / staging_name(record.task_id) if run.opts.write_artifact
        else root / "downloads" / record.task_id
    )
    try:
        async with run.rec.stage("download"):
            downloaded = await _download_all(run.session, record, staging, normalized.output_kind)
        if not run.opts.write_artifact:
            files = await asyncio.to_thread(_describe_files, downloaded)
            urls = record.output_urls
            outputs = [RunOutput(source=f.path, url=u, kind=kind) for f, u in zip(files, urls, strict=False)]
            return outputs, files
        async with run.rec.stage("artifact"):
            artifact = await _write_artifact(run, normalized, validation, prepared, record, downloaded, trace)
    finally:
        if run.opts.write_artifact:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, staging, True))
    return _from_artifact(artifact, record, kind)


def _from_artifact(
    artifact: RunArtifact, record: TaskRecord, kind: Literal["image", "video", "audio"] | None
) -> tuple[list[RunOutput], list[_StoredOutput]]:
    files = _stored_outputs(artifact)
    outputs = [
        RunOutput(source=f.path, url=u, kind=kind, run_id=artifact.run_id)
        for f, u in zip(files, record.output_urls, strict=False)
    ]
    return outputs, files


def _stored_outputs(artifact: RunArtifact) -> list[_StoredOutput]:
    """The run folder's outputs as recorded in its manifest (path, sha256, size)."""
    return [
        _StoredOutput(path=artifact.run_dir / f.path, sha256=f.sha256 or "", size=f.bytes or 0)
        for f in artifact.manifest.outputs
        if f.path
    ]


async def _intact_run(run: _Run) -> tuple[list[RunOutput], list[_StoredOutput]] | None:
    """The run folder an earlier attempt finished for this task, if it is complete and unchanged."""
    run_id = run.base.get("run_id")
    if not run_id:
        return None
    root = run.opts.artifacts.resolved_root()
    try:
        artifact = await load_run(root, run_id)
    except (KieArtifactError, OSError):
        return None
    manifest = artifact.manifest
    if manifest.status is not RunStatus.SUCCEEDED or not manifest.outputs:
        return None
    files = _stored_outputs(artifact)
    if not await asyncio.to_thread(outputs_intact, [f.path for f in files], [f.sha256 for f in files],
                                   [f.size for f in files]):
        return None
    run.base["run_dir"] = str(artifact.run_dir)
    urls = [f.url for f in manifest.outputs if f.path]
    outputs = [
        RunOutput(source=f.path, url=u, kind=None, run_id=artifact.run_id)
        for f, u in zip(files, urls, strict=False)
    ]
    return outputs, files


def _describe_files(paths: list[Path]) -> list[_StoredOutput]:
    described = []
    for path in paths:
        digest, size = sha256_file(path)
        described.append(_StoredOutput(path=path, sha256=digest, size=size))
    return described


def outputs_intact(paths: list[Path], sha256s: list[str], sizes: list[int]) -> bool:
    """Blocking: every recorded output still exists with its recorded size and sha256."""
    if not paths or len(paths) != len(sha256s) or len(paths) != len(sizes):
        return False
    for path, digest, size in zip(paths, sha256s, sizes, strict=True):
        try:
            if path.stat().st_size != size or sha256_file(path)[0] != digest:
                return False
        except OSError:
            return False
    return True


async def _write_artifact(
    run: _Run,
    normalized: NormalizedRequest,
    validation: ValidationResult,
    prepared: PreparedRequest | None,
    record: TaskRecord,
    downloaded: list[Path],
    trace: _TraceFacts,
) -> RunArtifact:
    request = _artifact_request(
        normalized,
        validation,
        prepared,
        record,
        downloaded,
        run.parents,
        trace.submitted_at,
        trace.wall,
        trace.polls,
        run.opts,
        trace.estimate,
        trace.charged,
    )
    if run.base.get("run_id"):
        request = request.model_copy(update={"run_id": run.base["run_id"]})
    key = run.session.settings.api_key
    artifact = await create_run_artifact(request, run.opts.artifacts, secrets=[key] if key else [], replace=True)
    run.base["run_id"] = artifact.run_id
    run.base["run_dir"] = str(artifact.run_dir)
    return artifact


def _kind(output_kind: str | None) -> Literal["image", "video", "audio"] | None:
    return output_kind if output_kind in ("image", "video", "audio") else None  # type: ignore[return-value]


async def _download_all(session: KieSession, record: TaskRecord, folder: Path, output_kind: str | None) -> list[Path]:
    """Each output checked against the model's output kind and named ``output_{i}.{ext}`` from its content.

    The server's URL never names the file (a URL ending in ``.sh`` must not give ``output_0.sh``), and an
    error page or empty body served with 200 is retried as a download error instead of becoming the output.
    """
    expect = _kind(output_kind)
    results = await asyncio.gather(
        *(
            session.download(url, folder / f"output_{i}", expect_kind=expect, name_from_content=True)
            for i, url in enumerate(record.output_urls)
        )
    )
    return [Path(r.destination_path) for r in results]


def _artifact_request(
    normalized: NormalizedRequest,
    validation: ValidationResult,
    prepared: PreparedRequest | None,
    record: TaskRecord,
    downloaded: list[Path],
    parents: list[str],
    submitted_at: datetime,
    wall: float,
    polls: int,
    opts: PipelineOptions,
    estimate: float | None,
    charged: float | None,
) -> RunArtifactCreateRequest:
    hosted = {u.media_id: u.url for u in prepared.uploads} if prepared else {}
    inputs: list[ArtifactSource] = []
    for media in validation.normalized.media:
        role = media.role or "reference"
        if media.source_type == "local_path" and media.value:
            inputs.append(ArtifactSource(role=role, source_path=Path(media.value), url=hosted.get(media.id)))
        elif media.value:
            inputs.append(ArtifactSource(role=role, url=hosted.get(media.id, media.value)))
        elif media.id in hosted:
            inputs.append(ArtifactSource(role=role, url=hosted[media.id]))
    outputs = [
        ArtifactSource(role="output", source_path=p, url=u)
        for p, u in zip(downloaded, record.output_urls, strict=False)
    ]
    if not outputs and record.output_urls:
        outputs = [ArtifactSource(role="output", url=u) for u in record.output_urls]
    trace = ProviderTrace.from_task_record(
        record,
        submitted_at=submitted_at,
        wall_seconds=round(wall, 3),
        poll_count=polls,
        used_callback=opts.callback_driven,
        credits_estimated=estimate,
        credits_consumed=charged if record.credits_consumed is None else record.credits_consumed,
    )
    return RunArtifactCreateRequest(
        status=RunStatus.from_task_state(record.state),
        model_key=normalized.model_key,
        provider_model=normalized.provider_model,
        task_mode=normalized.task_mode,
        prompts=PromptRecord(
            raw=normalized.raw_prompt,
            enhanced=normalized.enhanced_prompt,
            final_used=normalized.final_prompt_used or normalized.raw_prompt,
            preset=normalized.prompt_preset,
        ),
        inputs=inputs,
        outputs=outputs,
        provider_trace=trace,
        parent_run_ids=parents,
        started_at=submitted_at,
        error=f"{record.fail_code}: {record.fail_msg}" if record.state.is_failure else None,
    )
