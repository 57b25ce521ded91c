"""The Redis coordinator: one account's limits, callbacks, budgets and uploads shared by every process.

Why hand-written Lua rather than a rate-limit library: the window must be *exact* over every session (a token
bucket lets 2x through at a refill boundary), it must honour a shared pause after a 429, and a slot is counted
from the request's answer, not its start (the provider counts arrivals). One small script does all three
atomically with the server's clock, so machines whose clocks disagree still share one window; ``limits``'
moving window covers the first only.

Failure policy: spending fails closed, reading fails open. While Redis cannot be reached no ``createTask`` is
sent (the submit slot waits, reconnecting with backoff, and the batch continues when Redis is back); reads fall
back to a local limit; callbacks fall back to each waiter's own safety poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kie_async._limits import number_problem, require_credits
from kie_async.api_models import UploadedFile
from kie_async.budget import BudgetSnapshot, CreditBudget
from kie_async.coordination.base import UPLOAD_REUSE_SECONDS, Coordinator, ReadLimit, SubmitWindow
from kie_async.coordination.shared import redacted_url
from kie_async.errors import KieCoordinationError
from kie_async.rate_limit import TokenBucket
from kie_async.settings import RateLimitSettings

if TYPE_CHECKING:
    from kie_async.coordination.shared_journal import SharedJournal

log = logging.getLogger("kie_async.coordination")
T = TypeVar("T")

OWNER_TTL_MS = 15_000
"""A process's liveness key lives this long; it is renewed every third of it."""
_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)

# KEYS: window zset, pause key. ARGV: window ms, limit, member. Returns 0 when admitted, else ms to wait.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return pause - now end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

# KEYS: window zset. ARGV: member. Moves the slot's stamp to now (the request was answered: it arrived before).
_RESTAMP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1]) end
return now
"""

# KEYS: pause key. ARGV: ms. Extends the shared pause to now + ms (never shortens it).
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = now + tonumber(ARGV[1])
local have = tonumber(redis.call('GET', KEYS[1]) or '0')
if want > have then redis.call('SET', KEYS[1], want, 'PX', tonumber(ARGV[1]) + 1000) end
return want
"""

# Budget hash: cap, spent, and r:<owner> reservations. A dead owner's reservations count as spent (it may have
# bought with them), so a crash can only make the budget stricter, never let it overshoot.
_BUDGET_SWEEP = """
local fields = redis.call('HGETALL', KEYS[1])
local reserved = 0
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.sub(f, 1, 2) == 'r:' then
    local amount = tonumber(fields[i + 1])
    if redis.call('EXISTS', ARGV[1] .. string.sub(f, 3)) == 0 then
      redis.call('HINCRBYFLOAT', KEYS[1], 'spent', amount)
      redis.call('HDEL', KEYS[1], f)
    else
      reserved = reserved + amount
    end
  end
end
"""
_BUDGET_OP = _BUDGET_SWEEP + """
local op = ARGV[2]
local owner = 'r:' .. ARGV[3]
local amount = tonumber(ARGV[4])
local ok = 1
if op == 'reserve' then
  local cap = redis.call('HGET', KEYS[1], 'cap')
  local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
  if cap and cap ~= 'none' and spent + reserved + amount > tonumber(cap) + 1e-9 then
    ok = 0
  else
    redis.call('HINCRBYFLOAT', KEYS[1], owner, amount)
    reserved = reserved + amount
  end
elseif op == 'settle' or op == 'release' then
  local mine = tonumber(redis.call('HGET', KEYS[1], owner) or '0')
  local drop = math.min(mine, amount)
  if drop > 0 then
    redis.call('HINCRBYFLOAT', KEYS[1], owner, -drop)
    reserved = reserved - drop
  end
  if op == 'settle' then redis.call('HINCRBYFLOAT', KEYS[1], 'spent', tonumber(ARGV[5])) end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
local spent = redis.call('HGET', KEYS[1], 'spent') or '0'
local cap = redis.call('HGET', KEYS[1], 'cap') or 'none'
return {ok, tostring(spent), tostring(reserved), cap}
"""


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisCoordinator(Coordinator):
    kind = "redis"

    def __init__(self, url: str, namespace: str, limits: RateLimitSettings, *, margin: float = 0.05) -> None:
        super().__init__(namespace)
        self.url = url
        self.shown_url = redacted_url(url)
        self.limits = limits
        self.owner = _owner_id()
        self.client: aioredis.Redis = aioredis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_timeout=10, health_check_interval=15
        )
        self._window_ms = round(limits.create_window_seconds * (1 + margin) * 1000)
        self._submit = RedisSubmitWindow(self)
        self._read = RedisReadLimit(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._acquire = self.client.register_script(_ACQUIRE)
        self._restamp = self.client.register_script(_RESTAMP)
        self._pause = self.client.register_script(_PAUSE)
        self._budget_op = self.client.register_script(_BUDGET_OP)

    def __repr__(self) -> str:
        return f"RedisCoordinator({self.shown_url!r}, namespace={self.namespace!r})"

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self.client.ping(), timeout=10)
            await self._heartbeat_once()
        except (RedisError, OSError, TimeoutError) as exc:
            await self.client.aclose()
            raise KieCoordinationError(
                f"cannot reach the coordination store at {self.shown_url}: {type(exc).__name__}",
                hint="start Redis (e.g. `redis-server`), or check KIE_COORDINATION_URL / coordination_url",
            ) from None
        self._tasks = [
            asyncio.create_task(self._heartbeats(), name="kie-coordination-heartbeat"),
            asyncio.create_task(self._listen(), name="kie-coordination-callbacks"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(RedisError, OSError):
            await self.client.delete(self.key("owner", self.owner))
        await self.client.aclose()

    async def _heartbeat_once(self) -> None:
        await self.client.set(self.key("owner", self.owner), "1", px=OWNER_TTL_MS)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(OWNER_TTL_MS / 3000)
            try:
                await self._heartbeat_once()
            except (RedisError, OSError) as exc:
                log.warning("coordination store %s unreachable (%s); retrying", self.shown_url, type(exc).__name__)

    async def retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until Redis answers: used where going ahead without it could spend money."""
        attempt = 0
        while True:
            try:
                return await op()
            except (RedisError, OSError) as exc:
                wait = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                if attempt == 0:
                    log.warning("%s: coordination store %s unreachable (%s); holding until it is back",
                                what, self.shown_url, type(exc).__name__)
                attempt += 1
                await asyncio.sleep(wait)

    # -- limits ---------------------------------------------------------------------------------------------

    @property
    def submit_window(self) -> SubmitWindow:
        return self._submit

    @property
    def read_limit(self) -> ReadLimit:
        return self._read

    # -- callbacks ------------------------------------------------------------------------------------------

    async def publish_task_update(self, task_id: str) -> None:
        try:
            await self.client.publish(self.key("tasks"), task_id)
        except (RedisError, OSError) as exc:
            # Waiters elsewhere still find out by their safety poll; this process's were woken by the session.
            log.warning("could not publish a callback for %s (%s)", task_id, type(exc).__name__)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.key("tasks"))
                    attempt = 0
                    while True:
                        # redis-py can swallow a cancel that lands while it connects; honour it here, or
                        # close() would wait forever on a listener that never stops.
                        current = asyncio.current_task()
                        if current is not None and current.cancelling():
                            raise asyncio.CancelledError
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message and message.get("type") == "message" and isinstance(message.get("data"), str):
                            self._tell_listeners(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                wait = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                attempt += 1
                log.warning("callback channel lost (%s); reconnecting in %.1fs", type(exc).__name__, wait)
                await asyncio.sleep(wait)

    # -- budgets --------------------------------------------------------------------------------------------

    def budget(self, cap: float | None, *, batch_id: str | None = None) -> CreditBudget:
        if batch_id is None:
            return CreditBudget(cap)  # nothing to share it with
        return RedisBudget(self, batch_id, cap)

    async def budget_op(
        self, batch_id: str, op: str, amount: float, actual: float = 0.0
    ) -> tuple[bool, BudgetSnapshot]:
        result = await self._budget_op(
            keys=[self.key("budget", batch_id)],
            args=[self.key("owner", ""), op, self.owner, amount, actual, 7 * 24 * 3600 * 1000],
        )
        ok, spent, reserved, cap = cast("list[Any]", result)
        snapshot = BudgetSnapshot(
            cap=None if cap == "none" else float(cap), spent=float(spent), reserved=max(0.0, float(reserved))
        )
        return bool(ok), snapshot

    async def set_budget_cap(self, batch_id: str, cap: float | None) -> None:
        """The first process fixes the cap; a later one with a smaller cap lowers it (never raises it)."""
        key = self.key("budget", batch_id)
        if cap is None:
            await self.client.hsetnx(key, "cap", "none")
            return
        current = await self.client.hget(key, "cap")
        if current is None or current == "none" or float(current) > cap:
            await self.client.hset(key, "cap", repr(float(cap)))

    # -- batch journals -------------------------------------------------------------------------------------

    async def open_journal(self, batch_id: str, *, lease_seconds: float) -> SharedJournal:
        from kie_async.coordination.redis_journal import RedisJournal  # imports the pipeline's models

        return await RedisJournal.open(self, batch_id, lease_seconds=lease_seconds)

    # -- uploads --------------------------------------------------------------------------------------------

    async def find_upload(self, content_key: str) -> UploadedFile | None:
        try:
            raw = await self.client.get(self.key("upload", content_key))
        except (RedisError, OSError):
            return None  # uploading again costs time, not credits
        return UploadedFile.model_validate_json(raw) if raw else None

    async def remember_upload(self, content_key: str, uploaded: UploadedFile) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.set(
                self.key("upload", content_key), uploaded.model_dump_json(), ex=int(UPLOAD_REUSE_SECONDS)
            )


class RedisSubmitWindow(SubmitWindow):
    def __init__(self, coordinator: RedisCoordinator) -> None:
        self.c = coordinator

    async def _acquire(self) -> str:
        member = f"{self.c.owner}:{secrets.token_hex(6)}"
        keys = [self.c.key("create", "window"), self.c.key("create", "pause")]
        args: list[str | int] = [self.c._window_ms, self.c.limits.create_per_window, member]
        while True:
            wait_ms = await self.c.retrying("createTask", lambda: self.c._acquire(keys=keys, args=args))
            if int(wait_ms) <= 0:
                return member
            await asyncio.sleep(int(wait_ms) / 1000)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        member = await self._acquire()
        try:
            yield
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self.c._restamp(keys=[self.c.key("create", "window")], args=[member])

    def slot(self) -> AbstractAsyncContextManager[None]:
        return self._slot()

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.c._pause(keys=[self.c.key("create", "pause")], args=[max(1, round(seconds * 1000))])


class RedisReadLimit(ReadLimit):
    """The account's reads per second over every process; falls back to a local bucket while Redis is away."""

    def __init__(self, coordinator: RedisCoordinator) -> None:
        self.c = coordinator
        self.fallback = TokenBucket(coordinator.limits.reads_per_second)

    async def acquire(self) -> None:
        member = f"{self.c.owner}:{secrets.token_hex(6)}"
        keys = [self.c.key("read", "window"), self.c.key("read", "pause")]
        limit = max(1, int(self.c.limits.reads_per_second))
        while True:
            try:
                wait_ms = await self.c._acquire(keys=keys, args=[1000, limit, member])
            except (RedisError, OSError):
                await self.fallback.acquire()
                return
            if int(wait_ms) <= 0:
                return
            await asyncio.sleep(int(wait_ms) / 1000)


class RedisBudget(CreditBudget):
    """A batch budget every process on the batch reserves from atomically; ``snapshot`` is the last seen state."""

    def __init__(self, coordinator: RedisCoordinator, batch_id: str, cap: float | None) -> None:
        super().__init__(cap)
        self.c = coordinator
        self.batch_id = batch_id
        self._snap = BudgetSnapshot(cap=cap, spent=0.0, reserved=0.0)
        self._cap_set = False

    def __repr__(self) -> str:
        return f"RedisBudget(batch={self.batch_id!r}, {self._snap.spent:g} spent of {self._snap.cap})"

    async def _op(self, op: str, amount: float, actual: float = 0.0) -> bool:
        if not self._cap_set:
            await self.c.retrying("budget", lambda: self.c.set_budget_cap(self.batch_id, self.cap))
            self._cap_set = True
        ok, snap = await self.c.retrying("budget", lambda: self.c.budget_op(self.batch_id, op, amount, actual))
        self._snap = snap
        self.cap = snap.cap
        return ok

    async def reserve(self, credits: float) -> bool:
        return await self._op("reserve", require_credits("reserved credits", credits))

    async def settle(self, reserved: float, actual: float | None) -> None:
        reserved = require_credits("reserved credits", reserved)
        if actual is not None and number_problem(actual, minimum=0.0) is not None:
            log.warning("ignoring unusable charged amount %r; counting the reservation %g instead", actual, reserved)
            actual = None
        await self._op("settle", reserved, reserved if actual is None else actual)

    async def release(self, reserved: float) -> None:
        await self._op("release", require_credits("reserved credits", reserved))

    def snapshot(self) -> BudgetSnapshot:
        return self._snap
