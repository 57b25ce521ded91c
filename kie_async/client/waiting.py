"""Waiting for a task: status reads on a schedule, woken early by callbacks, until it finishes or time runs out.

A wait polls fast first, then slower (``PollSettings.schedule``); with ``callback_driven`` a callback receiver
wakes it and polling drops to a slow safety net. The first read of a task just bought can wait for what its
model is known to take (``first_poll_delay``), so a task done on its first read costs one status request.
Every finished record teaches the session its model's generation time. The waiters (one event per wait) and
what was learned are shared by a session and its views: a callback wakes every wait on that task.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from kie_async.client.options import SessionOptions
from kie_async.client.request_path import RequestPath, TaskReader
from kie_async.core import telemetry
from kie_async.core.errors import (
    KieAPIStatusError,
    KieError,
    KieTaskFailedError,
    KieTimeoutError,
    KieValidationError,
)
from kie_async.core.limits import check_timeout
from kie_async.core.settings import PollSettings
from kie_async.wire.api_models import TaskRecord, TaskState
from kie_async.wire.polling import (
    ProgressCallback,
    TaskProgress,
    first_poll_delay,
    is_finished,
    poll_interval,
    provider_generation_seconds,
    wait_for_expected,
)
from kie_async.wire.retry import is_retryable
from kie_async.wire.task_apis import TransportSpec

log = logging.getLogger("kie_async.client.waiting")

# A task id Kie.ai has just issued may not be visible to recordInfo for a moment; tolerate that briefly.
_NEW_TASK_GRACE_SECONDS = 30.0


@dataclasses.dataclass
class WaitState:
    """Shared by a session and its views: who waits on which task, and each model's learned generation time."""

    wakeups: dict[str, set[asyncio.Event]] = dataclasses.field(default_factory=dict)
    spans: dict[asyncio.Event, tuple[str, telemetry.Span]] = dataclasses.field(default_factory=dict)
    """Each traced wait (by its event): its span's ``traceparent`` (what a callback's span links to) and the span
    (which links back to the callback's)."""
    generation_seconds: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Wait:
    """One ``wait_for_task`` call: what it was asked for and what it has seen so far."""

    task_id: str
    api: TransportSpec
    poll: PollSettings
    loop: asyncio.AbstractEventLoop
    started: float
    deadline: float
    callback_driven: bool
    first_poll_after: float | None
    on_progress: ProgressCallback | None
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    polls: int = 0
    outage: KieError | None = None
    unknown_seen: set[str | None] = dataclasses.field(default_factory=set)
    waited_first: float = 0.0

    def elapsed(self) -> float:
        return self.loop.time() - self.started


class Waiter:
    """Waits on tasks for one session (or view): its own poll settings, the shared waiters."""

    def __init__(self, options: SessionOptions, requests: RequestPath, read: TaskReader, state: WaitState) -> None:
        """``read`` is the session's ``get_task`` (so a subclass or a patched session reads its own way)."""
        self._options = options
        self._requests = requests
        self._read_task = read
        self._state = state

    async def wait_for_task(
        self,
        task_id: str,
        *,
        timeout: float | None,
        on_progress: ProgressCallback | None,
        raise_on_failure: bool,
        callback_driven: bool,
        poll: PollSettings | None,
        transport: TransportSpec | None,
        first_poll_after: float | None,
    ) -> TaskRecord:
        """Poll until the task succeeds or fails (see ``KieSession.wait_for_task``)."""
        check_timeout("timeout", timeout)
        settings = poll or self._options.settings.poll
        loop = asyncio.get_running_loop()
        started = loop.time()
        wait = _Wait(
            task_id=task_id,
            api=self._requests.transport_for(task_id, transport),
            poll=settings,
            loop=loop,
            started=started,
            deadline=started + (timeout if timeout is not None else settings.timeout),
            callback_driven=callback_driven,
            first_poll_after=first_poll_after,
            on_progress=on_progress,
        )
        self._state.wakeups.setdefault(task_id, set()).add(wait.wake)
        try:
            await self._announce(wait)
            await self._first_pause(wait)
            while True:
                record = await self._read(wait)
                if is_finished(record):
                    return await self._finish(wait, record, raise_on_failure=raise_on_failure)
                interval = self._next_interval(wait, record)
                await _report(wait, record.state, next_poll_in=interval)
                await self._sleep(wait, interval)
        finally:
            self._unregister(wait)

    async def _announce(self, wait: _Wait) -> None:
        """A traced wait tells where it waits, so the span that handles its task's callback links to it: here
        (the session's own receiver) and, with a shared coordinator, in whichever process receives the callback."""
        traceparent = telemetry.traceparent()
        if traceparent is None:
            return
        self._state.spans[wait.wake] = (traceparent, telemetry.current_span())
        coordinator = self._requests.coordinator()
        if coordinator.kind != "local":
            await coordinator.announce_wait(wait.task_id, traceparent, wait.deadline - wait.loop.time())

    def waiting_spans(self, task_id: str) -> list[str]:
        """The ``traceparent`` of each traced wait on ``task_id`` in this session."""
        return [found[0] for event in self._state.wakeups.get(task_id, ()) if (found := self._state.spans.get(event))]

    def link_callback(self, task_id: str, traceparent: str) -> None:
        """The span that handled ``task_id``'s callback (here or in another process): each traced wait on the task
        links to it, before the wake it brings."""
        for event in self._state.wakeups.get(task_id, ()):
            found = self._state.spans.get(event)
            if found is not None:
                found[1].link(traceparent)

    async def _first_pause(self, wait: _Wait) -> None:
        """Before the first read of a task just bought: wait what it is expected to take (a callback cuts it short)."""
        if wait.first_poll_after is not None and wait.first_poll_after > 0:
            await self._sleep(wait, max(0.0, min(wait.first_poll_after, wait.deadline - wait.loop.time())))
            wait.waited_first = wait.elapsed()

    async def _read(self, wait: _Wait) -> TaskRecord:
        """One status read; a brand-new task not yet visible, or a read outage, counts as still waiting."""
        elapsed = wait.elapsed()
        try:
            record = await self._read_task(wait.task_id, transport=wait.api)
            wait.outage = None
        except KieValidationError as exc:
            if not wait.api.status.says_unknown(exc.message) or elapsed - wait.waited_first > _NEW_TASK_GRACE_SECONDS:
                raise
            record = TaskRecord(task_id=wait.task_id, state=TaskState.WAITING)
        except KieError as exc:
            # An outage longer than one read's retries is not the task's fault: keep waiting (the task runs on
            # regardless) until the deadline, instead of giving up on something already paid for.
            if not is_retryable(exc, idempotent=True):
                raise
            wait.outage = exc
            record = TaskRecord(task_id=wait.task_id, state=TaskState.WAITING)
            log.warning("task %s: status read failed (%s); still waiting", wait.task_id, exc.message)
        wait.polls += 1
        if record.state is TaskState.UNKNOWN and record.raw_state not in wait.unknown_seen:
            wait.unknown_seen.add(record.raw_state)
            log.warning(
                "task %s reports an unrecognised state %r; treating it as still running", wait.task_id, record.raw_state
            )
        return record

    async def _finish(self, wait: _Wait, record: TaskRecord, *, raise_on_failure: bool) -> TaskRecord:
        """A finished record: learn the model's time, report it, and raise for a failure when asked to."""
        self.learn_generation_time(record)
        telemetry.record("kie.task.status_reads", wait.polls, {"gen_ai.request.model": record.model})
        await _report(wait, record.state, next_poll_in=None)
        if record.state.is_failure and raise_on_failure:
            reason = record.fail_msg or ("canceled by the provider" if record.state is TaskState.CANCELED else None)
            raise KieTaskFailedError(wait.task_id, record.fail_code, reason)
        return record

    def _next_interval(self, wait: _Wait, record: TaskRecord) -> float:
        """Seconds until the next read; raises :class:`KieTimeoutError` when the deadline has passed."""
        remaining = wait.deadline - wait.loop.time()
        if remaining <= 0:
            raise _timed_out(wait, record)
        settings = wait.poll
        if wait.callback_driven:
            interval = settings.callback_safety_interval
        else:
            interval = poll_interval(wait.elapsed(), settings)
        if wait.first_poll_after is not None and not wait.callback_driven and wait.outage is None and record.model:
            # Bought here, still running: wait for what this model has since been seen to take.
            learned = self._state.generation_seconds.get(record.model)
            interval = wait_for_expected(interval, wait.elapsed(), learned, settings)
        if isinstance(wait.outage, KieAPIStatusError) and wait.outage.retry_after:  # the server said when to ask
            interval = max(interval, wait.outage.retry_after)
        return min(interval, remaining)

    @staticmethod
    async def _sleep(wait: _Wait, seconds: float) -> None:
        """Sleep ``seconds``, or less if a callback (``notify_task_update``) wakes this wait."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wait.wake.wait()
        wait.wake.clear()

    def _unregister(self, wait: _Wait) -> None:
        self._state.spans.pop(wait.wake, None)
        waiters = self._state.wakeups.get(wait.task_id)
        if waiters is not None:
            waiters.discard(wait.wake)
            if not waiters:
                del self._state.wakeups[wait.task_id]

    # -- wakeups and learned times ---------------------------------------------------------------------------

    def wake(self, task_id: str) -> bool:
        """Wake every wait on ``task_id`` in this process; whether there was one."""
        waiters = self._state.wakeups.get(task_id)
        for event in waiters or ():
            event.set()
        return bool(waiters)

    def wake_all(self) -> None:
        """Callbacks may have been lost (the shared channel was down): every waiter re-reads its task now."""
        for waiters in self._state.wakeups.values():
            for event in waiters:
                event.set()

    def forget_waiters(self) -> None:
        """Drop the waiters of a loop that has ended (setting their events would touch that loop)."""
        self._state.wakeups.clear()
        self._state.spans.clear()

    def first_poll_delay(self, model: str | None, typical_seconds: float | None) -> float:
        learned = self._state.generation_seconds.get(model) if model else None
        return first_poll_delay(learned if learned is not None else typical_seconds, self._options.settings.poll)

    def learn_generation_time(self, record: TaskRecord) -> None:
        took = provider_generation_seconds(record)
        if took is None or not record.model:
            return
        seen = self._state.generation_seconds.get(record.model)
        # A moving average: follows a model that slows down (provider load) without one outlier dominating.
        self._state.generation_seconds[record.model] = took if seen is None else 0.7 * seen + 0.3 * took


def _timed_out(wait: _Wait, record: TaskRecord) -> KieTimeoutError:
    if wait.outage is not None:
        seen = f"status unreadable ({wait.outage.message})"
    elif record.state is TaskState.SUCCESS:
        seen = "reported success but its resultJson never arrived"
    else:
        seen = f"still {record.state_description}"
    return KieTimeoutError(
        f"task {wait.task_id} {seen} after {wait.elapsed():.0f}s",
        hint="the task keeps running on Kie.ai; call wait_for_task again or raise timeout=",
    )


async def _report(wait: _Wait, state: TaskState, *, next_poll_in: float | None) -> None:
    if wait.on_progress is None:
        return
    progress = TaskProgress(
        task_id=wait.task_id, state=state, elapsed=wait.elapsed(), polls=wait.polls, next_poll_in=next_poll_in
    )
    result = wait.on_progress(progress)
    if asyncio.iscoroutine(result):
        await result
