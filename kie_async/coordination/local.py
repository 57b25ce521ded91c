"""The in-process coordinator: today's behaviour, the default. Nothing leaves this process.

Right for one process per account (a script, a notebook, a single worker). Several processes on one key each
get their own window and would together exceed the account's limit: that is what the Redis coordinator is for.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager

from kie_async.coordination.base import UPLOAD_REUSE_SECONDS, Coordinator, ReadLimit, SubmitWindow
from kie_async.core.settings import RateLimitSettings
from kie_async.ledger.budget import CreditBudget
from kie_async.wire.api_models import UploadedFile
from kie_async.wire.rate_limit import SlidingWindowLimiter, TokenBucket


class LocalSubmitWindow(SubmitWindow):
    def __init__(self, limiter: SlidingWindowLimiter) -> None:
        self.limiter = limiter

    def slot(self) -> AbstractAsyncContextManager[None]:
        return self.limiter.slot()

    async def pause(self, seconds: float) -> None:
        self.limiter.penalize(seconds)


class LocalReadLimit(ReadLimit):
    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket

    async def acquire(self) -> None:
        await self.bucket.acquire()


class LocalCoordinator(Coordinator):
    kind = "local"

    def __init__(self, namespace: str, limits: RateLimitSettings) -> None:
        super().__init__(namespace)
        self._submit = LocalSubmitWindow(SlidingWindowLimiter(limits.create_per_window, limits.create_window_seconds))
        self._read = LocalReadLimit(TokenBucket(limits.reads_per_second))
        self._uploads: dict[str, tuple[float, UploadedFile]] = {}

    async def publish_task_update(self, task_id: str) -> None:
        self._tell_listeners(task_id)

    def budget(self, cap: float | None, *, batch_id: str | None = None) -> CreditBudget:
        del batch_id  # one process: a batch's budget lives in its run_many call
        return CreditBudget(cap)

    async def find_upload(self, content_key: str) -> UploadedFile | None:
        found = self._uploads.get(content_key)
        if found is None or time.time() - found[0] > UPLOAD_REUSE_SECONDS:
            return None
        return found[1]

    async def remember_upload(self, content_key: str, uploaded: UploadedFile) -> None:
        self._uploads[content_key] = (time.time(), uploaded)
