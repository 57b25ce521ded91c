"""The batch journal: the request state machine on disk, so a re-run after any crash never pays twice.

One JSON line per state change (see :mod:`kie_async.ledger.request_state`), keyed by a stable hash of the
normalized request, appended and fsynced before the step it announces. ``submitting`` is written only when
``createTask`` is about to go on the wire (after the rate limiter), and every attempt is closed by
``submitted`` (task id), ``refused`` (a definite no, or provably never sent) or ``uncertain``. A process that
dies between ``submitting`` and its close leaves a request that reads as uncertain: it may have been bought,
so it is not bought again unless the caller says so.

Each attempt writes two ``submitting`` lines: the intent (fsynced) with this machine's boot id, then, just
before the bytes go out, a ``sending`` marker (written, not fsynced). A process that dies leaves the page cache
intact, so on the same boot an intent without its marker proves the request never left: the attempt reads as
refused, not uncertain, and the next run buys it. Only an intent with its marker (or one from an earlier boot,
whose marker a power loss could have eaten) reads as uncertain. This keeps a kill during the intent's fsync
from turning into a false "maybe bought".

A journal has one owner at a time (an exclusive lock held for the batch's life); a second process fails fast
naming the holder. Adoptions from a callback receiver in another process are plain appends and need no
ownership: they only ever add a task id.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest
from kie_async.core.errors import KieInputError, KieJournalUnreadableError
from kie_async.core.jsonl_log import append_line, is_torn_write, read_lines
from kie_async.core.owner_lock import OwnerLock
from kie_async.core.path_component import is_safe_run_id
from kie_async.core.threads import run_file_io
from kie_async.ledger.request_state import RequestState, can_move, check_move, facts

log = logging.getLogger("kie_async.ledger.journal")

_LEGACY_EVENTS = {"submitting": RequestState.SUBMITTING, "submitted": RequestState.SUBMITTED}


class JournalRecord(BaseModel):
    """One state change of one request."""

    model_config = ConfigDict(frozen=True)

    key: str
    state: RequestState
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    attempt: str | None = Field(default=None, description="createTask attempt id; the callback token carries it")
    model_key: str | None = None
    provider_model: str | None = None
    prompt: str | None = Field(default=None, description="start of the prompt, to find an uncertain task")
    task_id: str | None = None
    adopted: bool = Field(default=False, description="task id learnt from a correlated callback")
    sending: bool = Field(
        default=False, description="submitting: the request goes out now (written without fsync; see module doc)"
    )
    boot: str | None = Field(default=None, description="submitting: host and boot id, to prove a send never happened")
    raw_key: str | None = Field(
        default=None, description="submitting: hash of the request as written, so a spec change cannot re-key it"
    )
    request: str | None = Field(
        default=None, description="submitting, under an idempotency key: the request key the key stands for"
    )
    run_id: str | None = None
    run_dir: str | None = None
    host: str | None = Field(default=None, description="the machine holding run_dir (shared journals span machines)")
    outputs: list[str] = Field(default_factory=list)
    output_urls: list[str] = Field(default_factory=list)
    output_sha256: list[str] = Field(default_factory=list)
    output_bytes: list[int] = Field(default_factory=list)
    credits_estimated: float | None = None
    credits_charged: float | None = None
    error: str | None = None
    error_type: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_event(cls, data: Any) -> Any:
        """Journals written before the state machine said ``event``; read them with the same meaning."""
        if not isinstance(data, dict) or "state" in data or "event" not in data:
            return data
        data = dict(data)
        event = data.pop("event")
        if event in _LEGACY_EVENTS:
            data["state"] = _LEGACY_EVENTS[event]
        elif data.get("status") == "succeeded":
            data["state"] = RequestState.SUCCEEDED
        elif str(data.get("error") or "").startswith("task failed"):
            data["state"] = RequestState.FAILED  # the provider said fail
        else:
            # An old "failed" after a transient error (outage, download): paid for, so resumable, not final.
            data["state"] = RequestState.INCOMPLETE if data.get("task_id") else RequestState.REFUSED
        data.pop("status", None)
        return data

    @field_validator("run_id")
    @classmethod
    def _run_id_is_one_folder_name(cls, value: str | None) -> str | None:
        """A journal line is data anyone with write access made: its run id becomes a folder that a resume replaces."""
        if not value:
            return None  # "" was never a folder: no run yet
        if not is_safe_run_id(value):
            raise ValueError("run_id must be one safe folder name under the output root")
        return value

    def to_line(self) -> bytes:
        return (self.model_dump_json(exclude_defaults=True) + "\n").encode()


class JournalEntry(BaseModel):
    """Everything known about one key, folded from its records in order."""

    key: str
    state: RequestState = RequestState.PENDING
    task_id: str | None = None
    attempt: str | None = None
    sending: bool = Field(default=False, description="the current attempt's request may have left")
    run_id: str | None = Field(default=None, description="the run folder allocated to the task")
    last: JournalRecord | None = Field(default=None, description="the record that set the current state")
    intent: JournalRecord | None = Field(default=None, description="the latest submitting record")
    result: JournalRecord | None = Field(default=None, description="the latest succeeded/failed record")
    extra_task_ids: list[str] = Field(
        default_factory=list, description="more tasks found for this key (a double purchase, reported)"
    )
    adopted_attempt: str | None = Field(default=None, description="the attempt whose task id came from a callback")

    @property
    def uncertain(self) -> bool:
        """createTask may have been sent but no task id was ever learnt."""
        return self.state in (RequestState.SUBMITTING, RequestState.UNCERTAIN)

    @property
    def resumable(self) -> bool:
        return facts(self.state).resumable

    def apply(self, record: JournalRecord) -> None:
        """Fold one record. Tolerant of odd files (hand edits, old versions): a known task id is never forgotten."""
        if record.adopted:
            self._adopt(record)
            return
        if record.sending:
            if self.state is RequestState.SUBMITTING and record.attempt == self.attempt:
                self.sending = True
            return
        if self._answers_open_attempt_after_late_adoption(record) and self.task_id is not None:
            # A callback for an older attempt was adopted (by a receiver elsewhere) while this attempt was on the
            # wire. Both tasks were bought; the one this attempt created is what its run waited on and recorded.
            self.extra_task_ids.append(self.task_id)
            log.warning("journal %s: a second task %s exists besides %s", self.key, self.task_id, record.task_id)
            self.task_id = self.adopted_attempt = None
        if not self._acceptable(record):
            log.warning("journal %s: ignoring %s after %s", self.key, record.state.value, self.state.value)
            return
        if not can_move(self.state, record.state):
            log.warning("journal %s: unexpected %s after %s", self.key, record.state.value, self.state.value)
        if record.state is RequestState.SUBMITTING and self.task_id is not None:
            self.task_id = None  # retry_failed: a new purchase gets a new task id (and run folder)
            self.run_id = self.adopted_attempt = None
        if record.state is RequestState.SUBMITTING:
            self.intent = record
            self.attempt = record.attempt
            self.sending = False
        if record.task_id:
            self.task_id = record.task_id
        if record.run_id:
            self.run_id = record.run_id
        if record.state in (RequestState.SUCCEEDED, RequestState.FAILED):
            self.result = record
        self.state = record.state
        self.last = record

    def _acceptable(self, record: JournalRecord) -> bool:
        if record.state is RequestState.PENDING:
            return False  # never written: "pending" means no record
        if facts(record.state).has_task and not (record.task_id or self.task_id):
            return False  # a paid state needs its task id
        if record.task_id and self.task_id and record.task_id != self.task_id:
            return False  # another task for this key arrives only as an adoption (recorded as extra)
        if self.task_id is not None and not facts(record.state).has_task:
            # Only the provider's "fail" may be followed by a fresh attempt; anything else would drop a paid task.
            return self.state is RequestState.FAILED and record.state is RequestState.SUBMITTING
        return True

    def _answers_open_attempt_after_late_adoption(self, record: JournalRecord) -> bool:
        return (
            record.state is RequestState.SUBMITTED
            and record.task_id is not None
            and self.task_id is not None
            and record.task_id != self.task_id
            and self.adopted_attempt is not None
            and record.attempt is not None
            and record.attempt == self.attempt
            and record.attempt != self.adopted_attempt
        )

    def _adopt(self, record: JournalRecord) -> None:
        if record.task_id is None:
            return
        if self.task_id is None and self.state in (
            RequestState.PENDING,  # a task learnt elsewhere (a resume by id, another journal, the ledger)
            RequestState.BLOCKED,
            RequestState.SUBMITTING,
            RequestState.UNCERTAIN,
            RequestState.REFUSED,  # a lying "no": a task exists after all, so it must never be bought again
        ):
            self.task_id = record.task_id
            self.adopted_attempt = record.attempt
            self.state = RequestState.SUBMITTED
            self.last = record
        elif record.task_id != self.task_id and record.task_id not in self.extra_task_ids:
            self.extra_task_ids.append(record.task_id)
            log.warning("journal %s: a second task %s exists besides %s", self.key, record.task_id, self.task_id)


def _stable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_stable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _without_empty_extras(dump: dict[str, Any]) -> dict[str, Any]:
    """Keys of requests without ``extra_options`` stay what they were before the field existed (journals resume)."""
    if not dump.get("extra_options"):
        dump.pop("extra_options", None)
    return dump


def raw_request_key(raw: RawUserRequest) -> str:
    """A stable hash of the request as the user wrote it (no spec defaults, aliases or modes).

    Journals are keyed by :func:`request_key`, which follows the specs; a spec that changed between runs (an
    upgrade, an override folder) would re-key a paid request. The intent also records this key, and a re-run
    that does not find a request by its spec key finds it by this one, so it is resumed, never bought again.
    """
    dump = _without_empty_extras(raw.model_dump(mode="python"))
    canonical = json.dumps(_stable(dump), sort_keys=True, separators=(",", ":"), default=str)
    return "raw-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def batch_identity(requests: list[RawUserRequest]) -> str:
    """A batch's identity from what it buys: the sorted written-form keys of its requests (duplicates counted).

    Order, comments, blank lines, whitespace and line endings of the file it came from do not change it.
    """
    keys = sorted(raw_request_key(raw) for raw in requests)
    return "req-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]


def request_key(normalized: NormalizedRequest) -> str:
    """A stable hash of what would be submitted (model, mode, prompts, options, media, callback)."""
    dump = _without_empty_extras(
        normalized.model_dump(mode="python", exclude={"issues", "defaulted", "explicit_options"})
    )
    canonical = json.dumps(_stable(dump), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def owner_lock_path(path: Path) -> Path:
    """Next to the file the journal really is: a symlink (or macOS's /tmp -> /private/tmp) is not a second journal."""
    real = path.resolve()
    return real.with_name(real.name + ".owner")


class BatchJournal:
    """An append-only journal file plus the folded view of it; ``async with await BatchJournal.open(p):``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, JournalEntry] = {}
        self.raw_index: dict[str, str] = {}
        self.skipped_lines: list[int] = []
        self._pending: set[asyncio.Future[None]] = set()
        self._lock: OwnerLock | None = None
        self._lagging: set[str] = set()
        """Keys whose last append failed: the view is behind the request's ledger until one succeeds."""

    def __repr__(self) -> str:
        return f"BatchJournal({str(self.path)!r}, keys={len(self.entries)}, owned={self._lock is not None})"

    @classmethod
    async def open(
        cls, path: str | Path, *, exclusive: bool = True, before: Callable[[], None] | None = None
    ) -> BatchJournal:
        """Load the journal and (by default) become its only owner until :meth:`close`.

        ``before`` runs first in the same worker thread (one hop for the ledger's legacy import and the open).
        """
        journal = cls(Path(path))
        opening = asyncio.ensure_future(asyncio.to_thread(journal._open_blocking, exclusive, before))
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The worker thread goes on and may still take the lock: give it back when it does, or this
            # process (a notebook, a web server) could never open the journal again.
            opening.add_done_callback(lambda _: journal._release())
            raise
        return journal

    def _open_blocking(self, exclusive: bool, before: Callable[[], None] | None = None) -> None:
        if before is not None:
            before()
        if self.path.is_dir():
            raise KieInputError(f"journal_path {self.path} is a folder", hint="give the journal a file name")
        if self.path.exists() and not self.path.is_file():
            # /dev/zero or /dev/full read until memory runs out, a FIFO blocks forever, /dev/null fails every append.
            raise KieInputError(
                f"journal_path {self.path} is not a regular file (a device or a pipe)",
                hint="give the journal a file name of its own; it must be read back on the next run",
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if exclusive:
            self._lock = OwnerLock.acquire(owner_lock_path(self.path), what=f"journal {self.path}")
        try:
            self._load()
        except BaseException:
            self._release()
            raise

    def _load(self) -> None:
        content = read_lines(self.path)
        unreadable: list[int] = []
        last = content.lines[-1][0] if content.lines else None
        for number, raw in content.lines:
            try:
                self._fold(JournalRecord.model_validate_json(raw))
            except ValidationError:
                # A crash mid-append leaves a torn line (a cut-off record, sealed by the next append); the last
                # line may also be torn. Anything else unreadable is a damaged or re-encoded file.
                (self.skipped_lines if number == last or is_torn_write(raw) else unreadable).append(number)
        if content.torn_tail is not None and content.torn_line_number is not None:
            self.skipped_lines.append(content.torn_line_number)
        if unreadable:
            raise KieJournalUnreadableError(
                f"journal {self.path}: {_line_list(unreadable)} cannot be read, so it is not known what was bought",
                hint="nothing was bought; restore the file (UTF-8 JSON lines as written) or pass another journal",
                path=str(self.path),
                lines=unreadable,
            )
        if self.skipped_lines:
            log.warning("journal %s: skipped unreadable line(s) %s (torn by a crash?)", self.path, self.skipped_lines)
        for entry in self.entries.values():
            if entry.state is RequestState.SUBMITTING:
                # Its process died mid-attempt. Same boot and no "sending" marker: the request never left.
                stamp = entry.intent.boot if entry.intent is not None else None
                never_sent = not entry.sending and stamp is not None and stamp == boot_stamp()
                entry.state = RequestState.REFUSED if never_sent else RequestState.UNCERTAIN

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def close(self) -> None:
        """Wait for started appends, then give up ownership."""
        try:
            await self.drain()
        finally:
            self._release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def key_for(self, key: str, raw_key: str) -> str:
        """The journal's key for a request: its spec key, else the key its written form was journaled under."""
        if key in self.entries or raw_key not in self.raw_index:
            return key
        return self.raw_index[raw_key]

    def _fold(self, record: JournalRecord) -> None:
        if record.raw_key:
            self.raw_index.setdefault(record.raw_key, record.key)
        self.entries.setdefault(record.key, JournalEntry(key=record.key)).apply(record)

    def get(self, key: str) -> JournalEntry | None:
        return self.entries.get(key)

    def state_of(self, key: str) -> RequestState:
        entry = self.entries.get(key)
        return entry.state if entry is not None else RequestState.PENDING

    async def record(self, record: JournalRecord) -> None:
        """Append a state change after checking it is a legal move (a bug otherwise, never user input).

        After a failed append (a moment of ENOSPC on ``submitted``) the view lags the pipeline's ledger, which
        already checked the move; refusing the next record (``succeeded``, with the task id) would lose the task.
        """
        if not record.adopted and not record.sending and record.key not in self._lagging:
            check_move(self.state_of(record.key), record.state, key=record.key)
        await self.write(record, fsync=not record.sending)

    async def write(self, record: JournalRecord, *, fsync: bool = True) -> None:
        """Append durably (fsync) in a worker thread, then fold into the in-memory view.

        The append is shielded and folds itself in when it lands, so a cancelled caller neither stops a line
        that is being written nor leaves the in-memory view behind the file; :meth:`drain` waits for such lines.
        """
        pending = asyncio.ensure_future(run_file_io(append_line, self.path, record.to_line(), fsync=fsync))
        self._pending.add(pending)

        def landed(future: asyncio.Future[None]) -> None:
            self._pending.discard(future)
            if not future.cancelled() and future.exception() is None:
                self._fold(record)
                self._lagging.discard(record.key)
            elif not record.sending:
                self._lagging.add(record.key)

        pending.add_done_callback(landed)
        await asyncio.shield(pending)

    async def drain(self) -> None:
        """Wait until every append already started has reached the file."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _line_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


@functools.cache
def boot_stamp() -> str | None:
    """``<host>/<boot id>`` where the OS has one (Linux); ``None`` elsewhere, where every dead intent is uncertain."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot_id}" if boot_id else None


def journal_scope(identity: str) -> str:
    """A short URL-safe tag naming one journal (a shared batch's id): carried in its correlation tokens."""
    return hashlib.sha256(identity.encode()).hexdigest()[:10]


def correlation_token(key: str, attempt: str, scope: str | None = None) -> str:
    """``<journal key>.<attempt>[-<scope>]``, in URL-unreserved characters (a duplicate's ``#n`` becomes ``~n``).

    ``scope`` (:func:`journal_scope`) names the journal the attempt belongs to, so a receiver settles only that
    one; tokens without it (older versions, a file journal) are still read.
    """
    tail = f"{attempt}-{scope}" if scope else attempt
    return f"{key.replace('#', '~')}.{tail}" if key else tail


def parse_token(token: str) -> tuple[str, str, str | None]:
    """(journal key, attempt, scope or None) from a token made by :func:`correlation_token`."""
    key, _, tail = token.rpartition(".")
    attempt, _, scope = tail.partition("-")
    return key.replace("~", "#"), attempt, scope or None


def parse_correlation_token(token: str) -> tuple[str, str]:
    """(journal key, attempt) from a token made by :func:`correlation_token`."""
    key, attempt, _ = parse_token(token)
    return key, attempt


def attempt_of(entry: JournalEntry, attempt: str) -> bool:
    """Whether ``attempt`` is one this journal recorded for the entry (its intent, or an adopted one)."""
    return attempt in (entry.attempt, entry.adopted_attempt) or (
        entry.intent is not None and entry.intent.attempt == attempt
    )


async def settle_from_callback(path: str | Path, token: str, task_id: str) -> bool:
    """Record a confirmed callback's task in the journal at ``path`` if it settles one of its requests.

    For a receiver that runs apart from the batch (another process, or after the batch ended): it reads the
    journal without taking ownership and appends only when the task is news. Returns whether the token named
    a request of this journal.
    """
    key, attempt, scope = parse_token(token)
    if scope is not None:
        return False  # a shared batch's token: its journal is in the coordinator, not in this file
    view = await BatchJournal.open(path, exclusive=False)
    entry = view.get(key)
    if entry is None or not attempt_of(entry, attempt):
        return False  # the same request in another batch: not this journal's attempt, not settled here
    if task_id != entry.task_id and task_id not in entry.extra_task_ids:
        await append_adoption(path, key, attempt, task_id)
    return True


async def append_adoption(path: str | Path, key: str, attempt: str | None, task_id: str) -> None:
    """Record, from any process, that a correlated callback named ``task_id`` for journal key ``key``.

    No ownership needed: an adoption only ever adds a task id, and the owner (or the next run) folds it in.
    """
    record = JournalRecord(key=key, state=RequestState.SUBMITTED, attempt=attempt, task_id=task_id, adopted=True)
    await asyncio.to_thread(append_line, Path(path), record.to_line())
