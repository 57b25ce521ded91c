"""Files made on request from a finished task's output and answered as a URL, not as a new task (Veo's 1080P).

The transport spec describes the endpoint (``transport.upgrades``). Until the file is ready the endpoint
answers a non-200 code; the page says to ask again after a while, so this does, until the deadline. Codes
that will not change by waiting (the key, credits, no such task, a task that did not succeed, a paused
account) end it at once. Asking spends no credits.
"""

from __future__ import annotations

import asyncio
import time

from kie_async.client.request_path import RequestPath
from kie_async.core.errors import (
    KieAPIStatusError,
    KieAuthenticationError,
    KieInputError,
    KieInsufficientCreditsError,
    KieTimeoutError,
    KieValidationError,
)
from kie_async.core.limits import check_timeout
from kie_async.wire.task_apis import TransportSpec, UpgradeSpec, pick

_FINAL_422 = ("record status is not success", "record result data not exist", "record result data is empty")
"""422 answers that waiting will not change (besides the API's unknown-task messages)."""


def _upgrade_for(api: TransportSpec, name: str, task_id: str) -> UpgradeSpec:
    upgrade = api.upgrade(name)
    if upgrade is None:
        offered = ", ".join(u.name for u in api.upgrades) or "none"
        raise KieInputError(
            f"task {task_id} was bought on the {api.name} API, which has no {name!r} upgrade (it offers: {offered})",
            hint="pass the transport= of the model that made the task, or ask for an upgrade it offers",
        )
    return upgrade


def _final(api: TransportSpec, exc: KieAPIStatusError) -> bool:
    """Whether an answer ends the asking (waiting would not change it)."""
    if isinstance(exc, KieAuthenticationError | KieInsufficientCreditsError):
        return True
    if isinstance(exc, KieValidationError):
        text = exc.message.strip().lower()
        return api.status.says_unknown(exc.message) or any(text.startswith(m) for m in _FINAL_422)
    return False


async def fetch_upgrade_url(
    requests: RequestPath,
    task_id: str,
    name: str,
    *,
    index: int = 0,
    timeout: float | None = None,
    transport: TransportSpec | None = None,
    every: float | None = None,
) -> str:
    """The URL of ``task_id``'s ``name`` version (``"1080p"``) of output ``index``, asked until it is ready
    (every ``retry_seconds`` of the spec, or ``every``)."""
    check_timeout("timeout", timeout)
    check_timeout("every", every)
    if not task_id:
        raise KieInputError("task_id is empty", hint="pass the taskId of the finished task")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise KieInputError(f"index must be a whole number >= 0, got {index!r}")
    api = requests.transport_for(task_id, transport)
    upgrade = _upgrade_for(api, name, task_id)
    deadline = time.monotonic() + (timeout if timeout is not None else 600.0)
    asked = upgrade.request(task_id, index)
    while True:
        try:
            data = await requests.api(
                upgrade.method,
                requests.url(upgrade.path),
                endpoint=f"upgrade:{upgrade.name}",
                idempotent=True,
                params={k: str(v) for k, v in asked.items()} if upgrade.method == "GET" else None,
                json_body=asked if upgrade.method == "POST" else None,
                limiter=requests.read_limit(),
            )
        except KieAPIStatusError as exc:
            if _final(api, exc):
                raise
            last = exc.message
        else:
            url = pick(data, upgrade.result_url) if isinstance(data, dict) else None
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return url
            last = f"an answer without a URL: {str(data)[:120]!r}"
        left = deadline - time.monotonic()
        if left <= 0:
            raise KieTimeoutError(f"the {upgrade.name} version of task {task_id} was not ready in time ({last})")
        await asyncio.sleep(min(every or upgrade.retry_seconds, left))
