"""``run_many``: many pipelines over one session with bounded concurrency, a budget, progress and a journal.

Results come back in input order and one failure never kills the others. The session's rate limiter keeps
submissions under Kie.ai's 20-per-10-s limit however high the concurrency, and the journal makes a re-run
after a crash skip finished runs and resume waiting on already-submitted tasks instead of paying again.

The steps of a batch are here; what its requests share and one request's run are in
:mod:`kie_async.pipeline.batch`, and the two journal kinds (a file, or the coordinator's journal shared by every
process on the batch) in :mod:`kie_async.pipeline.batch_file` and :mod:`kie_async.pipeline.batch_shared`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

from kie_async.artifacts.staging import sweep_staging
from kie_async.catalogue.arguments import check_requests_arg
from kie_async.catalogue.model_data import preload_model_data
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import NormalizedRequest
from kie_async.client import BaseSession
from kie_async.core import telemetry
from kie_async.core.errors import KieInputError, attach_paid_task, paid_task_id
from kie_async.core.limits import check_run_many_args
from kie_async.ledger.budget import CreditBudget
from kie_async.ledger.journal import BatchJournal, raw_request_key, request_key
from kie_async.pipeline.batch import Batch, JournalStrategy
from kie_async.pipeline.batch_chat import check_chat_requests
from kie_async.pipeline.batch_file import FileJournalStrategy
from kie_async.pipeline.batch_progress import BatchProgress, BatchTracker, ItemPhase, ProgressCallback, both
from kie_async.pipeline.batch_shared import SharedJournalStrategy
from kie_async.pipeline.chat_request import BatchRequest, ChatRequest, chat_request_key
from kie_async.pipeline.run_models import ConfirmCallback, PipelineOptions, RunResult, RunResults

__all__ = ["BatchProgress", "ItemPhase", "ProgressCallback", "run_many"]

log = logging.getLogger("kie_async.pipeline.fanout")


ResultCallback = Callable[[int, RunResult], Awaitable[None] | None]
"""Called with (input index, result) as each request ends, in the order they end."""


async def run_many(
    requests: Sequence[BatchRequest],
    session: BaseSession,
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
    check_requests_arg(requests, call="run_many", also=(ChatRequest,))  # dicts: one typed line, not AttributeError
    check_run_many_args(concurrency, budget_credits)  # before the balance read: a NaN budget is no budget
    shared_id = batch_id if batch_id is not None and session.coordinator.kind != "local" else None
    _check_batch_id(batch_id, journal_path, shared=shared_id is not None)
    _check_chat_not_shared(requests, shared=shared_id is not None)
    await check_chat_requests(requests)  # an unknown chat model or option stops the batch before anything is sent
    opts = options or PipelineOptions()
    if confirm is not None:
        opts = opts.model_copy(update={"confirm": confirm})
    await preload_model_data()
    journal = await _open_journal(session, opts, shared_id, journal_path)
    bar = None
    if progress:
        from kie_async.pipeline.progress import BatchProgressBar  # rich: loaded only when a bar is drawn

        bar = BatchProgressBar(len(requests))
        on_progress = both(on_progress, bar)
    attributes = _batch_attributes(len(requests), concurrency, budget_credits, shared=shared_id is not None)
    try:
        with telemetry.span("kie.batch", attributes) as span:
            batch = await _start(
                requests,
                session,
                journal,
                opts,
                budget_credits=budget_credits,
                shared_id=shared_id,
                concurrency=concurrency,
                on_progress=on_progress,
                retry_failed=retry_failed,
                resubmit_uncertain=resubmit_uncertain,
            )
            runs = (_reported(journal.run_one(batch, i), i, on_result) for i in range(len(requests)))
            results = RunResults(batch.tracker.annotate(await _in_order(runs)))
            _record_outcome(span, results)
            return results
    finally:
        if bar is not None:
            bar.close()
        await journal.close()


def _batch_attributes(size: int, concurrency: int, budget_credits: float | None, *, shared: bool) -> dict[str, object]:
    """The ``kie.batch`` span's attributes: what the batch was asked to do."""
    return {
        "kie.batch.size": size,
        "kie.batch.concurrency": concurrency,
        "kie.batch.budget": budget_credits,
        "kie.batch.shared": shared,
    }


def _record_outcome(span: telemetry.Span, results: RunResults) -> None:
    """What the batch came to, on its span: how many succeeded and the credits charged (and not known)."""
    span.set_all(
        {
            "kie.batch.succeeded": len(results.succeeded),
            "kie.credits.charged": results.credits_charged,
            "kie.credits.unknown": results.credits_unknown,
        }
    )


def _check_batch_id(batch_id: str | None, journal_path: str | Path | None, *, shared: bool) -> None:
    if batch_id is not None and (not batch_id.strip() or len(batch_id) > 200 or not batch_id.isprintable()):
        raise KieInputError(f"batch_id {batch_id!r} is not usable", hint="give a short printable name, e.g. the file's")
    if shared and journal_path is not None:
        raise KieInputError(
            f"journal_path {journal_path} and batch_id {batch_id!r} with a shared coordinator are two journals for "
            "one batch",
            hint="drop journal_path: the shared batch's journal lives in the coordinator (or drop batch_id)",
        )


def _check_chat_not_shared(requests: Sequence[BatchRequest], *, shared: bool) -> None:
    if shared and any(isinstance(r, ChatRequest) for r in requests):
        raise KieInputError(
            "chat calls cannot run in a batch shared over processes yet (its journal keeps no chat answers)",
            hint="run the chat calls in a batch of this process (a file journal), or drop batch_id",
        )


async def _open_journal(
    session: BaseSession, opts: PipelineOptions, shared_id: str | None, journal_path: str | Path | None
) -> JournalStrategy:
    """The batch's memory: the coordinator's shared journal, else the file at ``journal_path``, else none."""
    settings = session.settings
    if shared_id is not None:
        shared = await session.coordinator.open_journal(shared_id, lease_seconds=settings.coordination_lease_seconds)
        if shared is not None:
            # How long to wait on a request another process holds without seeing any progress: its longest run.
            wait = opts.wait_timeout if opts.wait_timeout is not None else settings.poll.timeout
            stall = wait + settings.download_timeout + settings.coordination_lease_seconds
            return SharedJournalStrategy(shared, stall_timeout=stall)
        return FileJournalStrategy(None)
    return FileJournalStrategy(await BatchJournal.open(journal_path) if journal_path is not None else None)


async def _start(
    requests: Sequence[BatchRequest],
    session: BaseSession,
    journal: JournalStrategy,
    opts: PipelineOptions,
    *,
    budget_credits: float | None,
    shared_id: str | None,
    concurrency: int,
    on_progress: ProgressCallback | None,
    retry_failed: bool,
    resubmit_uncertain: bool,
) -> Batch:
    """Everything the batch's requests share, ready to run: keys, the budget (with what was bought before)."""
    await _sweep_staging(opts)
    cap = await _credit_cap(session, opts, budget_credits)
    normalized, keys, raw_keys = await _batch_keys(requests, journal)
    prepaid = journal.prepaid(keys)
    if shared_id is not None:
        # A shared batch budget lives in the coordinator and already holds what earlier runs spent.
        budget = session.coordinator.budget(cap, batch_id=shared_id)
    else:
        budget = CreditBudget(cap, already_spent=sum(prepaid.values()))
    budget.spending_limit = budget_credits is not None  # else the cap is the balance, which the provider enforces
    tracker = BatchTracker(len(requests), budget, on_progress)
    batch = Batch(
        session=session,
        requests=requests,
        normalized=normalized,
        keys=keys,
        raw_keys=raw_keys,
        prepaid=prepaid,
        budget=budget,
        tracker=tracker,
        slots=asyncio.Semaphore(concurrency),
        options=opts.model_copy(update={"check_balance": False, "available_credits": None}),
        retry_failed=retry_failed,
        resubmit_uncertain=resubmit_uncertain,
    )
    await tracker.emit()
    return batch


async def _sweep_staging(opts: PipelineOptions) -> None:
    if opts.write_artifact:
        swept = await asyncio.to_thread(sweep_staging, opts.artifacts.resolved_root().absolute())
        if swept.removed:
            log.info("removed %d staging folder(s) left by crashed runs", len(swept.removed))


async def _credit_cap(session: BaseSession, opts: PipelineOptions, budget_credits: float | None) -> float | None:
    """The batch's spending cap: its budget, and the account's balance (read once for the batch, not per item)."""
    cap = budget_credits
    if opts.check_balance and opts.available_credits is None:
        balance = (await session.get_credits()).credits
        cap = balance if cap is None else min(cap, balance)
    elif opts.available_credits is not None:
        cap = opts.available_credits if cap is None else min(cap, opts.available_credits)
    return cap


async def _batch_keys(
    requests: Sequence[BatchRequest], journal: JournalStrategy
) -> tuple[list[NormalizedRequest | None], list[str], list[str]]:
    """Every request normalized, and its journal keys in input order: identical requests get ``#2``, ``#3``…, and
    a request the journal knows by its written form (the specs changed since) keeps its old key, so it is resumed
    instead of bought again."""
    # Normalizing and hashing (bytes media included) is CPU work: one worker-thread call for the whole batch
    # (1,000 separate hand-offs cost more than the work; the interpreter still switches to the loop every 5 ms).
    prepared = await asyncio.to_thread(lambda: [_normalize_and_key(r) for r in requests])
    seen: dict[str, int] = {}
    keys: list[str] = []
    raw_keys: list[str] = []
    for _, base, raw in prepared:
        seen[base] = seen.get(base, 0) + 1
        suffix = "" if seen[base] == 1 else f"#{seen[base]}"
        keys.append(journal.key_for(base + suffix, raw + suffix))
        raw_keys.append(raw + suffix)
    return [normalized for normalized, _, _ in prepared], keys, raw_keys


def _normalize_and_key(request: BatchRequest) -> tuple[NormalizedRequest | None, str, str]:
    if isinstance(request, ChatRequest):
        key = chat_request_key(request)  # a chat call is keyed as written: nothing to normalize
        return None, key, key
    normalized = normalize_request(request)
    return normalized, request_key(normalized), raw_request_key(request)


async def _reported(run: Awaitable[RunResult], index: int, on_result: ResultCallback | None) -> RunResult:
    """The run's result, told to ``on_result`` as it ends; a callback that fails is logged and costs nothing."""
    result = await run
    if on_result is not None:
        try:
            told = on_result(index, result)
            if told is not None:
                await told
        except Exception:
            log.exception("on_result failed for request %d; the batch goes on and keeps the result", index)
    return result


async def _in_order(runs: Iterable[Awaitable[RunResult]]) -> list[RunResult]:
    """Every run's result in input order.

    ``return_exceptions=True``: on a cancel (Ctrl-C) gather waits for every run to finish its own cleanup (an
    answer already on its way, a journal line) instead of returning when the first run is cancelled, which
    would close the session under the others.
    """
    paid: list[str] = []

    async def noting(run: Awaitable[RunResult]) -> RunResult:
        try:
            return await run
        except BaseException as exc:
            if (task_id := paid_task_id(exc)) is not None:
                paid.append(task_id)
            raise

    try:
        outcomes = await asyncio.gather(*(noting(run) for run in runs), return_exceptions=True)
    except asyncio.CancelledError as exc:
        if paid:  # the caller learns what the batch had bought: the same call again resumes those tasks
            exc.task_ids = list(paid)  # type: ignore[attr-defined]
            attach_paid_task(exc, paid[0], f"the same run_many call resumes them (tasks {', '.join(paid)})")
        raise
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # a run turns every expected failure into a result: this is a bug, not a run's error
    return [o for o in outcomes if isinstance(o, RunResult)]
