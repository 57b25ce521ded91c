"""The emulator's books: tasks and their timeline, credits per key, and the createTask rate window.

A task's state is a pure function of elapsed time, so every poll sees a consistent, monotonic progression
without a background ticker per task; only the terminal side effects (stats, callbacks) are scheduled.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kie_async.wire.api_models import TaskState

_COMPACT = (",", ":")


class TaskFailure(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    msg: str


class RecordInfo(BaseModel):
    """``recordInfo`` data exactly as Kie.ai spells it (camelCase on purpose)."""

    taskId: str
    model: str
    state: TaskState
    param: str
    resultJson: str
    failCode: str | None
    failMsg: str | None
    costTime: int | None
    completeTime: int | None
    createTime: int
    updateTime: int


class EmulatedTask(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    task_id: str
    owner: str = Field(repr=False)
    model: str
    body: dict[str, Any]
    callback_url: str | None = None
    cost: float
    started: float = Field(description="time.monotonic() at creation")
    create_time_ms: int
    duration: float
    waiting_until: float
    queuing_until: float
    failure: TaskFailure | None = None
    output_names: list[str] = Field(default_factory=list)
    finalized: bool = False
    dialect: str | None = Field(default=None, description="the separate API that sold it; None: the market")
    output_kind: str | None = Field(default=None, description="image/video/audio; None: decided by model id")
    render_params: dict[str, Any] | None = Field(default=None, description="what shapes the output; None: input")

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started

    def state_at(self, now: float | None = None) -> TaskState:
        elapsed = self.elapsed(now)
        if elapsed >= self.duration:
            return TaskState.FAIL if self.failure else TaskState.SUCCESS
        if elapsed >= self.queuing_until:
            return TaskState.GENERATING
        if elapsed >= self.waiting_until:
            return TaskState.QUEUING
        return TaskState.WAITING

    def _phase_start(self, state: TaskState) -> float:
        if state in (TaskState.SUCCESS, TaskState.FAIL):
            return self.duration
        if state == TaskState.GENERATING:
            return self.queuing_until
        if state == TaskState.QUEUING:
            return self.waiting_until
        return 0.0

    def param_json(self) -> str:
        """The live quirk: ``param`` is a JSON string whose ``input`` is a JSON string again."""
        outer = dict(self.body)
        outer["input"] = json.dumps(self.body.get("input"), separators=_COMPACT, ensure_ascii=False)
        return json.dumps(outer, separators=_COMPACT, ensure_ascii=False)

    def record(self, output_urls: list[str], now: float | None = None) -> RecordInfo:
        state = self.state_at(now)
        done = state.is_terminal
        complete_ms = self.create_time_ms + round(self.duration * 1000)
        result_json = json.dumps({"resultUrls": output_urls}, separators=_COMPACT) if state == TaskState.SUCCESS else ""
        return RecordInfo(
            taskId=self.task_id,
            model=self.model,
            state=state,
            param=self.param_json(),
            resultJson=result_json,
            failCode=self.failure.code if done and self.failure else None,
            failMsg=self.failure.msg if done and self.failure else None,
            # Live costTime looked like seconds (274 for a 273 896 ms task), so seconds it is.
            costTime=round(self.duration) if done else None,
            completeTime=complete_ms if done else None,
            createTime=self.create_time_ms,
            updateTime=self.create_time_ms + round(self._phase_start(state) * 1000),
        )


def new_task_id() -> str:
    return secrets.token_hex(16)


class TaskStore:
    def __init__(self) -> None:
        self._tasks: dict[str, EmulatedTask] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: EmulatedTask) -> None:
        self._tasks[task.task_id] = task

    def get(self, task_id: str, owner: str | None = None) -> EmulatedTask | None:
        task = self._tasks.get(task_id)
        if task is None or (owner is not None and task.owner != owner):
            return None
        return task

    def all(self) -> list[EmulatedTask]:
        return list(self._tasks.values())

    def claim_final(self, task: EmulatedTask) -> bool:
        """True once per task: the caller runs its terminal side effects (a persistent store: once per folder)."""
        claimed = not task.finalized
        task.finalized = True
        return claimed

    def adopt_unfinished(self) -> list[EmulatedTask]:
        """Tasks sold elsewhere (another process on the same state folder) that this one should finish."""
        return []


class CreditLedger:
    """Balances per API key; a charge either fully succeeds or leaves the balance untouched."""

    def __init__(self, balances: dict[str, float]) -> None:
        self._balances = dict(balances)

    def knows(self, key: str) -> bool:
        return key in self._balances

    def keys(self) -> list[str]:
        return list(self._balances)

    def balance(self, key: str) -> float:
        return self._balances.get(key, 0.0)

    def set(self, key: str, amount: float) -> None:
        self._balances[key] = float(amount)

    def try_charge(self, key: str, amount: float) -> bool:
        current = self._balances.get(key)
        if current is None or current + 1e-9 < amount:
            return False
        self._balances[key] = round(current - amount, 6)
        return True


class SlidingWindowLimiter:
    """At most ``limit`` accepted calls per key in any ``window`` seconds; refused calls do not count."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    def acquire(self, key: str, now: float | None = None) -> float | None:
        """``None`` when allowed (and recorded), else the seconds until a slot frees up."""
        current = time.monotonic() if now is None else now
        hits = self._hits.setdefault(key, deque())
        while hits and current - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(0.0, hits[0] + self.window - current)
        hits.append(current)
        return None
