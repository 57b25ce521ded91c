"""One request, remembered: a paid task is resumed by the next identical run instead of being bought again.

``kie-async run`` goes through :func:`run_remembered`. Each distinct request has its own small journal under the
output root (``<root>/.kie/run-journal/<request key>.jsonl``, the batch journal's format and state machine), so
two different runs in one output folder never wait for each other and the same request run twice at once is
refused (the journal has one owner). The rule:

- a request whose last purchase is paid but not delivered (interrupted, timed out, killed) resumes that task;
- a request whose last purchase was delivered (or failed at the provider) buys a new one, a new variation;
- a request whose last attempt may have been bought (the answer was lost) buys nothing unless
  ``resubmit_uncertain``, except when its run folder names the task: then that task is adopted and resumed.

The per-account ledger will replace this file; this function is the one place that would change.
"""

from __future__ import annotations

from pathlib import Path

from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.client import BaseSession
from kie_async.ledger.journal import BatchJournal, JournalEntry, JournalRecord, raw_request_key, request_key
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.batch_plan import Plan, plan_request
from kie_async.pipeline.run import parent_run_ids_of, run_pipeline
from kie_async.pipeline.run_models import PipelineHooks, PipelineOptions, RunResult

RUN_JOURNAL_FOLDER = Path(".kie") / "run-journal"
_DELIVERED = frozenset({RequestState.SUCCEEDED, RequestState.FAILED})


def run_journal_path(root: Path, key: str) -> Path:
    """The journal of the request with (base) key ``key`` under the output root ``root``."""
    return root / RUN_JOURNAL_FOLDER / f"{key}.jsonl"


async def run_remembered(
    request: RawUserRequest,
    session: BaseSession,
    *,
    options: PipelineOptions,
    resume_task_id: str | None = None,
    resubmit_uncertain: bool = False,
) -> RunResult:
    """:func:`run_pipeline` with a journal: see the module's rule. ``resume_task_id`` collects that task."""
    normalized = normalize_request(request)
    base = request_key(normalized)
    root = options.artifacts.resolved_root()
    journal = await BatchJournal.open(run_journal_path(root, base))
    try:
        key, entry = _current_variation(journal, base)
        if resume_task_id is not None:
            return await _resume_named(journal, key, entry, request, session, options, resume_task_id)
        plan = await plan_request(
            entry,
            request.model_key,
            retry_failed=True,
            resubmit_uncertain=resubmit_uncertain,
            artifacts_root=root if options.write_artifact else None,
        )
        if isinstance(plan, RunResult):
            return plan
        if plan.adopted:
            await journal.record(plan.adoption(key))
        return await _run(journal, key, request, session, options, plan)
    finally:
        await journal.close()


def _current_variation(journal: BatchJournal, base: str) -> tuple[str, JournalEntry | None]:
    """The first of ``base``, ``base#2``, … not yet delivered: the one this run resumes or buys."""
    number = 1
    while True:
        key = base if number == 1 else f"{base}#{number}"
        entry = journal.get(key)
        if entry is None or entry.state not in _DELIVERED:
            return key, entry
        number += 1


async def _resume_named(
    journal: BatchJournal,
    key: str,
    entry: JournalEntry | None,
    request: RawUserRequest,
    session: BaseSession,
    options: PipelineOptions,
    task_id: str,
) -> RunResult:
    """``--resume-task ID``: the journal learns the task when it had none (a task found on the dashboard)."""
    if entry is not None and entry.task_id == task_id:
        return await _run(
            journal, key, request, session, options, Plan(state=entry.state, task_id=task_id, run_id=entry.run_id)
        )
    if entry is None or entry.task_id is None:
        await journal.record(JournalRecord(key=key, state=RequestState.SUBMITTED, task_id=task_id, adopted=True))
        return await _run(journal, key, request, session, options, Plan(state=RequestState.SUBMITTED, task_id=task_id))
    # The journal holds another task for this request: collect the named one without touching that record.
    return await run_pipeline(request, session, options=options, resume_task_id=task_id)


async def _run(
    journal: BatchJournal,
    key: str,
    request: RawUserRequest,
    session: BaseSession,
    options: PipelineOptions,
    plan: Plan,
) -> RunResult:
    async def on_state(record: JournalRecord) -> None:
        if record.state is RequestState.SUBMITTING and not record.sending:
            record = record.model_copy(update={"raw_key": raw_request_key(request)})
        await journal.record(record)

    return await run_pipeline(
        request,
        session,
        options=options,
        hooks=PipelineHooks(on_state=on_state),
        resume_task_id=plan.task_id,
        parent_run_ids=parent_run_ids_of(request),
        request_key=key,
        prior_state=plan.state,
        run_id=plan.run_id,
    )
