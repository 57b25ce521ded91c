"""How often to ask for a task's state: fast at first, then slower, capped (Kie.ai's own guidance).

Kept apart from the session so the schedule can be tested without a clock or a server.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict

from kie_async.core.settings import PollSettings
from kie_async.wire.api_models import TaskRecord, TaskState


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


GENERATION_MARGIN = 1.1
"""The first read of a new task waits this much longer than its expected generation time, plus
:data:`GENERATION_SLACK` seconds for the createTask answer and clock granularity: one read too early costs a
whole second poll interval and a request, one slightly late costs a fraction of a second."""
GENERATION_SLACK = 0.25


def first_poll_delay(expected_seconds: float | None, settings: PollSettings, rng: random.Random | None = None) -> float:
    """The wait before a new task's first status read: its expected generation time with a margin, else the
    schedule's first interval; at most ``settings.first_poll_max``. Jitter only ever delays (0 to +10%)."""
    if expected_seconds is None or not math.isfinite(expected_seconds) or expected_seconds <= 0:
        base = settings.schedule[0][1]
    else:
        base = expected_seconds * GENERATION_MARGIN + GENERATION_SLACK
    return min(settings.first_poll_max, base * (1 + (rng or random).uniform(0.0, 0.1)))


def wait_for_expected(
    interval: float, since_created: float, expected_seconds: float | None, settings: PollSettings
) -> float:
    """The next read of a task this session created, still running ``since_created`` seconds after its
    createTask: not before its model is expected to be done (learned while the batch ran), whichever is later,
    and never further off than ``settings.first_poll_max``.

    Tasks created before the first one of their model finished could not be seeded; without this they kept
    reading on the fast schedule until done (4 status reads per task in a 300-run burst of 2 s tasks).
    """
    if expected_seconds is None or not math.isfinite(expected_seconds) or expected_seconds <= 0:
        return interval
    due = expected_seconds * GENERATION_MARGIN + GENERATION_SLACK - since_created
    return max(interval, min(due, settings.first_poll_max))


def provider_generation_seconds(record: TaskRecord) -> float | None:
    """How long the provider says a successful task took (completeTime − createTime), when it says so sanely."""
    if record.state is not TaskState.SUCCESS or record.create_time is None or record.complete_time is None:
        return None
    took = (record.complete_time - record.create_time) / 1000
    return took if 0 < took < 86_400 else None


def is_finished(record: TaskRecord) -> bool:
    """A task is done when it is terminal; ``success`` additionally needs its ``resultJson`` to have arrived.

    ``fail`` and ``canceled`` are final; an unrecognised state is not (the waiter keeps polling).
    """
    if record.state.is_failure:
        return True
    return record.state is TaskState.SUCCESS and bool(record.result_json)
