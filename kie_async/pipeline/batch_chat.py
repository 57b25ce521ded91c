"""The chat calls of a ``run_many`` batch: the same slots, budget, progress and journal as its media requests.

A chat call is bought once. Its journal lines follow the request state machine: the intent (``submitting``,
fsynced, with the boot stamp) and the ``sending`` marker just before the bytes go out; then ``submitted`` and
``succeeded`` once the answer is saved next to the journal (``<journal>.chat/<key>.json``, its size and sha256
in the ``succeeded`` line), ``refused`` when Kie.ai answered with an error (nothing generated) or the call never
left, ``uncertain`` when the bytes may have reached Kie.ai and no whole answer came back (a lost connection, a
gateway's error page, an answer cut off). A chat has no task to wait on, so the ``submitted`` line names the
answer's request id in place of a task id.

A re-run with the same journal reads a finished chat's answer back from its file (no call), reports an uncertain
one as ``submit_uncertain`` (asked again only with ``resubmit_uncertain``), and never asks again for one that was
paid for. With a budget, the unknown-price rule of media applies: no token price is known for a chat model, so
a capped batch needs ``allow_unknown_cost`` and (for a budget the caller set) ``unknown_cost_ceiling``, held
while the call runs and settled on the answer's ``credits_consumed``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from kie_async.catalogue.chat_specs import ChatSpec
from kie_async.core.errors import KieAPIStatusError, KieConnectionError, KieError, KieInputError, KieTimeoutError
from kie_async.core.threads import run_file_io
from kie_async.ledger.journal import BatchJournal, JournalEntry, JournalRecord, boot_stamp
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.batch import Batch
from kie_async.pipeline.batch_plan import known_cost
from kie_async.pipeline.chat import chat, check_chat_call
from kie_async.pipeline.chat_request import BatchRequest, ChatRequest, ChatRunResult
from kie_async.pipeline.collect import outputs_intact
from kie_async.pipeline.run_models import PipelineStatus, RunOutput, RunResult
from kie_async.wire.chat.models import ChatResult

log = logging.getLogger("kie_async.pipeline.fanout")

__all__ = ["answer_path", "check_chat_requests", "run_chat"]


async def check_chat_requests(requests: Sequence[BatchRequest], where: Sequence[str] | None = None) -> None:
    """Every chat call of a batch names a chat model and fits it (messages, options), before anything is sent;
    a refusal names the request as ``where[i]`` (a file's line), else ``requests[i]``."""
    for index, request in enumerate(requests):
        if isinstance(request, ChatRequest):
            try:
                await _spec(request)
            except KieInputError as exc:
                name = where[index] if where is not None else f"requests[{index}]"
                raise KieInputError(f"{name} ({request.model}): {exc.message}", hint=exc.hint) from None


async def _spec(request: ChatRequest) -> ChatSpec:
    return await check_chat_call(
        request.model,
        request.messages,
        system=request.system,
        options=request.options,
        provider_model=request.provider_model,
    )


def answer_path(journal: Path, key: str) -> Path:
    """Where a batch keeps a chat's answer: ``<journal>.chat/<key>.json``, next to the journal."""
    return journal.with_name(journal.name + ".chat") / f"{key}.json"


async def run_chat(batch: Batch, index: int, request: ChatRequest, journal: BatchJournal | None) -> RunResult:
    """Chat call ``index`` (``request``) of the batch: read back from the journal, or made now in a slot."""
    key = batch.keys[index]
    entry = journal.get(key) if journal is not None else None
    earlier = await _from_journal(batch, request, key, entry, journal)
    if earlier is not None:
        await batch.tracker.set(index, "skipped" if earlier.status == "succeeded" else "failed")
        return earlier
    async with batch.slots:
        await batch.tracker.set(index, "preparing")
        result = await _call(batch, index, request, key, journal)
    await batch.tracker.set(index, "done" if result.succeeded else "failed")
    return result


async def _from_journal(
    batch: Batch, request: ChatRequest, key: str, entry: JournalEntry | None, journal: BatchJournal | None
) -> RunResult | None:
    """What an earlier run of the batch already settled for this chat (None: make the call)."""
    if entry is None or journal is None:
        return None
    base = {"model_key": request.model, "request_key": key, "state": entry.state, "resumed": True}
    paid = known_cost(entry)
    if entry.state is RequestState.SUCCEEDED and entry.result is not None:
        answer = await _saved_answer(entry.result)
        if answer is None:
            why = f"the saved answer {entry.result.outputs} is missing or changed; the chat is not bought again"
            return ChatRunResult(status="succeeded", credits_charged=paid, warnings=[why], **base)
        return _answered(answer, paid, base, entry.result.outputs)
    if entry.state in (RequestState.SUBMITTED, RequestState.INCOMPLETE):
        return await _finish_saved(request, key, entry, journal, paid)
    if entry.uncertain and not batch.resubmit_uncertain:
        return ChatRunResult(
            status="submit_uncertain",
            credits_estimated=paid or None,
            error=_uncertain_error(entry, request),
            error_type="KieSubmissionUncertainError",
            **base,
        )
    return None


async def _finish_saved(
    request: ChatRequest, key: str, entry: JournalEntry, journal: BatchJournal, paid: float
) -> RunResult:
    """Paid for, and the process stopped before ``succeeded``: its answer file, if saved, settles it now."""
    path = answer_path(journal.path, key)
    saved = await run_file_io(_read_answer, path)
    base = {"model_key": request.model, "request_key": key, "resumed": True, "credits_charged": paid}
    if saved is None:
        why = (
            f"this chat was paid for (request {entry.task_id}) but its answer was lost before it was saved; it is "
            "not bought again"
        )
        return ChatRunResult(status="incomplete", state=entry.state, error=why, error_type="KieChatAnswerLost", **base)
    answer, digest, size = saved
    await journal.record(
        JournalRecord(
            key=key,
            state=RequestState.SUCCEEDED,
            task_id=entry.task_id,
            model_key=answer.model,
            outputs=[str(path)],
            output_sha256=[digest],
            output_bytes=[size],
            credits_charged=paid,
        )
    )
    return _answered(answer, paid, {**base, "state": RequestState.SUCCEEDED}, [str(path)])


def _answered(answer: ChatResult, paid: float | None, base: dict[str, object], files: list[str]) -> ChatRunResult:
    fields = {**base, "credits_charged": paid, "outputs": [RunOutput(source=Path(p)) for p in files]}
    return ChatRunResult.model_validate({"status": "succeeded", "chat": answer, **fields})


def _uncertain_error(entry: JournalEntry, request: ChatRequest) -> str:
    intent = entry.intent
    when = intent.at.strftime("%Y-%m-%d %H:%M:%S UTC") if intent else "an earlier run"
    why = f": {entry.last.error}" if entry.last is not None and entry.last.error else ""
    return (
        f"an earlier run may have paid for this chat (sent to {request.model} around {when}; no whole answer was "
        f"recorded{why}). Its charge shows in the Kie.ai dashboard's logs; re-run with resubmit_uncertain / "
        "--resubmit-uncertain to ask again (this can pay twice)"
    )


async def _saved_answer(record: JournalRecord) -> ChatResult | None:
    paths = [Path(p) for p in record.outputs]
    if not await run_file_io(outputs_intact, paths, record.output_sha256, record.output_bytes):
        return None
    saved = await run_file_io(_read_answer, paths[0])
    return saved[0] if saved is not None else None


def _read_answer(path: Path) -> tuple[ChatResult, str, int] | None:
    """Blocking: a saved answer, its sha256 and size; None if it is not there or not an answer."""
    try:
        data = path.read_bytes()
        return ChatResult.model_validate_json(data), hashlib.sha256(data).hexdigest(), len(data)
    except (OSError, ValueError):
        return None


def _write_answer(path: Path, answer: ChatResult) -> tuple[str, int]:
    """Blocking: the answer written whole (a temporary file, fsynced, renamed); its sha256 and size."""
    data = answer.model_dump_json(exclude={"raw"}, indent=2).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return hashlib.sha256(data).hexdigest(), len(data)


async def _reserve(batch: Batch, request: ChatRequest, spec: ChatSpec) -> float | RunResult:
    """Hold the chat's credits in the batch budget, by the unknown-price rule of media (no token price is known)."""
    budget, opts = batch.budget, batch.options
    base = {"model_key": request.model, "state": RequestState.BLOCKED}
    reserved = 0.0
    limited = budget.cap is not None or opts.budget_credits is not None  # a batch cap, or a cap on each run
    if limited and spec.price is None:
        if not opts.allow_unknown_cost:
            why = (
                f"no token price is known for chat model {spec.key} and a credit limit is in play (a budget or the "
                f"balance); {opts.spelling.allow_unknown_cost} lets it run (a budget then holds "
                f"{opts.spelling.unknown_cost_ceiling} for it, settled on the answer's credits_consumed)"
            )
            return ChatRunResult(status="blocked", error=why, error_type="preflight", **base)
        if budget.cap is not None and budget.spending_limit and opts.unknown_cost_ceiling is None:
            why = (
                f"no token price is known for chat model {spec.key} and the batch has a credit cap; "
                f"{opts.spelling.unknown_cost_ceiling} says how much of it one such request may take"
            )
            return ChatRunResult(status="blocked", error=why, error_type="budget", **base)
        reserved = (opts.unknown_cost_ceiling or 0.0) if budget.cap is not None and budget.spending_limit else 0.0
    elif spec.price is not None:
        chars = sum(len(m.content) for m in ([] if isinstance(request.messages, str) else request.messages))
        chars += len(request.messages) if isinstance(request.messages, str) else 0
        reserved = chars / 4000 * spec.price.input_per_1k + 4.096 * spec.price.output_per_1k
    if not await budget.reserve(reserved):
        remaining = budget.snapshot().remaining
        why = f"the ceiling of {reserved:g} credits would pass the batch budget (remaining {remaining:g})"
        return ChatRunResult(status="over_budget", error=why, error_type="budget", **base)
    return reserved


async def _call(batch: Batch, index: int, request: ChatRequest, key: str, journal: BatchJournal | None) -> RunResult:
    """The call itself: intent, marker, the chat, then its answer saved and journaled (or why there is none)."""
    spec = await _spec(request)
    gate = await _reserve(batch, request, spec)
    if isinstance(gate, RunResult):
        return gate.model_copy(update={"request_key": key})
    reserved = gate
    attempt = secrets.token_hex(8)
    if journal is not None:
        try:
            await journal.record(_intent(request, spec, key, attempt, reserved))
            await journal.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt=attempt, sending=True))
        except OSError as exc:  # no durable intent (or no marker), no call: a re-run reads it as never sent
            await batch.budget.release(reserved)
            return _failed(request, key, RequestState.BLOCKED, "failed", exc)
    await batch.tracker.set(index, "submitted")
    try:
        answer = await chat(
            batch.session,
            request.model,
            request.messages,
            system=request.system,
            options=request.options,
            provider_model=request.provider_model,
        )
    except KieError as exc:
        return await _after_error(batch, request, key, journal, attempt, reserved, exc)
    await batch.budget.settle(reserved, answer.credits_consumed)
    charged = answer.credits_consumed if answer.credits_consumed is not None else reserved
    answer = answer.model_copy(update={"credits_charged": charged})
    if not answer.complete:
        return await _cut_off(request, key, journal, attempt, reserved, answer)
    return await _save(request, key, journal, attempt, answer)


def _intent(request: ChatRequest, spec: ChatSpec, key: str, attempt: str, reserved: float) -> JournalRecord:
    turns = [request.messages] if isinstance(request.messages, str) else [m.content for m in request.messages]
    return JournalRecord(
        key=key,
        state=RequestState.SUBMITTING,
        attempt=attempt,
        model_key=spec.key,
        provider_model=request.provider_model or spec.provider_model,
        prompt=(turns[-1] if turns else "")[:200] or None,
        raw_key=key,
        boot=boot_stamp(),
        credits_estimated=reserved or None,
    )


async def _save(
    request: ChatRequest, key: str, journal: BatchJournal | None, attempt: str, answer: ChatResult
) -> RunResult:
    """A whole answer: saved next to the journal first, then ``submitted`` and ``succeeded`` (with its file)."""
    charged = answer.credits_charged
    base: dict[str, object] = {"model_key": request.model, "request_key": key, "state": RequestState.SUCCEEDED}
    if journal is None:
        return _answered(answer, charged, base, [])
    path = answer_path(journal.path, key)
    name = f"chat:{answer.request_id or answer.response_id or attempt}"
    try:
        digest, size = await run_file_io(_write_answer, path, answer)
    except OSError as exc:
        log.error("could not save the answer of chat %s (%s); the result still carries it", key, exc)
        await _record(journal, JournalRecord(key=key, state=RequestState.SUBMITTED, attempt=attempt, task_id=name))
        warning = f"the answer could not be saved ({exc}); a re-run reports it lost and does not buy it again"
        return _answered(answer, charged, base, []).model_copy(update={"warnings": [warning]})
    submitted = JournalRecord(
        key=key, state=RequestState.SUBMITTED, attempt=attempt, task_id=name, credits_charged=charged
    )
    done = JournalRecord(
        key=key,
        state=RequestState.SUCCEEDED,
        task_id=name,
        model_key=answer.model,
        outputs=[str(path)],
        output_sha256=[digest],
        output_bytes=[size],
        credits_charged=charged,
    )
    await _record(journal, submitted)
    await _record(journal, done)
    return _answered(answer, charged, base, [str(path)])


async def _record(journal: BatchJournal, record: JournalRecord) -> None:
    """After the call the answer is in hand: a journal line that cannot be written is logged, never the result's."""
    try:
        await journal.record(record)
    except OSError as exc:
        log.error("journal: could not record %s for %s (%s)", record.state.value, record.key, exc)


async def _cut_off(
    request: ChatRequest, key: str, journal: BatchJournal | None, attempt: str, reserved: float, answer: ChatResult
) -> RunResult:
    """The answer broke off: it reached Kie.ai and may be billed, so it is uncertain (never asked again unasked)."""
    why = f"the answer broke off ({answer.incomplete_reason}); what arrived is in the result"
    if journal is not None:
        await _record(
            journal,
            JournalRecord(
                key=key,
                state=RequestState.UNCERTAIN,
                attempt=attempt,
                credits_charged=answer.credits_consumed,
                credits_estimated=reserved or None,
                error=why,
                error_type="KieChatIncomplete",
            ),
        )
    return ChatRunResult(
        status="submit_uncertain",
        state=RequestState.UNCERTAIN,
        model_key=request.model,
        request_key=key,
        chat=answer,
        credits_charged=answer.credits_consumed,
        credits_estimated=reserved or None,
        error=why,
        error_type="KieChatIncomplete",
    )


def _reached_kie(exc: KieError) -> bool:
    """Whether the call may have been billed: sent and no answer of Kie.ai's own (a gateway page, a lost reply)."""
    if isinstance(exc, KieConnectionError | KieTimeoutError):
        return exc.request_sent
    if isinstance(exc, KieAPIStatusError):
        status = exc.http_status or 0
        return not exc.enveloped and not 400 <= status < 500
    return not isinstance(exc, KieInputError)


async def _after_error(
    batch: Batch,
    request: ChatRequest,
    key: str,
    journal: BatchJournal | None,
    attempt: str,
    reserved: float,
    exc: KieError,
) -> RunResult:
    """A call that raised: refused (nothing generated, the hold released) or uncertain (the hold counted)."""
    uncertain = _reached_kie(exc)
    state = RequestState.UNCERTAIN if uncertain else RequestState.REFUSED
    if uncertain:
        await batch.budget.settle(reserved, None)
    else:
        await batch.budget.release(reserved)
    if journal is not None:
        await _record(
            journal,
            JournalRecord(
                key=key,
                state=state,
                attempt=attempt,
                credits_estimated=reserved or None,
                error=str(exc),
                error_type=type(exc).__name__,
            ),
        )
    log.warning("chat request %s (%s) %s: %s", key, request.model, state.value, exc)
    return _failed(request, key, state, "submit_uncertain" if uncertain else "failed", exc)


def _failed(request: ChatRequest, key: str, state: RequestState, status: PipelineStatus, exc: Exception) -> RunResult:
    return ChatRunResult(
        status=status,
        state=state,
        model_key=request.model,
        request_key=key,
        error=str(exc),
        error_type=type(exc).__name__,
    )
