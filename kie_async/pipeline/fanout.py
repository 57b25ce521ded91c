"""``run_many``: many pipelines over one session with bounded concurrency, a budget, progress and a journal.

Results come back in input order and one failure never kills the others. The session's rate limiter keeps
submissions under Kie.ai's 20-per-10-s limit however high the concurrency, and the journal makes a re-run
after a crash skip finished runs and resume waiting on already-submitted tasks instead of paying again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from kie_async.artifacts.staging import sweep_staging
from kie_async.catalogue.arguments import check_requests_arg
from kie_async.catalogue.model_data import preload_model_data
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest
from kie_async.client.base import KieSession
from kie_async.coordination.shared_journal import ClaimResult, SharedJournal
from kie_async.core.errors import KieError, KieInputError
from kie_async.core.limits import check_run_many_args
from kie_async.core.threads import run_file_io
from kie_async.ledger.budget import BudgetSnapshot, CreditBudget
from kie_async.ledger.journal import (
    BatchJournal,
    JournalEntry,
    JournalRecord,
    append_adoption,
    parse_correlation_token,
    raw_request_key,
    request_key,
)
from kie_async.ledger.request_state import Money, RequestState, facts
from kie_async.pipeline.run import (
    PipelineHooks,
    PipelineOptions,
    RunOutput,
    RunResult,
    StageOutcome,
    outputs_intact,
    parent_run_ids_of,
    run_pipeline,
)
from kie_async.pipeline.run_models import ConfirmCallback, RunResults

log = logging.getLogger("kie_async.pipeline.fanout")

ItemPhase = Literal["queued", "preparing", "submitted", "generating", "downloading", "done", "failed", "skipped"]
_SKIPPED_STATES = frozenset({RequestState.SUCCEEDED, RequestState.FAILED})


class BatchProgress(BaseModel):
    """A snapshot handed to ``on_progress`` after every change."""

    model_config = ConfigDict(frozen=True)

    total: int
    queued: int
    preparing: int
    submitted: int
    generating: int
    downloading: int
    done: int
    failed: int
    skipped: int
    credits_spent: float
    budget: BudgetSnapshot
    index: int | None = None
    phase: ItemPhase | None = None

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped


ProgressCallback = Callable[[BatchProgress], Awaitable[None] | None]
ResultCallback = Callable[[int, RunResult], Awaitable[None] | None]
"""Called with (input index, result) as each request ends, in the order they end."""

_STAGE_PHASE: dict[str, ItemPhase] = {
    "prepare": "preparing",
    "submit": "submitted",
    "wait": "generating",
    "download": "downloading",
}


class _Tracker:
    def __init__(self, total: int, budget: CreditBudget, callback: ProgressCallback | None) -> None:
        self.phases: list[ItemPhase] = ["queued"] * total
        self.budget = budget
        self.callback = callback

    async def set(self, index: int, phase: ItemPhase) -> None:
        self.phases[index] = phase
        await self.emit(index)

    async def emit(self, index: int | None = None) -> None:
        if self.callback is None:
            return
        count = {p: self.phases.count(p) for p in set(self.phases)}
        snap = self.budget.snapshot()
        progress = BatchProgress(
            total=len(self.phases),
            queued=count.get("queued", 0),
            preparing=count.get("preparing", 0),
            submitted=count.get("submitted", 0),
            generating=count.get("generating", 0),
            downloading=count.get("downloading", 0),
            done=count.get("done", 0),
            failed=count.get("failed", 0),
            skipped=count.get("skipped", 0),
            credits_spent=snap.spent,
            budget=snap,
            index=index,
            phase=self.phases[index] if index is not None else None,
        )
        result = self.callback(progress)
        if asyncio.iscoroutine(result):
            await result


def _from_journal(entry: JournalEntry, record: JournalRecord, model_key: str) -> RunResult:
    """A finished request's result, read back from the journal (nothing is sent)."""
    outputs = [
        RunOutput(source=Path(p), run_id=entry.run_id, url=u)
        for p, u in zip(record.outputs, record.output_urls + [None] * len(record.outputs), strict=False)
    ]
    status: Literal["succeeded", "failed"] = "succeeded" if record.state is RequestState.SUCCEEDED else "failed"
    return RunResult(
        status=status,
        state=record.state,
        model_key=record.model_key or model_key,
        request_key=record.key,
        task_id=record.task_id,
        run_id=entry.run_id,
        run_dir=record.run_dir,
        outputs=outputs,
        output_urls=record.output_urls,
        credits_estimated=record.credits_estimated,
        credits_charged=record.credits_charged,
        error=record.error,
        error_type=record.error_type,
        resumed=True,
    )


def _uncertain_result(entry: JournalEntry, model_key: str) -> RunResult:
    """An earlier createTask may have bought this: say exactly what to look for before buying it again."""
    intent = entry.intent
    when = intent.at.strftime("%Y-%m-%d %H:%M:%S UTC") if intent else "an earlier run"
    what = f"model {intent.provider_model or intent.model_key}" if intent else f"model {model_key}"
    if intent and intent.prompt:
        what += f", prompt {intent.prompt[:80]!r}"
    return RunResult(
        status="submit_uncertain",
        state=RequestState.UNCERTAIN,
        model_key=model_key,
        request_key=entry.key,
        error=(
            f"an earlier run may have bought this request (createTask sent around {when}, {what}; no answer was "
            "recorded). Check the Kie.ai dashboard logs for that task; re-run with resubmit_uncertain / "
            "--resubmit-uncertain only if it is not there"
        ),
        error_type="KieSubmissionUncertainError",
    )


def _still_running(
    entry: JournalEntry | None, model_key: str, key: str, holder: str | None, waited: float
) -> RunResult:
    """Another (live) process holds this request and showed no progress for the whole wait: report, don't grab."""
    state = entry.state if entry is not None else RequestState.PENDING
    return RunResult(
        status="incomplete" if facts(state).has_task else "failed",
        state=state,
        model_key=model_key,
        request_key=key,
        task_id=entry.task_id if entry is not None else None,
        error=f"still held by process {holder} with no progress for {waited:g}s; run the batch again to collect it",
        error_type="TimeoutError",
        resumed=True,
    )


async def _outputs_still_there(record: JournalRecord) -> bool:
    paths = [Path(p) for p in record.outputs]
    return await run_file_io(outputs_intact, paths, record.output_sha256, record.output_bytes)


def _normalize_and_key(request: RawUserRequest) -> tuple[NormalizedRequest, str, str]:
    normalized = normalize_request(request)
    return normalized, request_key(normalized), raw_request_key(request)


def _batch_keys(
    pairs: list[tuple[str, str]], journal: BatchJournal | SharedJournal | None
) -> tuple[list[str], list[str]]:
    """Journal keys in input order: identical requests get ``#2``, ``#3``…, and a request the journal knows by
    its written form (the specs changed since) keeps its old key, so it is resumed instead of bought again."""
    seen: dict[str, int] = {}
    keys: list[str] = []
    raw_keys: list[str] = []
    for base, raw in pairs:
        seen[base] = seen.get(base, 0) + 1
        suffix = "" if seen[base] == 1 else f"#{seen[base]}"
        key, raw_key = base + suffix, raw + suffix
        keys.append(journal.key_for(key, raw_key) if journal is not None else key)
        raw_keys.append(raw_key)
    return keys, raw_keys


def _known_cost(entry: JournalEntry) -> float:
    """What a request with a task id cost: the provider's figure if the journal has it, else the estimate."""
    for record in (entry.result, entry.last, entry.intent):
        if record is not None and record.credits_charged is not None:
            return record.credits_charged
    for record in (entry.last, entry.intent):
        if record is not None and record.credits_estimated is not None:
            return record.credits_estimated
    return 0.0


async def run_many(
    requests: Sequence[RawUserRequest],
    session: KieSession,
    *,
    concurrency: int = 8,
    budget_credits: float | None = None,
    on_progress: ProgressCallback | None = None,
    options: PipelineOptions | None = None,
    journal_path: str | Path | None = None,
    retry_failed: bool = False,
    resubmit_uncertain: bool = False,
    batch_id: str | None = None,
    progress: bool = False,
    confirm: ConfirmCallback | None = None,
    on_result: ResultCallback | None = None,
) -> RunResults:
    """Run every request; results in input order, each with its own status and state (``on_result`` hears of
    each as it ends: a log line per finished request).

    ``progress=True`` draws a progress bar (rich on stderr in a terminal, an HTML bar redrawn in place in a
    Jupyter notebook) besides any ``on_progress`` callback. The result is a list (:class:`RunResults`) that
    renders as a table in a notebook. ``confirm`` is asked (with the preflight result) for each request whose
    estimate reaches a confirmation threshold (``PreflightThresholds``); a request it does not confirm ends
    ``blocked`` and buys nothing.

    ``budget_credits`` caps the batch's total estimated spend (checked under a lock before each submit, then
    reconciled with what each task really cost). With ``journal_path`` (owned by this batch alone while it
    runs), a re-run skips finished requests (re-checking their files), resumes every paid one on its task id,
    and leaves "may have been bought" ones alone unless ``resubmit_uncertain``. ``retry_failed`` buys again
    only what the provider itself failed. See ``docs/batches-and-resuming.md`` for the state machine.

    With a shared coordinator (``KieSettings.coordination_url``), ``batch_id`` splits the batch over every
    process that runs it: the journal lives in the coordinator (not in a file), each request is claimed and
    run by one process at a time, a dead process's requests are taken over by the others, and every process
    returns the results of the whole batch (requests run elsewhere come back with ``resumed=True``).
    ``budget_credits`` is then one budget for the batch. A file journal and a shared one cannot both be the
    batch's memory: ``journal_path`` together with a shared ``batch_id`` is refused (``KieInputError``).
    """
    check_requests_arg(requests, call="run_many")  # one request, or dicts: one typed line, not an AttributeError
    check_run_many_args(concurrency, budget_credits)  # before the balance read: a NaN budget is no budget
    shared_batch = batch_id is not None and session.coordinator.kind != "local"
    if batch_id is not None and (not batch_id.strip() or len(batch_id) > 200 or not batch_id.isprintable()):
        raise KieInputError(f"batch_id {batch_id!r} is not usable", hint="give a short printable name, e.g. the file's")
    if shared_batch and journal_path is not None:
        raise KieInputError(
            f"journal_path {journal_path} and batch_id {batch_id!r} with a shared coordinator are two journals for "
            "one batch",
            hint="drop journal_path: the shared batch's journal lives in the coordinator (or drop batch_id)",
        )
    opts = options or PipelineOptions()
    if confirm is not None:
        opts = opts.model_copy(update={"confirm": confirm})
    await preload_model_data()
    shared: SharedJournal | None = None
    journal: BatchJournal | None = None
    if shared_batch:
        assert batch_id is not None
        shared = await session.coordinator.open_journal(
            batch_id, lease_seconds=session.settings.coordination_lease_seconds
        )
    elif journal_path is not None:
        journal = await BatchJournal.open(journal_path)
    bar = None
    if progress:
        from kie_async.pipeline.progress import BatchProgressBar

        bar = BatchProgressBar(len(requests))
        on_progress = _both(on_progress, bar)
    try:
        return RunResults(
            await _run_all(
                requests,
                session,
                journal,
                concurrency,
                budget_credits,
                on_progress,
                opts,
                retry_failed,
                resubmit_uncertain,
                batch_id,
                shared,
                on_result=on_result,
            )
        )
    finally:
        if bar is not None:
            bar.close()
        if journal is not None:
            await journal.close()  # a cancelled batch still leaves every started journal line on disk
        if shared is not None:
            await shared.close()


def _both(first: ProgressCallback | None, second: ProgressCallback) -> ProgressCallback:
    async def call(p: BatchProgress) -> None:
        for callback in (first, second):
            if callback is not None:
                result = callback(p)
                if asyncio.iscoroutine(result):
                    await result

    return call


class _Plan(BaseModel):
    """What a request needs this time: a fresh attempt, or a resume of the task the journal knows."""

    state: RequestState
    task_id: str | None = None
    run_id: str | None = None


async def _plan(
    entry: JournalEntry | None, model_key: str, *, retry_failed: bool, resubmit_uncertain: bool
) -> _Plan | RunResult:
    """Decide from the journal's state alone; only the provider's "fail" can ever lead to a second purchase."""
    if entry is None:
        return _Plan(state=RequestState.PENDING)
    state = entry.state
    if state is RequestState.SUCCEEDED and entry.result is not None:
        if await _outputs_still_there(entry.result):
            return _from_journal(entry, entry.result, model_key)
        return _Plan(state=state, task_id=entry.task_id, run_id=entry.run_id)  # lost files: fetch them again
    if state is RequestState.FAILED and entry.result is not None and not retry_failed:
        return _from_journal(entry, entry.result, model_key)
    if entry.uncertain and not resubmit_uncertain:
        return _uncertain_result(entry, model_key)
    if facts(state).resumable and entry.task_id is not None:
        return _Plan(state=state, task_id=entry.task_id, run_id=entry.run_id)
    return _Plan(state=state)


async def _run_all(
    requests: Sequence[RawUserRequest],
    session: KieSession,
    journal: BatchJournal | None,
    concurrency: int,
    budget_credits: float | None,
    on_progress: ProgressCallback | None,
    opts: PipelineOptions,
    retry_failed: bool,
    resubmit_uncertain: bool,
    batch_id: str | None,
    shared: SharedJournal | None = None,
    *,
    on_result: ResultCallback | None = None,
) -> list[RunResult]:
    if opts.write_artifact:
        swept = await asyncio.to_thread(sweep_staging, opts.artifacts.resolved_root().absolute())
        if swept.removed:
            log.info("removed %d staging folder(s) left by crashed runs", len(swept.removed))
    cap = budget_credits
    if opts.check_balance and opts.available_credits is None:
        balance = (await session.get_credits()).credits  # once for the batch, not once per item
        cap = balance if cap is None else min(cap, balance)
    elif opts.available_credits is not None:
        cap = opts.available_credits if cap is None else min(cap, opts.available_credits)
    # Normalizing and hashing (bytes media included) is CPU work: one worker-thread call for the whole batch
    # (1,000 separate hand-offs cost more than the work; the interpreter still switches to the loop every 5 ms).
    prepared = await asyncio.to_thread(lambda: [_normalize_and_key(r) for r in requests])
    normalized_all = [normalized for normalized, _, _ in prepared]
    keys, raw_keys = _batch_keys([(key, raw) for _, key, raw in prepared], shared or journal)
    # What earlier runs already bought counts against this run's budget from the start, and only once.
    prepaid = {
        k: _known_cost(e)
        for k in keys
        if journal and (e := journal.get(k)) and facts(e.state).money is not Money.NOTHING
    }
    if batch_id is not None and session.coordinator.kind != "local":
        # A shared batch budget lives in the coordinator and already holds what earlier runs spent.
        budget = session.coordinator.budget(cap, batch_id=batch_id)
    else:
        budget = CreditBudget(cap, already_spent=sum(prepaid.values()))
    # How long to wait on a request another process holds without seeing any progress on it: its longest run.
    wait = opts.wait_timeout if opts.wait_timeout is not None else session.settings.poll.timeout
    stall_timeout = wait + session.settings.download_timeout + session.settings.coordination_lease_seconds
    per_item = opts.model_copy(update={"check_balance": False, "available_credits": None})
    tracker = _Tracker(len(requests), budget, on_progress)
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int) -> RunResult:
        if shared is not None:
            return await shared_one(index)
        raw, key = requests[index], keys[index]
        entry = journal.get(key) if journal else None
        plan = await _plan(entry, raw.model_key, retry_failed=retry_failed, resubmit_uncertain=resubmit_uncertain)
        if isinstance(plan, RunResult):
            await tracker.set(index, "skipped" if plan.state in _SKIPPED_STATES else "failed")
            return plan
        async with slots:
            result = await execute(index, entry, plan)
        if key in prepaid and result.credits_charged is None:
            result = result.model_copy(update={"credits_charged": prepaid[key], "credits_estimated": prepaid[key]})
        await tracker.set(index, "done" if result.succeeded else "failed")
        return result

    async def execute(index: int, entry: JournalEntry | None, plan: _Plan) -> RunResult:
        """One pipeline run (the caller holds a slot); every expected failure becomes a result."""
        raw, key = requests[index], keys[index]

        def stage(outcome: StageOutcome) -> None:
            phase = _STAGE_PHASE.get(outcome.name)
            if phase is not None and outcome.status == "running":
                tracker.phases[index] = phase

        async def on_state(record: JournalRecord) -> None:
            if record.state is RequestState.SUBMITTING and not record.sending:
                record = record.model_copy(update={"raw_key": raw_keys[index]})
            if shared is not None:
                await shared.record(record)
            elif journal is not None:
                await journal.record(record)

        has_journal = shared is not None or journal is not None
        hooks = PipelineHooks(on_state=on_state if has_journal else None, on_stage=stage, on_late_adoption=adopt_late)
        await tracker.set(index, "preparing")
        try:
            return await run_pipeline(
                normalized_all[index],  # normalized once above (for the key); lineage passed explicitly
                session,
                parent_run_ids=parent_run_ids_of(raw),
                options=per_item,
                # A resumed task was paid for already: in `prepaid` here, or in the shared budget (a dead
                # holder's reservation counts as spent there).
                budget=budget if plan.task_id is None else None,
                hooks=hooks,
                resume_task_id=plan.task_id,
                request_key=key,
                prior_state=plan.state,
                run_id=plan.run_id,
            )
        except asyncio.CancelledError:
            raise
        except (KieError, ValueError, OSError) as exc:
            log.warning("request %d (%s) failed: %s", index, raw.model_key, exc)
            state = entry.state if entry is not None else RequestState.PENDING
            return RunResult(
                status="incomplete" if facts(state).has_task else "failed",
                state=state,
                model_key=raw.model_key,
                request_key=key,
                task_id=entry.task_id if entry is not None else None,
                error=str(exc),
                error_type=type(exc).__name__,
            )

    async def shared_one(index: int) -> RunResult:
        """Claim the request and run it, or wait for the process that holds it; take it over if that one dies."""
        assert shared is not None
        key = keys[index]
        seen: int | None = None
        while True:
            result: RunResult | None = None
            async with slots:  # claim only with a free slot, so requests spread over the processes
                claim = await shared.try_claim(key)
                if claim.claimed:
                    result = await run_claimed(index, claim)
            if result is not None:
                if result.resumed and result.state in _SKIPPED_STATES:
                    await tracker.set(index, "skipped")
                else:
                    await tracker.set(index, "done" if result.succeeded else "failed")
                return result
            if seen is None:
                seen = claim.seq  # from the refused claim itself: a run finishing after it is the holder's
            waited = await shared.wait_for_key(key, after_seq=seen, stall_timeout=stall_timeout)
            if waited.outcome is not None:
                await tracker.set(index, "skipped" if waited.outcome.state in _SKIPPED_STATES else "failed")
                return waited.outcome
            if waited.timed_out:
                await tracker.set(index, "failed")
                return _still_running(shared.get(key), requests[index].model_key, key, waited.holder, stall_timeout)

    async def run_claimed(index: int, claim: ClaimResult) -> RunResult | None:
        """The claimed request's run, its outcome stored for the others; None if another process took it over."""
        assert shared is not None
        raw, key, entry = requests[index], keys[index], claim.entry
        # A taker never buys again what its dead holder may have sent, whatever resubmit_uncertain says.
        resubmit = resubmit_uncertain and claim.closed is not RequestState.UNCERTAIN
        try:
            result: RunResult
            if entry is not None and entry.state is RequestState.SUCCEEDED and entry.result is not None and (
                entry.result.host not in (None, shared.host)
            ):
                result = _from_journal(entry, entry.result, raw.model_key)  # its files are on that machine
            else:
                plan = await _plan(entry, raw.model_key, retry_failed=retry_failed, resubmit_uncertain=resubmit)
                # Results read from the journal are not settled again: the shared budget counted them when paid.
                result = plan if isinstance(plan, RunResult) else await execute(index, entry, plan)
        except BaseException:
            await asyncio.shield(shared.release(key))  # a cancel: the others may take it now
            raise
        if not await shared.finish(key, result):
            log.warning("request %d (%s): another process took it over; waiting for its result", index, key)
            return None
        return result

    async def adopt_late(token: str, task_id: str) -> None:
        """A verified callback named the task of an attempt whose answer was lost: record it (never rebuy).

        Appended by path, so it lands whether or not this batch still owns the journal.
        """
        key, attempt = parse_correlation_token(token)
        if shared is not None:
            await shared.adopt(key, attempt, task_id)
        elif journal is not None:
            await append_adoption(journal.path, key, attempt, task_id)
    await tracker.emit()
    # return_exceptions=True: on a cancel (Ctrl-C) gather waits for every run to finish its own cleanup (an
    # answer already on its way, a journal line) instead of returning when the first run is cancelled, which
    # would close the session under the others.
    async def reported(index: int) -> RunResult:
        result = await one(index)
        told = on_result(index, result) if on_result is not None else None
        if told is not None:
            await told
        return result

    outcomes = await asyncio.gather(*(reported(i) for i in range(len(requests))), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # one() turns every expected failure into a result: this is a bug, not a run's error
    return [o for o in outcomes if isinstance(o, RunResult)]
