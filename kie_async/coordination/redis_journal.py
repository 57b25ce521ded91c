"""The shared journal in Redis: one batch's state machine records, claims and outcomes for every process on it.

Layout, under ``<namespace>:batch:<batch id>:``

- ``entries`` (hash): ``e:<key>`` the folded :class:`~kie_async.ledger.journal.JournalEntry` (JSON) and ``v:<key>``
  its version. A write reads the entry, folds the record with ``JournalEntry.apply`` (the one set of rules)
  and stores it only if the version has not moved (a compare-and-set script), so two processes never fold
  differently: a loser re-reads and folds again.
- ``log`` (list): every stored record in order, the audit trail.
- ``claim:<key>`` (string, expires): the process running the request; renewed every third of the lease.
  ``holders`` (hash) remembers the holder until the run ends, so a claim that *expired* (a dead process) is
  told apart from one that was given back: the next claimer is a taker.
- ``outcomes`` (hash): ``o:<key>`` the result of the last finished run, ``n:<key>`` how many runs finished.
- ``meta`` (hash): ``created`` (its absence mid-run means Redis lost the batch: spending stops), counters.

Why the absence of a ``sending`` marker proves a dead claim never sent: the marker is acknowledged by Redis
before the request goes out, and a taker claims the request before it reads the entry, after which the old
holder's marker can no longer land (fenced on the claim). The one way an acknowledged write can vanish is a
Redis restart that lost data; the intent records the Redis server's run id for that reason, and an intent
from another server run reads as uncertain.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from pydantic import BaseModel
from redis.exceptions import RedisError

from kie_async.coordination.shared_journal import ClaimResult, KeyWait, Outcome, SharedJournal, outcome_json
from kie_async.core.errors import KieCoordinationError
from kie_async.ledger.journal import JournalEntry, JournalRecord
from kie_async.ledger.request_state import RequestState, can_move

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("kie_async.coordination")

T = TypeVar("T")


class JournalStore(Protocol):
    """What a journal needs from whoever opened it (the Redis coordinator): the connection, the key scheme,
    the process's owner id, a URL fit for messages, and the loop that holds an operation until Redis answers."""

    owner: str
    shown_url: str
    client: aioredis.Redis

    def key(self, *parts: str) -> str: ...

    async def retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T: ...


KEEP_MS = 30 * 24 * 3600 * 1000
"""A batch's journal lives 30 days after its last write (a file journal lives until deleted)."""
_CLOSE_DRAIN_SECONDS = 30.0

# KEYS: claim, holders, outcomes, meta. ARGV: owner, lease ms, key.
# Returns {claimed 0/1, current holder, finished runs, previous holder whose claim expired (a taker's victim)}.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
local seq = tonumber(redis.call('HGET', KEYS[3], 'n:' .. ARGV[3]) or '0')
if holder and holder ~= ARGV[1] then return {0, holder, seq, ''} end
local prev = redis.call('HGET', KEYS[2], ARGV[3]) or ''
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
if prev ~= '' and prev ~= ARGV[1] then
  redis.call('HINCRBY', KEYS[4], 'takeovers', 1)
else
  prev = ''
end
return {1, '', seq, prev}
"""

# Shared by the scripts that need the claim: mine, or expired with nobody else on it (then renewed as mine).
_HOLDING = """
local function holding(claim, holders, key, owner, lease)
  local h = redis.call('GET', claim)
  if h == owner then return true end
  if h or redis.call('HGET', holders, key) ~= owner then return false end
  redis.call('SET', claim, owner, 'PX', lease)
  return true
end
"""

# KEYS: entries, log, meta, claim, holders. ARGV: key, expected version, entry, record, owner, fenced, lease, keep.
# Returns the new version, -1 (version moved: fold again), -2 (the batch is gone), -3 (claim lost).
_STORE = _HOLDING + """
if redis.call('EXISTS', KEYS[3]) == 0 then return -2 end
if ARGV[6] == '1' and not holding(KEYS[4], KEYS[5], ARGV[1], ARGV[5], tonumber(ARGV[7])) then return -3 end
local v = tonumber(redis.call('HGET', KEYS[1], 'v:' .. ARGV[1]) or '0')
if v ~= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], 'e:' .. ARGV[1], ARGV[3], 'v:' .. ARGV[1], v + 1)
redis.call('RPUSH', KEYS[2], ARGV[4])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[8])) end
return v + 1
"""

# KEYS: claim, holders, outcomes, meta. ARGV: owner, key, outcome, keep. Returns the run count, or 0 (claim lost).
_FINISH = _HOLDING + """
if not holding(KEYS[1], KEYS[2], ARGV[2], ARGV[1], 1000) then return 0 end
redis.call('HSET', KEYS[3], 'o:' .. ARGV[2], ARGV[3])
local n = redis.call('HINCRBY', KEYS[3], 'n:' .. ARGV[2], 1)
redis.call('HINCRBY', KEYS[4], 'finished:' .. ARGV[1], 1)
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]))
return n
"""

# KEYS: claim, holders. ARGV: owner, key.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: holders, claim... ARGV: owner, lease, key... Returns 1 per claim still held (renewed), 0 per lost one.
_RENEW = _HOLDING + """
local out = {}
for i = 2, #KEYS do
  out[#out + 1] = holding(KEYS[i], KEYS[1], ARGV[i + 1], ARGV[1], tonumber(ARGV[2])) and 1 or 0
  if out[#out] == 1 then redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2])) end
end
return out
"""

# KEYS: outcomes, entries, claim... ARGV: key... Returns {runs finished, holder or '', version} per key.
_PEEK = """
local out = {}
for i = 3, #KEYS do
  local key = ARGV[i - 2]
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], 'n:' .. key) or '0')
  out[#out + 1] = redis.call('GET', KEYS[i]) or ''
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[2], 'v:' .. key) or '0')
end
return out
"""


class _KeyStatus(BaseModel):
    seq: int
    holder: str | None
    version: int


class JournalLostError(KieCoordinationError):
    """The batch's journal vanished from Redis mid-run (a restart without persistence): nothing more is bought."""

    hint = "run Redis with persistence (appendonly yes) for shared batches; check the dashboard before re-running"


class ClaimLostError(KieCoordinationError):
    """Another process took this request over (this one's lease expired): it must not send anything for it."""

    hint = "the process that took it over runs it; nothing was sent from here"


class RedisJournal(SharedJournal):
    """A batch's journal in Redis, for every process running that batch (see the module doc for the layout)."""

    def __init__(
        self,
        coordinator: JournalStore,
        batch_id: str,
        *,
        lease_seconds: float = 15.0,
        poll_interval: float = 0.5,
        host: str | None = None,
    ) -> None:
        self.c = coordinator
        self.batch_id = batch_id
        # Per journal, not per process: two run_many calls on one batch in one process split it like two processes.
        self.owner = f"{coordinator.owner}:{secrets.token_hex(2)}"
        self.host = host or socket.gethostname()
        self.lease_ms = max(100, round(lease_seconds * 1000))
        self.poll_interval = poll_interval
        self.entries: dict[str, JournalEntry] = {}
        self.lost: set[str] = set()
        self._versions: dict[str, int] = {}
        self._held: set[str] = set()
        self._watched: dict[str, int] = {}
        self._snapshot: dict[str, _KeyStatus] = {}
        self._tick = asyncio.Event()
        self._pending: set[asyncio.Future[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stamp: str | None = None
        client = coordinator.client
        self._claim = client.register_script(_CLAIM)
        self._store = client.register_script(_STORE)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._peek = client.register_script(_PEEK)

    def __repr__(self) -> str:
        return f"RedisJournal(batch={self.batch_id!r}, keys={len(self.entries)}, held={len(self._held)})"

    def key(self, *parts: str) -> str:
        return self.c.key("batch", self.batch_id, *parts)

    # -- lifecycle ------------------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        coordinator: JournalStore,
        batch_id: str,
        *,
        lease_seconds: float = 15.0,
        poll_interval: float = 0.5,
        host: str | None = None,
    ) -> RedisJournal:
        """Join (or start) the batch: read its journal and start renewing claims."""
        journal = cls(coordinator, batch_id, lease_seconds=lease_seconds, poll_interval=poll_interval, host=host)
        await coordinator.retrying("journal", journal._load)
        journal._tasks = [
            asyncio.create_task(journal._renewals(), name=f"kie-journal-leases-{batch_id}"),
            asyncio.create_task(journal._polls(), name=f"kie-journal-polls-{batch_id}"),
        ]
        return journal

    async def _load(self) -> None:
        meta = self.key("meta")
        await self.c.client.hsetnx(meta, "created", datetime.now(UTC).isoformat(timespec="seconds"))
        await self.c.client.pexpire(meta, KEEP_MS)
        raw = cast("dict[str, str]", await self.c.client.hgetall(self.key("entries")))
        for field, value in raw.items():
            kind, _, key = field.partition(":")
            if kind == "e":
                self.entries[key] = JournalEntry.model_validate_json(value)
            elif kind == "v":
                self._versions[key] = int(value)
        self._stamp = await self._server_stamp()

    async def _server_stamp(self) -> str:
        """``redis:<run id>``: changes whenever the Redis server restarts (and may have lost acknowledged writes)."""
        info = await self.c.client.info("server")
        return f"redis:{info.get('run_id', '')}"

    async def close(self) -> None:
        try:
            async with asyncio.timeout(_CLOSE_DRAIN_SECONDS):
                await self.drain()
        except TimeoutError:
            log.error("shared journal %s: %d write(s) still unanswered at close", self.batch_id, len(self._pending))
        await self._stop_tasks()
        for key in list(self._held):
            with contextlib.suppress(RedisError, OSError):
                await self._release_now(key)
        self._held.clear()

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def abandon(self) -> None:
        """Stop renewing and forget the claims without giving them back: what a killed process leaves behind.

        Its claims expire after the lease and the other processes take them over (tests simulate a death so).
        """
        await self._stop_tasks()
        self._held.clear()

    # -- records --------------------------------------------------------------------------------------------

    async def record(self, record: JournalRecord) -> None:
        if record.run_dir and not record.host:
            record = record.model_copy(update={"host": self.host})
        spending = record.state is RequestState.SUBMITTING and not record.adopted
        if spending and not record.sending:
            record = record.model_copy(update={"boot": self._stamp})
        try:
            await self.write(record)
        except KieCoordinationError as exc:
            if spending:
                raise  # no acknowledged intent (or no claim): nothing is sent
            log.warning("shared journal %s: %s for %s not stored: %s", self.batch_id, record.state.value,
                        record.key, exc)

    async def write(self, record: JournalRecord, *, fsync: bool = True) -> None:
        """Store in Redis, waiting while it is unreachable; shielded, so a cancelled caller still lands its record."""
        del fsync  # Redis's answer is the acknowledgement
        pending = asyncio.ensure_future(self._store_until_answered(record))
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)
        await asyncio.shield(pending)

    async def adopt(self, key: str, attempt: str | None, task_id: str) -> None:
        await self.write(
            JournalRecord(key=key, state=RequestState.SUBMITTED, attempt=attempt, task_id=task_id, adopted=True)
        )

    async def drain(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def _store_until_answered(self, record: JournalRecord) -> None:
        # Only records without a task id need the claim: one with a task id only ever adds what was bought.
        fenced = not record.adopted and not record.task_id
        key = record.key
        while True:
            entry = self.entries.get(key)
            self._check(entry, record)
            folded = _fold(entry, key, record)
            version = self._versions.get(key, 0)
            keys = [self.key("entries"), self.key("log"), self.key("meta"), self.key("claim", key), self.key("holders")]
            args: list[str | int] = [
                key, version, folded.model_dump_json(), record.model_dump_json(exclude_defaults=True), self.owner,
                "1" if fenced else "0", self.lease_ms, KEEP_MS,
            ]
            store = functools.partial(self._store, keys=keys, args=args)
            answer = int(await self.c.retrying("shared journal", store))
            if answer > 0:
                self.entries[key] = folded
                self._versions[key] = answer
                return
            if answer == -2:
                raise JournalLostError(
                    f"the shared journal of batch {self.batch_id!r} is gone from {self.c.shown_url} (Redis restarted "
                    "without its data?): nothing more is bought"
                )
            if answer == -3:
                self._held.discard(key)
                self.lost.add(key)
                raise ClaimLostError(f"request {key} of batch {self.batch_id!r} was taken over by another process")
            await self.c.retrying("shared journal", lambda: self._refresh(key))  # -1: another writer came first

    def _check(self, entry: JournalEntry | None, record: JournalRecord) -> None:
        """A spending record must still fit the entry as it is now (another process may have moved it)."""
        if record.adopted or record.state is not RequestState.SUBMITTING:
            return
        state = entry.state if entry is not None else RequestState.PENDING
        if record.sending:
            if state is RequestState.SUBMITTING and entry is not None and entry.attempt == record.attempt:
                return
        elif can_move(state, RequestState.SUBMITTING):
            return
        raise KieCoordinationError(
            f"request {record.key} of batch {self.batch_id!r} is {state.value} now (changed by another process); "
            "this attempt is not sent"
        )

    async def _refresh(self, key: str) -> JournalEntry | None:
        raw, version = cast(
            "list[str | None]", await self.c.client.hmget(self.key("entries"), ["e:" + key, "v:" + key])
        )
        if raw is None:
            self.entries.pop(key, None)
            self._versions.pop(key, None)
            return None
        entry = JournalEntry.model_validate_json(raw)
        self.entries[key] = entry
        self._versions[key] = int(version or 0)
        return entry

    # -- claims ---------------------------------------------------------------------------------------------

    async def try_claim(self, key: str) -> ClaimResult:
        keys = [self.key("claim", key), self.key("holders"), self.key("outcomes"), self.key("meta")]
        args: list[str | int] = [self.owner, self.lease_ms, key]
        answer = cast("list[Any]", await self.c.retrying("claim", lambda: self._claim(keys=keys, args=args)))
        claimed, holder, seq, previous = int(answer[0]), str(answer[1]), int(answer[2]), str(answer[3])
        if not claimed:
            return ClaimResult(claimed=False, holder=holder, seq=seq)
        self._held.add(key)
        self.lost.discard(key)
        try:
            entry = await self.c.retrying("claim", lambda: self._refresh(key))
            closed = None
            if entry is not None and entry.state is RequestState.SUBMITTING:
                closed = await self._close_dead_attempt(entry, previous)
                entry = self.entries.get(key)
        except BaseException:
            await asyncio.shield(self._release_quietly(key))
            raise
        return ClaimResult(claimed=True, seq=seq, entry=entry, taken_over_from=previous or None, closed=closed)

    async def _close_dead_attempt(self, entry: JournalEntry, previous: str) -> RequestState:
        """The attempt's process is gone (we hold the claim, so it can no longer send): did its request leave?

        No ``sending`` marker, and Redis has not restarted since the intent: it never left (refused, and the
        request may be bought). Otherwise it may have arrived: uncertain, and never bought again here.
        """
        stamp = await self.c.retrying("claim", self._server_stamp)
        intent = entry.intent
        never_sent = not entry.sending and intent is not None and intent.boot == stamp
        who = f"process {previous}" if previous else "an earlier process"
        if never_sent:
            state, error = RequestState.REFUSED, f"{who} stopped before createTask left (no sending marker)"
        else:
            state, error = RequestState.UNCERTAIN, f"{who} stopped with createTask on the wire; a task may exist"
        await self.write(
            JournalRecord(
                key=entry.key,
                state=state,
                attempt=entry.attempt,
                model_key=intent.model_key if intent is not None else None,
                error=error,
                error_type="KieCoordinationError",
            )
        )
        with contextlib.suppress(RedisError, OSError):
            await self.c.client.hincrby(self.key("meta"), f"takeover_{state.value}", 1)
        log.warning("shared journal %s: %s: %s -> %s", self.batch_id, entry.key, error, state.value)
        return state

    async def finish(self, key: str, outcome: Outcome) -> bool:
        keys = [self.key("claim", key), self.key("holders"), self.key("outcomes"), self.key("meta")]
        args: list[str | int] = [self.owner, key, outcome_json(outcome), KEEP_MS]
        runs = int(await self.c.retrying("shared journal", lambda: self._finish(keys=keys, args=args)))
        self._held.discard(key)
        if runs == 0:
            self.lost.add(key)
        return runs > 0

    async def release(self, key: str) -> None:
        await self._release_quietly(key)

    async def _release_quietly(self, key: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._release_now(key)
        self._held.discard(key)

    async def _release_now(self, key: str) -> None:
        await self._release(keys=[self.key("claim", key), self.key("holders")], args=[self.owner, key])

    async def _renewals(self) -> None:
        while True:
            _honour_cancel()
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                if self._held:
                    held = sorted(self._held)
                    keys = [self.key("holders"), *(self.key("claim", k) for k in held)]
                    alive = cast("list[int]", await self._renew(keys=keys, args=[self.owner, self.lease_ms, *held]))
                    for key, ok in zip(held, alive, strict=True):
                        if not int(ok) and key in self._held:
                            self._held.discard(key)
                            self.lost.add(key)
                            log.warning("shared journal %s: lost the claim on %s to another process", self.batch_id,
                                        key)
                self._stamp = await self._server_stamp()
            except (RedisError, OSError) as exc:
                log.warning("shared journal %s: cannot renew claims (%s); retrying", self.batch_id,
                            type(exc).__name__)

    # -- waiting for the others -----------------------------------------------------------------------------

    async def wait_for_key(self, key: str, *, after_seq: int, stall_timeout: float) -> KeyWait:
        self._watched[key] = self._watched.get(key, 0) + 1
        last: tuple[str | None, int] | None = None
        progress = time.monotonic()
        try:
            while True:
                tick = self._tick
                await tick.wait()
                status = self._snapshot.get(key)
                if status is None:
                    continue
                if status.seq > after_seq:
                    return KeyWait(outcome=await self._outcome(key), holder=status.holder)
                if status.holder is None:
                    return KeyWait(free=True)
                if (status.holder, status.version) != last:
                    last, progress = (status.holder, status.version), time.monotonic()
                elif time.monotonic() - progress > stall_timeout:
                    return KeyWait(timed_out=True, holder=status.holder)
        finally:
            self._watched[key] -= 1
            if not self._watched[key]:
                del self._watched[key]

    async def _outcome(self, key: str) -> str | None:
        raw = await self.c.retrying("shared journal", lambda: self.c.client.hget(self.key("outcomes"), "o:" + key))
        return cast("str | None", raw)

    async def _polls(self) -> None:
        """One read of every awaited request per interval, for all of this process's waiters at once."""
        while True:
            _honour_cancel()
            await asyncio.sleep(self.poll_interval)
            if not self._watched:
                continue
            watched = sorted(self._watched)
            keys = [self.key("outcomes"), self.key("entries"), *(self.key("claim", k) for k in watched)]
            try:
                flat = cast("list[Any]", await self._peek(keys=keys, args=watched))
            except (RedisError, OSError) as exc:
                log.warning("shared journal %s: cannot read the batch (%s); retrying", self.batch_id,
                            type(exc).__name__)
                continue
            self._snapshot = {
                key: _KeyStatus(seq=int(flat[3 * i]), holder=str(flat[3 * i + 1]) or None,
                                version=int(flat[3 * i + 2]))
                for i, key in enumerate(watched)
            }
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()


def _honour_cancel() -> None:
    """redis-py can swallow a cancel that lands mid-command; a background loop must still stop when asked."""
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        raise asyncio.CancelledError


def _fold(entry: JournalEntry | None, key: str, record: JournalRecord) -> JournalEntry:
    """``JournalEntry.apply`` on a copy; a second task id from a late answer is kept as an extra, never dropped."""
    folded = entry.model_copy(deep=True) if entry is not None else JournalEntry(key=key)
    if record.task_id and folded.task_id and record.task_id != folded.task_id and not record.adopted:
        record = record.model_copy(update={"adopted": True})
    folded.apply(record)
    return folded
