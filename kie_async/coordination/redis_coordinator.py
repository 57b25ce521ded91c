"""The Redis coordinator: one account's limits, callbacks, budgets and uploads shared by every process.

Why hand-written Lua rather than a rate-limit library: the window must be *exact* over every session (a token
bucket lets 2x through at a refill boundary), it must honour a shared pause after a 429, and a slot is counted
from the request's answer, not its start (the provider counts arrivals). One small script does all three
atomically with the server's clock, so machines whose clocks disagree still share one window; ``limits``'
moving window covers the first only.

Failure policy: spending fails closed, reading fails open. While Redis cannot be reached no ``createTask`` is
sent (the submit slot waits, reconnecting with backoff, and the batch continues when Redis is back); reads fall
back to a local limit; callbacks fall back to each waiter's own safety poll, and every waiter re-reads its task
as soon as the callback channel is back (a callback published meanwhile was lost).

A Redis that comes back empty (restarted without persistence, flushed) must not forget what the account has
spent: the window's recent submits, a 429's pause, a batch budget's spending. An *epoch* key tells: every
process knows the epoch it last saw, and a spending script that finds another one (or none) refuses until that
process has put back what it alone remembers (its own recent submits, its pause, per batch the spending it last
saw and its open reservations). The script that recreates the epoch also holds every submit and budget change
on the account for :data:`RESET_HOLD_MS`, so every live process (each checks the epoch every
:data:`WATCH_SECONDS`) has re-seeded before anyone spends. What only a dead process knew is lost: run Redis with
persistence (``appendonly yes``) in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from kie_async.coordination.base import UPLOAD_REUSE_SECONDS, Coordinator, ReadLimit, SubmitWindow
from kie_async.coordination.redis_journal import RedisJournal, settle_shared_adoption
from kie_async.core.errors import KieCoordinationError
from kie_async.core.limits import number_problem, require_credits
from kie_async.core.redact import redacted_url
from kie_async.core.settings import RateLimitSettings
from kie_async.ledger.budget import BudgetSnapshot, CreditBudget
from kie_async.wire.api_models import UploadedFile
from kie_async.wire.rate_limit import TokenBucket

if TYPE_CHECKING:
    from kie_async.coordination.shared_journal import SharedJournal

log = logging.getLogger("kie_async.coordination")
_ADOPT_PREFIX = "adopt:"
_SPAN_PREFIX = "span:"
T = TypeVar("T")

OWNER_TTL_MS = 15_000
"""A process's liveness key lives this long; it is renewed every :data:`WATCH_SECONDS`."""
WATCH_SECONDS = 0.5
"""How often a process renews its liveness key and checks the epoch (has Redis come back empty?)."""
RESET_HOLD_MS = 1_500
"""After Redis came back empty, submits and budget changes wait this long so every process can re-seed first."""
_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
_CHANNEL_BACKOFF = (0.2, 0.5, 1.0)  # the callback channel retries often: a restart is noticed within a second
_DOWN_SECONDS = 1.0  # after a failed read, reads skip Redis for this long (a blackholed host costs a timeout each)
_WAIT_KEPT_SECONDS = 24 * 3600.0  # a wait's trace context is kept at most this long (its timeout, else this)
_WAIT_LINKS = 16  # links from one callback span at most (waits on one task are few: a run, a user's own waits)
_EPOCH_CHANGED = -1
_HOLD = -2

# The epoch is "<random>:<hold until, server ms>". Given KEYS[e] (the epoch key) and ARGV known epoch, candidate
# and hold ms, a missing epoch is recreated with a hold; returns -1 when it is not the caller's, else ms to hold.
_EPOCH_CHECK = """
local function epoch_check(key, known, candidate, hold_ms, now)
  local e = redis.call('GET', key)
  if not e then
    e = candidate .. ':' .. (now + tonumber(hold_ms))
    redis.call('SET', key, e)
  end
  if e ~= known then return -1 end
  local hold = tonumber(string.match(e, ':(%d+)$')) or 0
  if hold > now then return hold - now end
  return 0
end
"""

# KEYS: window zset, pause key[, epoch key]. ARGV: window ms, limit, member[, known epoch, candidate, hold ms].
# Returns 0 when admitted, -1 when the epoch is not the caller's, else ms to wait.
_ACQUIRE = (
    _EPOCH_CHECK
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if KEYS[3] then
  local held = epoch_check(KEYS[3], ARGV[4], ARGV[5], ARGV[6], now)
  if held ~= 0 then return held end
end
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
)

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

# KEYS: owner key, epoch key. ARGV: owner ttl ms, candidate, hold ms. Renews this process's liveness, recreates a
# missing epoch (with a hold: the store came back empty) and returns the epoch.
_WATCH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1]))
local e = redis.call('GET', KEYS[2])
if not e then
  e = ARGV[2] .. ':' .. (now + tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], e)
end
return e
"""

# KEYS: window zset, pause key. ARGV: window ms, pause ms left, then (member, age ms) pairs: puts back this
# process's recent submits (at the server's now - age) and its pause after the store came back empty.
_RESEED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #ARGV, 2 do
  local score = now - tonumber(ARGV[i + 1])
  local have = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if (not have) or tonumber(have) < score then redis.call('ZADD', KEYS[1], score, ARGV[i]) end
end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2) end
local left = tonumber(ARGV[2])
if left > 0 then
  local have = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now + left > have then redis.call('SET', KEYS[2], now + left, 'PX', left + 1000) end
end
return now
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
# KEYS: budget hash, epoch key. ARGV: owner key prefix, op, owner, amount, actual, ttl ms, cap ('none' or a
# number: the first fixes it, a smaller one lowers it), known epoch, candidate, hold ms.
# Returns {1 ok | 0 refused | -1 epoch not the caller's | -2 hold (ms in the second field), spent, reserved, cap}.
_BUDGET_OP = (
    _EPOCH_CHECK
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = epoch_check(KEYS[2], ARGV[8], ARGV[9], ARGV[10], now)
if held == -1 then return {-1, '0', '0', 'none'} end
if held > 0 then return {-2, tostring(held), '0', 'none'} end
local have_cap = redis.call('HGET', KEYS[1], 'cap')
if not have_cap then
  redis.call('HSET', KEYS[1], 'cap', ARGV[7], 'epoch', ARGV[8])
elseif ARGV[7] ~= 'none' and (have_cap == 'none' or tonumber(have_cap) > tonumber(ARGV[7])) then
  redis.call('HSET', KEYS[1], 'cap', ARGV[7])
end
"""
    + _BUDGET_SWEEP
    + """
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
)

# KEYS: budget hash. ARGV: cap, floor, owner field, open reservations, epoch, ttl ms. After the store came back
# empty: the batch's spending is at least what this process last saw (spent plus the others' reservations), so
# the budget is recreated from it (or raised to it, if another process recreated it in the same epoch), and this
# process's open reservations are put back. A hash from an older epoch outlived the reset: nothing was lost.
_BUDGET_RESTORE = """
local k = KEYS[1]
local floor = tonumber(ARGV[2])
if redis.call('HEXISTS', k, 'cap') == 0 then
  redis.call('HSET', k, 'cap', ARGV[1], 'spent', floor, 'base', floor, 'epoch', ARGV[5])
elseif redis.call('HGET', k, 'epoch') == ARGV[5] then
  local base = tonumber(redis.call('HGET', k, 'base') or '0')
  if floor > base then
    redis.call('HINCRBYFLOAT', k, 'spent', floor - base)
    redis.call('HSET', k, 'base', floor)
  end
else
  return 0
end
local mine = tonumber(redis.call('HGET', k, ARGV[3]) or '0')
if tonumber(ARGV[4]) > mine then redis.call('HINCRBYFLOAT', k, ARGV[3], tonumber(ARGV[4]) - mine) end
redis.call('PEXPIRE', k, tonumber(ARGV[6]))
return 1
"""


@dataclass
class _BatchMemory:
    """What this process knows of one batch budget, to put back if Redis comes back empty."""

    cap: float | None
    floor: float = 0.0  # spent plus the other processes' reservations, at the last answer
    open: float = 0.0  # this process's reservations not yet settled or released


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
        # redis-py's own retries (by default 10, up to 1 s apart) would make every command take seconds while
        # Redis is away; two quick ones ride out a blip, and the policies here (hold spending, local reads,
        # safety polls) handle the rest.
        self.client: aioredis.Redis = aioredis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=15,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        )
        self._window_ms = round(limits.create_window_seconds * (1 + margin) * 1000)
        self._submit: RedisSubmitWindow = RedisSubmitWindow(self)
        self._read = RedisReadLimit(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._acquire = self.client.register_script(_ACQUIRE)
        self._restamp = self.client.register_script(_RESTAMP)
        self._pause = self.client.register_script(_PAUSE)
        self._budget_op = self.client.register_script(_BUDGET_OP)
        self._watch_script = self.client.register_script(_WATCH)
        self._reseed_script = self.client.register_script(_RESEED)
        self._budget_restore = self.client.register_script(_BUDGET_RESTORE)
        self.epoch = ""
        """The store's epoch this process has seeded; another one means Redis came back empty."""
        self._restore_lock = asyncio.Lock()
        self._batches: dict[str, _BatchMemory] = {}
        self._down_until = 0.0
        self._unreachable = False
        self._channel_connected = False
        self._closing = False

    def __repr__(self) -> str:
        return f"RedisCoordinator({self.shown_url!r}, namespace={self.namespace!r})"

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self.client.ping(), timeout=10)
            # The first process on a store creates the epoch without a hold (nothing can have been lost yet). One
            # that starts right after a restart, before a running process noticed, does the same: the running
            # ones still re-seed within WATCH_SECONDS, and a 429 in that gap is paused and retried like any other.
            await self.client.set(self.key("epoch"), f"{secrets.token_hex(8)}:0", nx=True)
            self.epoch = await self._heartbeat_once()
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
        # A cancel that lands inside a redis-py call can come out as a connection error (and be retried by the
        # loops), so they also stop on this flag, and closing never waits for them for long.
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        self._tasks.clear()
        with contextlib.suppress(RedisError, OSError):
            await self.client.delete(self.key("owner", self.owner))
        await self.client.aclose()

    async def _heartbeat_once(self) -> str:
        """Renew this process's liveness key; returns the store's epoch (recreated, with a hold, if it was gone)."""
        epoch = await self._watch_script(
            keys=[self.key("owner", self.owner), self.key("epoch")],
            args=[OWNER_TTL_MS, secrets.token_hex(8), RESET_HOLD_MS],
        )
        return str(epoch)

    async def _heartbeats(self) -> None:
        """Liveness and the epoch watch: a store that came back empty is re-seeded within WATCH_SECONDS."""
        while not self._closing:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                epoch = await self._heartbeat_once()
                if epoch != self.epoch:
                    await self.restore()
                self._reachable()
            except (RedisError, OSError) as exc:
                self._unreachable_now(exc)

    def _reachable(self) -> None:
        if self._unreachable:
            log.info("coordination store %s is back", self.shown_url)
        self._unreachable = False
        self._down_until = 0.0

    def _unreachable_now(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + _DOWN_SECONDS
        if not self._unreachable:
            log.warning(
                "coordination store %s unreachable (%s); submits wait, reads go on", self.shown_url, type(exc).__name__
            )
        self._unreachable = True

    @property
    def looks_down(self) -> bool:
        """Redis failed a moment ago: reads skip it for a second instead of paying a connect timeout each."""
        return time.monotonic() < self._down_until

    async def retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until Redis answers: used where going ahead without it could spend money."""
        attempt = 0
        while True:
            try:
                return await op()
            except (RedisError, OSError) as exc:
                wait = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                if attempt == 0 and not self._unreachable:
                    log.warning(
                        "%s: coordination store %s unreachable (%s); holding until it is back",
                        what,
                        self.shown_url,
                        type(exc).__name__,
                    )
                self._unreachable_now(exc)
                attempt += 1
                await asyncio.sleep(wait)

    async def restore(self) -> None:
        """Redis came back empty (a new epoch): put back what this process remembers, then adopt the epoch.

        Runs under a lock and at most once per epoch, whoever notices first (the watch, a submit, a budget).
        """
        async with self._restore_lock:
            epoch = await self._heartbeat_once()
            if epoch == self.epoch:
                return
            left_ms, recent = self._submit.remembered()
            args: list[str | int] = [self._window_ms, left_ms]
            for member, age_ms in recent:
                args += [member, age_ms]
            await self._reseed_script(keys=[self.key("create", "window"), self.key("create", "pause")], args=args)
            for batch_id, memory in self._batches.items():
                await self._budget_restore(
                    keys=[self.key("budget", batch_id)],
                    args=[_cap_arg(memory.cap), memory.floor, f"r:{self.owner}", memory.open, epoch, _BUDGET_TTL_MS],
                )
            log.warning(
                "coordination store %s came back empty; re-seeded %d recent submit(s), %d batch budget(s)",
                self.shown_url,
                len(recent),
                len(self._batches),
            )
            self.epoch = epoch
        self._tell_resync()  # a callback published while the store was away was lost

    def epoch_args(self) -> list[str | int]:
        """ARGV tail of the spending scripts: the epoch this process knows, a fresh candidate, the hold."""
        return [self.epoch, secrets.token_hex(8), RESET_HOLD_MS]

    # -- limits ---------------------------------------------------------------------------------------------

    # -- callbacks ------------------------------------------------------------------------------------------

    async def publish_task_update(self, task_id: str) -> None:
        # While Redis is away, waiters elsewhere re-read when their channel is back (or at their safety poll);
        # this process's were woken by the session. A callback handler never waits on a dead store.
        if self.looks_down:
            log.warning("could not publish a callback for %s (coordination store unreachable)", task_id)
            return
        try:
            await self.client.publish(self.key("tasks"), task_id)
        except (RedisError, OSError) as exc:
            self._unreachable_now(exc)
            log.warning("could not publish a callback for %s (%s)", task_id, type(exc).__name__)

    async def publish_adoption(self, token: str, task_id: str) -> None:
        if self.looks_down:
            log.warning("could not relay the adoption of %s (coordination store unreachable)", task_id)
            return
        try:
            await self.client.publish(self.key("tasks"), f"{_ADOPT_PREFIX}{token} {task_id}")
        except (RedisError, OSError) as exc:
            self._unreachable_now(exc)
            log.warning("could not relay the adoption of %s (%s)", task_id, type(exc).__name__)

    async def announce_wait(self, task_id: str, traceparent: str, seconds: float) -> None:
        # Tracing only (a run whose span is recorded): best effort, never a reason for a wait to fail or stall.
        if self.looks_down:
            return
        key = self.key("waiting", task_id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.sadd(key, traceparent)
                pipe.pexpire(key, max(1000, round(min(seconds, _WAIT_KEPT_SECONDS) * 1000)))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._unreachable_now(exc)
            log.debug("could not announce the wait on %s (%s)", task_id, type(exc).__name__)

    async def waiting_spans(self, task_id: str) -> list[str]:
        if self.looks_down:
            return []
        try:
            found = await self.client.smembers(self.key("waiting", task_id))
        except (RedisError, OSError) as exc:
            self._unreachable_now(exc)
            log.debug("could not read the waits on %s (%s)", task_id, type(exc).__name__)
            return []
        return sorted(str(value) for value in found)[:_WAIT_LINKS]

    async def publish_callback_span(self, task_id: str, traceparent: str) -> None:
        # Its own message (``span:<task id> <traceparent>``), never folded into the task update: a process of an
        # earlier version reads it as an unknown task id and ignores it, and still gets the bare update.
        if self.looks_down:
            return
        try:
            await self.client.publish(self.key("tasks"), f"{_SPAN_PREFIX}{task_id} {traceparent}")
        except (RedisError, OSError) as exc:
            self._unreachable_now(exc)
            log.debug("could not publish the callback span of %s (%s)", task_id, type(exc).__name__)

    async def first_callback(self, task_id: str, timestamp: int, keep_seconds: float) -> bool:
        # SET NX with an expiry: one worker wins a replayed pair, on any machine. While the store is away the
        # receiver's own guard still refuses a replay to the same worker (logged: other workers may act on it).
        if self.looks_down:
            log.warning("callback replay check for %s kept local (coordination store unreachable)", task_id)
            return True
        try:
            first = await self.client.set(
                self.key("callback", task_id, str(timestamp)), "1", nx=True, px=max(1000, round(keep_seconds * 1000))
            )
        except (RedisError, OSError) as exc:
            self._unreachable_now(exc)
            log.warning("callback replay check for %s kept local (%s)", task_id, type(exc).__name__)
            return True
        return bool(first)

    async def settle_adoption(self, token: str, task_id: str) -> bool:
        try:
            return await settle_shared_adoption(self, token, task_id)
        except (KieCoordinationError, RedisError, OSError) as exc:
            log.warning("could not settle the adoption of %s in its shared batch (%s)", task_id, exc)
            return False

    def _dispatch(self, data: str) -> None:
        """One channel carries task updates (a bare task id), adoptions (``adopt:<token> <task id>``) and the
        spans that handled callbacks (``span:<task id> <traceparent>``)."""
        if data.startswith(_ADOPT_PREFIX):
            token, _, task_id = data[len(_ADOPT_PREFIX) :].partition(" ")
            if token and task_id:
                self._tell_adoption(token, task_id)
            return
        if data.startswith(_SPAN_PREFIX):
            task_id, _, traceparent = data[len(_SPAN_PREFIX) :].partition(" ")
            if task_id and traceparent:
                self._tell_span(task_id, traceparent)
            return
        self._tell_listeners(data)

    async def _channel_reconnected(self, connection: object) -> None:
        """redis-py reconnected the channel by itself (and re-subscribed): updates meanwhile were lost."""
        del connection
        self._tell_resync()

    async def _listen(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.key("tasks"))
                    if self._channel_connected:  # not the first subscription: updates may have been missed
                        self._tell_resync()
                    self._channel_connected = True
                    if pubsub.connection is not None:
                        pubsub.connection.register_connect_callback(self._channel_reconnected)
                    attempt = 0
                    while True:
                        # redis-py can swallow a cancel that lands while it connects; honour it here, or
                        # close() would wait forever on a listener that never stops.
                        current = asyncio.current_task()
                        if current is not None and current.cancelling():
                            raise asyncio.CancelledError
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message and message.get("type") == "message" and isinstance(message.get("data"), str):
                            self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                wait = _CHANNEL_BACKOFF[min(attempt, len(_CHANNEL_BACKOFF) - 1)]
                attempt += 1
                if attempt == 1:
                    log.warning("callback channel lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(wait)

    # -- budgets --------------------------------------------------------------------------------------------

    def budget(self, cap: float | None, *, batch_id: str | None = None) -> CreditBudget:
        if batch_id is None:
            return CreditBudget(cap)  # nothing to share it with
        return RedisBudget(self, batch_id, cap)

    async def budget_op(
        self, batch_id: str, op: str, amount: float, actual: float = 0.0, *, cap: float | None = None
    ) -> tuple[bool, BudgetSnapshot]:
        """One atomic reserve/settle/release on a batch budget (holding while Redis re-seeds after a reset)."""
        while True:
            result = await self._budget_op(
                keys=[self.key("budget", batch_id), self.key("epoch")],
                args=[
                    self.key("owner", ""),
                    op,
                    self.owner,
                    amount,
                    actual,
                    _BUDGET_TTL_MS,
                    _cap_arg(cap),
                    *self.epoch_args(),
                ],
            )
            status, spent, reserved, shared_cap = cast("list[Any]", result)
            if int(status) == _EPOCH_CHANGED:
                await self.restore()
                continue
            if int(status) == _HOLD:
                await asyncio.sleep(float(spent) / 1000)
                continue
            break
        snapshot = BudgetSnapshot(
            cap=None if shared_cap == "none" else float(shared_cap),
            spent=float(spent),
            reserved=max(0.0, float(reserved)),
        )
        memory = self._batches.setdefault(batch_id, _BatchMemory(cap=snapshot.cap))
        memory.cap = snapshot.cap
        if op == "reserve" and int(status) == 1:
            memory.open += amount
        elif op in ("settle", "release"):
            memory.open = max(0.0, memory.open - amount)
        memory.floor = snapshot.spent + max(0.0, snapshot.reserved - memory.open)
        return int(status) == 1, snapshot

    # -- batch journals -------------------------------------------------------------------------------------

    async def open_journal(self, batch_id: str, *, lease_seconds: float) -> SharedJournal:
        return await RedisJournal.open(self, batch_id, lease_seconds=lease_seconds)

    # -- uploads --------------------------------------------------------------------------------------------

    async def find_upload(self, content_key: str) -> UploadedFile | None:
        if self.looks_down:
            return None
        try:
            raw = await self.client.get(self.key("upload", content_key))
        except (RedisError, OSError) as exc:
            self._unreachable_now(exc)
            return None  # uploading again costs time, not credits
        return UploadedFile.model_validate_json(raw) if raw else None

    async def remember_upload(self, content_key: str, uploaded: UploadedFile) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.set(
                self.key("upload", content_key), uploaded.model_dump_json(), ex=int(UPLOAD_REUSE_SECONDS)
            )


_BUDGET_TTL_MS = 7 * 24 * 3600 * 1000


def _cap_arg(cap: float | None) -> str:
    return "none" if cap is None else repr(float(cap))


class RedisSubmitWindow(SubmitWindow):
    def __init__(self, coordinator: RedisCoordinator) -> None:
        self.c = coordinator
        self._sent: dict[str, float] = {}  # this process's slots -> when (monotonic) they were taken or answered
        self._paused_until = 0.0

    def remembered(self) -> tuple[int, list[tuple[str, int]]]:
        """This process's part of the shared state, to re-seed an emptied store: pause ms left, (slot, age ms)."""
        now = time.monotonic()
        window = self.c._window_ms / 1000
        for member, stamp in list(self._sent.items()):
            if now - stamp > window:
                del self._sent[member]
        left_ms = max(0, round((self._paused_until - now) * 1000))
        return left_ms, [(member, round((now - stamp) * 1000)) for member, stamp in self._sent.items()]

    async def _acquire(self) -> str:
        member = f"{self.c.owner}:{secrets.token_hex(6)}"
        keys = [self.c.key("create", "window"), self.c.key("create", "pause"), self.c.key("epoch")]
        while True:
            args: list[str | int] = [self.c._window_ms, self.c.limits.create_per_window, member, *self.c.epoch_args()]
            wait_ms = int(await self.c.retrying("createTask", functools.partial(self.c._acquire, keys=keys, args=args)))
            if wait_ms == _EPOCH_CHANGED:
                await self.c.retrying("createTask", self.c.restore)
                continue
            if wait_ms <= 0:
                self.remembered()  # prune
                self._sent[member] = time.monotonic()
                return member
            await asyncio.sleep(wait_ms / 1000)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        member = await self._acquire()
        try:
            yield
        finally:
            self._sent[member] = time.monotonic()  # counted from the answer, like the shared stamp
            with contextlib.suppress(RedisError, OSError):
                await self.c._restamp(keys=[self.c.key("create", "window")], args=[member])

    def slot(self) -> AbstractAsyncContextManager[None]:
        return self._slot()

    async def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
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
            if self.c.looks_down:
                await self.fallback.acquire()
                return
            try:
                wait_ms = await self.c._acquire(keys=keys, args=[1000, limit, member])
            except (RedisError, OSError) as exc:
                self.c._unreachable_now(exc)
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

    def __repr__(self) -> str:
        return f"RedisBudget(batch={self.batch_id!r}, {self._snap.spent:g} spent of {self._snap.cap})"

    async def _op(self, op: str, amount: float, actual: float = 0.0) -> bool:
        # The cap travels with every operation: the first process fixes it, a smaller one lowers it, and a
        # budget recreated after Redis came back empty gets it again instead of turning unlimited.
        ok, snap = await self.c.retrying(
            "budget", lambda: self.c.budget_op(self.batch_id, op, amount, actual, cap=self.cap)
        )
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
