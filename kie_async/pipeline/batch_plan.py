"""What each request of a batch needs this time, decided from its journal entry alone (nothing is sent here).

A finished request comes back as it was recorded, a paid one is resumed on its task id, a "may have been bought"
one is left alone; only the provider's "fail" can ever lead to a second purchase.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from kie_async.artifacts.exceptions import KieArtifactError
from kie_async.artifacts.query import load_run
from kie_async.core.threads import run_file_io
from kie_async.ledger.journal import JournalEntry, JournalRecord
from kie_async.ledger.request_state import RequestState, facts
from kie_async.pipeline.collect import outputs_intact
from kie_async.pipeline.run_models import RunOutput, RunResult

SKIPPED_STATES = frozenset({RequestState.SUCCEEDED, RequestState.FAILED})
"""A request read back in one of these states was not run again: its progress phase is ``skipped``."""


class Plan(BaseModel):
    """What a request needs this time: a fresh attempt, or a resume of the task the journal knows."""

    state: RequestState
    task_id: str | None = None
    run_id: str | None = None
    adopted: bool = False
    """The task id was found in the run folder of an uncertain attempt: record the adoption, then resume it."""

    def adoption(self, key: str) -> JournalRecord:
        """The journal line that settles an uncertain request on the task its run folder names."""
        return JournalRecord(
            key=key, state=RequestState.SUBMITTED, task_id=self.task_id, run_id=self.run_id, adopted=True
        )


async def plan_request(
    entry: JournalEntry | None,
    model_key: str,
    *,
    retry_failed: bool,
    resubmit_uncertain: bool,
    artifacts_root: Path | None = None,
) -> Plan | RunResult:
    """Decide from the journal's state alone; only the provider's "fail" can ever lead to a second purchase.

    One exception: an uncertain attempt (its ``submitted`` line torn or never written) whose run folder under
    ``artifacts_root`` names a task is that task, adopted and resumed, never reported uncertain or bought again.
    """
    if entry is None:
        return Plan(state=RequestState.PENDING)
    state = entry.state
    if state is RequestState.SUCCEEDED and entry.result is not None:
        if await _outputs_still_there(entry.result):
            return from_journal(entry, entry.result, model_key)
        return Plan(state=state, task_id=entry.task_id, run_id=entry.run_id)  # lost files: fetch them again
    if state is RequestState.FAILED and entry.result is not None and not retry_failed:
        return from_journal(entry, entry.result, model_key)
    if entry.uncertain and entry.run_id and artifacts_root is not None:
        found = await task_in_run_folder(artifacts_root, entry.run_id)
        if found is not None:
            return Plan(state=RequestState.SUBMITTED, task_id=found, run_id=entry.run_id, adopted=True)
    if entry.uncertain and not resubmit_uncertain:
        return _uncertain_result(entry, model_key)
    if facts(state).resumable and entry.task_id is not None:
        return Plan(state=state, task_id=entry.task_id, run_id=entry.run_id)
    return Plan(state=state)


async def task_in_run_folder(root: Path, run_id: str) -> str | None:
    """The task id the run folder ``run_id`` under ``root`` records (its run.json), if there is one."""
    try:
        artifact = await load_run(root, run_id)
    except (KieArtifactError, OSError, ValueError):
        return None
    trace = artifact.manifest.provider_trace
    if artifact.run_id != run_id or trace is None or not trace.task_id:
        return None
    return trace.task_id


def from_journal(entry: JournalEntry, record: JournalRecord, model_key: str) -> RunResult:
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


def still_running(entry: JournalEntry | None, model_key: str, key: str, holder: str | None, waited: float) -> RunResult:
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


def run_failed(entry: JournalEntry | None, model_key: str, key: str, exc: BaseException) -> RunResult:
    """An expected failure of one run (a Kie error, bad input, a file error) as that request's result."""
    state = entry.state if entry is not None else RequestState.PENDING
    return RunResult(
        status="incomplete" if facts(state).has_task else "failed",
        state=state,
        model_key=model_key,
        request_key=key,
        task_id=entry.task_id if entry is not None else None,
        error=str(exc),
        error_type=type(exc).__name__,
    )


def known_cost(entry: JournalEntry) -> float:
    """What a request with a task id cost: the provider's figure if the journal has it, else the estimate."""
    for record in (entry.result, entry.last, entry.intent):
        if record is not None and record.credits_charged is not None:
            return record.credits_charged
    for record in (entry.last, entry.intent):
        if record is not None and record.credits_estimated is not None:
            return record.credits_estimated
    return 0.0


async def _outputs_still_there(record: JournalRecord) -> bool:
    paths = [Path(p) for p in record.outputs]
    return await run_file_io(outputs_intact, paths, record.output_sha256, record.output_bytes)
