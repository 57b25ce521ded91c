"""Taskiq: ``run_request``, a ready async task that runs one request through the pipeline, bought once per request.

Taskiq is asyncio-native: the task runs on the worker's own event loop, with one ``KieSession`` per worker process
(opened at the worker's startup, closed at its shutdown; settings from ``KIE_*``, ``KIE_COORDINATION_URL`` shares the
account's rate limit, budget and callbacks between the workers). Workers start with Taskiq's own command::

    KIE_API_KEY=... KIE_TASKIQ_BROKER_URL=redis://host:6379/0 \\
        taskiq worker kie_async.integrations.taskiq:broker --workers 2

and a producer enqueues a :class:`~kie_async.catalogue.request_models.RawUserRequest` as JSON::

    from kie_async.integrations.taskiq import broker, run_request
    await broker.startup()
    job = await run_request.kiq(RawUserRequest(model_key="nano-banana-2", prompt="a fox").model_dump(mode="json"))
    summary = (await job.wait_result(timeout=600)).return_value  # {"status": "succeeded", "task_id": ..., ...}

The default broker is a :class:`taskiq_redis.RedisStreamBroker`: a job is acknowledged once it has run and its
result is saved, and a job whose worker vanished is claimed by another worker after ``KIE_TASKIQ_IDLE_TIMEOUT``
seconds (default 600: keep it above your longest job). The purchase ledger (:mod:`kie_async.integrations.jobs`)
makes every delivery of one request buy once. A delivery that finds the same request running in another worker
right now buys nothing, waits ``$KIE_JOB_BUSY_COUNTDOWN`` seconds (unacknowledged) and tries again. A broker of your
own gets the same task with ``register(broker)``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask, Context, TaskiqDepends, TaskiqEvents, TaskiqState
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from kie_async.core.settings import KieSettings
from kie_async.integrations.jobs import JobSummary, KieJournalBusyError, OnResult, busy_countdown, run_job
from kie_async.session import KieSession

__all__ = ["TASK_NAME", "broker", "enqueue_batch", "make_broker", "register", "run_request"]

TASK_NAME = "kie_async.run_request"
BROKER_ENV = "KIE_TASKIQ_BROKER_URL"
BACKEND_ENV = "KIE_TASKIQ_RESULT_BACKEND"
IDLE_ENV = "KIE_TASKIQ_IDLE_TIMEOUT"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_IDLE_SECONDS = 600.0
RESULT_SECONDS = 7 * 24 * 3600
"""How long a job's result stays in the backend."""
MAX_BUSY_RETRIES = 720
"""How often a job may find its request busy (another worker runs it) before it fails: 2 h at 10 s."""
SESSION_STATE = "kie_session"


def make_broker(url: str | None = None, backend: str | None = None, *, idle_timeout: float | None = None) -> Any:
    """A Redis streams broker (acknowledged jobs) with a Redis result backend and ``run_request`` registered."""
    url = url or os.environ.get(BROKER_ENV, "").strip() or DEFAULT_BROKER
    backend = backend or os.environ.get(BACKEND_ENV, "").strip() or url
    if idle_timeout is None:
        idle_timeout = float(os.environ.get(IDLE_ENV, "").strip() or DEFAULT_IDLE_SECONDS)
    made = RedisStreamBroker(
        url,
        idle_timeout=max(1, round(idle_timeout * 1000)),  # milliseconds: a vanished worker's jobs come back after
        unacknowledged_lock_timeout=max(1.0, idle_timeout / 2),  # a killed worker's claiming lock is let go of
        xread_count=1,  # take one job at a time: a killed worker holds few, the others share the batch
        xread_block=1000,
    ).with_result_backend(RedisAsyncResultBackend(backend, result_ex_time=RESULT_SECONDS))
    register(made)
    return made


def register(target: AsyncBroker, *, name: str = TASK_NAME) -> AsyncTaskiqDecoratedTask[..., Any]:
    """Add ``run_request`` to ``target``, and a ``KieSession`` opened and closed with each of its worker processes."""
    target.add_event_handler(TaskiqEvents.WORKER_STARTUP, _open_session)
    target.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, _close_session)
    return target.register_task(run_request_job, task_name=name)


_CONTEXT: Context = TaskiqDepends()
"""Taskiq's dependency marker: the ``Context`` of the running job (its broker's state holds the session)."""


async def run_request_job(
    request: dict[str, Any], idempotency_key: str | None = None, context: Context = _CONTEXT
) -> JobSummary:
    """Run one request (a ``RawUserRequest`` as JSON) through the pipeline; bought once per idempotency key."""
    session = await _session(context.state)
    for _ in range(MAX_BUSY_RETRIES):
        try:
            return await run_job(session, request, idempotency_key=idempotency_key)
        except KieJournalBusyError:  # another worker runs this request now: nothing bought, try again later
            await asyncio.sleep(busy_countdown())
    return await run_job(session, request, idempotency_key=idempotency_key)


async def enqueue_batch(
    jobs: Sequence[tuple[dict[str, Any], str]],
    *,
    broker: str,
    backend: str | None = None,
    timeout: float | None = None,
    on_result: OnResult | None = None,
) -> list[JobSummary]:
    """Enqueue ``jobs`` (request JSON, idempotency key: :func:`~kie_async.integrations.jobs.batch_jobs`) on the
    broker and wait for every summary, in order; ``on_result`` hears of each as it finishes."""
    producer = make_broker(broker, backend or broker)
    await producer.startup()
    try:
        task = producer.find_task(TASK_NAME)
        sent = [await task.kiq(request, key) for request, key in jobs]

        async def one(index: int) -> JobSummary:
            result = await sent[index].wait_result(check_interval=0.2)
            result.raise_for_error()
            summary: JobSummary = result.return_value
            if on_result is not None:
                on_result(index, summary)
            return summary

        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*(one(i) for i in range(len(sent)))))
    finally:
        await producer.shutdown()


async def _session(state: TaskiqState) -> KieSession:
    session = getattr(state, SESSION_STATE, None)
    if not isinstance(session, KieSession):  # a broker run in-process (InMemoryBroker) has no worker startup
        await _open_session(state)
        session = getattr(state, SESSION_STATE)
    assert isinstance(session, KieSession)
    return session


async def _open_session(state: TaskiqState) -> None:
    if isinstance(getattr(state, SESSION_STATE, None), KieSession):
        return
    session = KieSession(KieSettings.from_env())
    await session.open()
    setattr(state, SESSION_STATE, session)


async def _close_session(state: TaskiqState) -> None:
    session = getattr(state, SESSION_STATE, None)
    if isinstance(session, KieSession):
        setattr(state, SESSION_STATE, None)
        await session.close()


broker = make_broker()
run_request = broker.find_task(TASK_NAME)
