"""What one pipeline run carries between its steps: stage timing, the request's ledger, the result in the making.

Private by convention: ``run_pipeline`` and its step modules (``purchase``, ``collect``) share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kie_async.client import BaseSession
from kie_async.core import telemetry
from kie_async.ledger.journal import JournalRecord
from kie_async.ledger.request_state import RequestState, can_move, check_move
from kie_async.pipeline.run_models import (
    PipelineHooks,
    PipelineOptions,
    PipelineStatus,
    RunResult,
    StageName,
    StageOutcome,
    StageStatus,
)

log = logging.getLogger("kie_async.pipeline.run")


class StageRecorder:
    """Times stages and collects their outcomes."""

    def __init__(self, hooks: PipelineHooks | None) -> None:
        self.stages: list[StageOutcome] = []
        self.warnings: list[str] = []
        self._on_stage = hooks.on_stage if hooks else None

    def add(self, name: StageName, status: StageStatus, started: float, detail: str | None = None) -> None:
        outcome = StageOutcome(name=name, status=status, seconds=round(time.perf_counter() - started, 4), detail=detail)
        self.stages.append(outcome)
        telemetry.record("kie.stage.duration", outcome.seconds, _stage_attributes(name, status))
        self._report(outcome)

    def _report(self, outcome: StageOutcome) -> None:
        """The caller's ``on_stage``: a failure is logged and noted on the result, never the run's own."""
        if self._on_stage is None:
            return
        try:
            self._on_stage(outcome)
        except Exception as exc:
            if not self.warnings:
                log.warning("the on_stage hook raised %s: %s (the run goes on)", type(exc).__name__, exc, exc_info=True)
            self.warnings.append(f"on_stage raised {type(exc).__name__}: {exc} ({outcome.name} {outcome.status})")

    @contextlib.asynccontextmanager
    async def stage(self, name: StageName) -> AsyncIterator[None]:
        started = time.perf_counter()
        self._report(StageOutcome(name=name, status="running", seconds=0.0))
        with telemetry.span(f"kie.stage {name}", {"kie.stage": name}):
            try:
                yield
            except asyncio.CancelledError:
                self.add(name, "cancelled", started)
                raise
            except BaseException as exc:
                self.add(name, "failed", started, f"{type(exc).__name__}: {exc}")
                raise
            self.add(name, "ok", started)


@functools.cache
def _stage_attributes(name: StageName, status: StageStatus) -> telemetry.Attributes:
    """A stage metric's attributes, built once per (stage, status): nine stages a run, every run."""
    return telemetry.attributes({"kie.stage": name, "kie.stage.status": status})


class RequestLedger:
    """The request's place in the state machine; every move is checked and reported to ``hooks.on_state``."""

    def __init__(self, key: str, model_key: str, hooks: PipelineHooks | None, state: RequestState) -> None:
        self.key = key
        self.model_key = model_key
        self.state = state
        self._on_state = hooks.on_state if hooks else None
        self.scope = hooks.journal_scope if hooks else None

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
        except Exception as exc:
            # After the wire the run goes on (the result keeps the task id); the journal still holds the
            # intent, which a re-run reads as uncertain: it will not buy again, and the log says why. Any
            # exception, not only a full disk: a record that cannot be written (a lone surrogate) is no reason
            # to lose the task.
            log.error(
                "journal: could not record %s for %s (%s: %s); the result still carries it",
                state.value,
                self.key,
                type(exc).__name__,
                exc,
            )

    async def mark_sending(self, attempt: str) -> None:
        """The request goes out now: the journal's proof-of-not-sent marker (see :mod:`kie_async.ledger.journal`)."""
        if self._on_state is not None:
            await self._on_state(
                JournalRecord(key=self.key, state=RequestState.SUBMITTING, attempt=attempt, sending=True)
            )

    def block(self) -> None:
        """Stopped before the wire: only a request with nothing at stake becomes ``blocked`` (not journaled)."""
        if can_move(self.state, RequestState.BLOCKED):
            self.state = RequestState.BLOCKED


class RunContext:
    """What one pipeline run carries between its steps."""

    def __init__(
        self,
        opts: PipelineOptions,
        session: BaseSession,
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
        self.rec = StageRecorder(hooks)
        self.parents = list(parent_run_ids or [])
        start = prior_state or (RequestState.SUBMITTED if resume_task_id else RequestState.PENDING)
        self.ledger = RequestLedger(request_key or "", model_key, hooks, start)
        self.base: dict[str, Any] = {"model_key": model_key, "request_key": request_key}
        self.submitted_at = datetime.now(UTC)
        self.submitted_here = False  # True once this run sent createTask itself (not a resumed task)
        self.warnings: list[str] = []

    async def call_hook(self, name: str, hook: Callable[..., Awaitable[None]] | None, *args: Any) -> None:
        """A user hook after the purchase: its failure is reported (log and result warnings), never the run's."""
        if hook is None:
            return
        try:
            await hook(*args)
        except Exception as exc:
            self.warnings.append(f"{name} raised {type(exc).__name__}: {exc}")
            log.warning("the %s hook raised %s: %s (the run goes on)", name, type(exc).__name__, exc, exc_info=True)

    def result(self, status: PipelineStatus, **fields: Any) -> RunResult:
        merged = {**self.base, **fields, "parent_run_ids": self.parents, "stages": self.rec.stages}
        if self.warnings or self.rec.warnings:
            merged["warnings"] = [*merged.get("warnings", []), *self.warnings, *self.rec.warnings]
        return RunResult(status=status, state=self.ledger.state, **merged)

    def stopped(self, status: PipelineStatus, why: str, error_type: str) -> RunResult:
        """The last stage blocked: nothing was sent."""
        self.rec.stages[-1] = self.rec.stages[-1].model_copy(update={"status": "blocked", "detail": why})
        self.ledger.block()
        return self.result(status, error=why, error_type=error_type)
