"""One request through the pipeline as an engine's job: bought once, however often the engine delivers it.

Task engines (Celery, Taskiq) deliver a job *at least* once: a job whose worker died is delivered again, and the
same batch may be enqueued twice. Every run here goes through :func:`~kie_async.pipeline.run.run_pipeline` with
an ``idempotency_key`` (the caller's, else one made from the request's key), so the account's purchase ledger
(:mod:`kie_async.ledger.account`) decides each delivery:

- the first delivery buys the task and delivers it;
- a delivery after a worker died mid-run resumes the paid task it left (no second purchase);
- a delivery after the job was delivered gets the recorded result back (``resumed: true``), buying nothing;
- a delivery while another worker runs the same job now fails with :class:`KieJournalBusyError` (buying
  nothing); the engine's integration retries it later, when it finds the delivered result.

The ledger is on this machine's disk (``KIE_STATE_DIR`` / ``KIE_LEDGER``): workers on one machine share it. Workers
on several machines need a ledger they all see (a Redis ledger: not built yet).

:class:`ProcessLoop` gives a worker process that is not asyncio-native (Celery's prefork and threads pools) one
event loop in a background thread and one :class:`~kie_async.session.KieSession`, made again after a fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from kie_async.catalogue.model_data import preload_model_data
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.errors import KieError, KieInputError, KieJournalBusyError
from kie_async.core.settings import KieSettings
from kie_async.ledger.journal import request_key
from kie_async.pipeline.run import run_pipeline
from kie_async.pipeline.run_models import RunResult
from kie_async.session import KieSession

T = TypeVar("T")

__all__ = [
    "BUSY_COUNTDOWN_ENV",
    "ENGINE_MODULES",
    "JobSummary",
    "KieJournalBusyError",
    "OnResult",
    "ProcessLoop",
    "batch_jobs",
    "busy_countdown",
    "job_key",
    "run_job",
    "summary",
]

BUSY_COUNTDOWN_ENV = "KIE_JOB_BUSY_COUNTDOWN"
"""Seconds before a job that found its request busy (another worker runs it now) is tried again (default 10)."""

JobSummary = dict[str, Any]
"""What a job returns through the engine's result backend: plain JSON."""

OnResult = Callable[[int, JobSummary], None]
"""Told of each finished job of a batch: its index in the batch and its summary."""

ENGINE_MODULES = {"celery": "kie_async.integrations.celery", "taskiq": "kie_async.integrations.taskiq"}
"""The engine modules by engine name, each with ``async enqueue_batch(jobs, *, broker, backend, timeout,
on_result)``; imported by name, as its engine is an optional extra."""


def busy_countdown() -> float:
    """``$KIE_JOB_BUSY_COUNTDOWN`` seconds, else 10."""
    raw = os.environ.get(BUSY_COUNTDOWN_ENV, "").strip()
    try:
        value = float(raw) if raw else 10.0
    except ValueError as exc:
        raise KieInputError(f"{BUSY_COUNTDOWN_ENV}={raw!r} is not a number of seconds") from exc
    return max(0.0, value)


def parse_request(request: Mapping[str, Any] | RawUserRequest) -> RawUserRequest:
    """A job's request: a ``RawUserRequest`` as a JSON object (``RawUserRequest.model_dump(mode="json")``)."""
    if isinstance(request, RawUserRequest):
        return request
    if not isinstance(request, Mapping):
        raise KieInputError(
            f"a job's request must be a JSON object (a RawUserRequest), got {type(request).__name__}",
            hint='enqueue RawUserRequest(...).model_dump(mode="json"), e.g. {"model_key": ..., "prompt": ...}',
        )
    return RawUserRequest.model_validate(dict(request))


async def job_key(request: RawUserRequest) -> str:
    """The idempotency key of a job that names none: ``job-<request key>`` (the same request buys once).

    A request the catalogue cannot read (it will be blocked, buying nothing) is keyed by a hash of its JSON.
    """
    await preload_model_data()
    try:
        return f"job-{request_key(normalize_request(request))}"
    except (KieError, ValueError):
        pass
    dump = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), default=str)
    return "job-json-" + hashlib.sha256(dump.encode("utf-8", "surrogatepass")).hexdigest()[:24]


async def batch_jobs(requests: Sequence[RawUserRequest]) -> list[tuple[dict[str, Any], str]]:
    """Each request of a batch as a job: its JSON and its idempotency key (``job-<request key>``; an identical
    request met again in the batch is ``#2``, ``#3``..., as in a batch journal). Enqueue the same batch again, or
    after stopping, and the keys are the same: nothing is bought twice."""
    seen: Counter[str] = Counter()
    jobs: list[tuple[dict[str, Any], str]] = []
    for request in requests:
        key = await job_key(request)
        seen[key] += 1
        jobs.append((request.model_dump(mode="json"), key if seen[key] == 1 else f"{key}#{seen[key]}"))
    return jobs


async def run_job(
    session: KieSession, request: Mapping[str, Any] | RawUserRequest, *, idempotency_key: str | None = None
) -> JobSummary:
    """Run one job's request (see the module's rules); raises :class:`KieJournalBusyError` to be retried later."""
    raw = parse_request(request)
    key = idempotency_key if idempotency_key is not None else await job_key(raw)
    result = await run_pipeline(raw, session, idempotency_key=key)
    return summary(result, key)


def summary(result: RunResult, idempotency_key: str) -> JobSummary:
    """A run's result as the JSON a result backend stores."""
    return {
        "status": result.status,
        "state": result.state.value,
        "model_key": result.model_key,
        "task_id": result.task_id,
        "run_id": result.run_id,
        "run_dir": result.run_dir,
        "outputs": [str(output.path) for output in result.outputs],
        "output_urls": list(result.output_urls),
        "credits": result.credits_charged,
        "credits_estimated": result.credits_estimated,
        "resumed": result.resumed,
        "idempotency_key": idempotency_key,
        "request_key": result.request_key,
        "error": result.error,
        "error_type": result.error_type,
        "pid": os.getpid(),
    }


class ProcessLoop:
    """One event loop (in a daemon thread) and one open :class:`KieSession` per process; any thread may call.

    Made on first use and made again in a forked child (a prefork pool's process), whose copy of the parent's
    thread does not run. Settings come from ``KIE_*`` (:meth:`KieSettings.from_env`), read when the session opens.
    """

    def __init__(self, settings: Callable[[], KieSettings] = KieSettings.from_env) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: KieSession | None = None

    def run(self, job: Callable[[KieSession], Awaitable[T]], *, timeout: float | None = None) -> T:
        """Run ``job(session)`` on this process's loop and wait for it (from any thread but the loop's)."""
        loop, session = self._ensure()

        async def call() -> T:
            return await job(session)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, KieSession]:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None or self._session is None:
                self._start()
            assert self._loop is not None and self._session is not None
            return self._loop, self._session

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=serve, name="kie-async-jobs", daemon=True)
        thread.start()
        ready.wait()
        try:
            session = KieSession(self._settings())
            asyncio.run_coroutine_threadsafe(session.open(), loop).result()
        except BaseException:  # bad settings (no key, the real Kie.ai without opt-in): no loop left behind
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self._pid, self._loop, self._thread, self._session = os.getpid(), loop, thread, session

    def close(self, *, timeout: float = 30.0) -> None:
        """Close the session and stop the loop (a worker process shutting down); the next run starts them again."""
        with self._lock:
            loop, thread, session = self._loop, self._thread, self._session
            mine = self._pid == os.getpid()
            self._pid = self._loop = self._thread = self._session = None
        if not mine or loop is None or thread is None:
            return
        if session is not None:
            with contextlib.suppress(Exception):  # a shutting-down worker: the pool goes with the process anyway
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
