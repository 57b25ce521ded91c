"""The session a user opens: ``async with KieSession() as kie``.

:class:`~kie_async.client.BaseSession` is the HTTP client (requests, waiting, callback adoption, files) that
the pipeline stages take. ``KieSession`` is the front built on it and on the pipeline: task handles
(``submit``, ``task``), ``create_and_wait``, readable outputs (``output``) and chat (``chat``, ``chat_stream``).
Keeping these here, above the pipeline, is what lets the pipeline import the client without the client importing
the pipeline back.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest
from kie_async.catalogue.specs import ModelSpec, aload_registry
from kie_async.catalogue.wire_parse import best_wire_parse
from kie_async.client import BaseSession
from kie_async.core.errors import KieInputError
from kie_async.core.limits import check_timeout
from kie_async.core.media_sniff import MediaKind
from kie_async.ledger.budget import CreditBudget
from kie_async.pipeline.chat import ChatStream, MessagesIn, chat, chat_stream
from kie_async.pipeline.handle import TaskHandle, TaskOutcome, submit_request, task_handle
from kie_async.pipeline.outputs import FileOutput
from kie_async.pipeline.run_models import PipelineOptions
from kie_async.wire.api_models import CreateTaskPayload
from kie_async.wire.chat.models import ChatResult
from kie_async.wire.task_apis import TransportSpec

__all__ = ["KieSession"]


class KieSession(BaseSession):
    """Async client for Kie.ai (or the local emulator): ``async with KieSession(settings) as kie: ...``."""

    async def _other_transports(self) -> Iterable[TransportSpec]:
        """Every separate API the model specs describe (a callback's task may be on any of them)."""
        registry = await aload_registry()
        others = {
            spec.transport.name: spec.transport for spec in registry.specs.values() if not spec.transport.is_market
        }
        return others.values()

    async def _check_body(self, payload: CreateTaskPayload) -> None:
        """A raw ``create_task`` body against the spec of its model, when the catalogue knows that model.

        The provider ignores a field it does not know, so a mistyped option key was bought at the default;
        unknown keys are refused here with the nearest field name.
        """
        if not payload.api.is_market:
            return  # a separate API's body has that API's own shape; its spec checks it in the pipeline
        registry = await aload_registry()  # read once, in a thread; best_wire_parse then uses it from memory
        parsed = best_wire_parse(payload.model, dict(payload.input))
        if parsed is None:
            return  # a model the catalogue does not know is sent as written: create_task is the escape hatch
        problems = [*_unknown_keys(registry.specs[parsed.model_key], payload.input), *parsed.problems]
        if problems:
            raise KieInputError(
                f"create_task input for {payload.model}: " + "; ".join(problems),
                hint="fix the named fields (`kie-async models show` lists them), or pass validate=False to send "
                "the body as it is",
            )

    async def submit(
        self,
        request: RawUserRequest | NormalizedRequest,
        *,
        options: PipelineOptions | None = None,
        idempotency_key: str | None = None,
        resubmit: bool = False,
    ) -> TaskHandle:
        """Validate, preflight, upload and buy one request; return a :class:`TaskHandle` to wait on later.

        Refusals before any spend raise :class:`KieRequestBlockedError`; createTask is sent once and recorded in
        the account's ledger: a paid task not yet delivered is handed back instead of buying again, and
        ``idempotency_key`` returns the task it first bought (see :mod:`kie_async.pipeline.handle`).
        """
        return await submit_request(self, request, options=options, idempotency_key=idempotency_key, resubmit=resubmit)

    def task(self, task_id: str, *, model_key: str | None = None) -> TaskHandle:
        """Re-attach to a task by id (created by this process or another); nothing is read until asked."""
        return task_handle(self, task_id, model_key=model_key)

    async def create_and_wait(
        self,
        request: RawUserRequest | NormalizedRequest,
        *,
        options: PipelineOptions | None = None,
        timeout: float | None = None,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
        resubmit: bool = False,
    ) -> TaskOutcome:
        """``submit`` then ``wait``: one request to a finished :class:`TaskOutcome` with readable outputs."""
        check_timeout("timeout", timeout)
        handle = await self.submit(request, options=options, idempotency_key=idempotency_key, resubmit=resubmit)
        return await handle.wait(timeout=timeout, raise_on_failure=raise_on_failure)

    def output(self, url: str, *, kind: MediaKind | None = None) -> FileOutput:
        """A generated file's URL as a :class:`FileOutput` (``aiter_bytes``, ``aread``, ``save``)."""
        return FileOutput(self, url, kind=kind)

    async def chat(
        self,
        model: str,
        messages: MessagesIn,
        *,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        budget: CreditBudget | None = None,
        reserve_credits: float | None = None,
        allow_unknown_cost: bool = False,
        provider_model: str | None = None,
        timeout: float | None = None,
    ) -> ChatResult:
        """Ask a chat model and get the whole answer (see :func:`kie_async.pipeline.chat.chat`)."""
        return await chat(
            self,
            model,
            messages,
            system=system,
            options=options,
            budget=budget,
            reserve_credits=reserve_credits,
            allow_unknown_cost=allow_unknown_cost,
            provider_model=provider_model,
            timeout=timeout,
        )

    def chat_stream(
        self,
        model: str,
        messages: MessagesIn,
        *,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        budget: CreditBudget | None = None,
        reserve_credits: float | None = None,
        allow_unknown_cost: bool = False,
        provider_model: str | None = None,
        timeout: float | None = None,
    ) -> ChatStream:
        """Ask a chat model and ``async for`` over the answer as it arrives (see
        :func:`kie_async.pipeline.chat.chat_stream`)."""
        return chat_stream(
            self,
            model,
            messages,
            system=system,
            options=options,
            budget=budget,
            reserve_credits=reserve_credits,
            allow_unknown_cost=allow_unknown_cost,
            provider_model=provider_model,
            timeout=timeout,
        )


def _unknown_keys(spec: ModelSpec, body: Mapping[str, object]) -> list[str]:
    known = {spec.prompt.field, *spec.options, *(slot.field for mode in spec.task_modes for slot in mode.slots)}
    problems = []
    for key in body:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            problems.append(f"{key}: not a field of {spec.key}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    return problems
