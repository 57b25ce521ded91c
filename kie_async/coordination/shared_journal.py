"""One batch journal for many processes: the seam ``run_many`` uses when a batch is split over processes/machines.

The file journal (:class:`kie_async.ledger.journal.BatchJournal`) has one owner; a shared journal has many writers,
so it adds what they need to never buy a request twice:

- **claims**: one request is run by one process at a time. A claim is a lease that the process renews while it
  lives; a dead process's claims expire and another process takes them over.
- **fencing**: the writes that lead to spending (the ``submitting`` intent and its ``sending`` marker) land only
  while the writer still holds the claim, so a process that lost its claim (stalled, cut off) can never send
  after a taker has decided the request never left. Records that carry a task id always land: they only ever
  add what was bought.
- **outcomes**: the result of each run, so every process can report the whole batch in input order. An outcome
  is opaque here: JSON text that the pipeline writes and reads back (the journal never parses it).

The state machine's rules are :meth:`kie_async.ledger.journal.JournalEntry.apply`, the same fold as the file journal's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, Field

from kie_async.ledger.journal import JournalEntry, JournalRecord
from kie_async.ledger.request_state import RequestState

Outcome = str | BaseModel
"""A finished run's outcome: JSON text, or a pydantic model stored as its JSON; handed back as the text."""


def outcome_json(outcome: Outcome) -> str:
    """The text stored for ``outcome``."""
    return outcome if isinstance(outcome, str) else outcome.model_dump_json()


class ClaimResult(BaseModel):
    """What :meth:`SharedJournal.try_claim` found."""

    claimed: bool
    holder: str | None = Field(default=None, description="not claimed: the live process that holds the request")
    seq: int = Field(default=0, description="how many runs of this request have finished in the batch so far")
    entry: JournalEntry | None = Field(default=None, description="claimed: the request's journal entry, fresh")
    taken_over_from: str | None = Field(default=None, description="claimed from a process whose lease expired")
    closed: RequestState | None = Field(
        default=None, description="a dead attempt closed at the takeover: refused (never left) or uncertain"
    )


class KeyWait(BaseModel):
    """Why :meth:`SharedJournal.wait_for_key` returned."""

    outcome: str | None = Field(default=None, description="the holder finished: its outcome (JSON text, as stored)")
    free: bool = Field(default=False, description="the claim ended without an outcome (its holder died): take it")
    timed_out: bool = Field(default=False, description="the holder made no progress for the whole stall timeout")
    holder: str | None = None


class SharedJournal(ABC):
    """The journal of one batch, shared by every process running it (``async with``; ``close`` after)."""

    batch_id: str
    owner: str
    """This journal's claim identity (``host:pid:random:random``; one per ``run_many`` call)."""
    host: str
    """This machine: recorded with every run folder, since run folders stay on the machine that wrote them."""
    entries: dict[str, JournalEntry]
    """This process's view: fresh for the requests it claims, as of the last read for the others."""

    def key_for(self, key: str, raw_key: str) -> str:
        """The batch's key for a request: its spec key, else the key its written form was journaled under."""
        if key in self.entries:
            return key
        for entry in self.entries.values():
            if entry.intent is not None and entry.intent.raw_key == raw_key:
                return entry.key
        return key

    def get(self, key: str) -> JournalEntry | None:
        return self.entries.get(key)

    def state_of(self, key: str) -> RequestState:
        entry = self.entries.get(key)
        return entry.state if entry is not None else RequestState.PENDING

    @abstractmethod
    async def record(self, record: JournalRecord) -> None:
        """A state change of a request this process runs; spending records wait for the store (fail closed)."""

    @abstractmethod
    async def write(self, record: JournalRecord, *, fsync: bool = True) -> None:
        """Store and fold one record (``fsync`` is the file journal's; here the store's answer is the proof)."""

    @abstractmethod
    async def adopt(self, key: str, attempt: str | None, task_id: str) -> None:
        """A correlated callback named the task of ``key``'s attempt: record it (never needs the claim)."""

    @abstractmethod
    async def drain(self) -> None:
        """Wait until every write already started has been answered by the store."""

    @abstractmethod
    async def close(self) -> None:
        """Drain, stop renewing, give back the claims still held (their requests can be taken at once)."""

    @abstractmethod
    async def try_claim(self, key: str) -> ClaimResult:
        """Claim ``key`` unless a live process holds it; a dead holder's open attempt is closed on the way."""

    @abstractmethod
    async def finish(self, key: str, outcome: Outcome) -> bool:
        """Store ``outcome`` as the request's outcome and release the claim; False when the claim was lost."""

    @abstractmethod
    async def release(self, key: str) -> None:
        """Give the claim back without an outcome (a cancel): another process may take the request now."""

    @abstractmethod
    async def wait_for_key(self, key: str, *, after_seq: int, stall_timeout: float) -> KeyWait:
        """Wait until ``key``'s holder finishes a run (``seq > after_seq``) or dies, or stalls too long."""

    async def __aenter__(self) -> SharedJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
