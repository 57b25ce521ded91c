"""HTTP plumbing shared by both hosts: envelopes, auth, and the middleware that injects transport faults.

Kie.ai answers most errors as HTTP 200 with the code in the envelope, so that is the default here too; only
rate limiting is a real HTTP 429, and ``http_errors=True`` mirrors every code for clients that want it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from kie_async.emulator.context import CONTEXT_KEY, EmulatorContext
from kie_async.emulator.faults import FaultEndpoint, FaultKind, FaultRule
from kie_async.emulator.state import EmulatedTask, SlidingWindowLimiter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTE_ENDPOINTS: dict[str, FaultEndpoint] = {
    "createTask": FaultEndpoint.CREATE_TASK,
    "recordInfo": FaultEndpoint.RECORD_INFO,
    "credit": FaultEndpoint.CREDIT,
    "download-url": FaultEndpoint.DOWNLOAD_URL,
    "file-stream-upload": FaultEndpoint.UPLOADS,
    "file-url-upload": FaultEndpoint.UPLOADS,
    "file-base64-upload": FaultEndpoint.UPLOADS,
    "files": FaultEndpoint.FILES,
    "uploaded-file": FaultEndpoint.FILES,
    "blob": FaultEndpoint.FILES,
    "chat": FaultEndpoint.CHAT,
}
UPLOAD_ROUTES = frozenset({"file-stream-upload", "file-url-upload", "file-base64-upload"})

POST_FAULT_KEY: web.RequestKey[FaultRule] = web.RequestKey("kie_emulator_post_fault", FaultRule)

MSG_UNAUTHORIZED = "You do not have access permissions"
MSG_RATE_LIMITED = "Rate limit exceeded"
WRONG_BODY_HTML = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><p>injected by the kie-async emulator</p></body></html>\n"
)

_SERVER_ERROR_MESSAGES = {
    500: "Internal Error, Please try again later.",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    455: "Service unavailable due to maintenance",
}


def is_loopback_url(url: str) -> bool:
    """True for URLs on this machine: the emulator never reaches out to the internet on anyone's behalf."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def context(request: web.Request) -> EmulatorContext:
    return request.app[CONTEXT_KEY]


def envelope(
    ctx: EmulatorContext,
    code: int,
    msg: str,
    data: Any = None,
    *,
    upload: bool = False,
    retry_after: float | None = None,
    force_http: bool | None = None,
) -> web.Response:
    """A ``{code, msg, data}`` answer; upload-host answers also carry ``success`` like the live API."""
    body: dict[str, Any] = {"code": code, "msg": msg, "data": data}
    if upload:
        body = {"success": code == 200, **body}
    mirror = ctx.config.http_errors if force_http is None else force_http
    status = 200 if code == 200 or not mirror else code
    if code == 429:
        status = 429
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers[hdrs.RETRY_AFTER] = str(max(0, math.ceil(retry_after)))
    return web.json_response(body, status=status, headers=headers)


def bearer_key(request: web.Request) -> str | None:
    """The API key if it is one the ledger knows (constant-time compare), else ``None``."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    token = token.strip()
    ledger = context(request).ledger
    match: str | None = None
    for key in ledger.keys():  # noqa: SIM118 (CreditLedger is not a dict)
        if hmac.compare_digest(key.encode(), token.encode()):
            match = key
    return match


async def aiter_bytes(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


def drop_connection(request: web.Request) -> web.Response:
    """Close the socket without answering; aiohttp discards the returned placeholder."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=204)


async def send_spoiled_body(
    request: web.Request,
    status: int,
    headers: Iterable[tuple[str, str]],
    chunks: AsyncIterable[bytes],
    total: int,
    rule: FaultRule,
) -> web.StreamResponse:
    """Stream a body under a truncated_body or slow_body rule, honestly declaring ``total`` bytes.

    A wrong_body rule answers instead with a 200 that is not the resource (what a misconfigured CDN or proxy
    sends): an HTML error page, or nothing at all.
    """
    if rule.kind == FaultKind.WRONG_BODY:
        if rule.wrong_body == "empty":
            return web.Response(status=200, body=b"", content_type="application/octet-stream")
        return web.Response(status=200, text=WRONG_BODY_HTML, content_type="text/html")
    response = web.StreamResponse(status=status)
    for name, value in headers:
        if name.lower() not in (hdrs.CONTENT_LENGTH.lower(), hdrs.TRANSFER_ENCODING.lower()):
            response.headers.add(name, value)
    response.content_length = total
    await response.prepare(request)
    if rule.kind == FaultKind.TRUNCATED_BODY:
        budget = int(total * rule.keep_fraction)
        async for chunk in chunks:
            if budget <= 0:
                break
            piece = chunk[:budget]
            await response.write(piece)
            budget -= len(piece)
        drop_connection(request)
        return response
    async for chunk in chunks:
        for start in range(0, len(chunk), rule.chunk_size):
            await response.write(chunk[start : start + rule.chunk_size])
            await asyncio.sleep(rule.chunk_delay)
    await response.write_eof()
    return response


async def _apply_pre(
    request: web.Request, ctx: EmulatorContext, endpoint: FaultEndpoint, rule: FaultRule
) -> web.StreamResponse:
    upload = endpoint == FaultEndpoint.UPLOADS
    if rule.kind == FaultKind.RATE_LIMIT:
        ctx.stats.rate_limited += 1
        return envelope(ctx, 429, MSG_RATE_LIMITED, upload=upload, retry_after=rule.retry_after)
    if rule.kind == FaultKind.SERVER_ERROR:
        message = _SERVER_ERROR_MESSAGES.get(rule.status, "Server error")
        force = True if endpoint == FaultEndpoint.FILES else rule.http_status
        return envelope(ctx, rule.status, message, upload=upload, force_http=force)
    # reset / reset_before: the server read the request, then dropped it without doing any work.
    with contextlib.suppress(web.HTTPException):
        await request.read()
    return drop_connection(request)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = context(request)
    route = request.match_info.route.name
    if route is None:
        return await _not_found_as_envelope(request, handler, ctx)
    if route.startswith("_"):  # control routes: never faulted, never counted
        return await handler(request)
    ctx.stats.count_request(route)
    endpoint = ROUTE_ENDPOINTS.get(route.partition(":")[0])  # "createTask:veo3": a separate API's createTask
    if endpoint is None:
        return await handler(request)
    plan = ctx.faults.plan(endpoint)
    for rule in plan.fired:
        ctx.stats.count_fault(rule.kind.value)
    if plan.latency:
        await asyncio.sleep(plan.latency)
    if plan.pre is not None:
        if endpoint == FaultEndpoint.CREATE_TASK:
            ctx.stats.create_rejected += 1
        return await _apply_pre(request, ctx, endpoint, plan.pre)
    if plan.post is not None:
        request[POST_FAULT_KEY] = plan.post
    response = await handler(request)
    post = plan.post
    if post is None or response.prepared:
        return response
    if post.kind == FaultKind.RESET_AFTER:
        return drop_connection(request)
    body = response.body if isinstance(response, web.Response) else b""
    data = bytes(body) if isinstance(body, (bytes, bytearray, memoryview)) else b""
    return await send_spoiled_body(
        request, response.status, response.headers.items(), aiter_bytes([data]), len(data), post
    )


async def _not_found_as_envelope(request: web.Request, handler: Handler, ctx: EmulatorContext) -> web.StreamResponse:
    """Unknown API paths answer with an envelope, like the real hosts, instead of aiohttp's text page."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if not request.path.startswith("/api/"):
            raise
        return envelope(ctx, 404, "Not Found", force_http=True)
    except web.HTTPMethodNotAllowed:
        if not request.path.startswith("/api/"):
            raise
        return envelope(ctx, 405, "Method Not Allowed", force_http=True)


def reject_create(ctx: EmulatorContext, code: int, msg: str, **kwargs: Any) -> web.Response:
    """A createTask refusal (every API's create route counts it the same way)."""
    ctx.stats.create_rejected += 1
    return envelope(ctx, code, msg, **kwargs)


def admit(
    request: web.Request,
    ctx: EmulatorContext,
    limiter: SlidingWindowLimiter | None,
    reject: Callable[..., web.Response],
) -> str | web.Response:
    """The key of an authorised request within its per-key limit, or the 401/429 answer to send instead."""
    key = bearer_key(request)
    if key is None:
        return reject(ctx, 401, MSG_UNAUTHORIZED)
    if limiter is not None:
        wait = limiter.acquire(key)
        if wait is not None:
            ctx.stats.rate_limited += 1
            return reject(ctx, 429, MSG_RATE_LIMITED, retry_after=wait)
    return key


def readable_task(
    request: web.Request, dialect: str | frozenset[str] | None, unknown_msg: str = "recordInfo is null"
) -> tuple[EmulatorContext, EmulatedTask] | web.Response:
    """The task a status read names, admitted by the read limiter, owned by the caller's key and bought through
    ``dialect``'s API (``None``: the market; a set: APIs sharing one status path, as Veo's generate and extend
    do; each API reads only its own tasks), counted as a status read; else
    the answer to send (401, 429, 400 without ``taskId``, 422 ``unknown_msg``: the market's ``recordInfo is
    null``, or the API's own spelling where its page documents one)."""
    ctx = context(request)
    key = admit(request, ctx, ctx.record_limiter, envelope)
    if isinstance(key, web.Response):
        return key
    task_id = request.query.get("taskId", "").strip()
    if not task_id:
        return envelope(ctx, 400, "taskId parameter is required")
    task = ctx.tasks.get(task_id, owner=key)
    sold_here = task is not None and (
        task.dialect in dialect if isinstance(dialect, frozenset) else task.dialect == dialect
    )
    if task is None or not sold_here:
        return envelope(ctx, 422, unknown_msg)
    ctx.stats.count_status(task_id)
    return ctx, task


async def json_object(request: web.Request) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` for anything else (not JSON, a list, bad UTF-8)."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
