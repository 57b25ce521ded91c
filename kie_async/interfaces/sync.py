"""A blocking facade for code that cannot ``await``: Django sync views, plain scripts, a REPL.

``with KieClient(settings) as kie: kie.get_credits()``. The method names are the session's. Every call runs on
**one** private event loop in **one** background thread, started by ``open()`` and stopped by ``close()``:
one connection pool, one rate limiter and one set of caches for the facade's life. ``asyncio.run()`` per call
would build and tear down a loop (and the pool bound to it) every time, and anything created on an earlier
loop (a lock, a connection) then breaks on the next one.

Any number of threads may call one ``KieClient`` at once: the calls are coroutines on the one loop, so they
share the limiter exactly as tasks of one async program would. Errors come out as the same typed
``KieError`` classes. Calling it from inside a running event loop is refused (it would block that loop): use
:class:`~kie_async.session.KieSession` there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from kie_async.catalogue.preflight import PreflightResult, run_preflight
from kie_async.catalogue.pricing import CostEstimate, estimate_request_cost
from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.catalogue.validate import validate_request
from kie_async.core.errors import KieConfigError, KieError, attach_paid_task, paid_task_id
from kie_async.core.settings import KieSettings
from kie_async.pipeline.chat import MessagesIn, chat
from kie_async.pipeline.fanout import ProgressCallback, run_many
from kie_async.pipeline.handle import TaskHandle, TaskOutcome
from kie_async.pipeline.outputs import FileOutput
from kie_async.pipeline.run import run_pipeline
from kie_async.pipeline.run_models import PipelineOptions, RunResult, RunResults
from kie_async.session import KieSession
from kie_async.wire.api_models import CreditBalance, DownloadResult, TaskCreated, TaskRecord
from kie_async.wire.chat.models import ChatResult
from kie_async.wire.polling import TaskProgress

T = TypeVar("T")

__all__ = ["KieClient", "SyncTaskHandle"]


class SyncTaskHandle:
    """The blocking twin of :class:`~kie_async.pipeline.handle.TaskHandle` (``refresh``, ``progress``, ``wait``)."""

    def __init__(self, client: KieClient, handle: TaskHandle) -> None:
        self._client = client
        self.handle = handle

    @property
    def task_id(self) -> str:
        return self.handle.task_id

    def __repr__(self) -> str:
        return f"Sync{self.handle!r}"

    def refresh(self, *, timeout: float | None = None) -> TaskRecord:
        return self._client._run(lambda: self.handle.refresh(timeout=timeout))

    def wait(self, *, timeout: float | None = None, raise_on_failure: bool = True) -> TaskOutcome:
        return self._client._run(lambda: self.handle.wait(timeout=timeout, raise_on_failure=raise_on_failure))

    def progress(self, *, timeout: float | None = None) -> Iterator[TaskProgress]:
        """``for p in handle.progress():`` one :class:`TaskProgress` per poll; breaking out stops the polling."""
        stream = self.handle.progress(timeout=timeout)
        try:
            while True:
                try:
                    yield self._client._run(stream.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            if self._client._session is not None:
                self._client._run(stream.aclose)


class KieClient:
    """Blocking Kie.ai client over a :class:`KieSession` on a private loop thread; use it as a context manager."""

    def __init__(self, settings: KieSettings | None = None) -> None:
        self.settings = settings if settings is not None else KieSettings.from_env()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: KieSession | None = None
        self._calls: dict[concurrent.futures.Future[Any], threading.Event] = {}
        self._closing = False

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "closed"
        return f"KieClient(base_url={self.settings.base_url!r}, {state})"

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Start the loop thread and open the session on it (the live opt-in is checked here, as in the session)."""
        with self._lock:
            if self._session is not None:
                return
            _refuse_inside_a_loop("KieClient.open")
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name="kie-async-sync", daemon=True)
            thread.start()
            ready.wait()
            settings = self.settings

            async def make() -> KieSession:
                session = KieSession(settings)  # built and opened on its own loop: loop-bound state lands there
                await session.open()
                return session

            try:
                session = asyncio.run_coroutine_threadsafe(make(), loop).result()
            except BaseException:
                _stop(loop, thread)
                raise
            self._loop, self._thread, self._session, self._closing = loop, thread, session, False

    def close(self) -> None:
        """Cancel calls still running, close the session, stop the thread.

        A cancelled call first finishes its own cleanup (an answer already on its way is awaited and recorded),
        then raises ``KieConfigError`` in its thread; a call that had bought a task carries its ``task_id``.
        """
        with self._lock:
            loop, thread, session = self._loop, self._thread, self._session
            if loop is None or thread is None or session is None:
                return
            if threading.current_thread() is thread:
                raise KieConfigError("KieClient.close() called from its own loop thread (from a callback?)")
            self._closing = True
            self._session = None
            calls = dict(self._calls)
            for call in calls:
                call.cancel()
            deadline = time.monotonic() + _CLEANUP_SECONDS
            for finished in calls.values():  # the session must outlive every call's cleanup, or answers are lost
                finished.wait(timeout=max(0.0, deadline - time.monotonic()))
            try:
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=60)
            finally:
                _stop(loop, thread)
                self._loop = self._thread = None

    @property
    def session(self) -> KieSession:
        """The underlying session (for code that runs on this client's loop, e.g. inside ``run``'s hooks)."""
        if self._session is None:
            raise KieConfigError("KieClient is not open", hint="use `with KieClient(settings) as kie:` or kie.open()")
        return self._session

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one coroutine on the client's loop and block this thread until it is done."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._session is None:
            raise KieConfigError("KieClient is not open", hint="use `with KieClient(settings) as kie:` or kie.open()")
        if threading.current_thread() is thread:
            raise KieConfigError(
                "a KieClient method was called from its own loop thread (a callback?); it would wait forever",
                hint="inside callbacks use the async API on kie.session",
            )
        _refuse_inside_a_loop("KieClient")

        finished = threading.Event()
        stopped: list[BaseException] = []

        async def call() -> T:
            try:
                return await make()
            except BaseException as exc:
                stopped.append(exc)
                raise
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        self._calls[future] = finished
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closing:
                finished.wait(timeout=_CLEANUP_SECONDS)
                raise _with_paid_task(
                    KieConfigError("KieClient was closed while this call was running"), stopped
                ) from None
            raise
        except BaseException as exc:
            if not future.done():
                # Ctrl-C in the calling thread stops the coroutine too; a purchase on the wire finishes, and the
                # KeyboardInterrupt carries the task it bought (``task_id``) once the cleanup is done.
                future.cancel()
                finished.wait(timeout=_CLEANUP_SECONDS)
                _with_paid_task(exc, stopped)
            raise
        finally:
            self._calls.pop(future, None)

    # -- the session's methods -------------------------------------------------------------------------------

    def get_credits(self, *, timeout: float | None = None) -> CreditBalance:
        return self._run(lambda: self.session.get_credits(timeout=timeout))

    def create_task(self, *, model: str, input: dict[str, Any], callback_url: str | None = None) -> TaskCreated:
        """Raw ``createTask`` (no validation or preflight: prefer :meth:`submit`). Sent once, never retried."""
        return self._run(lambda: self.session.create_task(model=model, input=input, callback_url=callback_url))

    def get_task(self, task_id: str, *, timeout: float | None = None) -> TaskRecord:
        return self._run(lambda: self.session.get_task(task_id, timeout=timeout))

    def wait_for_task(self, task_id: str, *, timeout: float | None = None, raise_on_failure: bool = True) -> TaskRecord:
        return self._run(
            lambda: self.session.wait_for_task(task_id, timeout=timeout, raise_on_failure=raise_on_failure)
        )

    def download(self, url: str, dest: str | Path, *, via_download_url: bool = False) -> DownloadResult:
        return self._run(lambda: self.session.download(url, dest, via_download_url=via_download_url))

    def submit(
        self,
        request: RawUserRequest | NormalizedRequest,
        *,
        options: PipelineOptions | None = None,
        idempotency_key: str | None = None,
        resubmit: bool = False,
    ) -> SyncTaskHandle:
        return SyncTaskHandle(
            self,
            self._run(
                lambda: self.session.submit(
                    request, options=options, idempotency_key=idempotency_key, resubmit=resubmit
                )
            ),
        )

    def task(self, task_id: str, *, model_key: str | None = None) -> SyncTaskHandle:
        return SyncTaskHandle(self, self.session.task(task_id, model_key=model_key))

    def create_and_wait(
        self,
        request: RawUserRequest | NormalizedRequest,
        *,
        options: PipelineOptions | None = None,
        timeout: float | None = None,
        raise_on_failure: bool = True,
        idempotency_key: str | None = None,
        resubmit: bool = False,
    ) -> TaskOutcome:
        return self._run(
            lambda: self.session.create_and_wait(
                request,
                options=options,
                timeout=timeout,
                raise_on_failure=raise_on_failure,
                idempotency_key=idempotency_key,
                resubmit=resubmit,
            )
        )

    def read(self, output: FileOutput, *, max_bytes: int | None = None) -> bytes:
        """A :class:`FileOutput`'s bytes (``output.aread()``)."""
        return self._run(lambda: output.aread(max_bytes=max_bytes))

    def save(self, output: FileOutput, dest: str | Path, *, name_from_content: bool = False) -> DownloadResult:
        """Save a :class:`FileOutput` atomically (``output.save()``)."""
        return self._run(lambda: output.save(dest, name_from_content=name_from_content))

    # -- checks that never talk to Kie.ai, and the pipeline ---------------------------------------------------

    def validate(self, request: RawUserRequest | NormalizedRequest) -> ValidationResult:
        """:func:`~kie_async.catalogue.validate.validate_request` (pure; runs in the calling thread)."""
        return validate_request(request)

    def estimate(self, request: RawUserRequest | NormalizedRequest | ValidationResult) -> CostEstimate:
        """:func:`~kie_async.catalogue.pricing.estimate_request_cost` (pure; runs in the calling thread)."""
        return estimate_request_cost(request)

    def preflight(
        self,
        request: RawUserRequest | NormalizedRequest | ValidationResult,
        *,
        budget_credits: float | None = None,
        check_balance: bool = True,
    ) -> PreflightResult:
        """The gate before a purchase, with the live balance unless ``check_balance=False``."""
        return self._run(
            lambda: run_preflight(
                request, credit_source=self.session if check_balance else None, budget_credits=budget_credits
            )
        )

    def chat(
        self,
        model: str,
        messages: MessagesIn,
        *,
        system: str | None = None,
        options: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ChatResult:
        """One chat call, answered whole (:meth:`kie_async.KieSession.chat`; streaming needs the async API)."""
        return self._run(lambda: chat(self.session, model, messages, system=system, options=options, timeout=timeout))

    def run(
        self,
        request: RawUserRequest | NormalizedRequest,
        *,
        options: PipelineOptions | None = None,
        resume_task_id: str | None = None,
        idempotency_key: str | None = None,
        resubmit: bool = False,
    ) -> RunResult:
        """:func:`~kie_async.pipeline.run.run_pipeline`: one request end to end, with its run folder, in the ledger.

        Interrupted after the purchase (Ctrl-C, :meth:`close` from another thread), the exception carries the
        task's id as ``task_id``; the same ``run(request)`` again resumes that task without buying again (so does
        ``resume_task_id=...``).
        """
        return self._run(
            lambda: run_pipeline(
                request,
                self.session,
                options=options,
                resume_task_id=resume_task_id,
                idempotency_key=idempotency_key,
                resubmit=resubmit,
            )
        )

    def run_many(
        self,
        requests: Sequence[RawUserRequest],
        *,
        concurrency: int = 8,
        budget_credits: float | None = None,
        options: PipelineOptions | None = None,
        journal_path: str | Path | None = None,
        on_progress: ProgressCallback | None = None,
        retry_failed: bool = False,
        resubmit_uncertain: bool = False,
        batch_id: str | None = None,
        progress: bool = False,
    ) -> RunResults:
        """:func:`~kie_async.pipeline.fanout.run_many` (``on_progress`` runs on the client's loop thread)."""
        return self._run(
            lambda: run_many(
                requests,
                self.session,
                concurrency=concurrency,
                budget_credits=budget_credits,
                options=options,
                journal_path=journal_path,
                on_progress=on_progress,
                retry_failed=retry_failed,
                resubmit_uncertain=resubmit_uncertain,
                batch_id=batch_id,
                progress=progress,
            )
        )


_CLEANUP_SECONDS = 60.0
"""How long a cancelled call may take to finish its cleanup (a createTask answer on its way waits up to 30 s)."""


def _with_paid_task(exc: BaseException, stopped: list[BaseException]) -> BaseException:
    """``exc`` carrying the task the stopped coroutine had bought, if any (see ``kie_async.errors``)."""
    for inner in stopped:
        task_id = paid_task_id(inner)
        if task_id is not None:
            resume = f"resume it without buying again: run(request, resume_task_id={task_id!r})"
            if isinstance(exc, KieError):
                exc = exc.with_hint(f"task {task_id} is paid for; {resume}")
            attach_paid_task(exc, task_id, resume)
    return exc


def _refuse_inside_a_loop(what: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise KieConfigError(
        f"{what} blocks, and it was called inside a running event loop (which it would freeze)",
        hint="in async code use `async with KieSession(settings) as kie:` and await its methods",
    )


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    async def drain() -> None:
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await loop.shutdown_asyncgens()

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    if not thread.is_alive():
        loop.close()
