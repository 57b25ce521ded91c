"""A batch remembered by this process alone: a file journal (:class:`BatchJournal`, owned while the batch runs), or
nothing at all. Each request is planned from its entry, run in a slot, and recorded in the file."""

from __future__ import annotations

from collections.abc import Sequence

from kie_async.ledger.account import AccountLedger, task_of_attempt
from kie_async.ledger.journal import BatchJournal, JournalRecord, append_adoption, parse_correlation_token
from kie_async.ledger.request_state import Money, RequestState, facts
from kie_async.pipeline.batch import Batch, execute
from kie_async.pipeline.batch_chat import run_chat
from kie_async.pipeline.batch_plan import SKIPPED_STATES, Plan, known_cost, plan_request
from kie_async.pipeline.chat_request import ChatRequest
from kie_async.pipeline.run_models import RunResult


class FileJournalStrategy:
    """The :class:`~kie_async.pipeline.batch.JournalStrategy` of a file journal (``journal`` None: no journal)."""

    def __init__(self, journal: BatchJournal | None) -> None:
        self.journal = journal
        self.journaled = journal is not None

    def key_for(self, key: str, raw_key: str) -> str:
        return self.journal.key_for(key, raw_key) if self.journal is not None else key

    def prepaid(self, keys: Sequence[str]) -> dict[str, float]:
        """What earlier runs already bought counts against this run's budget from the start, and only once."""
        if self.journal is None:
            return {}
        entries = ((k, self.journal.get(k)) for k in keys)
        return {k: known_cost(e) for k, e in entries if e is not None and facts(e.state).money is not Money.NOTHING}

    async def run_one(self, batch: Batch, index: int) -> RunResult:
        raw, key = batch.requests[index], batch.keys[index]
        if isinstance(raw, ChatRequest):
            return await run_chat(batch, index, raw, self.journal)
        entry = self.journal.get(key) if self.journal else None
        if entry is not None and entry.uncertain and entry.attempt is not None:
            settled = await task_of_attempt(AccountLedger.for_settings(batch.session.settings), key, entry.attempt)
            if settled is not None:  # a callback settled the lost answer in the ledger: that task is this request's
                await self.record(
                    JournalRecord(
                        key=key, state=RequestState.SUBMITTED, attempt=entry.attempt, task_id=settled, adopted=True
                    )
                )
                entry = self.journal.get(key) if self.journal else None
        root = batch.options.artifacts.resolved_root() if batch.options.write_artifact else None
        plan = await plan_request(
            entry,
            raw.model_key,
            retry_failed=batch.retry_failed,
            resubmit_uncertain=batch.resubmit_uncertain,
            artifacts_root=root,
        )
        if isinstance(plan, Plan) and plan.adopted:
            await self.record(plan.adoption(key))
        if isinstance(plan, RunResult):
            await batch.tracker.set(index, "skipped" if plan.state in SKIPPED_STATES else "failed")
            return plan
        async with batch.slots:
            result = await execute(batch, index, entry, plan, self)
        if key in batch.prepaid and result.credits_charged is None:
            paid = batch.prepaid[key]
            result = result.model_copy(update={"credits_charged": paid, "credits_estimated": paid})
        await batch.tracker.set(index, "done" if result.succeeded else "failed")
        return result

    async def record(self, record: JournalRecord) -> None:
        if self.journal is not None:
            await self.journal.record(record)

    async def adopt_late(self, token: str, task_id: str) -> None:
        """Appended by path, so it lands whether or not this batch still owns the journal."""
        key, attempt = parse_correlation_token(token)
        if self.journal is not None:
            await append_adoption(self.journal.path, key, attempt, task_id)

    async def close(self) -> None:
        if self.journal is not None:
            await self.journal.close()  # a cancelled batch still leaves every started journal line on disk
