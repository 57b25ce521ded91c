"""Re-seeding a lost shared ledger: a new epoch, and the request index rebuilt from what survives elsewhere.

A Redis that came back empty (no persistence, a FLUSHALL) stops every shared batch with ``JournalLostError``;
buying resumes only once an operator has put back what can be known (``kie-async ledger recover``): for each
task found in a run folder, the provider's own record names the request it was bought for (the correlation
token in its callback URL). Those go into the account's request index under the batch ``recovered``, so the
next run of any batch holding the same request resumes the task instead of buying it again. The new epoch is
marked ``recovered``: every process and machine accepts it (and only such an epoch replaces the one it knew).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

from kie_async.coordination.redis_coordinator import RedisCoordinator
from kie_async.coordination.redis_journal import KEEP_MS, RECOVERED_BATCH, index_value
from kie_async.coordination.shared_journal import RecoveredRequest
from kie_async.coordination.witness import remember_epoch


async def reseed_ledger(coordinator: RedisCoordinator, recovered: list[RecoveredRequest]) -> str:
    """Write a new ``recovered`` epoch and the recovered index entries; returns the epoch."""
    epoch = secrets.token_hex(8)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    client = coordinator.client
    async with client.pipeline(transaction=True) as pipe:
        index = coordinator.key("requests")
        for item in recovered:
            pipe.hset(index, item.key, index_value(RECOVERED_BATCH, item.scope or "", item.task_id, item.state))
        if recovered:
            pipe.pexpire(index, KEEP_MS)
        pipe.hset(coordinator.key("ledger"), mapping={"epoch": epoch, "origin": "recovered", "created": created})
        await pipe.execute()
    await asyncio.to_thread(remember_epoch, coordinator.url, coordinator.namespace, epoch, coordinator.shown_url)
    return epoch
