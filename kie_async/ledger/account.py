"""The account's purchase ledger: every task this machine bought on one Kie.ai account, by request, whatever bought it.

``run_pipeline`` (and so ``run_many``, the CLI, ``KieClient``, the MCP server) and ``kie.submit`` all claim a
request here before anything can be bought, record each state change here (the batch journal's format and state
machine), and release it when they are done. The rules it serves:

- a request whose paid task was never delivered (interrupted, timed out, killed) resumes that task;
- a request whose last purchase was delivered (or failed at the provider) buys a new one: a new *variation*,
  recorded under ``<key>#2``, ``<key>#3``...; with an ``idempotency_key`` the earlier result comes back instead;
- a request whose last attempt may have been bought (the answer was lost) buys nothing unless the caller says so.

Only a request's intent is fsynced (see :meth:`LedgerClaim.record`). Layout:
``<ledger folder>/<account>/requests/<2 hex>/<request key>.jsonl``, one small journal per distinct request,
each with one owner at a time (the journal's owner lock), so different requests never wait for each other and one
request is never run by two processes at once. The account folder is named by a hash of the API key (never the
key). Where the folder is: ``KieSettings.ledger_dir``, else ``$KIE_LEDGER``, else ``ledger`` in the user's state
folder (:func:`kie_async.core.state_dir.state_dir`: ``~/.local/state/kie-async`` on Linux, by platform convention).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import shutil
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kie_async.core.errors import KieInputError, KieJournalBusyError
from kie_async.core.settings import KieSettings
from kie_async.core.state_dir import state_dir
from kie_async.ledger.journal import BatchJournal, JournalEntry, JournalRecord, append_adoption, attempt_of, parse_token
from kie_async.ledger.request_state import RequestState, facts

LEDGER_ENV = "KIE_LEDGER"
DELIVERED = frozenset({RequestState.SUCCEEDED, RequestState.FAILED})
MAX_IDEMPOTENCY_KEY = 255


def ledger_folder(settings: KieSettings) -> Path:
    """Where the ledgers of every account live: the setting, ``$KIE_LEDGER``, or the user's state folder."""
    named = settings.ledger_dir or os.environ.get(LEDGER_ENV, "").strip()
    return Path(named).expanduser() if named else state_dir() / "ledger"


def account_name(settings: KieSettings) -> str:
    """A folder name for the account: a hash of its key (the key itself never reaches a file name)."""
    if settings.api_key is None:
        return "no-key"
    secret = settings.api_key.get_secret_value().encode("utf-8", "surrogatepass")
    return "acct-" + hashlib.sha256(b"kie-async account\n" + secret).hexdigest()[:16]


def idempotency_base(idempotency_key: object) -> str:
    """The ledger key an ``idempotency_key`` stands for; the key must be a non-empty string."""
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise KieInputError(
            f"idempotency_key must be a non-empty string, got {idempotency_key!r}",
            hint="pass a string that names this purchase in your system (an order id, a job id)",
        )
    if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise KieInputError(
            f"idempotency_key is {len(idempotency_key)} characters long (at most {MAX_IDEMPOTENCY_KEY})",
            hint="pass a shorter key, or a hash of the long one",
        )
    digest = hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"idem-{digest}"


@dataclass
class _Book:
    """One request's journal, shared by the runs of this process (on one event loop) that claimed it."""

    journal: BatchJournal
    loop_books: _LoopBooks
    users: int = 0
    claimed: set[str] = field(default_factory=set)


@dataclass
class _LoopBooks:
    """The books open on one event loop, and the lock that makes "open or share" one step."""

    opening: asyncio.Lock = field(default_factory=asyncio.Lock)
    books: dict[Path, _Book] = field(default_factory=dict)


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBooks] = weakref.WeakKeyDictionary()


def _books_of_this_loop() -> _LoopBooks:
    loop = asyncio.get_running_loop()
    books = _LOOPS.get(loop)
    if books is None:
        books = _LOOPS[loop] = _LoopBooks()
    return books


@dataclass
class LedgerClaim:
    """A request's variation, held for one run: record its state changes, then :meth:`release` it."""

    ledger: AccountLedger
    base: str
    key: str
    entry: JournalEntry | None
    _book: _Book
    request: str | None = None
    """For an idempotency key: the request key it stands for (recorded with each intent, checked on reuse)."""
    linked: LedgerClaim | None = None
    """For a new idempotency key: the plain variation whose paid, undelivered task it took over (kept in step)."""

    @property
    def path(self) -> Path:
        return self._book.journal.path

    async def record(self, record: JournalRecord) -> None:
        """Append ``record`` under this key, folded tolerantly (the ledger's view may differ from a batch's)."""
        update: dict[str, object] = {"key": self.key}
        if self.request is not None:
            update["request"] = self.request
        # Only the intent is fsynced: it must outlive a power loss before the request may leave. Any later line
        # lost with the page cache reads back as "maybe bought" (or a task to collect again), never as a purchase
        # to repeat; a killed process loses nothing (the page cache survives it).
        intent = record.state is RequestState.SUBMITTING and not record.sending
        await self._book.journal.write(record.model_copy(update=update), fsync=intent)
        if self.linked is not None and facts(record.state).has_task:
            await self.linked.record(record)  # the plain variation learns its task was delivered (or is collecting)

    def current(self) -> JournalEntry | None:
        return self._book.journal.get(self.key)

    async def release(self) -> None:
        self._book.claimed.discard(self.key)
        await _drop(self._book)
        if self.linked is not None:
            await self.linked.release()


class AccountLedger:
    """The ledger of one account: ``await AccountLedger.for_settings(settings).claim(key)``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"AccountLedger({str(self.root)!r})"

    @classmethod
    def for_settings(cls, settings: KieSettings) -> AccountLedger:
        return cls(ledger_folder(settings) / account_name(settings))

    def book_path(self, base: str) -> Path:
        return self.root / "requests" / base.rpartition("-")[2][:2] / f"{base}.jsonl"

    def books(self) -> list[Path]:
        """Every request journal of the account (for listing and recovery; blocking, call in a thread)."""
        folder = self.root / "requests"
        return sorted(folder.glob("*/*.jsonl")) if folder.is_dir() else []

    async def claim(
        self,
        base: str,
        *,
        idempotency_key: str | None = None,
        prefer_task: str | None = None,
        resubmit: bool = False,
        legacy: Path | None = None,
    ) -> LedgerClaim:
        """Hold the variation of ``base`` this run resumes or buys (see the module's rules)."""
        request = None
        if idempotency_key is not None:
            request, base = base, idempotency_base(idempotency_key)
        book = await _open(self.book_path(base), legacy)
        key = base if request is not None else _pick(book, base, prefer_task=prefer_task, resubmit=resubmit)
        if key in book.claimed:  # only an idempotency key lands on a held variation: one run of it at a time
            await _drop(book)
            raise KieJournalBusyError(
                "a run with this idempotency_key is already in progress in this process",
                hint="await that run; calling again with the same key afterwards returns its result",
            )
        entry = book.journal.get(key)
        if request is not None and entry is not None and _named_request(entry) not in (None, request):
            await _drop(book)
            raise KieInputError(
                "idempotency_key was already used for a different request",
                hint="use a new idempotency_key for a new request (the key returns the purchase it first named)",
            )
        book.claimed.add(key)
        claim = LedgerClaim(self, base, key, entry, book, request)
        if request is not None and entry is None:
            try:
                await self._take_over_undelivered(claim, request)
            except BaseException:
                await claim.release()  # the plain request is held elsewhere right now: try again later, whole
                raise
        return claim

    async def _take_over_undelivered(self, claim: LedgerClaim, request: str) -> None:
        """A new idempotency key for a request whose plain purchase is paid and undelivered: that task is the
        key's (an identical request resumes a paid task, named or not), never a second purchase."""
        plain = await self.claim(request)
        entry = plain.entry
        if entry is not None and entry.uncertain:
            claim.entry = entry  # the request may have been bought already: the named run reports it, buys nothing
            await plain.release()
            return
        if entry is None or entry.task_id is None or not facts(entry.state).resumable:
            await plain.release()
            return
        claim.linked = plain
        adoption = JournalRecord(key=claim.key, state=RequestState.SUBMITTED, task_id=entry.task_id, adopted=True)
        await claim._book.journal.write(adoption.model_copy(update={"request": request, "run_id": entry.run_id}))
        claim.entry = claim.current()


async def _open(path: Path, legacy: Path | None) -> _Book:
    """This loop's book for ``path``: shared when a run here holds it already, else opened (and owned)."""
    loop_books = _books_of_this_loop()
    async with loop_books.opening:
        book = loop_books.books.get(path)
        if book is None:
            book = _Book(await BatchJournal.open(path, before=_legacy_import(legacy, path)), loop_books=loop_books)
            loop_books.books[path] = book
        book.users += 1
    return book


async def _drop(book: _Book) -> None:
    book.users -= 1
    if book.users == 0 and book.loop_books.books.get(book.journal.path) is book:
        del book.loop_books.books[book.journal.path]
        await book.journal.close()


def _pick(book: _Book, base: str, *, prefer_task: str | None, resubmit: bool) -> str:
    """The variation a run takes, among those no other run of this process holds: the one holding
    ``prefer_task``; else one with a paid, undelivered task (resumed); else one that may have been bought (reported,
    never bought again); else one where nothing is at stake, or a new one. ``resubmit`` skips the first two kinds."""
    journal = book.journal
    free: list[tuple[str, JournalEntry]] = []
    number, fresh = 1, None
    while fresh is None:
        key = base if number == 1 else f"{base}#{number}"
        number += 1
        entry = journal.get(key)
        if key in book.claimed:
            continue  # another run of this process is on this variation right now
        if entry is None:
            fresh = key
        else:
            free.append((key, entry))
    if prefer_task is not None:  # a named task never lands on a variation that holds another
        return next((k for k, e in free if prefer_task in (e.task_id, *e.extra_task_ids)), fresh)
    if not resubmit:
        paid = next((k for k, e in free if e.task_id is not None and facts(e.state).resumable), None)
        maybe = next((k for k, e in free if e.uncertain), None)
        if paid is not None or maybe is not None:
            return paid or str(maybe)
    idle = (k for k, e in free if e.state not in DELIVERED and e.task_id is None and not e.uncertain)
    return next(idle, fresh)


def _legacy_import(legacy: Path | None, path: Path) -> Callable[[], None] | None:
    return None if legacy is None else functools.partial(_import_legacy, legacy, path)


def _import_legacy(legacy: Path, path: Path) -> None:
    """A journal kept under the output root by an earlier version: its records become the ledger's (once)."""
    if path.exists() or not legacy.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".import")
    shutil.copyfile(legacy, partial)
    os.replace(partial, path)


async def settle_in_ledger(ledger: AccountLedger, token: str, task_id: str) -> bool:
    """Record a confirmed callback's task in the ledger entry whose attempt the token names (any variation).

    For a receiver when no run of its process waits on the token: the request's next run then resumes the task
    instead of reporting it uncertain. Returns whether an attempt of this ledger was found.
    """
    key, attempt, scope = parse_token(token)
    if scope is not None or not key:
        return False  # a shared batch's token (its ledger is in Redis), or a bare attempt from an older version
    path = ledger.book_path(key.partition("#")[0])
    if not await asyncio.to_thread(path.is_file):
        return False
    view = await BatchJournal.open(path, exclusive=False)
    for entry in view.entries.values():
        if attempt_of(entry, attempt):
            if task_id != entry.task_id and task_id not in entry.extra_task_ids:
                await append_adoption(path, entry.key, attempt, task_id)
            return True
    return False


async def task_of_attempt(ledger: AccountLedger, key: str, attempt: str) -> str | None:
    """The task the ledger learnt for ``attempt`` of the request ``key`` (a callback settled it there), if any.

    A batch's journal and the ledger record the same attempts; a receiver that settled the attempt only in the
    ledger (it was not given the batch's journal) must still keep the batch from calling it uncertain forever.
    """
    path = ledger.book_path(key.partition("#")[0])
    if not await asyncio.to_thread(path.is_file):
        return None
    view = await BatchJournal.open(path, exclusive=False)
    for entry in view.entries.values():
        if entry.task_id is not None and attempt_of(entry, attempt):
            return entry.task_id
    return None


def _named_request(entry: JournalEntry) -> str | None:
    """The request key an idempotency key's entry was first used for (its intent's, or its adoption's)."""
    for record in (entry.last, entry.intent, entry.result):
        if record is not None and record.request:
            return record.request
    return None
