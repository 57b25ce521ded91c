"""One ``CallbackReceiver`` behind FastAPI, plain Starlette and aiohttp routes: the same answers in each.

FastAPI and Starlette are driven in-process through httpx's ASGI transport (no server, no port); aiohttp is
served on a loopback port. Every case is a request a hostile or broken sender could make.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.routing import Route

from kie_async import KieSession
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieInputError
from kie_async.interfaces.callback_receiver import CallbackReceiver, add_callback_route
from kie_async.wire.callbacks import MAX_CALLBACK_BODY_BYTES, sign_callback
from tests.conftest import serve_app

KEY = "whk-frameworks"
SLOW_POLL = PollSettings(schedule=((1000.0, 30.0),), timeout=30, callback_safety_interval=60)
NB2 = {"prompt": "a red fox", "resolution": "1K"}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1, webhook_hmac_key=KEY)


def fastapi_app(receiver: CallbackReceiver) -> FastAPI:
    app = FastAPI()

    @app.post("/kie/callback")
    async def kie_callback(request: Request) -> JSONResponse:
        reply = await receiver.receive(request.headers, request.stream(), request_url=str(request.url))
        return JSONResponse(reply.body, status_code=reply.status)

    return app


def starlette_app(receiver: CallbackReceiver) -> Starlette:
    async def kie_callback(request: Any) -> JSONResponse:
        reply = await receiver.receive(request.headers, await request.body(), request_url=str(request.url))
        return JSONResponse(reply.body, status_code=reply.status)

    return Starlette(routes=[Route("/kie/callback", kie_callback, methods=["POST"])])


@contextlib.asynccontextmanager
async def client_for(
    framework: str, receiver: CallbackReceiver, session: KieSession
) -> AsyncIterator[httpx.AsyncClient]:
    if framework == "aiohttp":
        app = web.Application()
        add_callback_route(app, session, "/kie/callback", hmac_key=KEY)  # its own receiver, same rules
        async with serve_app(app) as base, httpx.AsyncClient(base_url=base) as client:
            yield client
        return
    asgi = fastapi_app(receiver) if framework == "fastapi" else starlette_app(receiver)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://worker") as client:
        yield client


def signed(task_id: str, stamp: int) -> dict[str, str]:
    return {"X-Webhook-Timestamp": str(stamp), "X-Webhook-Signature": sign_callback(task_id, stamp, KEY)}


async def chunks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 65536
        sent += 65536


@pytest.mark.parametrize("framework", ["fastapi", "starlette", "aiohttp"])
async def test_same_answers_in_every_framework(emulator: KieEmulator, framework: str) -> None:
    async with KieSession(emulator.settings(poll=SLOW_POLL)) as kie:
        receiver = CallbackReceiver(kie, hmac_key=KEY)
        created = await kie.create_task(model="nano-banana-2", input=NB2)
        waiter = asyncio.create_task(kie.wait_for_task(created.task_id, callback_driven=True))
        await asyncio.sleep(0.3)  # the task is done; the waiter polls again only after 60 s
        stamp = int(time.time())
        headers = signed(created.task_id, stamp)
        body = {"code": 200, "msg": "success", "data": {"taskId": created.task_id, "state": "success"}}
        rewritten = {"code": 501, "msg": "fail", "data": {"taskId": created.task_id, "state": "fail"}}
        post: Callable[..., Any]
        async with client_for(framework, receiver, kie) as client:
            post = client.post
            answers = [(await post("/kie/callback", json=body, headers=headers)).status_code]
            record = await asyncio.wait_for(waiter, 10)  # woken by the callback, long before the safety poll
            cases: list[tuple[str, dict[str, Any]]] = [
                ("replay", {"json": body, "headers": headers}),
                ("rewritten body", {"json": rewritten, "headers": headers}),
                ("re-spelled timestamp", {"json": body, "headers": {**headers, "X-Webhook-Timestamp": f"0{stamp}"}}),
                ("forged", {"json": body, "headers": {**headers, "X-Webhook-Signature": "forged"}}),
                ("stale", {"json": body, "headers": signed(created.task_id, stamp - 3600)}),
                ("unsigned", {"json": body}),
                (
                    "two signatures",
                    {
                        "json": body,
                        "headers": [
                            ("X-Webhook-Timestamp", str(stamp)),
                            ("X-Webhook-Signature", headers["X-Webhook-Signature"]),
                            ("X-Webhook-Signature", "other"),
                        ],
                    },
                ),
                ("nested", {"content": b"[" * 200_000, "headers": headers}),
                ("not json", {"content": b"\xff\xfe garbage", "headers": headers}),
                ("array", {"content": b"[1, 2]", "headers": headers}),
                ("no task id", {"json": {"code": 200}, "headers": headers}),
                ("announced too big", {"content": b" " * (MAX_CALLBACK_BODY_BYTES + 1), "headers": headers}),
                ("streamed too big", {"content": chunks(MAX_CALLBACK_BODY_BYTES + 65536), "headers": headers}),
            ]
            for _, kwargs in cases:
                answers.append((await post("/kie/callback", **kwargs)).status_code)
        expected = [200, 409, 409, 401, 401, 401, 401, 401, 400, 400, 400, 400, 400, 400]
        assert dict(zip(["genuine", *[c[0] for c in cases]], answers, strict=True)) == dict(
            zip(["genuine", *[c[0] for c in cases]], expected, strict=True)
        )
        assert record.has_usable_result
        assert emulator.stats.status_requests[created.task_id] <= 3  # one read at the start, one when woken


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
async def test_a_token_in_the_url_settles_a_lost_answer(emulator: KieEmulator, framework: str) -> None:
    async with KieSession(emulator.settings(poll=SLOW_POLL)) as kie:
        receiver = CallbackReceiver(kie, hmac_key=KEY)
        events: list[str] = []
        receiver._on_event = lambda event: events.append(event.request_token or "")
        created = await kie.create_task(
            model="nano-banana-2", input=NB2, callback_url="https://example.com/kie/callback?kie_request=order-7"
        )
        adoption = kie.expect_adoption("order-7")  # as after a createTask whose answer was lost
        stamp = int(time.time())
        body = json.dumps({"code": 200, "data": {"taskId": created.task_id}}).encode()
        async with client_for(framework, receiver, kie) as client:
            wrong = await client.post(
                "/kie/callback?kie_request=order-8", content=body, headers=signed(created.task_id, stamp)
            )
            assert wrong.status_code == 200 and not adoption.done()  # a token the task was not created with
            right = await client.post(
                "/kie/callback?kie_request=order-7", content=body, headers=signed(created.task_id, stamp + 1)
            )
            assert right.status_code == 200
        assert await asyncio.wait_for(adoption, 5) == created.task_id
        assert events == ["order-8", "order-7"] and receiver.stats.accepted == 2


async def test_text_instead_of_bytes_is_a_programming_error(emulator: KieEmulator) -> None:
    async with KieSession(emulator.settings()) as kie:
        receiver = CallbackReceiver(kie, hmac_key=KEY)
        with pytest.raises(KieInputError, match="raw body bytes"):
            await receiver.receive({}, '{"taskId": "x"}')  # type: ignore[arg-type]
        assert (await receiver.receive({"Content-Length": "abc"}, b"{}")).status == 401  # unsigned
