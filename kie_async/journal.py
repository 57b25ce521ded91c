"""The batch journal: what was submitted and what finished, so a re-run after a crash never pays twice.

One JSON line per event, keyed by a stable hash of the normalized request. The ``submitting`` line is written
*before* createTask is sent and ``submitted`` right after it returns: a crash between the two leaves an intent
without a task id, which a re-run treats as "may exist" and does not submit again (no double spend).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kie_async.jsonl_log import append_line, read_lines
from kie_async.request_models import NormalizedRequest

log = logging.getLogger("kie_async.journal")

JournalEvent = Literal["submitting", "submitted", "finished"]


class JournalRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    event: JournalEvent
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model_key: str | None = None
    task_id: str | None = None
    status: str | None = None
    run_id: str | None = None
    run_dir: str | None = None
    outputs: list[str] = Field(default_factory=list)
    output_urls: list[str] = Field(default_factory=list)
    credits_estimated: float | None = None
    credits_charged: float | None = None
    error: str | None = None

    def to_line(self) -> bytes:
        return (self.model_dump_json(exclude_defaults=True) + "\n").encode()


class JournalEntry(BaseModel):
    """Everything known about one key, folded from its records in order."""

    key: str
    intent: bool = False
    task_id: str | None = None
    finished: JournalRecord | None = None

    @property
    def uncertain(self) -> bool:
        """createTask may have been sent but its answer was never recorded."""
        return self.intent and self.task_id is None and self.finished is None


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


def request_key(normalized: NormalizedRequest) -> str:
    """A stable hash of what would be submitted (model, mode, prompts, options, media, callback)."""
    dump = normalized.model_dump(mode="python", exclude={"issues", "defaulted", "explicit_options"})
    canonical = json.dumps(_stable(dump), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


class BatchJournal:
    """An append-only journal file plus the folded view of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, JournalEntry] = {}
        self.skipped_lines: list[int] = []
        self._pending: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"BatchJournal({str(self.path)!r}, keys={len(self.entries)})"

    @classmethod
    async def open(cls, path: str | Path) -> BatchJournal:
        journal = cls(Path(path))
        await asyncio.to_thread(journal._load)
        return journal

    def _load(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        content = read_lines(self.path)
        for number, raw in content.lines:
            try:
                self._fold(JournalRecord.model_validate_json(raw))
            except ValidationError:
                self.skipped_lines.append(number)
        if content.torn_tail is not None and content.torn_line_number is not None:
            self.skipped_lines.append(content.torn_line_number)
        if self.skipped_lines:
            log.warning("journal %s: skipped unreadable line(s) %s (torn by a crash?)", self.path, self.skipped_lines)

    def _fold(self, record: JournalRecord) -> None:
        entry = self.entries.setdefault(record.key, JournalEntry(key=record.key))
        if record.event == "submitting":
            entry.intent = True
        elif record.event == "submitted":
            entry.intent = True
            entry.task_id = record.task_id
        else:
            entry.finished = record
            entry.task_id = record.task_id or entry.task_id

    def get(self, key: str) -> JournalEntry | None:
        return self.entries.get(key)

    async def write(self, record: JournalRecord) -> None:
        """Append durably (fsync) in a worker thread, then fold into the in-memory view.

        The append is shielded: a cancelled caller does not stop a line that is already being written, and
        :meth:`drain` lets the batch wait for such lines before it unwinds.
        """
        pending = asyncio.ensure_future(asyncio.to_thread(append_line, self.path, record.to_line()))
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)
        await asyncio.shield(pending)
        self._fold(record)

    async def drain(self) -> None:
        """Wait until every append already started has reached the file."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
