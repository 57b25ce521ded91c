"""Submission and the seed toolkit's step-by-step names, as coroutines over a :class:`KieSession`.

``run_pipeline`` chains these; wrapper code that drives the steps itself calls them directly.
"""

from __future__ import annotations

from pathlib import Path

from kie_async.catalogue.payload import build_submission_payload
from kie_async.client import BaseSession
from kie_async.pipeline.prepared import PreparedRequest
from kie_async.wire.api_models import CreditBalance, DownloadResult, TaskCreated, TaskRecord
from kie_async.wire.polling import ProgressCallback


async def submit_prepared_request(
    prepared: PreparedRequest, session: BaseSession, *, callback_url: str | None = None
) -> TaskCreated:
    """Build the payload from a prepared (uploaded) request and send ``createTask`` once (never retried blindly)."""
    payload = build_submission_payload(prepared.validation, callback_url=callback_url)
    return await session.create_task(payload, validate=False)  # validated when it was prepared


async def wait_for_task(
    task_id: str,
    session: BaseSession,
    *,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    raise_on_failure: bool = True,
) -> TaskRecord:
    """Poll until the task succeeds or fails (see :meth:`KieSession.wait_for_task`)."""
    return await session.wait_for_task(
        task_id, timeout=timeout, on_progress=on_progress, raise_on_failure=raise_on_failure
    )


async def download_output_file(
    url: str, destination: str | Path, session: BaseSession, *, via_download_url: bool = False
) -> DownloadResult:
    """Download one output atomically (see :meth:`KieSession.download`)."""
    return await session.download(url, destination, via_download_url=via_download_url)


async def get_credit_balance(session: BaseSession) -> CreditBalance:
    """The account's remaining credits."""
    return await session.get_credits()
