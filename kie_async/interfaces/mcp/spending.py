"""The MCP server's spending: a total over the server's life, kept across restarts, one owner at a time.

The file is an append-only JSON-lines log (one fsynced line per step, :mod:`kie_async.core.jsonl_log`) under
an owner lock (:class:`~kie_async.core.owner_lock.OwnerLock`): a second server on the same state refuses to
start instead of spending the same budget twice. The folded view is what the budget reads:

* ``reserve``: credits held for one purchase, written *before* createTask goes out;
* ``paid``: the task id (and run id) of a bought task, so an identical call resumes it instead of buying;
* ``settle``: the task was delivered (or failed at the provider): the reservation becomes spent credits;
* ``release``: nothing was bought: the reservation is dropped;
* ``uncertain``: the answer to createTask was lost: the reservation counts as spent, and the same request is
  not bought again by this server.

A reservation left open by a crash stays counted (the money may be gone). The store sits behind
:class:`SpendingStore` so the per-account ledger can replace it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from kie_async.core.errors import KieInputError
from kie_async.core.jsonl_log import append_line, is_torn_write, read_lines
from kie_async.core.owner_lock import OwnerLock

log = logging.getLogger("kie_async.interfaces.mcp.spending")

STATE_DIR = ".kie-mcp"
STATE_FILE = "spending.jsonl"


class PaidRun(BaseModel):
    """A task this server bought and has not delivered yet."""

    key: str
    task_id: str
    run_id: str | None = None
    request: dict[str, Any]
    reserved: float


class SpendingView(BaseModel):
    spent: float
    reserved: float
    unpriced_runs: int = 0


class SpendingStore(Protocol):
    """What the server needs from wherever spending is kept."""

    def view(self) -> SpendingView: ...
    def reserved_for(self, key: str) -> float | None: ...
    def undelivered(self, key: str) -> PaidRun | None: ...
    def is_uncertain(self, key: str) -> bool: ...
    def find(self, run_or_task_id: str) -> PaidRun | None: ...
    def reserve(self, key: str, credits: float, cap: float, *, unpriced: bool = False) -> bool: ...
    def paid(self, key: str, task_id: str, run_id: str | None, request: dict[str, Any]) -> None: ...
    def settle(self, key: str, credits: float) -> None: ...
    def release(self, key: str) -> None: ...
    def uncertain(self, key: str) -> None: ...
    def close(self) -> None: ...


class _Record(BaseModel):
    op: str
    key: str
    credits: float | None = None
    task_id: str | None = None
    run_id: str | None = None
    request: dict[str, Any] | None = None
    unpriced: bool = False
    at: float = 0.0


class _Fold:
    """The folded view of the log (also what an in-memory store is)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.reservations: dict[str, float] = {}
        self.paid: dict[str, PaidRun] = {}
        self.uncertain: set[str] = set()
        self.unpriced_runs = 0

    def apply(self, rec: _Record) -> None:
        if rec.op == "reserve":
            self.reservations[rec.key] = rec.credits or 0.0
            self.uncertain.discard(rec.key)
            self.unpriced_runs += 1 if rec.unpriced else 0
        elif rec.op == "paid" and rec.task_id:
            self.paid[rec.key] = PaidRun(
                key=rec.key,
                task_id=rec.task_id,
                run_id=rec.run_id,
                request=rec.request or {},
                reserved=self.reservations.get(rec.key, 0.0),
            )
        elif rec.op in ("settle", "uncertain"):
            held = self.reservations.pop(rec.key, 0.0)
            self.spent += held if rec.credits is None else rec.credits
            self.paid.pop(rec.key, None)
            if rec.op == "uncertain":
                self.uncertain.add(rec.key)
        elif rec.op == "release":
            self.reservations.pop(rec.key, None)
            self.paid.pop(rec.key, None)


def default_state_path(artifacts_root: Path) -> Path:
    return artifacts_root / STATE_DIR / STATE_FILE


class FileSpendingStore:
    """:class:`SpendingStore` in one JSON-lines file; :meth:`open` takes the owner lock, :meth:`close` frees it."""

    def __init__(self, path: Path, lock: OwnerLock, fold: _Fold) -> None:
        self.path = path
        self._lock: OwnerLock | None = lock
        self._fold = fold

    def __repr__(self) -> str:
        return f"FileSpendingStore({str(self.path)!r}, spent={self._fold.spent:g})"

    @classmethod
    def open(cls, path: Path) -> FileSpendingStore:
        """Own ``path`` (refused with the holder named if another server has it) and read what it holds."""
        lock = OwnerLock.acquire(path.with_name(path.name + ".owner"), what=f"the MCP spending state {path}")
        try:
            fold = _read(path)
        except BaseException:
            lock.release()
            raise
        return cls(path, lock, fold)

    def close(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()

    def _write(self, rec: _Record) -> None:
        if self._lock is None:
            raise KieInputError("the MCP spending state is closed", hint="restart the server")
        line = json.dumps(rec.model_dump(mode="json", exclude_none=True), separators=(",", ":")) + "\n"
        append_line(self.path, line.encode())  # one fsynced line: the step is on disk before it is taken
        self._fold.apply(rec)

    def view(self) -> SpendingView:
        f = self._fold
        return SpendingView(spent=f.spent, reserved=sum(f.reservations.values()), unpriced_runs=f.unpriced_runs)

    def reserved_for(self, key: str) -> float | None:
        return self._fold.reservations.get(key)

    def undelivered(self, key: str) -> PaidRun | None:
        return self._fold.paid.get(key)

    def is_uncertain(self, key: str) -> bool:
        return key in self._fold.uncertain or (key in self._fold.reservations and key not in self._fold.paid)

    def find(self, run_or_task_id: str) -> PaidRun | None:
        wanted = run_or_task_id.strip()
        return next((p for p in self._fold.paid.values() if wanted in (p.task_id, p.run_id)), None)

    def reserve(self, key: str, credits: float, cap: float, *, unpriced: bool = False) -> bool:
        view = self.view()
        if view.spent + view.reserved + credits > cap + 1e-9:
            return False
        self._write(_Record(op="reserve", key=key, credits=credits, unpriced=unpriced, at=time.time()))
        return True

    def paid(self, key: str, task_id: str, run_id: str | None, request: dict[str, Any]) -> None:
        self._write(_Record(op="paid", key=key, task_id=task_id, run_id=run_id, request=request, at=time.time()))

    def settle(self, key: str, credits: float) -> None:
        self._write(_Record(op="settle", key=key, credits=credits, at=time.time()))

    def release(self, key: str) -> None:
        self._write(_Record(op="release", key=key, at=time.time()))

    def uncertain(self, key: str) -> None:
        self._write(_Record(op="uncertain", key=key, at=time.time()))


def _read(path: Path) -> _Fold:
    """Fold the log; a torn last line is skipped, any other unreadable line stops the server (fail closed)."""
    data = read_lines(path)
    fold = _Fold()
    bad: list[int] = []
    for number, raw in data.lines:
        try:
            fold.apply(_Record.model_validate_json(raw))
        except ValidationError:
            if not is_torn_write(raw):
                bad.append(number)
    if data.torn_tail is not None:
        log.warning("%s: skipping a torn last line %s (a crash mid-write)", path, data.torn_line_number)
    if bad:
        raise KieInputError(
            f"the MCP spending state {path} has unreadable lines {bad}",
            hint="restore the file from a backup; it records what this server spent, so it is not read as empty",
        )
    return fold
