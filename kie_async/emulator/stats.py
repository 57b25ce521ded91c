"""Counters tests assert on and benchmarks print (e.g. "no task created twice", "zero 429s")."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field


class EmulatorStats(BaseModel):
    """Live counters; use :meth:`snapshot` for a copy that no longer changes."""

    requests: dict[str, int] = Field(default_factory=dict, description="requests per route name")
    create_accepted: int = 0
    create_rejected: int = Field(default=0, description="createTask calls refused (auth, limit, credits, faults)")
    tasks_created: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    credits_spent: float = 0.0
    status_requests: dict[str, int] = Field(default_factory=dict, description="recordInfo calls per task id")
    rate_limited: int = Field(default=0, description="HTTP 429 responses sent (limiter and injected)")
    faults_fired: dict[str, int] = Field(default_factory=dict, description="injected faults per kind")
    callbacks_delivered: int = 0
    callbacks_failed: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    files_served: int = 0
    outputs_rendered: int = Field(default=0, description="output files rendered (cache misses)")

    def count_request(self, route: str) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1

    def count_status(self, task_id: str) -> None:
        self.status_requests[task_id] = self.status_requests.get(task_id, 0) + 1

    def count_fault(self, kind: str) -> None:
        self.faults_fired[kind] = self.faults_fired.get(kind, 0) + 1

    def snapshot(self) -> EmulatorStats:
        return self.model_copy(deep=True)

    def reset(self) -> None:
        fresh = EmulatorStats()
        for name in type(self).model_fields:
            setattr(self, name, getattr(fresh, name))

    def max_status_requests(self) -> int:
        return max(self.status_requests.values(), default=0)

    def top_polled(self, n: int = 5) -> list[tuple[str, int]]:
        return Counter(self.status_requests).most_common(n)
