"""The market host (api.kie.ai): jobs, credits, download-url, the generated files, and the control routes."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import ValidationError

from kie_async.emulator.chat_routes import add_chat_routes
from kie_async.emulator.context import CONTEXT_KEY, EmulatorContext, log
from kie_async.emulator.dialect_routes import add_transport_routes
from kie_async.emulator.faults import FaultControl, FaultKind, FaultRule
from kie_async.emulator.lifecycle import output_file, output_urls, sell_task
from kie_async.emulator.media import blob_chunks, output_extension, parse_size
from kie_async.emulator.pricing_routes import add_pricing_routes
from kie_async.emulator.state import EmulatedTask
from kie_async.emulator.wire import (
    MSG_UNAUTHORIZED,
    POST_FAULT_KEY,
    admit,
    aiter_bytes,
    bearer_key,
    context,
    drop_connection,
    envelope,
    fault_middleware,
    json_object,
    readable_task,
    reject_create,
    send_spoiled_body,
)

MSG_NO_CREDITS = "The current credits are insufficient. Please top up."
_FILE_PATH = re.compile(r"^/files/(?P<task>[0-9a-f]{32})/(?P<name>[^/]+)$")


async def create_task(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await _note_arrival(request, ctx)
    key = admit(request, ctx, ctx.create_limiter, reject_create)
    if isinstance(key, web.Response):
        return key
    body = await json_object(request)
    if body is None:
        return reject_create(ctx, 400, "Request body must be a JSON object")
    model = body.get("model")
    params = body.get("input")
    callback = body.get("callBackUrl")
    try:
        problems = list(ctx.config.check_input(model if isinstance(model, str) else "", params))
        if callback is not None and not (isinstance(callback, str) and callback.startswith(("http://", "https://"))):
            problems.append("callBackUrl must be an http(s) URL")
        progress = body.get("progressCallBackUrl")  # Sora 2's pages: a top-level uri; its posts are not documented
        if progress is not None and not (isinstance(progress, str) and progress.startswith(("http://", "https://"))):
            problems.append("progressCallBackUrl must be an http(s) URL")
        if problems:
            return reject_create(ctx, 422, "; ".join(problems))
        assert isinstance(model, str) and isinstance(params, dict)
        cost = ctx.config.cost(model, params)
    except Exception:  # a plugged-in checker or price function must not take the emulator down
        log.exception("emulator: input_checker/cost_fn raised for model %r", model)
        return reject_create(ctx, 500, "Internal Error, Please try again later.")
    cost = ctx.config.unknown_model_cost if cost is None else float(cost)
    if not ctx.ledger.try_charge(key, cost):
        return reject_create(ctx, 402, MSG_NO_CREDITS)

    extension = output_extension(params, video=ctx.config.is_video_model(model), audio=ctx.config.is_audio_model(model))
    task = sell_task(ctx, key, model, body, cost, extension=extension)
    return envelope(ctx, 200, "success", {"taskId": task.task_id, "recordId": task.task_id})


async def _note_arrival(request: web.Request, ctx: EmulatorContext) -> None:
    """Remember every createTask that reached the handler, answered or not (the soak tells "never arrived"
    from "arrived, then the answer was lost" by it)."""
    try:
        body = await json_object(request)
    except web.HTTPException:
        return  # too large to read: the handler answers it as before
    callback = body.get("callBackUrl") if body else None
    params = body.get("input") if body else None
    prompt = params.get("prompt") if isinstance(params, dict) else None
    ctx.create_arrivals.append(
        {
            "callBackUrl": callback if isinstance(callback, str) else None,
            "prompt": prompt if isinstance(prompt, str) else None,
        }
    )


async def record_info(request: web.Request) -> web.StreamResponse:
    found = readable_task(request, dialect=None)  # a Veo/Runway/Suno... task is read on its own API only
    if isinstance(found, web.Response):
        return found
    ctx, task = found
    record = task.record(output_urls(ctx, task))
    return envelope(ctx, 200, "success", record.model_dump(mode="json"))


async def credit(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    key = bearer_key(request)
    if key is None:
        return envelope(ctx, 401, MSG_UNAUTHORIZED)
    return envelope(ctx, 200, "success", ctx.ledger.balance(key))


def _signature(ctx: EmulatorContext, path: str, expires: int) -> str:
    return hmac.new(ctx.url_secret, f"{path}|{expires}".encode(), hashlib.sha256).hexdigest()


def _own_file(ctx: EmulatorContext, url: str) -> tuple[EmulatedTask, str] | None:
    """The task and file name if ``url`` is an output this emulator generated, else ``None``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.port != ctx.market_port:
        return None
    if (parts.hostname or "") not in ("127.0.0.1", "localhost", "::1", ctx.config.url_host()):
        return None
    match = _FILE_PATH.match(parts.path)
    if match is None:
        return None
    task = ctx.tasks.get(match["task"])
    if task is None or match["name"] not in task.output_names:
        return None
    return task, match["name"]


async def download_url(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    key = bearer_key(request)
    if key is None:
        return envelope(ctx, 401, MSG_UNAUTHORIZED)
    body = await json_object(request)
    url = body.get("url") if body else None
    if not isinstance(url, str) or not url.strip():
        return envelope(ctx, 400, "url parameter is required")
    found = _own_file(ctx, url.strip())
    if found is None or found[0].owner != key:
        return envelope(ctx, 422, "The URL is not a file generated by Kie.ai")
    task, name = found
    path = f"/files/{task.task_id}/{name}"
    expires = int((time.time() + ctx.config.download_url_ttl) * 1000)  # Unix ms
    signed = f"{ctx.base_url}{path}?expires={expires}&signature={_signature(ctx, path, expires)}"
    return envelope(ctx, 200, "success", signed)


async def gpt4o_download_url(request: web.Request) -> web.StreamResponse:
    """4o Image's own download-url (4o-image-api/get-4-o-image-download-url): ``taskId`` and ``url``, both
    required; the task must be the caller's 4o Image task and the URL one of its files."""
    ctx = context(request)
    key = bearer_key(request)
    if key is None:
        return envelope(ctx, 401, MSG_UNAUTHORIZED)
    body = await json_object(request) or {}
    task_id, url = body.get("taskId"), body.get("url")
    if not isinstance(task_id, str) or not task_id or not isinstance(url, str) or not url.strip():
        return envelope(ctx, 422, "taskId and url are required")
    task = ctx.tasks.get(task_id, owner=key)
    if task is None or task.dialect != "gpt4o-image":
        return envelope(ctx, 422, "record is null")
    found = _own_file(ctx, url.strip())
    if found is None or found[0] is not task:
        return envelope(ctx, 422, "record result data not exist")
    path = f"/files/{task.task_id}/{found[1]}"
    expires = int((time.time() + ctx.config.download_url_ttl) * 1000)  # Unix ms
    signed = f"{ctx.base_url}{path}?expires={expires}&signature={_signature(ctx, path, expires)}"
    return envelope(ctx, 200, "success", signed)


async def serve_file(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    task = ctx.tasks.get(request.match_info["task_id"])
    name = request.match_info["name"]
    if "signature" in request.query or "expires" in request.query:
        try:
            expires = int(request.query.get("expires", ""))
        except ValueError:
            return web.Response(status=403, text="invalid download link")
        expected = _signature(ctx, request.path, expires)
        if not hmac.compare_digest(expected, request.query.get("signature", "")):
            return web.Response(status=403, text="invalid download link")
        if time.time() * 1000 > expires:
            return web.Response(status=403, text="download link expired")
    if task is None or name not in task.output_names or not task.state_at().is_terminal or task.failure:
        return web.Response(status=404, text="file not found")
    data, content_type = await output_file(ctx, task, name)
    ctx.stats.files_served += 1
    return web.Response(body=data, content_type=content_type)


async def serve_blob(request: web.Request) -> web.StreamResponse:
    """Deterministic bytes of any size at flat memory, for download benchmarks."""
    ctx = context(request)
    try:
        size = parse_size(request.match_info["size"])
    except ValueError:
        return web.Response(status=400, text="size must be bytes, optionally with k/M/G")
    ctx.stats.files_served += 1
    rule = request.get(POST_FAULT_KEY)
    if rule is not None and rule.kind == FaultKind.RESET_AFTER:
        return drop_connection(request)
    headers = [("Content-Type", "application/octet-stream")]
    if rule is not None:
        return await send_spoiled_body(request, 200, headers, aiter_bytes(blob_chunks(size)), size, rule)
    response = web.StreamResponse(status=200, headers=dict(headers))
    response.content_length = size
    await response.prepare(request)
    for chunk in blob_chunks(size):
        await response.write(chunk)
    await response.write_eof()
    return response


async def faults_get(request: web.Request) -> web.StreamResponse:
    rules = context(request).faults.rules()
    return web.json_response({"rules": [rule.model_dump(mode="json") for rule in rules]})


async def faults_post(request: web.Request) -> web.StreamResponse:
    """Accepts a FaultControl, one rule, or a list of rules, so shell one-liners stay short."""
    ctx = context(request)
    try:
        raw = await request.json()
        if isinstance(raw, list):
            control = FaultControl(rules=[FaultRule.model_validate(item) for item in raw])
        elif isinstance(raw, dict) and "endpoint" in raw:
            control = FaultControl(rules=[FaultRule.model_validate(raw)])
        else:
            control = FaultControl.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        text = exc.json() if isinstance(exc, ValidationError) else json.dumps(str(exc))
        return web.json_response({"error": json.loads(text)}, status=400)
    if control.clear:
        ctx.faults.clear()
    for rule in control.rules:
        ctx.faults.add_rule(rule)
    return await faults_get(request)


async def faults_delete(request: web.Request) -> web.StreamResponse:
    context(request).faults.clear()
    return web.json_response({"rules": []})


async def stats_get(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    payload = ctx.stats.model_dump(mode="json")
    payload["credits"] = {"default_key": ctx.ledger.balance(ctx.config.api_key)}
    return web.json_response(payload)


async def tasks_get(request: web.Request) -> web.StreamResponse:
    """Every task this emulator sold, for soak tests and benchmarks that count purchases from outside."""
    ctx = context(request)
    now = time.monotonic()
    tasks = [
        {
            "taskId": task.task_id,
            "model": task.model,
            "state": task.state_at(now).value,
            "input": task.body.get("input") if task.dialect is None else task.body,
            "api": task.dialect or "market",
            "callBackUrl": task.callback_url,
            "cost": task.cost,
            "createTime": task.create_time_ms,
        }
        for task in ctx.tasks.all()
    ]
    return web.json_response({"tasks": tasks, "create_arrivals": list(ctx.create_arrivals)})


async def stats_delete(request: web.Request) -> web.StreamResponse:
    context(request).stats.reset()
    return web.json_response({"reset": True})


async def credits_post(request: web.Request) -> web.StreamResponse:
    """Set the balance of the default key (or ``apiKey``) so a demo can run out of credits on purpose."""
    ctx = context(request)
    try:
        raw = await request.json()
        amount = float(raw["credits"])
        key = str(raw.get("apiKey") or ctx.config.api_key)
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": 'body must be {"credits": number, "apiKey"?: str}'}, status=400)
    ctx.ledger.set(key, amount)
    return web.json_response({"credits": ctx.ledger.balance(key)})


def build_market_app(ctx: EmulatorContext) -> web.Application:
    app = web.Application(middlewares=[fault_middleware], client_max_size=16 * 1024 * 1024)
    app[CONTEXT_KEY] = ctx
    router = app.router
    router.add_post("/api/v1/jobs/createTask", create_task, name="createTask")
    router.add_get("/api/v1/jobs/recordInfo", record_info, name="recordInfo")
    router.add_get("/api/v1/chat/credit", credit, name="credit")
    router.add_post("/api/v1/common/download-url", download_url, name="download-url")
    router.add_post("/api/v1/gpt4o-image/download-url", gpt4o_download_url, name="download-url:gpt4o-image")
    add_pricing_routes(router)
    add_transport_routes(router)
    add_chat_routes(router)
    router.add_get("/files/{task_id}/{name}", serve_file, name="files")
    router.add_get("/_emulator/blob/{size}", serve_blob, name="blob")
    router.add_get("/_emulator/faults", faults_get, name="_faults_get")
    router.add_post("/_emulator/faults", faults_post, name="_faults_post")
    router.add_delete("/_emulator/faults", faults_delete, name="_faults_delete")
    router.add_get("/_emulator/stats", stats_get, name="_stats_get")
    router.add_get("/_emulator/tasks", tasks_get, name="_tasks_get")
    router.add_delete("/_emulator/stats", stats_delete, name="_stats_delete")
    router.add_post("/_emulator/credits", credits_post, name="_credits_post")
    return app
