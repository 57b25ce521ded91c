"""One ``run_many`` batch: what its requests share, how it remembers them, and one request's pipeline run.

The batch's memory is a :class:`JournalStrategy`, one per journal kind: a file journal owned by this process (or
none), in :mod:`kie_async.pipeline.batch_file`, or the journal shared by every process on the batch (the
coordinator's), in :mod:`kie_async.pipeline.batch_shared`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest
from kie_async.client import BaseSession
from kie_async.core import telemetry
from kie_async.core.errors import KieError
from kie_async.ledger.budget import CreditBudget
from kie_async.ledger.journal import JournalEntry, JournalRecord
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.batch_plan import Plan, run_failed
from kie_async.pipeline.batch_progress import BatchTracker
from kie_async.pipeline.chat_request import BatchRequest
from kie_async.pipeline.run import parent_run_ids_of, run_pipeline
from kie_async.pipeline.run_models import PipelineHooks, PipelineOptions, RunResult

log = logging.getLogger("kie_async.pipeline.fanout")


@dataclass(frozen=True)
class Batch:
    """What every request of one ``run_many`` call shares; request ``i`` is ``requests[i]``, ``keys[i]``…"""

    session: BaseSession
    requests: Sequence[BatchRequest]
    normalized: list[NormalizedRequest | None]
    """Each media request normalized (None for a chat call: :mod:`kie_async.pipeline.batch_chat` runs those)."""
    keys: list[str]
    raw_keys: list[str]
    prepaid: dict[str, float]
    """What earlier runs already bought, by key (a file journal's; counted once, in the budget)."""
    budget: CreditBudget
    tracker: BatchTracker
    slots: asyncio.Semaphore
    options: PipelineOptions
    """Each run's options (the balance was read once for the batch)."""
    retry_failed: bool
    resubmit_uncertain: bool

    def media(self, index: int) -> tuple[RawUserRequest, NormalizedRequest]:
        """Request ``index`` as a media request and its normalized form (a chat call is not one)."""
        raw, normalized = self.requests[index], self.normalized[index]
        if not isinstance(raw, RawUserRequest) or normalized is None:
            raise TypeError(f"request {index} is a chat call, not a media request")
        return raw, normalized


class JournalStrategy(Protocol):
    """How a batch remembers its requests, and runs each one with that memory."""

    journaled: bool
    """False when nothing is recorded (no journal at all): the runs get no ``on_state`` hook."""

    def key_for(self, key: str, raw_key: str) -> str:
        """The journal's key for a request: its spec key, else the key its written form was journaled under."""
        ...

    def prepaid(self, keys: Sequence[str]) -> dict[str, float]:
        """What the journal says earlier runs already bought, by key."""
        ...

    async def run_one(self, batch: Batch, index: int) -> RunResult:
        """Request ``index``'s result; every expected failure becomes a result."""
        ...

    async def record(self, record: JournalRecord) -> None:
        """A state change of a request this process runs."""
        ...

    async def adopt_late(self, token: str, task_id: str) -> None:
        """A verified callback named the task of an attempt whose answer was lost: record it (never rebuy)."""
        ...

    async def close(self) -> None: ...


async def execute(
    batch: Batch, index: int, entry: JournalEntry | None, plan: Plan, journal: JournalStrategy
) -> RunResult:
    """One pipeline run (the caller holds a slot); every expected failure becomes a result."""
    (raw, normalized), key = batch.media(index), batch.keys[index]
    hooks = PipelineHooks(
        on_state=_state_hook(batch, index, journal) if journal.journaled else None,
        on_stage=batch.tracker.stage_hook(index),
        on_late_adoption=journal.adopt_late,
        journal_scope=getattr(journal, "scope", None),
    )
    await batch.tracker.set(index, "preparing")
    telemetry.adjust("kie.batch.in_flight", 1)
    try:
        return await run_pipeline(
            normalized,  # normalized once for the batch (for the key); lineage passed explicitly
            batch.session,
            parent_run_ids=parent_run_ids_of(raw),
            options=batch.options,
            # A resumed task was paid for already: in `prepaid` here, or in the shared budget (a dead
            # holder's reservation counts as spent there).
            budget=batch.budget if plan.task_id is None else None,
            hooks=hooks,
            resume_task_id=plan.task_id,
            request_key=key,
            prior_state=plan.state,
            run_id=plan.run_id,
            resubmit_uncertain=batch.resubmit_uncertain,  # the ledger holds the same maybe-bought attempt
        )
    except asyncio.CancelledError:
        raise
    except (KieError, ValueError, OSError) as exc:
        log.warning("request %d (%s) failed: %s", index, raw.model_key, exc)
        return run_failed(entry, raw.model_key, key, exc)
    finally:
        telemetry.adjust("kie.batch.in_flight", -1)


def _state_hook(batch: Batch, index: int, journal: JournalStrategy) -> Callable[[JournalRecord], Awaitable[None]]:
    """The pipeline's ``on_state`` for request ``index``: its intent carries the request's written-form key."""

    async def on_state(record: JournalRecord) -> None:
        if record.state is RequestState.SUBMITTING and not record.sending:
            record = record.model_copy(update={"raw_key": batch.raw_keys[index]})
        await journal.record(record)

    return on_state
