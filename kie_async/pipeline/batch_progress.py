"""A batch's progress: the :class:`BatchProgress` snapshot ``run_many`` hands to ``on_progress``, and its tracker.

No drawing here (and no rich): the bar that draws these snapshots is :mod:`kie_async.pipeline.progress`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from kie_async.ledger.budget import BudgetSnapshot, CreditBudget
from kie_async.pipeline.run_models import RunResult, StageOutcome

log = logging.getLogger("kie_async.pipeline.fanout")

ItemPhase = Literal["queued", "preparing", "submitted", "generating", "downloading", "done", "failed", "skipped"]


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


class BatchTracker:
    """Every request's phase; each change is reported to the callback as a :class:`BatchProgress`."""

    def __init__(self, total: int, budget: CreditBudget, callback: ProgressCallback | None) -> None:
        self.phases: list[ItemPhase] = ["queued"] * total
        self.budget = budget
        self.callback = callback
        self.callback_errors = 0
        self.first_callback_error: str | None = None

    async def set(self, index: int, phase: ItemPhase) -> None:
        self.phases[index] = phase
        await self.emit(index)

    def stage_hook(self, index: int) -> Callable[[StageOutcome], None]:
        """The pipeline's ``on_stage`` for request ``index``: a starting stage moves its phase (reported later)."""

        def stage(outcome: StageOutcome) -> None:
            phase = _STAGE_PHASE.get(outcome.name)
            if phase is not None and outcome.status == "running":
                self.phases[index] = phase

        return stage

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
        try:
            result = self.callback(progress)
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:
            # The caller's progress display is not worth a result: report it (once in the log, on every result).
            self.callback_errors += 1
            if self.first_callback_error is None:
                self.first_callback_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "on_progress raised %s (the batch goes on; later failures are counted)",
                    self.first_callback_error,
                    exc_info=True,
                )

    def annotate(self, results: list[RunResult]) -> list[RunResult]:
        """Every result, with a warning naming a failing ``on_progress`` (the batch ran on regardless)."""
        if not self.callback_errors:
            return results
        note = f"on_progress raised {self.callback_errors} time(s), first {self.first_callback_error}"
        return [r.model_copy(update={"warnings": [*r.warnings, note]}) for r in results]


def both(first: ProgressCallback | None, second: ProgressCallback) -> ProgressCallback:
    """One callback that calls ``first`` (if any), then ``second``."""

    async def call(p: BatchProgress) -> None:
        try:
            if first is not None:
                result = first(p)
                if asyncio.iscoroutine(result):
                    await result
        finally:  # the caller's callback failing (reported by the tracker) does not freeze the bar
            drawn = second(p)
            if asyncio.iscoroutine(drawn):
                await drawn

    return call
