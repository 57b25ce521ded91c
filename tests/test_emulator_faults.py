"""Every injected fault kind, observed from a raw aiohttp client, plus the HTTP control routes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from kie_async.emulator import EmulatorConfig, FaultRule, KieEmulator

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
CREDIT = "/api/v1/chat/credit"
BODY = {"model": "nano-banana-2", "input": {"prompt": "x"}}


async def get_json(client: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with client.get(url) as response:
        return response.status, await response.json()


async def test_latency_delays_the_answer(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.faults.add("credit", "latency", count=1, delay=0.3)
    started = time.monotonic()
    status, body = await get_json(emulator_client, emulator.base_url + CREDIT)
    assert time.monotonic() - started >= 0.3
    assert status == 200 and body["code"] == 200
    # A client-side timeout shorter than the latency sees a timeout.
    emulator.faults.add("credit", "latency", count=1, delay=0.5)
    with pytest.raises(asyncio.TimeoutError):
        async with emulator_client.get(emulator.base_url + CREDIT, timeout=aiohttp.ClientTimeout(total=0.2)):
            pass


async def test_injected_rate_limit_is_http_429_with_retry_after(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    emulator.faults.add("recordInfo", "rate_limit", count=2, retry_after=7)
    for _ in range(2):
        async with emulator_client.get(emulator.base_url + RECORD, params={"taskId": "x"}) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "7"
            assert (await response.json())["code"] == 429
    status, body = await get_json(emulator_client, emulator.base_url + RECORD + "?taskId=x")
    assert (status, body["code"]) == (200, 422)  # the rule is used up
    assert emulator.stats.rate_limited == 2 and emulator.stats.faults_fired == {"rate_limit": 2}


async def test_server_error_in_envelope_or_as_http_status(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    emulator.faults.add("credit", "server_error", status=500)
    status, body = await get_json(emulator_client, emulator.base_url + CREDIT)
    assert (status, body["code"]) == (200, 500)
    emulator.faults.add("credit", "server_error", status=503, http_status=True)
    status, body = await get_json(emulator_client, emulator.base_url + CREDIT)
    assert (status, body["code"]) == (503, 503)


async def test_server_error_on_create_creates_nothing(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    emulator.faults.add("createTask", "server_error", status=500)
    async with emulator_client.post(emulator.base_url + CREATE, json=BODY) as response:
        assert (await response.json())["code"] == 500
    assert emulator.stats.tasks_created == 0 and emulator.credits() == 5000


async def test_reset_before_drops_the_connection_and_creates_nothing(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    emulator.faults.add("createTask", "reset_before")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        async with emulator_client.post(emulator.base_url + CREATE, json=BODY) as response:
            await response.read()
    assert emulator.stats.tasks_created == 0 and emulator.tasks() == []
    assert emulator.credits() == 5000
    assert emulator.stats.create_rejected == 1


async def test_reset_after_creates_and_charges_although_the_client_saw_a_reset(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    emulator.faults.add("createTask", "reset_after")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        async with emulator_client.post(emulator.base_url + CREATE, json=BODY) as response:
            await response.read()
    assert emulator.stats.tasks_created == 1 and len(emulator.tasks()) == 1
    assert emulator.credits() == 5000 - 8
    # The next call works normally on a fresh connection.
    async with emulator_client.post(emulator.base_url + CREATE, json=BODY) as response:
        assert (await response.json())["code"] == 200
    assert emulator.stats.tasks_created == 2


async def test_reset_on_a_read_endpoint(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    # aiohttp's client silently retries an idempotent request once after a disconnect, so two resets are
    # needed before the caller sees one.
    emulator.faults.add("recordInfo", "reset", count=2)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await get_json(emulator_client, emulator.base_url + RECORD + "?taskId=x")
    assert emulator.stats.requests["recordInfo"] == 2
    status, _ = await get_json(emulator_client, emulator.base_url + RECORD + "?taskId=x")
    assert status == 200


async def test_truncated_body_raises_payload_error(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    emulator.faults.add("credit", "truncated_body", keep_fraction=0.5)
    async with emulator_client.get(emulator.base_url + CREDIT) as response:
        assert response.status == 200
        declared = response.content_length
        assert declared is not None and declared > 0
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_truncated_output_file(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    async with emulator_client.post(emulator.base_url + CREATE, json=BODY) as response:
        task_id = (await response.json())["data"]["taskId"]
    await asyncio.sleep(0.25)
    _, record = await get_json(emulator_client, f"{emulator.base_url}{RECORD}?taskId={task_id}")
    url = json.loads(record["data"]["resultJson"])["resultUrls"][0]
    emulator.faults.add("files", "truncated_body", keep_fraction=0.25)
    async with emulator_client.get(url) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    async with emulator_client.get(url) as response:
        assert len(await response.read()) == response.content_length


async def test_slow_body_trickles_but_completes(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.faults.add("files", "slow_body", chunk_size=16 * 1024, chunk_delay=0.05)
    started = time.monotonic()
    async with emulator_client.get(emulator.base_url + "/_emulator/blob/64k") as response:
        payload = await response.read()
    assert len(payload) == 64 * 1024
    assert time.monotonic() - started >= 0.15  # four chunks, three 50 ms gaps
    # A read timeout shorter than the gap between chunks fires mid-body.
    emulator.faults.add("files", "slow_body", chunk_size=1024, chunk_delay=0.5)
    with pytest.raises(asyncio.TimeoutError):
        async with emulator_client.get(
            emulator.base_url + "/_emulator/blob/4k", timeout=aiohttp.ClientTimeout(sock_read=0.2)
        ) as response:
            await response.read()


async def test_latency_stacks_with_another_fault(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.faults.add("credit", "latency", delay=0.2)
    emulator.faults.add("credit", "server_error", status=502, http_status=True)
    started = time.monotonic()
    status, _ = await get_json(emulator_client, emulator.base_url + CREDIT)
    assert status == 502 and time.monotonic() - started >= 0.2


async def test_probability_is_reproducible_with_a_seed() -> None:
    async def pattern() -> list[int]:
        async with (
            KieEmulator(EmulatorConfig(seed=42)) as emu,
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {emu.api_key}"}) as client,
        ):
            emu.faults.add("credit", "server_error", count=None, probability=0.5, http_status=True)
            statuses = []
            for _ in range(20):
                async with client.get(emu.base_url + CREDIT) as response:
                    statuses.append(response.status)
            return statuses

    first, second = await pattern(), await pattern()
    assert first == second
    assert 200 in first and 500 in first


async def test_count_none_fires_until_cleared(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.faults.add("credit", "server_error", count=None, http_status=True)
    for _ in range(3):
        assert (await get_json(emulator_client, emulator.base_url + CREDIT))[0] == 500
    emulator.faults.clear()
    assert (await get_json(emulator_client, emulator.base_url + CREDIT))[0] == 200


async def test_upload_endpoint_faults(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.faults.add("uploads", "server_error", status=500)
    body = {"base64Data": "aGk=", "uploadPath": "a/b"}
    async with emulator_client.post(emulator.upload_base_url + "/api/file-base64-upload", json=body) as response:
        envelope = await response.json()
    assert envelope["code"] == 500 and envelope["success"] is False
    assert emulator.stats.uploads == 0


async def test_control_routes_drive_faults_and_stats(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    control = emulator.base_url + "/_emulator/faults"
    async with aiohttp.ClientSession() as anonymous:  # control routes need no key (loopback only)
        rule = FaultRule(endpoint="credit", kind="rate_limit", count=1, retry_after=3)
        async with anonymous.post(control, json=rule.model_dump(mode="json")) as response:
            assert response.status == 200
            assert [r["kind"] for r in (await response.json())["rules"]] == ["rate_limit"]
        async with emulator_client.get(emulator.base_url + CREDIT) as response:
            assert response.status == 429 and response.headers["Retry-After"] == "3"

        payload = {"clear": True, "rules": [{"endpoint": "recordInfo", "kind": "server_error", "count": 2}]}
        async with anonymous.post(control, json=payload) as response:
            assert [(r["endpoint"], r["count"]) for r in (await response.json())["rules"]] == [("recordInfo", 2)]
        async with anonymous.post(control, json=[{"endpoint": "nope", "kind": "reset"}]) as response:
            assert response.status == 400
        async with anonymous.delete(control) as response:
            assert (await response.json())["rules"] == []
        async with anonymous.get(control) as response:
            assert (await response.json())["rules"] == []

        async with anonymous.get(emulator.base_url + "/_emulator/stats") as response:
            stats = await response.json()
        assert stats["requests"]["credit"] == 1 and stats["rate_limited"] == 1
        assert stats["faults_fired"] == {"rate_limit": 1}
        assert stats["credits"]["default_key"] == 5000
        async with anonymous.post(emulator.base_url + "/_emulator/credits", json={"credits": 3}) as response:
            assert (await response.json())["credits"] == 3
        async with anonymous.delete(emulator.base_url + "/_emulator/stats") as response:
            assert response.status == 200
    assert emulator.stats.requests == {} and emulator.credits() == 3
