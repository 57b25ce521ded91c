"""What happens to a task after createTask: outputs rendered on demand, and the terminal callback.

States need no ticking (see ``state.py``); this module only schedules the one-off terminal side effects and
renders output files off the event loop, once per file, however many clients ask at the same time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from kie_async.emulator.audio import render_audio
from kie_async.emulator.context import EmulatorContext, log
from kie_async.emulator.faults import FaultEndpoint, FaultKind
from kie_async.emulator.media import render_output
from kie_async.emulator.state import EmulatedTask, TaskFailure, new_task_id
from kie_async.emulator.transports.dialects import DIALECTS, stage_callback, view_of
from kie_async.emulator.wire import is_loopback_url
from kie_async.wire.api_models import TaskState
from kie_async.wire.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_callback


def output_urls(ctx: EmulatorContext, task: EmulatedTask) -> list[str]:
    return [f"{ctx.base_url}/files/{task.task_id}/{name}" for name in task.output_names]


async def output_file(ctx: EmulatorContext, task: EmulatedTask, name: str) -> tuple[bytes, str]:
    """Bytes and content type of one output, rendered in a thread on first use and cached."""
    key = f"{task.task_id}/{name}"
    cached = ctx.outputs.get(key)
    if cached is not None:
        return cached
    lock = ctx.render_locks.setdefault(key, asyncio.Lock())
    try:
        async with lock:
            cached = ctx.outputs.get(key)
            if cached is not None:
                return cached
            params = task.body.get("input") if task.render_params is None else task.render_params
            if task.output_kind == "audio":
                item = await asyncio.to_thread(render_audio, key)
            else:
                kind = task.output_kind
                video = ctx.config.is_video_model(task.model) if kind is None else kind == "video"
                audio = kind is None and ctx.config.is_audio_model(task.model)  # a market audio model (ElevenLabs)
                item = await asyncio.to_thread(
                    render_output,
                    key,
                    params if isinstance(params, dict) else {},
                    video=video,
                    audio=audio,
                    long_edge=ctx.config.image_long_edge,
                    target_bytes=ctx.config.output_bytes,
                )
            ctx.outputs.put(key, item)
            ctx.stats.outputs_rendered += 1
            return item
    finally:
        ctx.render_locks.pop(key, None)


def sell_task(
    ctx: EmulatorContext,
    key: str,
    model: str,
    body: dict[str, Any],
    cost: float,
    *,
    extension: str,
    outputs: int = 1,
    **extra: Any,
) -> EmulatedTask:
    """One sale, whichever API sold it: a task on the timeline (failing if a ``task_fail`` fault is armed),
    on the books and in the stats, its completion scheduled. The ledger has already been charged ``cost``."""
    failure_rule = ctx.faults.take(FaultEndpoint.CREATE_TASK, FaultKind.TASK_FAIL)
    if failure_rule is not None:
        ctx.stats.count_fault(FaultKind.TASK_FAIL.value)
    task_id = new_task_id()
    duration = ctx.config.duration_for(model)
    waiting = duration * ctx.config.waiting_fraction
    callback = body.get("callBackUrl")
    task = EmulatedTask(
        task_id=task_id,
        owner=key,
        model=model,
        body=body,
        callback_url=callback if isinstance(callback, str) else None,
        cost=cost,
        started=time.monotonic(),
        create_time_ms=int(time.time() * 1000),
        duration=duration,
        waiting_until=waiting,
        queuing_until=min(duration, waiting + duration * ctx.config.queuing_fraction),
        failure=TaskFailure(code=failure_rule.fail_code, msg=failure_rule.fail_msg) if failure_rule else None,
        output_names=[f"{task_id}_{n}.{extension}" for n in range(outputs)],
        **extra,
    )
    ctx.tasks.add(task)
    ctx.stats.create_accepted += 1
    ctx.stats.tasks_created += 1
    ctx.stats.credits_spent = round(ctx.stats.credits_spent + cost, 6)
    schedule_completion(ctx, task)
    return task


def schedule_completion(ctx: EmulatorContext, task: EmulatedTask) -> None:
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def fire() -> None:
        if handle is not None:
            ctx.timers.discard(handle)
        ctx.spawn(finalize(ctx, task))

    handle = loop.call_later(max(0.0, task.duration - task.elapsed()), fire)
    ctx.timers.add(handle)
    dialect = DIALECTS.get(task.dialect or "")
    if dialect is not None and task.callback_url and not task.failure and ctx.config.staged_callbacks:
        for stage, fraction in dialect.stages:
            _schedule_stage(ctx, task, stage, fraction)


def _schedule_stage(ctx: EmulatorContext, task: EmulatedTask, stage: str, fraction: float) -> None:
    """An intermediate callback (Suno's ``text``/``first``) at ``fraction`` of the task's duration."""
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def fire() -> None:
        if handle is not None:
            ctx.timers.discard(handle)
        body = stage_callback(view_of(task, output_urls(ctx, task)), stage)
        ctx.spawn(deliver_callback(ctx, task, task.callback_url or "", body=body))

    handle = loop.call_later(max(0.0, task.duration * fraction - task.elapsed()), fire)
    ctx.timers.add(handle)


async def finalize(ctx: EmulatorContext, task: EmulatedTask) -> None:
    if not ctx.tasks.claim_final(task):
        return
    if task.state_at() == TaskState.FAIL:
        ctx.stats.tasks_failed += 1
    else:
        if ctx.config.render_on_completion:
            for name in task.output_names:
                await output_file(ctx, task, name)
        ctx.stats.tasks_succeeded += 1  # counted after rendering, so "succeeded" means "files ready"
    if task.callback_url:
        await deliver_callback(ctx, task, task.callback_url)


def callback_body(ctx: EmulatorContext, task: EmulatedTask) -> dict[str, Any]:
    """recordInfo-shaped data plus the ``task_id``/``callbackType`` the webhook page shows.

    A task sold by a separate API (Veo, Runway, Suno...) calls back in that API's own shape.
    """
    if task.dialect is not None:
        return DIALECTS[task.dialect].callback(view_of(task, output_urls(ctx, task)))
    record = task.record(output_urls(ctx, task))
    success = record.state == TaskState.SUCCESS
    data: dict[str, Any] = record.model_dump(mode="json")
    data["task_id"] = task.task_id
    data["callbackType"] = "task_completed"
    return {
        "code": 200 if success else 501,
        "msg": "success" if success else (record.failMsg or "generation failed"),
        "taskId": task.task_id,
        "data": data,
    }


async def deliver_callback(
    ctx: EmulatorContext, task: EmulatedTask, url: str, *, body: dict[str, Any] | None = None
) -> None:
    """POST the terminal event (or ``body``, an intermediate one); failures are logged and counted, never
    raised (Kie.ai gives no guarantee)."""
    if not ctx.config.callback_any_host and not is_loopback_url(url):
        log.warning("emulator: not calling back non-loopback host for task %s (set callback_any_host)", task.task_id)
        ctx.stats.callbacks_failed += 1
        return
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if ctx.config.webhook_hmac_key:
        timestamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign_callback(task.task_id, timestamp, ctx.config.webhook_hmac_key)
    try:
        async with ctx.http_client().post(
            url,
            json=body if body is not None else callback_body(ctx, task),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=ctx.config.callback_timeout),
        ) as response:
            await response.read()
            if response.status >= 300:
                raise aiohttp.ClientResponseError(
                    response.request_info, response.history, status=response.status, message=response.reason or ""
                )
    except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        ctx.stats.callbacks_failed += 1
        log.warning("emulator: callback for task %s failed: %s", task.task_id, type(exc).__name__)
        return
    ctx.stats.callbacks_delivered += 1
