"""Wire-level tests of the emulator's jobs and credit endpoints, with a plain aiohttp client (no SDK)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import pytest
import pyvips

from kie_async.emulator import EmulatorConfig, KieEmulator

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
CREDIT = "/api/v1/chat/credit"


async def post_json(client: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with client.post(url, json=body) as response:
        return response.status, await response.json()


async def create(emu: KieEmulator, client: aiohttp.ClientSession, model: str = "nano-banana-2", **params: Any) -> str:
    status, body = await post_json(client, emu.base_url + CREATE, {"model": model, "input": {"prompt": "x", **params}})
    assert (status, body["code"]) == (200, 200), body
    task_id: str = body["data"]["taskId"]
    return task_id


async def record(emu: KieEmulator, client: aiohttp.ClientSession, task_id: str) -> dict[str, Any]:
    async with client.get(emu.base_url + RECORD, params={"taskId": task_id}) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    assert body["code"] == 200, body
    data: dict[str, Any] = body["data"]
    return data


async def wait_terminal(emu: KieEmulator, client: aiohttp.ClientSession, task_id: str) -> dict[str, Any]:
    for _ in range(200):
        data = await record(emu, client, task_id)
        if data["state"] in ("success", "fail"):
            return data
        await asyncio.sleep(0.02)
    raise AssertionError("task never finished")


# Phases of 0.2 s each, wide enough that a loaded CI machine polling every 10 ms still sees all of them.
@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=0.8)])
async def test_happy_path_walks_every_state_with_live_field_quirks(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    body = {
        "model": "nano-banana-2",
        "callBackUrl": "http://127.0.0.1:9/cb",
        "input": {"prompt": "a red fox", "aspect_ratio": "16:9", "output_format": "png"},
    }
    status, created = await post_json(emulator_client, emulator.base_url + CREATE, body)
    assert status == 200 and created["code"] == 200 and created["msg"] == "success"
    task_id = created["data"]["taskId"]
    assert re.fullmatch(r"[0-9a-f]{32}", task_id)
    assert created["data"]["recordId"] == task_id

    seen: list[str] = []
    data: dict[str, Any] = {}
    polls = 0
    for _ in range(200):
        data = await record(emulator, emulator_client, task_id)
        polls += 1
        if not seen or seen[-1] != data["state"]:
            seen.append(data["state"])
        if data["state"] != "success":
            # Not done: the live API sends "" and nulls, not missing keys.
            assert data["resultJson"] == ""
            assert data["failCode"] is None and data["failMsg"] is None
            assert data["costTime"] is None and data["completeTime"] is None
        else:
            break
        await asyncio.sleep(0.01)
    assert seen == ["waiting", "queuing", "generating", "success"]

    assert data["taskId"] == task_id and data["model"] == "nano-banana-2"
    param = json.loads(data["param"])
    assert isinstance(param["input"], str), "param.input must be double-encoded like the live API"
    assert json.loads(param["input"]) == body["input"]
    assert param["model"] == "nano-banana-2" and param["callBackUrl"] == body["callBackUrl"]
    urls = json.loads(data["resultJson"])["resultUrls"]
    assert len(urls) == 1 and urls[0].startswith(emulator.base_url + "/files/" + task_id + "/")
    assert data["failCode"] is None and data["failMsg"] is None
    assert isinstance(data["costTime"], int)
    assert data["createTime"] <= data["updateTime"] <= data["completeTime"]
    assert emulator.stats.status_requests == {task_id: polls}


async def test_output_png_is_real_and_respects_aspect_ratio(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    task_id = await create(emulator, emulator_client, aspect_ratio="16:9", output_format="png")
    data = await wait_terminal(emulator, emulator_client, task_id)
    url = json.loads(data["resultJson"])["resultUrls"][0]
    async with emulator_client.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/png"
        payload = await response.read()
    assert payload[:8] == b"\x89PNG\r\n\x1a\n"
    image = pyvips.Image.new_from_buffer(payload, "")
    assert (image.width, image.height) == (256, 144)


async def test_output_is_jpeg_when_output_format_is_jpg(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    task_id = await create(emulator, emulator_client, aspect_ratio="9:16", output_format="jpg")
    data = await wait_terminal(emulator, emulator_client, task_id)
    url = json.loads(data["resultJson"])["resultUrls"][0]
    async with emulator_client.get(url) as response:
        payload = await response.read()
        assert response.headers["Content-Type"] == "image/jpeg"
    assert payload[:3] == b"\xff\xd8\xff"
    image = pyvips.Image.new_from_buffer(payload, "")
    assert (image.width, image.height) == (144, 256)


async def test_video_model_gets_a_real_mp4(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    task_id = await create(
        emulator, emulator_client, model="kling-2.6/text-to-video", sound=False, aspect_ratio="16:9", duration="5"
    )
    data = await wait_terminal(emulator, emulator_client, task_id)
    url = json.loads(data["resultJson"])["resultUrls"][0]
    assert url.endswith(".mp4")
    async with emulator_client.get(url) as response:
        assert response.headers["Content-Type"] == "video/mp4"
        payload = await response.read()
    assert payload[4:8] == b"ftyp"
    assert 1000 < len(payload) < 64 * 1024


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=0.05, output_bytes=300_000)])
async def test_output_bytes_pads_to_the_exact_size_and_stays_decodable(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    sizes = {}
    for fmt in ("png", "jpg"):
        task_id = await create(emulator, emulator_client, output_format=fmt)
        data = await wait_terminal(emulator, emulator_client, task_id)
        async with emulator_client.get(json.loads(data["resultJson"])["resultUrls"][0]) as response:
            payload = await response.read()
        sizes[fmt] = len(payload)
        image = pyvips.Image.new_from_buffer(payload, "")
        assert image.avg() >= 0  # forces a full decode: padding must not corrupt the file
    assert sizes == {"png": 300_000, "jpg": 300_000}


async def test_task_failure_injection(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.fail_next(1, code="422", msg="prompt rejected")
    failed = await create(emulator, emulator_client)
    ok = await create(emulator, emulator_client)
    data = await wait_terminal(emulator, emulator_client, failed)
    assert data["state"] == "fail"
    assert (data["failCode"], data["failMsg"]) == ("422", "prompt rejected")
    assert data["resultJson"] == "" and data["completeTime"] is not None
    assert (await wait_terminal(emulator, emulator_client, ok))["state"] == "success"


async def test_auth_errors_come_in_http_200_envelopes(emulator: KieEmulator) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for method, path in (("POST", CREATE), ("GET", RECORD + "?taskId=x"), ("GET", CREDIT)):
            async with anonymous.request(method, emulator.base_url + path, json={}) as response:
                assert response.status == 200
                body = await response.json()
            assert body == {"code": 401, "msg": "You do not have access permissions", "data": None}
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer wrong"}) as wrong,
        wrong.get(emulator.base_url + CREDIT) as response,
    ):
        assert (await response.json())["code"] == 401
    assert emulator.stats.tasks_created == 0


async def test_insufficient_credits_is_402_and_charges_nothing(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    emulator.set_credits(10)
    await create(emulator, emulator_client)  # nano-banana-2 1K costs 8
    status, body = await post_json(
        emulator_client, emulator.base_url + CREATE, {"model": "nano-banana-2", "input": {"prompt": "x"}}
    )
    assert status == 200 and body["code"] == 402 and body["data"] is None
    async with emulator_client.get(emulator.base_url + CREDIT) as response:
        credit = await response.json()
    assert credit["code"] == 200 and credit["data"] == pytest.approx(2.0)
    assert emulator.stats.tasks_created == 1 and emulator.stats.credits_spent == pytest.approx(8.0)


async def test_bad_input_is_422_and_checkers_are_pluggable(
    emulator_client: aiohttp.ClientSession, emulator: KieEmulator
) -> None:
    bad_bodies: list[dict[str, Any]] = [{"model": "", "input": {}}, {"model": "m", "input": "nope"}, {"input": {}}]
    for bad in bad_bodies:
        status, body = await post_json(emulator_client, emulator.base_url + CREATE, bad)
        assert status == 200 and body["code"] == 422, bad

    def checker(model: str, params: Any) -> list[str]:
        return [] if model == "known" else [f"unknown model {model}"]

    config = EmulatorConfig(input_checker=checker, cost_fn=lambda model, params: 1.5, credits=3)
    async with (
        KieEmulator(config) as emu,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {emu.api_key}"}) as client,
    ):
        status, body = await post_json(client, emu.base_url + CREATE, {"model": "other", "input": {}})
        assert body["code"] == 422 and "unknown model other" in body["msg"]
        for expected in (200, 200, 402):
            _, body = await post_json(client, emu.base_url + CREATE, {"model": "known", "input": {}})
            assert body["code"] == expected
        assert emu.credits() == pytest.approx(0.0)


async def test_record_info_unknown_and_missing_task_id(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    async with emulator_client.get(emulator.base_url + RECORD, params={"taskId": "0" * 32}) as response:
        assert response.status == 200
        assert await response.json() == {"code": 422, "msg": "recordInfo is null", "data": None}
    async with emulator_client.get(emulator.base_url + RECORD) as response:
        body = await response.json()
    assert body["code"] == 400 and "taskId" in body["msg"]


async def test_tasks_are_private_to_their_key() -> None:
    async with KieEmulator(EmulatorConfig(extra_keys={"second-key": 100})) as emu:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {emu.api_key}"}) as owner:
            task_id = await create(emu, owner)
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer second-key"}) as other:
            async with other.get(emu.base_url + RECORD, params={"taskId": task_id}) as response:
                assert (await response.json())["code"] == 422
            async with other.get(emu.base_url + CREDIT) as response:
                assert (await response.json())["data"] == 100


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=5)])
async def test_create_rate_limit_rejects_the_21st_call_with_http_429(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    for _ in range(20):
        await create(emulator, emulator_client)
    async with emulator_client.post(
        emulator.base_url + CREATE, json={"model": "nano-banana-2", "input": {"prompt": "x"}}
    ) as response:
        assert response.status == 429
        retry_after = int(response.headers["Retry-After"])
        body = await response.json()
    assert body["code"] == 429 and body["data"] is None
    assert 1 <= retry_after <= 10
    assert emulator.stats.tasks_created == 20
    assert emulator.stats.rate_limited == 1 and emulator.stats.create_rejected == 1
    assert emulator.credits() == pytest.approx(5000 - 20 * 8)


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(create_rate_limit=3, create_rate_window=2.0, generation_seconds=0)]
)
async def test_rate_window_slides(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    """Refused while the window holds three, accepted once the first leaves it: never earlier (a lower bound
    on time, which load cannot break), as soon as possible after (waited for, not slept)."""
    first_sent = time.monotonic()
    for _ in range(3):
        await create(emulator, emulator_client)
    status, _ = await post_json(emulator_client, emulator.base_url + CREATE, {"model": "m", "input": {}})
    assert status == 429
    while True:
        status, _ = await post_json(
            emulator_client, emulator.base_url + CREATE, {"model": "nano-banana-2", "input": {"prompt": "x"}}
        )
        if status == 200:
            break
        assert status == 429 and time.monotonic() - first_sent < 60
        await asyncio.sleep(0.05)
    assert time.monotonic() - first_sent >= 2.0


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(http_errors=True)])
async def test_http_errors_mode_mirrors_codes(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    async with emulator_client.get(emulator.base_url + RECORD, params={"taskId": "nope"}) as response:
        assert response.status == 422
        assert (await response.json())["msg"] == "recordInfo is null"
    async with aiohttp.ClientSession() as anonymous, anonymous.get(emulator.base_url + CREDIT) as response:
        assert response.status == 401


async def test_unknown_api_path_answers_an_envelope(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    async with emulator_client.get(emulator.base_url + "/api/v1/nothing") as response:
        assert response.status == 404
        assert (await response.json())["code"] == 404


async def test_settings_point_at_the_emulator(emulator: KieEmulator) -> None:
    settings = emulator.settings(request_timeout=5.0)
    assert settings.base_url == emulator.base_url and settings.upload_base_url == emulator.upload_base_url
    assert settings.key_value() == "kie-emulator-key"
    assert not settings.is_live
    assert settings.request_timeout == 5.0
    assert emulator.base_url != emulator.upload_base_url


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(generation_seconds=0.05, model_generation_seconds={"nano-banana-pro": 30})]
)
async def test_generation_time_per_model(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    slow = await create(emulator, emulator_client, model="nano-banana-pro")
    fast = await create(emulator, emulator_client)
    await asyncio.sleep(0.1)
    assert (await record(emulator, emulator_client, fast))["state"] == "success"
    assert (await record(emulator, emulator_client, slow))["state"] == "waiting"


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(record_info_rate_limit=2)])
async def test_optional_record_info_rate_limit(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    task_id = await create(emulator, emulator_client)
    await record(emulator, emulator_client, task_id)
    await record(emulator, emulator_client, task_id)
    async with emulator_client.get(emulator.base_url + RECORD, params={"taskId": task_id}) as response:
        assert response.status == 429 and "Retry-After" in response.headers


async def test_control_route_lists_tasks_sold_and_every_createtask_that_arrived(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    """What the money soak counts: tasks sold, and arrivals even when the answer was a refusal."""
    create = emulator.base_url + "/api/v1/jobs/createTask"
    hook = "http://127.0.0.1:9/cb?kie_request=k1.a1"
    body = {"model": "nano-banana-2", "callBackUrl": hook, "input": {"prompt": "sold"}}
    async with emulator_client.post(create, json=body) as response:
        sold = (await response.json())["data"]["taskId"]
    emulator.set_credits(0)
    refused = {**body, "callBackUrl": "http://127.0.0.1:9/cb?kie_request=k2.a2", "input": {"prompt": "refused"}}
    async with emulator_client.post(create, json=refused) as response:
        assert (await response.json())["code"] == 402
    async with emulator_client.get(emulator.base_url + "/_emulator/tasks") as response:
        listing = await response.json()
    (task,) = listing["tasks"]
    assert task["taskId"] == sold and task["input"] == {"prompt": "sold"} and task["callBackUrl"] == hook
    assert [a["prompt"] for a in listing["create_arrivals"]] == ["sold", "refused"]
    assert listing["create_arrivals"][1]["callBackUrl"].endswith("kie_request=k2.a2")
