"""A task handle: submit now, wait, poll or stream progress later, possibly from another request or process.

``handle = await kie.submit(request)`` runs the same gate as the pipeline (normalize, validate, preflight,
upload-first) and sends ``createTask`` once. A web request can return ``handle.task_id`` at once; another
request, in any process, re-attaches with ``kie.task(task_id)`` and calls ``refresh()`` (one status read),
``progress()`` (an async iterator of polls) or ``wait()``. ``create_and_wait`` is the one-call case.

The money rules are the pipeline's: nothing is bought before validation and preflight pass (a refusal is a
:class:`KieRequestBlockedError` naming each field or reason and its fix); ``createTask`` is never retried
once it may have arrived (:class:`KieSubmissionUncertainError`, with the time to look for in the dashboard);
a cancel while the request is on the wire waits briefly for the answer so the task id is logged, not lost.
There is no journal here: for many requests that must survive a crash, use ``run_many`` with a journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from kie_async.catalogue.blocked import KieRequestBlockedError
from kie_async.catalogue.model_data import preload_model_data
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.payload import build_submission_payload
from kie_async.catalogue.preflight import run_preflight
from kie_async.catalogue.presets import apply_enhanced_prompt, resolve_prompt_context
from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.catalogue.specs import ModelRegistry, aload_registry, load_registry, loaded_registry
from kie_async.catalogue.validate import validate_request
from kie_async.client import BaseSession
from kie_async.client.adoption import with_correlation
from kie_async.core.errors import (
    KieError,
    KieInputError,
    KieSubmissionUncertainError,
    KieTaskFailedError,
)
from kie_async.core.limits import check_credits, check_timeout
from kie_async.core.media_sniff import MediaKind
from kie_async.core.settings import PollSettings
from kie_async.ledger.account import DELIVERED, AccountLedger, LedgerClaim
from kie_async.ledger.journal import JournalRecord, boot_stamp, correlation_token, request_key
from kie_async.ledger.request_state import RequestState, facts
from kie_async.pipeline.enhance import enhance_with_kie, kie_model
from kie_async.pipeline.outputs import FileOutput
from kie_async.pipeline.prepare import prepare_request_for_submission
from kie_async.pipeline.run_models import PipelineOptions
from kie_async.wire.api_models import CreateTaskPayload, TaskRecord, TaskState
from kie_async.wire.polling import TaskProgress, is_finished

log = logging.getLogger("kie_async.pipeline.handle")

MAX_TASK_ID_LENGTH = 256
_CANCEL_GRACE_SECONDS = 30.0
"""How long a cancelled submit still waits for a createTask answer already on its way (to log the task id)."""
_OUTPUT_KINDS: frozenset[str] = frozenset({"image", "video", "audio"})


class TaskOutcome(BaseModel):
    """A finished task: its last record and its outputs, readable without saving them first."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    task_id: str
    model_key: str | None = None
    record: TaskRecord
    outputs: list[FileOutput] = Field(default_factory=list)
    credits_estimated: float | None = None

    @field_serializer("outputs")
    def _outputs_as_data(self, outputs: list[FileOutput]) -> list[dict[str, str | int | None]]:
        """``model_dump_json()`` works (a web backend returns it): each output as its index, kind and URL."""
        return [{"index": o.index, "kind": o.kind, "url": o.url} for o in outputs]

    @property
    def state(self) -> TaskState:
        return self.record.state

    @property
    def succeeded(self) -> bool:
        """``success`` with at least one output URL."""
        return self.record.has_usable_result

    @property
    def output_urls(self) -> list[str]:
        return self.record.output_urls

    @property
    def credits_charged(self) -> float | None:
        """What Kie.ai says the task cost, when it says so."""
        return self.record.credits_consumed


class TaskHandle:
    """One task on Kie.ai, by its id. Cheap to create; holds no connection; ``task_id`` is all it needs.

    ``last`` is the most recent record read through this handle (``None`` before the first read).
    """

    def __init__(
        self,
        session: BaseSession,
        task_id: str,
        *,
        model_key: str | None = None,
        output_kind: str | None = None,
        credits_estimated: float | None = None,
        callback_driven: bool = False,
        wait_timeout: float | None = None,
        poll: PollSettings | None = None,
    ) -> None:
        self.session = session
        self.task_id = check_task_id(task_id)
        self.model_key = model_key
        self.credits_estimated = credits_estimated
        self.callback_driven = callback_driven
        self.wait_timeout = wait_timeout
        self.poll = poll
        self.last: TaskRecord | None = None
        self._output_kind = output_kind
        self._unbound_key: str | None = None  # a model key still to check against the specs (see task_handle)
        self._ledger: LedgerClaim | None = None
        """The ledger entry of the purchase this handle came from (``submit``): told once the task is delivered."""

    def _bind(self, registry: ModelRegistry, model_key: str) -> None:
        """Take the model's key, output kind and API from its spec; an unknown key is refused."""
        candidates = registry.candidates(model_key)
        if len(candidates) != 1:
            close = registry.suggest(model_key)
            raise KieInputError(
                f"unknown model_key {model_key!r}"
                + (f"; did you mean {' or '.join(map(repr, close))}?" if close else ""),
                hint="see `kie-async models`, or leave it out",
            )
        spec = candidates[0]
        self.model_key, self._output_kind = spec.key, spec.output_kind
        # A task bought through a separate API (Veo, Suno, ...) is read through that API, also from a new session.
        self.session.remember_transport(self.task_id, None if spec.transport.is_market else spec.transport)

    async def _ready(self) -> None:
        if self._unbound_key is not None:
            key, self._unbound_key = self._unbound_key, None
            self._bind(await aload_registry(), key)

    def __repr__(self) -> str:
        state = self.last.state_description if self.last is not None else "not read yet"
        return f"TaskHandle(task_id={self.task_id!r}, model_key={self.model_key!r}, {state})"

    @property
    def done(self) -> bool:
        """Whether the last read found the task finished (success with results, fail or canceled)."""
        return self.last is not None and is_finished(self.last)

    async def refresh(self, *, timeout: float | None = None) -> TaskRecord:
        """One status read (``recordInfo``); updates ``last``."""
        await self._ready()
        self.last = await self.session.get_task(self.task_id, timeout=timeout)
        return self.last

    async def progress(
        self, *, timeout: float | None = None, callback_driven: bool | None = None
    ) -> AsyncGenerator[TaskProgress, None]:
        """One :class:`TaskProgress` per status read until the task finishes (the last one has no next poll).

        Polls on the session's schedule (fast, then slower) and is woken by callbacks like ``wait_for_task``.
        A failed task ends the iteration normally (its ``state`` says so); ``wait()`` then raises at once
        without another read. Breaking out of the loop stops polling; the task runs on at Kie.ai.
        """
        check_timeout("timeout", timeout)
        await self._ready()
        if self.done:
            assert self.last is not None
            yield TaskProgress(task_id=self.task_id, state=self.last.state, elapsed=0.0, polls=0, next_poll_in=None)
            return
        queue: asyncio.Queue[TaskProgress] = asyncio.Queue()
        waiter = asyncio.ensure_future(
            self.session.wait_for_task(
                self.task_id,
                timeout=timeout if timeout is not None else self.wait_timeout,
                on_progress=queue.put_nowait,
                raise_on_failure=False,
                callback_driven=self.callback_driven if callback_driven is None else callback_driven,
                poll=self.poll,
            )
        )
        getter: asyncio.Future[TaskProgress] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                if getter.done() and not getter.cancelled():
                    yield getter.result()
                    continue
                while not queue.empty():
                    yield queue.get_nowait()
                break
            self.last = waiter.result()  # raises the waiter's error (a timeout, a non-retryable read)
        finally:
            for pending in (getter, waiter):
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending

    async def wait(self, *, timeout: float | None = None, raise_on_failure: bool = True) -> TaskOutcome:
        """Wait until the task finishes and return it with its outputs.

        Raises :class:`KieTaskFailedError` for ``fail``/``canceled`` unless ``raise_on_failure=False``, and
        :class:`KieTimeoutError` after ``timeout`` (the task keeps running: call ``wait`` again).
        """
        check_timeout("timeout", timeout)
        await self._ready()
        if not self.done:
            self.last = await self.session.wait_for_task(
                self.task_id,
                timeout=timeout if timeout is not None else self.wait_timeout,
                raise_on_failure=False,
                callback_driven=self.callback_driven,
                poll=self.poll,
            )
        record = self.last
        assert record is not None
        await self._delivered(record)
        if raise_on_failure and record.state.is_failure:
            reason = record.fail_msg or ("canceled by the provider" if record.state is TaskState.CANCELED else None)
            raise KieTaskFailedError(self.task_id, record.fail_code, reason)
        return TaskOutcome(
            task_id=self.task_id,
            model_key=self.model_key,
            record=record,
            outputs=await self._outputs(record),
            credits_estimated=self.credits_estimated,
        )

    async def _delivered(self, record: TaskRecord) -> None:
        """The ledger learns the task reached its caller: an identical submit now buys a new variation."""
        claim, self._ledger = self._ledger, None
        if claim is None or not is_finished(record):
            return
        state = RequestState.FAILED if record.state.is_failure else RequestState.SUCCEEDED
        done = JournalRecord(
            key=claim.key,
            state=state,
            task_id=self.task_id,
            output_urls=record.output_urls,
            credits_charged=record.credits_consumed,
            error=record.fail_msg if record.state.is_failure else None,
        )
        try:
            await claim.record(done)
        except Exception as exc:  # the outcome is the caller's either way; a re-submit would only re-attach
            log.error("ledger: could not record task %s as delivered (%s: %s)", self.task_id, type(exc).__name__, exc)

    async def outputs(self, *, timeout: float | None = None) -> list[FileOutput]:
        """The task's outputs as :class:`FileOutput` (waits for the task first if needed)."""
        return (await self.wait(timeout=timeout)).outputs

    async def _outputs(self, record: TaskRecord) -> list[FileOutput]:
        kind = await self._kind(record)
        return [
            FileOutput(self.session, url, kind=kind, task_id=self.task_id, index=i)
            for i, url in enumerate(record.output_urls)
        ]

    async def _kind(self, record: TaskRecord) -> MediaKind | None:
        """What the outputs should be, from the model spec (by key, else by the record's provider model)."""
        if self._output_kind is None and record.model:
            await preload_model_data()
            kinds = {spec.output_kind for spec, _ in load_registry().by_provider_model(record.model)}
            if len(kinds) == 1:
                self._output_kind = kinds.pop()
        kind = self._output_kind
        return kind if kind in _OUTPUT_KINDS else None  # type: ignore[return-value]


def check_task_id(task_id: str) -> str:
    """A task id as ``kie.task()`` accepts it: a non-empty printable string without spaces, at most 256 chars."""
    if not isinstance(task_id, str) or not task_id.strip():
        raise KieInputError(f"task_id {task_id!r} is empty", hint="pass the task_id that submit() returned")
    if len(task_id) > MAX_TASK_ID_LENGTH or not task_id.isprintable() or any(c.isspace() for c in task_id):
        shown = task_id[:60] + ("…" if len(task_id) > 60 else "")
        raise KieInputError(
            f"task_id {shown!r} is not a Kie.ai task id",
            hint="pass the task_id that submit() returned, unchanged (at most 256 printable characters)",
        )
    return task_id


def task_handle(session: BaseSession, task_id: str, *, model_key: str | None = None) -> TaskHandle:
    """Re-attach to a task created earlier (in this process or another); reads nothing until asked.

    ``model_key`` is checked at once when the specs are in memory; otherwise (this is sync code on the event
    loop, which must not parse YAML) at the handle's first read.
    """
    handle = TaskHandle(session, task_id, model_key=model_key)
    if model_key is not None:
        registry = loaded_registry()
        if registry is None:
            handle._unbound_key = model_key
        else:
            handle._bind(registry, model_key)
    return handle


async def submit_request(
    session: BaseSession,
    request: RawUserRequest | NormalizedRequest,
    *,
    options: PipelineOptions | None = None,
    idempotency_key: str | None = None,
    resubmit: bool = False,
) -> TaskHandle:
    """Check, gate, upload and buy one request; return its handle. See the module docstring for the rules.

    ``options`` are the pipeline's: ``budget_credits``, ``available_credits``, ``check_balance`` and
    ``allow_unknown_cost`` gate the purchase; ``callback_url`` / ``callback_driven``, ``wait_timeout``,
    ``rehost_urls``, ``enhance`` and ``preset_key`` apply as in ``run_pipeline``. Artifact settings do not
    (nothing is downloaded here: use ``save()`` on an output).

    The purchase is claimed and recorded in the account's ledger like a pipeline run's: while the ledger holds
    a paid task of this request that was not delivered (no ``wait()`` saw it finish), the handle is that task's
    and nothing is bought; ``idempotency_key`` returns the task it first bought; ``resubmit=True`` pays again.
    """
    opts = options or PipelineOptions()
    # model_copy(update=...) skips validation: a NaN budget or a -1 wait timeout must be refused before the
    # purchase, not found when waiting on a task already paid for.
    check_timeout("wait_timeout", opts.wait_timeout)
    check_credits("budget_credits", opts.budget_credits)
    check_credits("available_credits", opts.available_credits)
    await preload_model_data()
    normalized = await asyncio.to_thread(normalize_request, request) if isinstance(request, RawUserRequest) else request
    claim = await AccountLedger.for_settings(session.settings).claim(
        request_key(normalized), idempotency_key=idempotency_key, resubmit=resubmit
    )
    try:
        earlier = _earlier_task(claim, resubmit)
        if earlier is not None:
            return _handle(session, claim, earlier, normalized, opts, estimate=None)
        prepared, estimate = await _gate(session, normalized, opts)
        attempt = secrets.token_hex(4)
        # The callback names the ledger entry and attempt: a lost answer is settled by the task's callback.
        callback = opts.callback_url or normalized.callback_url
        payload = build_submission_payload(
            prepared,
            callback_url=with_correlation(callback, correlation_token(claim.key, attempt)) if callback else None,
        )
        task_id = await _create_once(session, payload, _Recorder(claim, normalized, payload, estimate, attempt))
        return _handle(session, claim, task_id, normalized, opts, estimate=estimate)
    finally:
        await claim.release()


def _handle(
    session: BaseSession,
    claim: LedgerClaim,
    task_id: str,
    normalized: NormalizedRequest,
    opts: PipelineOptions,
    *,
    estimate: float | None,
) -> TaskHandle:
    handle = TaskHandle(
        session,
        task_id,
        model_key=normalized.model_key,
        output_kind=normalized.output_kind,
        credits_estimated=estimate,
        callback_driven=opts.callback_driven,
        wait_timeout=opts.wait_timeout,
    )
    handle._ledger = claim
    return handle


def _earlier_task(claim: LedgerClaim, resubmit: bool) -> str | None:
    """The task the ledger already holds for this request (paid, not delivered; or named by the idempotency key)."""
    entry = claim.entry
    if entry is None:
        return None
    if entry.task_id is not None and (facts(entry.state).resumable or entry.state in DELIVERED):
        return entry.task_id
    if entry.uncertain and not resubmit:
        when = entry.intent.at.strftime("%Y-%m-%d %H:%M:%S UTC") if entry.intent else "an earlier run"
        raise KieSubmissionUncertainError(
            f"an earlier submit may have bought this request (createTask sent around {when}; no answer was recorded)",
            hint="look for that task in the Kie.ai dashboard logs and re-attach with kie.task(task_id); "
            "submit(..., resubmit=True) buys again (it can pay twice)",
        )
    return None


async def _gate(
    session: BaseSession, normalized: NormalizedRequest, opts: PipelineOptions
) -> tuple[ValidationResult, float | None]:
    """Prompt, validation, preflight, upload: everything before the money. Raises when it stops the request."""
    if opts.enhance is not None and normalized.raw_prompt:
        context = await asyncio.to_thread(
            resolve_prompt_context, normalized, preset_key=opts.preset_key, preset_dirs=opts.preset_dirs
        )
        if isinstance(opts.enhance, str):  # the built-in enhancer: Kie chat (no budget at this level)
            enhanced, _ = await enhance_with_kie(
                kie_model(opts.enhance), context, session, budget=None, reserve_credits=0.0
            )
        else:
            enhanced = await opts.enhance(context)
        if enhanced and enhanced != normalized.raw_prompt:
            normalized = apply_enhanced_prompt(
                normalized, enhanced, enhanced_prompt=enhanced, preset_key=context.preset_key
            )
    validation = await asyncio.to_thread(validate_request, normalized)
    if not validation.is_submittable:
        raise KieRequestBlockedError(
            f"{normalized.model_key} is {validation.state}, nothing was bought: {validation.summary()}",
            validation=validation,
        )
    preflight = await run_preflight(
        validation,
        credit_source=session if opts.check_balance and opts.available_credits is None else None,
        available_credits=opts.available_credits,
        budget_credits=opts.budget_credits,
        allow_unknown_cost=opts.allow_unknown_cost,
        check_files=False,
    )
    if not preflight.allowed:
        reasons = "; ".join(r.message for r in preflight.blocking_reasons)
        raise KieRequestBlockedError(
            f"preflight stopped {normalized.model_key}, nothing was bought: {reasons}",
            validation=validation,
            preflight=preflight,
        )
    prepared = await prepare_request_for_submission(validation, session, rehost_urls=opts.rehost_urls)
    estimate = preflight.estimate.credits if preflight.estimate.has_numeric_estimate else None
    return prepared.validation, estimate


class _Recorder:
    """The ledger's records of one createTask attempt: the intent when the request goes on the wire, then its end."""

    def __init__(
        self,
        claim: LedgerClaim,
        normalized: NormalizedRequest,
        payload: CreateTaskPayload,
        estimate: float | None,
        attempt: str,
    ) -> None:
        self.claim = claim
        self.attempt = attempt
        self.on_wire_now = False
        self.intent = JournalRecord(
            key=claim.key,
            state=RequestState.SUBMITTING,
            attempt=self.attempt,
            model_key=normalized.model_key,
            provider_model=payload.model,
            prompt=(normalized.prompt or "")[:200] or None,
            credits_estimated=estimate,
            boot=boot_stamp(),
        )

    async def on_wire(self) -> None:
        await self.claim.record(self.intent)  # no durable intent, no send
        await self.claim.record(self.intent.model_copy(update={"sending": True}))
        self.on_wire_now = True

    async def on_unsent(self, exc: KieError) -> None:
        self.on_wire_now = False
        await self.ended(RequestState.REFUSED, error=f"not sent: {exc}", error_type=type(exc).__name__)

    async def ended(self, state: RequestState, **fields: Any) -> None:
        """The attempt's end; after the wire a failing disk must not lose the answer (it is logged instead)."""
        record = JournalRecord(key=self.claim.key, state=state, attempt=self.attempt, **fields)
        try:
            await self.claim.record(record)
        except Exception as exc:
            log.error("ledger: could not record %s (%s: %s)", state.value, type(exc).__name__, exc)


async def _create_once(session: BaseSession, payload: CreateTaskPayload, recorder: _Recorder) -> str:
    """``createTask`` exactly once; an answer already on its way when the caller cancels is waited for and logged."""
    sent_at = datetime.now(UTC)
    send = asyncio.ensure_future(
        # checked by the gate; the recorder's intent reaches the ledger before the bytes leave
        session.create_task(payload, validate=False, on_wire=recorder.on_wire, on_unsent=recorder.on_unsent)
    )
    try:
        created = await asyncio.shield(send)
    except KieSubmissionUncertainError as exc:
        await recorder.ended(RequestState.UNCERTAIN, error=str(exc), error_type=type(exc).__name__)
        when = sent_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        exc.hint = (
            f"look in the Kie.ai dashboard logs for a {payload.model} task created around {when} before buying "
            "it again; if it is there, re-attach with kie.task(task_id)"
        )
        raise
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({send}, timeout=min(session.settings.request_timeout, _CANCEL_GRACE_SECONDS))
        if send.done() and not send.cancelled() and send.exception() is None:
            log.warning(
                "submit cancelled after Kie.ai created task %s (%s): it is paid for; re-attach with kie.task(%r)",
                send.result().task_id,
                payload.model,
                send.result().task_id,
            )
            await recorder.ended(RequestState.SUBMITTED, task_id=send.result().task_id)
        elif not send.done():
            send.cancel()
        elif recorder.on_wire_now:
            await recorder.ended(RequestState.UNCERTAIN, error="cancelled while createTask was on the wire")
        raise
    except KieError as exc:
        if recorder.on_wire_now:  # a definite "no" from Kie.ai: nothing was bought
            await recorder.ended(RequestState.REFUSED, error=str(exc), error_type=type(exc).__name__)
        raise
    await recorder.ended(RequestState.SUBMITTED, task_id=created.task_id)
    return created.task_id


async def create_and_wait(
    session: BaseSession,
    request: RawUserRequest | NormalizedRequest,
    *,
    options: PipelineOptions | None = None,
    timeout: float | None = None,
    raise_on_failure: bool = True,
) -> TaskOutcome:
    """``submit`` then ``wait``: the one-call case. A timeout's message carries the task id to re-attach to."""
    handle = await submit_request(session, request, options=options)
    return await handle.wait(timeout=timeout, raise_on_failure=raise_on_failure)
