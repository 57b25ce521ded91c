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

from kie_async._limits import check_run_many_args
from kie_async.budget import BudgetSnapshot, CreditBudget
from kie_async.errors import KieError
from kie_async.journal import BatchJournal, JournalRecord, request_key
from kie_async.model_data import preload_model_data
from kie_async.normalize import normalize_request
from kie_async.pipeline import (
    PipelineHooks,
    PipelineOptions,
    RunOutput,
    RunResult,
    StageOutcome,
    parent_run_ids_of,
    run_pipeline,
)
from kie_async.request_models import NormalizedRequest, RawUserRequest
from kie_async.session import KieSession

log = logging.getLogger("kie_async.fanout")

ItemPhase = Literal["queued", "preparing", "submitted", "generating", "downloading", "done", "failed", "skipped"]
_RESUMABLE_DONE = frozenset({"succeeded", "failed"})


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


def _from_journal(record: JournalRecord, model_key: str) -> RunResult:
    outputs = [
        RunOutput(source=Path(p), run_id=record.run_id, url=u)
        for p, u in zip(record.outputs, record.output_urls + [None] * len(record.outputs), strict=False)
    ]
    status: Literal["succeeded", "failed"] = "succeeded" if record.status == "succeeded" else "failed"
    return RunResult(
        status=status,
        model_key=record.model_key or model_key,
        request_key=record.key,
        task_id=record.task_id,
        run_id=record.run_id,
        run_dir=record.run_dir,
        outputs=outputs,
        output_urls=record.output_urls,
        credits_estimated=record.credits_estimated,
        credits_charged=record.credits_charged,
        error=record.error,
        resumed=True,
    )


def _normalize_and_key(request: RawUserRequest) -> tuple[NormalizedRequest, str]:
    normalized = normalize_request(request)
    return normalized, request_key(normalized)


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
) -> list[RunResult]:
    """Run every request; results in input order, each with its own status.

    ``budget_credits`` caps the batch's total estimated spend (checked under a lock before each submit, then
    reconciled with what each task really cost). With ``journal_path``, a re-run skips finished keys, resumes
    waiting on submitted ones, and leaves "may have been submitted" ones alone unless ``resubmit_uncertain``.
    """
    check_run_many_args(concurrency, budget_credits)  # before the balance read: a NaN budget is no budget
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    opts = options or PipelineOptions()
    await preload_model_data()
    journal = await BatchJournal.open(journal_path) if journal_path is not None else None
    cap = budget_credits
    if opts.check_balance and opts.available_credits is None:
        balance = (await session.get_credits()).credits  # once for the batch, not once per item
        cap = balance if cap is None else min(cap, balance)
    elif opts.available_credits is not None:
        cap = opts.available_credits if cap is None else min(cap, opts.available_credits)
    budget = CreditBudget(cap)
    per_item = opts.model_copy(update={"check_balance": False, "available_credits": None})
    tracker = _Tracker(len(requests), budget, on_progress)
    slots = asyncio.Semaphore(concurrency)
    seen: dict[str, int] = {}
    keys: list[str] = []
    # Normalizing and hashing (bytes media included) is CPU work: do it in worker threads, not on the loop.
    prepared = await asyncio.gather(*(asyncio.to_thread(_normalize_and_key, r) for r in requests))
    normalized_all = [normalized for normalized, _ in prepared]
    for _, base in prepared:
        seen[base] = seen.get(base, 0) + 1
        keys.append(base if seen[base] == 1 else f"{base}#{seen[base]}")  # identical requests stay distinct

    async def one(index: int) -> RunResult:
        raw, key = requests[index], keys[index]
        entry = journal.get(key) if journal else None
        done = entry.finished if entry is not None else None
        if done is not None and done.status in _RESUMABLE_DONE and (done.status == "succeeded" or not retry_failed):
            await budget.settle(0.0, done.credits_charged)
            await tracker.set(index, "skipped")
            return _from_journal(done, raw.model_key)
        resume_task = entry.task_id if entry is not None and entry.finished is None else None
        if entry is not None and entry.uncertain and not resubmit_uncertain:
            await tracker.set(index, "failed")
            return RunResult(
                status="submit_uncertain",
                model_key=raw.model_key,
                request_key=key,
                error="an earlier run may have submitted this request (no task id was recorded); not resubmitting",
                error_type="KieSubmissionUncertainError",
            )

        async def submitting(estimate: float | None) -> None:
            if journal is not None:
                await journal.write(
                    JournalRecord(key=key, event="submitting", model_key=raw.model_key, credits_estimated=estimate)
                )

        async def submitted(task_id: str, estimate: float | None) -> None:
            if journal is not None:
                # Once a task id exists it must reach the journal even if the batch is cancelled (write shields).
                record = JournalRecord(
                    key=key, event="submitted", model_key=raw.model_key, task_id=task_id, credits_estimated=estimate
                )
                await journal.write(record)

        def stage(outcome: StageOutcome) -> None:
            phase = _STAGE_PHASE.get(outcome.name)
            if phase is not None and outcome.status == "running":
                tracker.phases[index] = phase

        hooks = PipelineHooks(on_submitting=submitting, on_submitted=submitted, on_stage=stage)
        async with slots:
            await tracker.set(index, "preparing")
            try:
                result = await run_pipeline(
                    normalized_all[index],  # normalized once above (for the key); lineage passed explicitly
                    session,
                    parent_run_ids=parent_run_ids_of(raw),
                    options=per_item,
                    budget=budget,
                    hooks=hooks,
                    resume_task_id=resume_task,
                    request_key=key,
                )
            except asyncio.CancelledError:
                raise
            except (KieError, ValueError, OSError) as exc:
                log.warning("request %d (%s) failed before submit: %s", index, raw.model_key, exc)
                result = RunResult(
                    status="failed",
                    model_key=raw.model_key,
                    request_key=key,
                    error=str(exc),
                    error_type=type(exc).__name__,
                )
        if journal is not None and result.task_id is not None and result.status in _RESUMABLE_DONE:
            await journal.write(
                JournalRecord(
                    key=key,
                    event="finished",
                    model_key=result.model_key,
                    task_id=result.task_id,
                    status=result.status,
                    run_id=result.run_id,
                    run_dir=result.run_dir,
                    outputs=[str(o.path) for o in result.outputs],
                    output_urls=result.output_urls,
                    credits_estimated=result.credits_estimated,
                    credits_charged=result.credits_charged,
                    error=result.error,
                )
            )
        await tracker.set(index, "done" if result.succeeded else "failed")
        return result

    await tracker.emit()
    try:
        return list(await asyncio.gather(*(one(i) for i in range(len(requests)))))
    finally:
        if journal is not None:
            await journal.drain()  # a cancelled batch still leaves every started journal line on disk
