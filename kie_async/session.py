"""The session a user opens: ``async with KieSession() as kie``.

:class:`~kie_async.client.BaseSession` is the HTTP client (requests, waiting, callback adoption, files) that
the pipeline stages take. ``KieSession`` is the front built on it and on the pipeline: task handles
(``submit``, ``task``), ``create_and_wait`` and readable outputs (``output``). Keeping these here, above the
pipeline, is what lets the pipeline import the client without the client importing the pipeline back.
"""

from __future__ import annotations

from collections.abc import Iterable

from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest
from kie_async.catalogue.specs import aload_registry
from kie_async.client import BaseSession
from kie_async.core.limits import check_timeout
from kie_async.core.media_sniff import MediaKind
from kie_async.pipeline.handle import TaskHandle, TaskOutcome, create_and_wait, submit_request, task_handle
from kie_async.pipeline.outputs import FileOutput
from kie_async.pipeline.run_models import PipelineOptions
from kie_async.wire.task_apis import TransportSpec

__all__ = ["KieSession"]


class KieSession(BaseSession):
    """Async client for Kie.ai (or the local emulator): ``async with KieSession(settings) as kie: ...``."""

    async def _other_transports(self) -> Iterable[TransportSpec]:
        """Every separate API the model specs describe (a callback's task may be on any of them)."""
        registry = await aload_registry()
        others = {spec.transport.name: spec.transport for spec in registry.specs.values()
                  if not spec.transport.is_market}
        return others.values()

    async def submit(
        self, request: RawUserRequest | NormalizedRequest, *, options: PipelineOptions | None = None
    ) -> TaskHandle:
        """Validate, preflight, upload and buy one request; return a :class:`TaskHandle` to wait on later.

        Refusals before any spend raise :class:`KieRequestBlockedError`; createTask is sent once (see
        :mod:`kie_async.pipeline.handle`).
        """
        return await submit_request(self, request, options=options)

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
    ) -> TaskOutcome:
        """``submit`` then ``wait``: one request to a finished :class:`TaskOutcome` with readable outputs."""
        check_timeout("timeout", timeout)
        return await create_and_wait(
            self, request, options=options, timeout=timeout, raise_on_failure=raise_on_failure
        )

    def output(self, url: str, *, kind: MediaKind | None = None) -> FileOutput:
        """A generated file's URL as a :class:`FileOutput` (``aiter_bytes``, ``aread``, ``save``)."""
        return FileOutput(self, url, kind=kind)
