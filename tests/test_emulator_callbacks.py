"""Terminal-state callbacks: delivered, shaped like recordInfo, and signed per Kie.ai's webhook page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieCallbackVerificationError
from kie_async.wire.api_models import TaskRecord, TaskState
from kie_async.wire.callbacks import verify_callback, verify_callback_signature
from tests.waiting import until

HMAC_KEY = "test-webhook-key"


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.arrived = asyncio.Event()
        self.url = ""
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.json()))
        self.arrived.set()
        return web.Response(status=self.status, text="ok")

    async def next_call(self) -> tuple[dict[str, str], dict[str, Any]]:
        await asyncio.wait_for(self.arrived.wait(), timeout=5)
        self.arrived.clear()
        return self.calls[-1]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/hook"
    yield rec
    await runner.cleanup()


async def create(emu: KieEmulator, client: aiohttp.ClientSession, callback: str) -> str:
    body = {"model": "nano-banana-2", "callBackUrl": callback, "input": {"prompt": "x"}}
    async with client.post(emu.base_url + "/api/v1/jobs/createTask", json=body) as response:
        task_id: str = (await response.json())["data"]["taskId"]
    return task_id


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=0.1, webhook_hmac_key=HMAC_KEY)])
async def test_signed_success_callback(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    task_id = await create(emulator, emulator_client, receiver.url)
    headers, body = await receiver.next_call()

    verify_callback_signature(task_id, headers["X-Webhook-Timestamp"], headers["X-Webhook-Signature"], HMAC_KEY)
    with pytest.raises(KieCallbackVerificationError):
        verify_callback_signature(task_id, headers["X-Webhook-Timestamp"], headers["X-Webhook-Signature"], "wrong")

    assert body["code"] == 200 and body["taskId"] == task_id
    data = body["data"]
    assert data["task_id"] == data["taskId"] == task_id
    assert data["callbackType"] == "task_completed" and data["state"] == "success"
    assert json.loads(data["resultJson"])["resultUrls"][0].startswith(emulator.base_url + "/files/")
    assert isinstance(json.loads(data["param"])["input"], str)

    # What a receiver may rely on: the signed task id and timestamp; the recordInfo-shaped body stays a claim.
    event = verify_callback(headers, json.dumps(body).encode(), HMAC_KEY)
    assert event.task_id == task_id and event.verified and event.timestamp == int(headers["X-Webhook-Timestamp"])
    claimed = TaskRecord.model_validate(event.unverified_body["data"])
    assert claimed.state is TaskState.SUCCESS and len(claimed.output_urls) == 1
    await until(lambda: emulator.stats.callbacks_delivered == 1, "the delivery to be counted")


async def test_failed_task_callback_has_code_501_and_no_signature_without_key(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    emulator.fail_next(1, code="500", msg="upstream broke")
    task_id = await create(emulator, emulator_client, receiver.url)
    headers, body = await receiver.next_call()
    assert "X-Webhook-Signature" not in headers and "X-Webhook-Timestamp" not in headers
    assert body["code"] == 501 and body["msg"] == "upstream broke"
    assert body["data"]["state"] == "fail" and body["data"]["failCode"] == "500"
    assert body["data"]["resultJson"] == "" and body["taskId"] == task_id


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=0.05)])
async def test_delivery_failures_are_counted_not_fatal(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.status = 500
    await create(emulator, emulator_client, receiver.url)
    await receiver.next_call()
    await create(emulator, emulator_client, "http://127.0.0.1:9/unreachable")
    await create(emulator, emulator_client, "https://example.com/hook")  # never leaves the machine
    for _ in range(100):
        if emulator.stats.callbacks_failed == 3:
            break
        await asyncio.sleep(0.02)
    assert emulator.stats.callbacks_failed == 3 and emulator.stats.callbacks_delivered == 0
    assert len(receiver.calls) == 1
    async with emulator_client.get(emulator.base_url + "/api/v1/chat/credit") as response:
        assert (await response.json())["code"] == 200  # still serving
