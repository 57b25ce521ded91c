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
import json
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
from kie_async.coordination.witness import remember_epoch, remembered_epoch
from kie_async.core.errors import KieCoordinationError
from kie_async.ledger.journal import JournalEntry, JournalRecord, attempt_of, journal_scope, parse_token
from kie_async.ledger.request_state import RequestState, can_move

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("kie_async.coordination")

T = TypeVar("T")


class JournalStore(Protocol):
    """What a journal needs from whoever opened it (the Redis coordinator): the connection, the key scheme,
    the process's owner id, a URL fit for messages, and the loop that holds an operation until Redis answers."""

    owner: str
    url: str
    namespace: str
    shown_url: str
    client: aioredis.Redis

    def key(self, *parts: str) -> str: ...

    async def retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T: ...


KEEP_MS = 30 * 24 * 3600 * 1000
"""A batch's journal lives 30 days after its last write (a file journal lives until deleted)."""
_CLOSE_DRAIN_SECONDS = 30.0

# Every script starts here: the ledger (``<namespace>:ledger``, its ``epoch``) must be the one this journal
# joined, and the batch's ``meta`` must exist. Neither is ever created by a script that finds it missing: a store
# that came back empty answers -2 (the ledger is lost) until an operator re-seeds it.
_LEDGER = """
local function ledger_ok(ledger, epoch, meta)
  if redis.call('HGET', ledger, 'epoch') ~= epoch then return false end
  return redis.call('EXISTS', meta) == 1
end
"""

# KEYS: claim, holders, outcomes, meta, ledger. ARGV: owner, lease ms, key, epoch.
# Returns {claimed 1/0 (-2: the ledger is lost), current holder, finished runs, previous holder whose claim
# expired (a taker's victim)}.
_CLAIM = (
    _LEDGER
    + """
if not ledger_ok(KEYS[5], ARGV[4], KEYS[4]) then return {-2, '', 0, ''} end
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
)

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

# KEYS: entries, log, meta, claim, holders, ledger, request index. ARGV: key, expected version, entry, record,
# owner, fenced, lease, keep, epoch, batch, index value, index op ('set' | 'del' | 'keep'), spending ('1': an
# intent, refused while another batch of the account holds the request paid or maybe paid).
# Returns the new version, -1 (version moved: fold again), -2 (the ledger is lost), -3 (claim lost), or the
# other batch's index value (a string) for a refused intent.
_STORE = (
    _LEDGER
    + _HOLDING
    + """
if not ledger_ok(KEYS[6], ARGV[9], KEYS[3]) then return -2 end
if ARGV[6] == '1' and not holding(KEYS[4], KEYS[5], ARGV[1], ARGV[5], tonumber(ARGV[7])) then return -3 end
local v = tonumber(redis.call('HGET', KEYS[1], 'v:' .. ARGV[1]) or '0')
if v ~= tonumber(ARGV[2]) then return -1 end
local cur = redis.call('HGET', KEYS[7], ARGV[1])
local cur_batch, cur_state = nil, nil
if cur then
  local ok, other = pcall(cjson.decode, cur)
  if ok and type(other) == 'table' then cur_batch, cur_state = other['batch'], other['state'] end
end
local paid = {submitting = true, uncertain = true, submitted = true, incomplete = true}
if ARGV[13] == '1' and cur_batch and cur_batch ~= ARGV[10] and paid[cur_state] then return cur end
redis.call('HSET', KEYS[1], 'e:' .. ARGV[1], ARGV[3], 'v:' .. ARGV[1], v + 1)
redis.call('RPUSH', KEYS[2], ARGV[4])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[8])) end
if ARGV[12] == 'set' then
  redis.call('HSET', KEYS[7], ARGV[1], ARGV[11])
  redis.call('PEXPIRE', KEYS[7], tonumber(ARGV[8]))
elseif ARGV[12] == 'del' and cur_batch == ARGV[10] then
  redis.call('HDEL', KEYS[7], ARGV[1])
end
return v + 1
"""
)

# KEYS: claim, holders, outcomes, meta, ledger. ARGV: owner, key, outcome, keep, epoch.
# Returns the run count, 0 (claim lost) or -2 (the ledger is lost).
_FINISH = (
    _LEDGER
    + _HOLDING
    + """
if not ledger_ok(KEYS[5], ARGV[5], KEYS[4]) then return -2 end
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
)

# KEYS: meta, ledger. ARGV: counter, epoch. Counts on the batch's meta only while the ledger stands.
_COUNT = (
    _LEDGER
    + """
if not ledger_ok(KEYS[2], ARGV[2], KEYS[1]) then return -2 end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
"""
)

# KEYS: ledger, meta, scopes. ARGV: epoch, created, keep, scope, batch. Joins the batch: creates its meta only
# under the known ledger, and names the batch behind its tokens' scope (for receivers that outlive the batch).
_JOIN = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return -2 end
redis.call('HSETNX', KEYS[2], 'created', ARGV[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[3]))
return 1
"""

# KEYS: ledger. ARGV: new epoch, created. The first process on an empty namespace creates the ledger (never a
# script that finds it gone mid-run: that is a loss). Returns {epoch, origin}.
_CREATE = """
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'origin', 'fresh', 'created', ARGV[2])
end
return {redis.call('HGET', KEYS[1], 'epoch'), redis.call('HGET', KEYS[1], 'origin') or ''}
"""

# KEYS: claim, holders. ARGV: owner, key.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: ledger, meta, holders, claim... ARGV: epoch, owner, lease, key... Returns 1 per claim still held
# (renewed), 0 per lost one; -2 (a number) when the ledger is lost.
_RENEW = (
    _LEDGER
    + _HOLDING
    + """
if not ledger_ok(KEYS[1], ARGV[1], KEYS[2]) then return -2 end
local out = {}
for i = 4, #KEYS do
  out[#out + 1] = holding(KEYS[i], KEYS[3], ARGV[i], ARGV[2], tonumber(ARGV[3])) and 1 or 0
  if out[#out] == 1 then redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3])) end
end
return out
"""
)

# KEYS: ledger, meta, outcomes, entries, claim... ARGV: epoch, key... Returns {runs finished, holder or '',
# version} per key; -2 (a number) when the ledger is lost.
_PEEK = (
    _LEDGER
    + """
if not ledger_ok(KEYS[1], ARGV[1], KEYS[2]) then return -2 end
local out = {}
for i = 5, #KEYS do
  local key = ARGV[i - 3]
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[3], 'n:' .. key) or '0')
  out[#out + 1] = redis.call('GET', KEYS[i]) or ''
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[4], 'v:' .. key) or '0')
end
return out
"""
)


class _KeyStatus(BaseModel):
    seq: int
    holder: str | None
    version: int


class JournalLostError(KieCoordinationError):
    """The shared ledger (or this batch's journal) vanished from Redis: nothing more is bought until re-seeded."""

    hint = (
        "re-seed it with `kie-async ledger recover --coordination URL --out FOLDER` (from the run folders and the "
        "provider's records), and run Redis with persistence (appendonly yes)"
    )


UNDELIVERED = frozenset(
    {RequestState.SUBMITTING, RequestState.UNCERTAIN, RequestState.SUBMITTED, RequestState.INCOMPLETE}
)
"""States in the account's request index: paid or maybe paid, and not delivered yet."""
_SETTLED = frozenset({RequestState.SUCCEEDED, RequestState.FAILED, RequestState.REFUSED, RequestState.BLOCKED})
RECOVERED_BATCH = "recovered"
"""The batch name ``kie-async ledger recover`` files index entries under."""


def index_value(batch: str, scope: str, task_id: str | None, state: RequestState) -> str:
    """One entry of the account's request index (request key -> where it was paid for)."""
    return json.dumps({"batch": batch, "scope": scope, "task_id": task_id, "state": state.value})


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
        self.epoch = ""
        self.scope = journal_scope(batch_id)
        self.gone = False
        client = coordinator.client
        self._count = client.register_script(_COUNT)
        self._join = client.register_script(_JOIN)
        self._create = client.register_script(_CREATE)
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

    @property
    def ledger_key(self) -> str:
        return self.c.key("ledger")

    @property
    def index_key(self) -> str:
        return self.c.key("requests")

    def lost_error(self) -> JournalLostError:
        self.gone = True
        return JournalLostError(
            f"the shared ledger on {self.c.shown_url} is gone or was replaced (Redis restarted without its data, or "
            f"was flushed): batch {self.batch_id!r} buys nothing more"
        )

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
        self.epoch = await self._join_ledger()
        created = datetime.now(UTC).isoformat(timespec="seconds")
        keys = [self.ledger_key, self.key("meta"), self.c.key("scopes")]
        if int(await self._join(keys=keys, args=[self.epoch, created, KEEP_MS, self.scope, self.batch_id])) < 0:
            raise self.lost_error()
        raw = cast("dict[str, str]", await self.c.client.hgetall(self.key("entries")))
        for field, value in raw.items():
            kind, _, key = field.partition(":")
            if kind == "e":
                self.entries[key] = JournalEntry.model_validate_json(value)
            elif kind == "v":
                self._versions[key] = int(value)
        self._stamp = await self._server_stamp()

    async def _join_ledger(self) -> str:
        """The ledger's epoch: created on a namespace never used from this machine, refused when it was lost."""
        remembered = await asyncio.to_thread(remembered_epoch, self.c.url, self.c.namespace)
        epoch, origin = cast("list[str | None]", await self.c.client.hmget(self.ledger_key, ["epoch", "origin"]))
        if epoch is None:
            if remembered is not None:
                raise self.lost_error()
            created = datetime.now(UTC).isoformat(timespec="seconds")
            answer = cast("list[str]", await self._create(keys=[self.ledger_key], args=[secrets.token_hex(8), created]))
            epoch, origin = str(answer[0]), str(answer[1])
        if remembered is not None and epoch != remembered and origin != "recovered":
            raise self.lost_error()  # recreated empty after a loss, not re-seeded by an operator
        try:
            await asyncio.to_thread(remember_epoch, self.c.url, self.c.namespace, epoch, self.c.shown_url)
        except OSError as exc:
            log.warning("cannot note the shared ledger's epoch on this machine (%s)", exc)
        return epoch

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
            log.warning(
                "shared journal %s: %s for %s not stored: %s", self.batch_id, record.state.value, record.key, exc
            )

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
            keys = [
                self.key("entries"),
                self.key("log"),
                self.key("meta"),
                self.key("claim", key),
                self.key("holders"),
                self.ledger_key,
                self.index_key,
            ]
            spending = record.state is RequestState.SUBMITTING and not record.adopted and not record.sending
            args: list[str | int] = [
                key,
                version,
                folded.model_dump_json(),
                record.model_dump_json(exclude_defaults=True),
                self.owner,
                "1" if fenced else "0",
                self.lease_ms,
                KEEP_MS,
                self.epoch,
                self.batch_id,
                *reversed(self._index_op(folded)),
                "1" if spending else "0",
            ]
            store = functools.partial(self._store, keys=keys, args=args)
            raw_answer = await self.c.retrying("shared journal", store)
            if isinstance(raw_answer, str | bytes) and not str(raw_answer).lstrip("-").isdigit():
                raise self._held_elsewhere(key, str(raw_answer))
            answer = int(raw_answer)
            if answer > 0:
                self.entries[key] = folded
                self._versions[key] = answer
                return
            if answer == -2:
                raise self.lost_error()
            if answer == -3:
                self._held.discard(key)
                self.lost.add(key)
                raise ClaimLostError(f"request {key} of batch {self.batch_id!r} was taken over by another process")
            await self.c.retrying("shared journal", lambda: self._refresh(key))  # -1: another writer came first

    def _index_op(self, folded: JournalEntry) -> tuple[str, str]:
        """How a write moves the account's request index: paid and undelivered here, or settled (dropped)."""
        if folded.state in UNDELIVERED:
            return "set", index_value(self.batch_id, self.scope, folded.task_id, folded.state)
        if folded.state in _SETTLED:
            return "del", ""
        return "keep", ""

    def _held_elsewhere(self, key: str, raw: str) -> KieCoordinationError:
        try:
            other = json.loads(raw)
        except ValueError:
            other = {}
        batch, state = other.get("batch", "?"), other.get("state", "?")
        return KieCoordinationError(
            f"request {key} is already {state} in batch {batch!r} of this account (paid or maybe paid, not "
            f"delivered): batch {self.batch_id!r} does not buy it again",
            hint=f"run batch {batch!r} again to resume it (an uncertain one needs an explicit resubmit there)",
        )

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
        keys = [self.key("claim", key), self.key("holders"), self.key("outcomes"), self.key("meta"), self.ledger_key]
        args: list[str | int] = [self.owner, self.lease_ms, key, self.epoch]
        answer = cast("list[Any]", await self.c.retrying("claim", lambda: self._claim(keys=keys, args=args)))
        claimed, holder, seq, previous = int(answer[0]), str(answer[1]), int(answer[2]), str(answer[3])
        if claimed < 0:
            raise self.lost_error()
        if not claimed:
            return ClaimResult(claimed=False, holder=holder, seq=seq)
        self._held.add(key)
        self.lost.discard(key)
        try:
            entry = await self.c.retrying("claim", lambda: self._refresh(key))
            if entry is None:
                entry = await self._from_account(key)
            closed = None
            if entry is not None and entry.state is RequestState.SUBMITTING:
                closed = await self._close_dead_attempt(entry, previous)
                entry = self.entries.get(key)
        except BaseException:
            await asyncio.shield(self._release_quietly(key))
            raise
        return ClaimResult(claimed=True, seq=seq, entry=entry, taken_over_from=previous or None, closed=closed)

    async def _from_account(self, key: str) -> JournalEntry | None:
        """New to this batch: a task another batch of the account paid for and has not delivered is resumed here.

        Identity is by request, not by batch file: an edited, reordered or trimmed file (a new batch id) finds
        its paid tasks here, and so does a batch re-run after ``kie-async ledger recover``.
        """
        raw = await self.c.retrying("claim", lambda: self.c.client.hget(self.index_key, key))
        if not raw:
            return None
        try:
            other = json.loads(raw)
            batch, task_id, state = str(other["batch"]), other.get("task_id"), RequestState(other["state"])
        except (ValueError, KeyError, TypeError):
            log.warning("shared journal %s: unreadable request index entry for %s; ignored", self.batch_id, key)
            return None
        recovered_here = batch == RECOVERED_BATCH and other.get("scope") == self.scope
        if batch == self.batch_id or not task_id or not (state in UNDELIVERED or recovered_here):
            return None  # nothing to resume here (an intent without a task id is refused when it is written)
        log.warning(
            "shared journal %s: %s was paid in batch %r (task %s, %s): resumed, not bought",
            self.batch_id,
            key,
            batch,
            task_id,
            state.value,
        )
        await self.write(JournalRecord(key=key, state=RequestState.SUBMITTED, task_id=str(task_id)))
        return self.entries.get(key)

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
            await self._count(keys=[self.key("meta"), self.ledger_key], args=[f"takeover_{state.value}", self.epoch])
        log.warning("shared journal %s: %s: %s -> %s", self.batch_id, entry.key, error, state.value)
        return state

    async def finish(self, key: str, outcome: Outcome) -> bool:
        keys = [self.key("claim", key), self.key("holders"), self.key("outcomes"), self.key("meta"), self.ledger_key]
        args: list[str | int] = [self.owner, key, outcome_json(outcome), KEEP_MS, self.epoch]
        runs = int(await self.c.retrying("shared journal", lambda: self._finish(keys=keys, args=args)))
        self._held.discard(key)
        if runs < 0:
            # The run is over (its task and files are this process's to report); nothing more is claimed here.
            self._tell_lost()
            return True
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
                    keys = [
                        self.ledger_key,
                        self.key("meta"),
                        self.key("holders"),
                        *(self.key("claim", k) for k in held),
                    ]
                    answer = await self._renew(keys=keys, args=[self.epoch, self.owner, self.lease_ms, *held])
                    alive = cast("list[int]", [0] * len(held) if isinstance(answer, int) else answer)
                    if isinstance(answer, int):
                        self._tell_lost()
                    for key, ok in zip(held, alive, strict=True):
                        if not int(ok) and key in self._held:
                            self._held.discard(key)
                            self.lost.add(key)
                            log.warning(
                                "shared journal %s: lost the claim on %s to another process", self.batch_id, key
                            )
                self._stamp = await self._server_stamp()
            except (RedisError, OSError) as exc:
                log.warning("shared journal %s: cannot renew claims (%s); retrying", self.batch_id, type(exc).__name__)

    # -- waiting for the others -----------------------------------------------------------------------------

    def _tell_lost(self) -> None:
        """The ledger is gone: every waiter stops (raising ``JournalLostError``), nothing more is bought here."""
        if not self.gone:
            log.error(
                "shared journal %s: the shared ledger on %s is gone; nothing more is bought",
                self.batch_id,
                self.c.shown_url,
            )
        self.gone = True
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_for_key(self, key: str, *, after_seq: int, stall_timeout: float) -> KeyWait:
        self._watched[key] = self._watched.get(key, 0) + 1
        last: tuple[str | None, int] | None = None
        progress = time.monotonic()
        try:
            while True:
                tick = self._tick
                await tick.wait()
                if self.gone:
                    raise self.lost_error()
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
            keys = [
                self.ledger_key,
                self.key("meta"),
                self.key("outcomes"),
                self.key("entries"),
                *(self.key("claim", k) for k in watched),
            ]
            try:
                answer = await self._peek(keys=keys, args=[self.epoch, *watched])
            except (RedisError, OSError) as exc:
                log.warning(
                    "shared journal %s: cannot read the batch (%s); retrying", self.batch_id, type(exc).__name__
                )
                continue
            if isinstance(answer, int):
                self._tell_lost()
                continue
            flat = cast("list[Any]", answer)
            self._snapshot = {
                key: _KeyStatus(seq=int(flat[3 * i]), holder=str(flat[3 * i + 1]) or None, version=int(flat[3 * i + 2]))
                for i, key in enumerate(watched)
            }
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()


async def settle_shared_adoption(store: JournalStore, token: str, task_id: str) -> bool:
    """Record a confirmed callback's task in the shared batch its token names, if that batch made the attempt.

    For a receiver apart from the batch (a web worker, or after the batch's processes ended). The token's scope
    names the batch; the attempt must be one that batch's journal recorded for the request, so a callback for
    the same request bought by another batch is never written here. Returns whether it was recorded.
    """
    key, attempt, scope = parse_token(token)
    if scope is None:
        return False
    batch_id = await store.client.hget(store.key("scopes"), scope)
    if not batch_id:
        return False
    journal = await RedisJournal.open(store, str(batch_id))
    try:
        entry = journal.get(key)
        if entry is None or not attempt_of(entry, attempt):
            return False
        await journal.adopt(key, attempt, task_id)
        return True
    finally:
        await journal.close()


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
