"""The emulator's separate APIs (Veo 3.1 and its extend, Runway, Aleph, Suno, 4o Image, Flux Kontext): their routes.

They share the market's books (credits, the createTask rate window, the task timeline, the download host,
signed callbacks) and its fault injection: each create route is faulted as ``createTask`` and each status
route as ``recordInfo`` (route names ``createTask:<api>`` / ``recordInfo:<api>``). Only the spelling differs,
and that lives in :mod:`.transports.dialects`. A dialect's terminal callback is sent by
:mod:`kie_async.emulator.lifecycle`, which reads the dialects itself (this module imports the lifecycle, never
the other way round).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kie_async.emulator.context import EmulatorContext, log
from kie_async.emulator.lifecycle import output_urls, sell_task
from kie_async.emulator.policy import api_body_problems, schema_input_checker
from kie_async.emulator.transports.dialects import DIALECTS, VEO_UNKNOWN_TASK, Dialect, view_of
from kie_async.emulator.wire import admit, context, envelope, json_object, readable_task, reject_create
from kie_async.wire.api_models import TaskState

__all__ = ["add_transport_routes"]

MSG_NO_CREDITS = "The current credits are insufficient. Please top up."


def _problems(dialect: Dialect, body: dict[str, Any]) -> list[str]:
    problems = [f"{name} is required" for name in dialect.required if body.get(name) in (None, "")]
    callback = body.get("callBackUrl")
    if callback is not None and not (isinstance(callback, str) and callback.startswith(("http://", "https://"))):
        problems.append("callBackUrl must be an http(s) URL")
    if dialect.model_field is not None and not isinstance(body.get(dialect.model_field, ""), str):
        problems.append(f"{dialect.model_field} must be a string")
    return problems


def _create_handler(dialect: Dialect) -> Any:
    async def create(request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        key = admit(request, ctx, ctx.create_limiter, reject_create)
        if isinstance(key, web.Response):
            return key
        body = await json_object(request)
        if body is None:
            return reject_create(ctx, 400, "Request body must be a JSON object")
        callback = body.get("callBackUrl")
        prompt = body.get("prompt")
        ctx.create_arrivals.append(
            {
                "callBackUrl": callback if isinstance(callback, str) else None,
                "prompt": prompt if isinstance(prompt, str) else None,
            }
        )
        problems = _problems(dialect, body)
        model = dialect.catalogue_model(body)
        fields = {k: v for k, v in body.items() if k not in (dialect.model_field, "callBackUrl")}
        try:
            if not problems:
                problems = _judge(ctx, dialect, model, body, fields)
            if problems:
                return reject_create(ctx, 422, "; ".join(problems))
            refused = _source_task_problem(ctx, key, dialect, body)
            if refused is not None:
                return reject_create(ctx, 422, refused)
            cost = ctx.config.cost(model, fields)
        except Exception:  # a plugged-in checker or price function must not take the emulator down
            log.exception("emulator: input_checker/cost_fn raised for %s model %r", dialect.name, model)
            return reject_create(ctx, 500, "Internal Error, Please try again later.")
        cost = ctx.config.unknown_model_cost if cost is None else float(cost)
        if not ctx.ledger.try_charge(key, cost):
            return reject_create(ctx, 402, MSG_NO_CREDITS)
        render = dialect.render_params(body)
        extension = {"video": "mp4", "audio": "wav"}.get(dialect.output_kind) or (
            "jpeg" if str(render.get("output_format", "png")).lower() in ("jpg", "jpeg") else "png"
        )
        task = sell_task(
            ctx,
            key,
            model,
            body,
            cost,
            extension=extension,
            outputs=_outputs(dialect, body),
            dialect=dialect.name,
            output_kind=dialect.output_kind,
            render_params=render,
        )
        return envelope(ctx, 200, "success", {"taskId": task.task_id})

    return create


def _judge(
    ctx: EmulatorContext, dialect: Dialect, model: str, body: dict[str, Any], fields: dict[str, Any]
) -> list[str]:
    """A separate API is judged by its create endpoint's published schema (the whole body: these APIs have no
    ``input`` object and the model, where there is one, sits beside the fields); a test's own ``input_checker``
    override, or the flat-cost mode, still takes precedence."""
    config = ctx.config
    if config.accept_unknown_models or config.input_checker is not schema_input_checker:
        return list(config.check_input(model, fields))
    return api_body_problems(dialect.create_path, body)


def _outputs(dialect: Dialect, body: dict[str, Any]) -> int:
    """How many files the task makes: the body's count where the API has one (1, 2 or 4 for 4o Image)."""
    wanted = body.get(dialect.outputs_field) if dialect.outputs_field else None
    if isinstance(wanted, int) and not isinstance(wanted, bool) and wanted in (1, 2, 4):
        return wanted
    return dialect.outputs


def _source_task_problem(ctx: EmulatorContext, key: str, dialect: Dialect, body: dict[str, Any]) -> str | None:
    """Why the earlier task a body names cannot be worked on (the messages the Veo pages list), or ``None``."""
    if dialect.source_task_field is None:
        return None
    source = ctx.tasks.get(str(body.get(dialect.source_task_field)), owner=key)
    if source is None or source.dialect not in DIALECTS:
        return dialect.unknown_task_msg
    if DIALECTS[source.dialect].status_path != dialect.status_path:
        return dialect.unknown_task_msg  # another API's task: unknown on this one
    if source.state_at() is not TaskState.SUCCESS:
        return "record status is not success"
    index = body.get("index", 0)
    if isinstance(index, int) and not 0 <= index < len(source.output_names):
        return "record result data not exist"  # no such video on that task
    return None


def _status_handler(dialects: list[Dialect]) -> Any:
    """One status path's reads: every API sold there (Veo's generate and extend share record-info) reads its
    own tasks in its own shape."""
    names = frozenset(d.name for d in dialects)

    async def status(request: web.Request) -> web.StreamResponse:
        found = readable_task(request, names, dialects[0].unknown_task_msg)
        if isinstance(found, web.Response):
            return found
        ctx, task = found
        shape = DIALECTS[task.dialect or dialects[0].name].record
        return envelope(ctx, 200, "success", shape(view_of(task, output_urls(ctx, task))))

    return status


MSG_1080P_PROCESSING = "1080p is processing. Please check back shortly."
"""Not ready yet: the 1080P page says only "a non-200 code"; spelled after the 4K page's processing answer."""


async def veo_1080p(request: web.Request) -> web.StreamResponse:
    """Veo's ``GET /api/v1/veo/get-1080p-video?taskId=&index=``: the 1080P URL of a finished Veo generation, once
    made (here: when as long again as the generation has passed); before that a 422 to ask again after."""
    ctx = context(request)
    key = admit(request, ctx, ctx.record_limiter, envelope)
    if isinstance(key, web.Response):
        return key
    task_id = request.query.get("taskId", "").strip()
    if not task_id:
        return envelope(ctx, 400, "taskId parameter is required")
    task = ctx.tasks.get(task_id, owner=key)
    if task is None or task.dialect != "veo3":
        return envelope(ctx, 422, VEO_UNKNOWN_TASK)
    if task.state_at() is not TaskState.SUCCESS:
        return envelope(ctx, 422, "record status is not success")
    raw_index = request.query.get("index", "0")
    index = int(raw_index) if raw_index.isdigit() else -1
    urls = output_urls(ctx, task)
    if not 0 <= index < len(urls):
        return envelope(ctx, 422, "record result data not exist")
    if task.elapsed() < 2 * task.duration:
        return envelope(ctx, 422, MSG_1080P_PROCESSING)
    return envelope(ctx, 200, "success", {"resultUrl": urls[index]})


def add_transport_routes(router: web.UrlDispatcher) -> None:
    """Every separate API's create and status route, named so the fault middleware treats them as the market's
    (a status path shared by several APIs is one route, named after the first)."""
    by_status: dict[str, list[Dialect]] = {}
    for dialect in DIALECTS.values():
        router.add_post(dialect.create_path, _create_handler(dialect), name=f"createTask:{dialect.name}")
        by_status.setdefault(dialect.status_path, []).append(dialect)
    for path, dialects in by_status.items():
        router.add_get(path, _status_handler(dialects), name=f"recordInfo:{dialects[0].name}")
    router.add_get("/api/v1/veo/get-1080p-video", veo_1080p, name="upgrade:veo3_1080p")
