"""Fault rules: the misbehaviours the SDK's retry, timeout and no-double-spend logic must survive.

Rules are evaluated in insertion order with a seeded RNG so a flaky scenario replays identically. Latency
rules stack; of the other transport rules at most one fires per request, so counts stay predictable.
"""

from __future__ import annotations

import random
import threading
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FaultEndpoint(StrEnum):
    CREATE_TASK = "createTask"
    RECORD_INFO = "recordInfo"
    CREDIT = "credit"
    DOWNLOAD_URL = "download-url"
    UPLOADS = "uploads"
    FILES = "files"
    CHAT = "chat"


class FaultKind(StrEnum):
    LATENCY = "latency"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    RESET = "reset"
    RESET_BEFORE = "reset_before"
    RESET_AFTER = "reset_after"
    TRUNCATED_BODY = "truncated_body"
    SLOW_BODY = "slow_body"
    WRONG_BODY = "wrong_body"
    TASK_FAIL = "task_fail"
    STREAM_CUT = "stream_cut"


PRE_HANDLER_KINDS = frozenset({FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR, FaultKind.RESET, FaultKind.RESET_BEFORE})
"""Kinds that answer instead of the handler: the request does no work (no task, no charge)."""

POST_HANDLER_KINDS = frozenset(
    {FaultKind.RESET_AFTER, FaultKind.TRUNCATED_BODY, FaultKind.SLOW_BODY, FaultKind.WRONG_BODY, FaultKind.STREAM_CUT}
)
"""Kinds that let the handler do its work and then spoil the response."""


class FaultRule(BaseModel):
    """One injected fault; ``count=None`` fires forever."""

    model_config = ConfigDict(extra="forbid")

    endpoint: FaultEndpoint
    kind: FaultKind
    count: int | None = Field(default=1, ge=0, description="how many more times it fires; None = unlimited")
    probability: float = Field(default=1.0, ge=0, le=1)
    delay: float = Field(default=0.5, ge=0, description="latency: seconds added before handling")
    retry_after: int = Field(default=1, ge=0, description="rate_limit: Retry-After seconds")
    status: int = Field(default=500, ge=400, le=599, description="server_error: the 5xx/4xx code")
    http_status: bool | None = Field(
        default=None, description="server_error: send the code as HTTP status too (None: follow http_errors)"
    )
    keep_fraction: float = Field(default=0.5, ge=0, lt=1, description="truncated_body: share of bytes sent")
    chunk_size: int = Field(default=1024, ge=1, description="slow_body: bytes per chunk")
    chunk_delay: float = Field(default=0.05, ge=0, description="slow_body: pause between chunks")
    wrong_body: Literal["html", "empty"] = Field(
        default="html", description="wrong_body: answer 200 with an HTML error page or with an empty body"
    )
    after_events: int = Field(default=3, ge=0, description="stream_cut: SSE events sent before the connection drops")
    fail_code: str = Field(default="500", description="task_fail: failCode of the failed task")
    fail_msg: str = Field(default="Generation failed (injected by the emulator)", description="task_fail: failMsg")


class FaultControl(BaseModel):
    """Body of ``POST /_emulator/faults``: optionally clear, then add rules."""

    model_config = ConfigDict(extra="forbid")

    clear: bool = False
    rules: list[FaultRule] = Field(default_factory=list)


class FaultPlan(BaseModel):
    """What fired for one request."""

    latency: float = 0.0
    pre: FaultRule | None = None
    post: FaultRule | None = None
    fired: list[FaultRule] = Field(default_factory=list)


class FaultRegistry:
    """Thread-safe (the HTTP control route and test code may add rules while requests are served)."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(
        self, endpoint: FaultEndpoint | str, kind: FaultKind | str, count: int | None = 1, **params: object
    ) -> FaultRule:
        rule = FaultRule.model_validate({"endpoint": endpoint, "kind": kind, "count": count, **params})
        return self.add_rule(rule)

    def add_rule(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [rule.model_copy() for rule in self._rules if rule.count is None or rule.count > 0]

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    def _fires(self, rule: FaultRule) -> bool:
        if rule.count is not None and rule.count <= 0:
            return False
        if rule.probability < 1.0 and self._rng.random() >= rule.probability:
            return False
        if rule.count is not None:
            rule.count -= 1
        return True

    def plan(self, endpoint: FaultEndpoint) -> FaultPlan:
        """Decide the transport faults for one request (task_fail is taken separately by :meth:`take`)."""
        plan = FaultPlan()
        with self._lock:
            for rule in self._rules:
                if rule.endpoint != endpoint or rule.kind == FaultKind.TASK_FAIL:
                    continue
                if rule.kind == FaultKind.LATENCY:
                    if self._fires(rule):
                        plan.latency += rule.delay
                        plan.fired.append(rule)
                    continue
                if plan.pre is not None or plan.post is not None:
                    continue
                if self._fires(rule):
                    plan.fired.append(rule)
                    if rule.kind in PRE_HANDLER_KINDS:
                        plan.pre = rule
                    else:
                        plan.post = rule
            self._rules = [r for r in self._rules if r.count is None or r.count > 0]
        return plan

    def take(self, endpoint: FaultEndpoint, kind: FaultKind) -> FaultRule | None:
        """Consume the first firing rule of ``kind`` (used for task_fail at task creation)."""
        with self._lock:
            for rule in self._rules:
                if rule.endpoint == endpoint and rule.kind == kind and self._fires(rule):
                    return rule
        return None
