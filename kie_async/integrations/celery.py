"""Celery: ``run_request``, a ready task that runs one request through the pipeline, bought once per request.

Workers start with Celery's own command (any pool: ``prefork``, ``threads``, ``solo``)::

    KIE_API_KEY=... KIE_CELERY_BROKER_URL=redis://host:6379/0 \\
        celery -A kie_async.integrations.celery worker --pool prefork --concurrency 4

and a producer enqueues a :class:`~kie_async.catalogue.request_models.RawUserRequest` as JSON::

    from kie_async.integrations.celery import run_request
    job = run_request.delay(RawUserRequest(model_key="nano-banana-2", prompt="a fox").model_dump(mode="json"))
    job.get()  # {"status": "succeeded", "state": "succeeded", "task_id": ..., "outputs": [...], "credits": ...}

An app of your own gets the same task with ``register(app)``. The task is ``acks_late`` and
``reject_on_worker_lost``: a job whose worker died is delivered again, and the purchase ledger
(:mod:`kie_async.integrations.jobs`) makes every delivery of one request buy once: the first buys, one after a
crash resumes the paid task, one after delivery returns the recorded result. A delivery that finds the same
request running in another worker right now buys nothing and is retried (``self.retry``) after
``$KIE_JOB_BUSY_COUNTDOWN`` seconds.

Each worker process runs its jobs on one event loop of its own with one ``KieSession`` (settings from ``KIE_*``;
``KIE_COORDINATION_URL`` shares the account's rate limit, budget and callbacks between the workers).

The default app reads ``KIE_CELERY_BROKER_URL`` (else ``CELERY_BROKER_URL``, else a local Redis), and
``KIE_CELERY_RESULT_BACKEND`` (else ``CELERY_RESULT_BACKEND``, else the broker). ``KIE_CELERY_VISIBILITY_TIMEOUT``
is how many seconds a Redis broker waits before it delivers again a job whose worker vanished (Celery's default:
one hour); keep it above your longest job, or a running job is delivered twice (it then waits, buying nothing).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown

from kie_async.integrations.jobs import (
    JobSummary,
    KieJournalBusyError,
    OnResult,
    ProcessLoop,
    busy_countdown,
    run_job,
)
from kie_async.session import KieSession

__all__ = ["TASK_NAME", "app", "enqueue_batch", "make_app", "register", "run_request"]

TASK_NAME = "kie_async.run_request"
BROKER_ENV = ("KIE_CELERY_BROKER_URL", "CELERY_BROKER_URL")
BACKEND_ENV = ("KIE_CELERY_RESULT_BACKEND", "CELERY_RESULT_BACKEND")
VISIBILITY_ENV = "KIE_CELERY_VISIBILITY_TIMEOUT"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
MAX_BUSY_RETRIES = 720
"""How often a job may find its request busy (another worker runs it) before it fails: 2 h at 10 s."""

LOOP = ProcessLoop()
"""This worker process's event loop and session (made again in each prefork child)."""


def _env(names: tuple[str, ...]) -> str | None:
    return next((value for name in names if (value := os.environ.get(name, "").strip())), None)


def make_app(broker: str | None = None, backend: str | None = None, *, visibility_timeout: float | None = None) -> Any:
    """A Celery app with :data:`TASK_NAME` registered, JSON only, one job prefetched per worker process."""
    broker = broker or _env(BROKER_ENV) or DEFAULT_BROKER
    celery_app = Celery("kie_async", broker=broker, backend=backend or _env(BACKEND_ENV) or broker)
    celery_app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,  # a killed worker holds as few jobs as it can
        task_track_started=True,
        result_extended=True,
        broker_connection_retry_on_startup=True,
    )
    if visibility_timeout is None and (raw := os.environ.get(VISIBILITY_ENV, "").strip()):
        visibility_timeout = float(raw)
    if visibility_timeout is not None:
        sweep = max(1, min(10, round(visibility_timeout / 4)))
        celery_app.conf.broker_transport_options = {
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": sweep,  # look for a vanished worker's jobs this often...
            "unacked_restore_throttle": 1,  # ... on every sweep
        }
    register(celery_app)
    return celery_app


def register(celery_app: Any, *, name: str = TASK_NAME, **options: Any) -> Any:
    """Add the ``run_request`` task to ``celery_app`` (``acks_late``, ``reject_on_worker_lost``); returns it.

    ``options`` go to ``celery_app.task`` (a queue, a rate limit, ``max_retries`` for a busy request).
    """

    def run_request(self: Any, request: dict[str, Any], idempotency_key: str | None = None) -> JobSummary:
        """Run one request (a ``RawUserRequest`` as JSON) through the pipeline; bought once per idempotency key."""
        job = functools.partial(_job, request=request, idempotency_key=idempotency_key)
        try:
            return LOOP.run(job)
        except KieJournalBusyError as exc:  # another worker runs this request now: nothing bought, try later
            raise self.retry(exc=exc, countdown=busy_countdown()) from exc

    settings: dict[str, Any] = {
        "bind": True,
        "name": name,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "max_retries": MAX_BUSY_RETRIES,
        **options,
    }
    return celery_app.task(**settings)(run_request)


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
    producer = make_app(broker, backend or broker)
    sent = [producer.send_task(TASK_NAME, args=[request, key]) for request, key in jobs]
    deadline = None if timeout is None else time.monotonic() + timeout

    def wait() -> list[JobSummary]:
        pending = dict(enumerate(sent))
        done: dict[int, JobSummary] = {}
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(sent)} jobs not finished within {timeout:g} s")
            for index, job in list(pending.items()):
                if job.ready():
                    done[index] = job.get(propagate=True)
                    del pending[index]
                    if on_result is not None:
                        on_result(index, done[index])
            if pending:
                time.sleep(0.2)
        return [done[i] for i in range(len(sent))]

    return await asyncio.to_thread(wait)


async def _job(session: KieSession, *, request: dict[str, Any], idempotency_key: str | None) -> JobSummary:
    return await run_job(session, request, idempotency_key=idempotency_key)


def _close_loop(**_: Any) -> None:
    LOOP.close()


worker_process_shutdown.connect(_close_loop, weak=False)  # a prefork child
worker_shutdown.connect(_close_loop, weak=False)  # the main process (threads and solo pools)

app = make_app()
run_request = app.tasks[TASK_NAME]
