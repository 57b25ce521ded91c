"""How often to ask for a task's state: fast at first, then slower, capped (Kie.ai's own guidance).

Kept apart from the session so the schedule can be tested without a clock or a server.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict

from kie_async.api_models import TaskRecord, TaskState
from kie_async.settings import PollSettings


class TaskProgress(BaseModel):
    """What a progress callback receives after each poll."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    state: TaskState
    elapsed: float
    polls: int
    next_poll_in: float | None


ProgressCallback = Callable[[TaskProgress], Awaitable[None] | None]


def poll_interval(elapsed: float, settings: PollSettings, rng: random.Random | None = None) -> float:
    """Interval before the next poll after ``elapsed`` seconds, with ±10% jitter to de-synchronise fan-outs."""
    interval = settings.schedule[-1][1]
    for until, step in settings.schedule:
        if elapsed < until:
            interval = step
            break
    jitter = (rng or random).uniform(-0.1, 0.1)
    return max(0.01, interval * (1 + jitter))


def is_finished(record: TaskRecord) -> bool:
    """A task is done when it is terminal; ``success`` additionally needs its ``resultJson`` to have arrived.

    ``fail`` and ``canceled`` are final; an unrecognised state is not (the waiter keeps polling).
    """
    if record.state.is_failure:
        return True
    return record.state is TaskState.SUCCESS and bool(record.result_json)
