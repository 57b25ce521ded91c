"""A batch split over processes: its journal is the coordinator's (:class:`SharedJournal`), shared by all of them.

Each request is claimed and run by one process at a time; the others wait for its outcome, and take it over if
its holder dies. The journal stores each outcome as opaque JSON text: written and read back here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from kie_async.coordination.shared_journal import ClaimResult, SharedJournal
from kie_async.ledger.journal import JournalRecord, attempt_of, parse_token
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.batch import Batch, execute
from kie_async.pipeline.batch_plan import SKIPPED_STATES, from_journal, plan_request, still_running
from kie_async.pipeline.run_models import RunResult

log = logging.getLogger("kie_async.pipeline.fanout")

_OUTCOME_EXCLUDE = {"validation", "preflight", "prepared", "stages"}
"""Left out of a stored outcome: this process's detail, not the request's result."""


def outcome_text(result: RunResult) -> str:
    """A run's result as the outcome the shared journal stores for the other processes."""
    return result.model_dump_json(exclude=_OUTCOME_EXCLUDE)


def outcome_result(text: str) -> RunResult:
    """A stored outcome read back: a result of a run made elsewhere (``resumed``)."""
    return RunResult.model_validate_json(text).model_copy(update={"resumed": True})


class SharedJournalStrategy:
    """The :class:`~kie_async.pipeline.batch.JournalStrategy` of a journal shared by every process on the batch.

    ``stall_timeout``: how long to wait on a request another process holds without seeing any progress on it.
    """

    journaled = True

    def __init__(self, journal: SharedJournal, *, stall_timeout: float) -> None:
        self.journal = journal
        self.stall_timeout = stall_timeout

    def key_for(self, key: str, raw_key: str) -> str:
        return self.journal.key_for(key, raw_key)

    def prepaid(self, keys: Sequence[str]) -> dict[str, float]:
        """Nothing: the shared batch budget lives in the coordinator and already holds what earlier runs spent."""
        del keys
        return {}

    async def run_one(self, batch: Batch, index: int) -> RunResult:
        """Claim the request and run it, or wait for the process that holds it; take it over if that one dies."""
        key = batch.keys[index]
        seen: int | None = None
        while True:
            result: RunResult | None = None
            async with batch.slots:  # claim only with a free slot, so requests spread over the processes
                claim = await self.journal.try_claim(key)
                if claim.claimed:
                    result = await self._run_claimed(batch, index, claim)
            if result is not None:
                skipped = result.resumed and result.state in SKIPPED_STATES
                await batch.tracker.set(index, "skipped" if skipped else "done" if result.succeeded else "failed")
                return result
            if seen is None:
                seen = claim.seq  # from the refused claim itself: a run finishing after it is the holder's
            waited = await self._wait_for_holder(batch, index, seen)
            if waited is not None:
                return waited

    async def _wait_for_holder(self, batch: Batch, index: int, seen: int) -> RunResult | None:
        """The holder's result once it finishes, a report if it stalls; None when the request is free to claim."""
        key = batch.keys[index]
        waited = await self.journal.wait_for_key(key, after_seq=seen, stall_timeout=self.stall_timeout)
        if waited.outcome is not None:
            outcome = outcome_result(waited.outcome)
            await batch.tracker.set(index, "skipped" if outcome.state in SKIPPED_STATES else "failed")
            return outcome
        if waited.timed_out:
            await batch.tracker.set(index, "failed")
            model_key = batch.requests[index].model_key
            return still_running(self.journal.get(key), model_key, key, waited.holder, self.stall_timeout)
        return None

    async def _run_claimed(self, batch: Batch, index: int, claim: ClaimResult) -> RunResult | None:
        """The claimed request's run, its outcome stored for the others; None if another process took it over."""
        key = batch.keys[index]
        try:
            result = await self._result_of_claim(batch, index, claim)
        except BaseException:
            await asyncio.shield(self.journal.release(key))  # a cancel: the others may take it now
            raise
        if not await self.journal.finish(key, outcome_text(result)):
            log.warning("request %d (%s): another process took it over; waiting for its result", index, key)
            return None
        return result

    async def _result_of_claim(self, batch: Batch, index: int, claim: ClaimResult) -> RunResult:
        raw, entry = batch.requests[index], claim.entry
        if (
            entry is not None
            and entry.state is RequestState.SUCCEEDED
            and entry.result is not None
            and (entry.result.host not in (None, self.journal.host))
        ):
            return from_journal(entry, entry.result, raw.model_key)  # its files are on that machine
        # A taker never buys again what its dead holder may have sent, whatever resubmit_uncertain says.
        resubmit = batch.resubmit_uncertain and claim.closed is not RequestState.UNCERTAIN
        plan = await plan_request(entry, raw.model_key, retry_failed=batch.retry_failed, resubmit_uncertain=resubmit)
        # Results read from the journal are not settled again: the shared budget counted them when paid.
        return plan if isinstance(plan, RunResult) else await execute(batch, index, entry, plan, self)

    async def record(self, record: JournalRecord) -> None:
        await self.journal.record(record)

    @property
    def scope(self) -> str:
        return self.journal.scope

    async def adopt_late(self, token: str, task_id: str) -> None:
        key, attempt, scope = parse_token(token)
        entry = self.journal.get(key)
        if scope != self.journal.scope or entry is None or not attempt_of(entry, attempt):
            log.warning(
                "callback token %s names another batch's attempt: not settled in batch %r", token, self.journal.batch_id
            )
            return
        await self.journal.adopt(key, attempt, task_id)

    async def close(self) -> None:
        await self.journal.close()
