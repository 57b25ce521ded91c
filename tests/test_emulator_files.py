"""download-url rules, generated-file serving and the bulk blob route."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from kie_async.emulator import EmulatorConfig, KieEmulator

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
DOWNLOAD_URL = "/api/v1/common/download-url"


async def finished_output(emu: KieEmulator, client: aiohttp.ClientSession) -> str:
    async with client.post(emu.base_url + CREATE, json={"model": "nano-banana-2", "input": {"prompt": "x"}}) as r:
        task_id = (await r.json())["data"]["taskId"]
    for _ in range(100):
        async with client.get(emu.base_url + RECORD, params={"taskId": task_id}) as r:
            data = (await r.json())["data"]
        if data["state"] == "success":
            url: str = json.loads(data["resultJson"])["resultUrls"][0]
            return url
        await asyncio.sleep(0.02)
    raise AssertionError("task did not finish")


async def ask_download_url(emu: KieEmulator, client: aiohttp.ClientSession, url: Any) -> dict[str, Any]:
    async with client.post(emu.base_url + DOWNLOAD_URL, json={"url": url}) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return body


async def test_download_url_returns_a_signed_link_that_serves_the_file(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    url = await finished_output(emulator, emulator_client)
    body = await ask_download_url(emulator, emulator_client, url)
    assert body["code"] == 200 and isinstance(body["data"], str)
    signed = body["data"]
    assert signed.startswith(url + "?")
    async with emulator_client.get(url) as plain, emulator_client.get(signed) as via_link:
        assert plain.status == via_link.status == 200
        assert await plain.read() == await via_link.read()


async def test_tampered_link_is_refused(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    url = await finished_output(emulator, emulator_client)
    signed = (await ask_download_url(emulator, emulator_client, url))["data"]
    parts = urlsplit(signed)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["expires"] = str(int(query["expires"]) + 60_000)  # try to extend the link
    async with emulator_client.get(f"{url}?{urlencode(query)}") as response:
        assert response.status == 403


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=0.05, download_url_ttl=0.05)])
async def test_expired_link_is_refused(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    url = await finished_output(emulator, emulator_client)
    signed = (await ask_download_url(emulator, emulator_client, url))["data"]
    await asyncio.sleep(0.1)
    async with emulator_client.get(signed) as response:
        assert response.status == 403


async def test_outside_or_bogus_urls_are_422(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    url = await finished_output(emulator, emulator_client)
    task_part = urlsplit(url).path.split("/")[2]
    for outside in (
        "https://example.com/a.png",
        emulator.upload_base_url + "/kieai/x/y.png",
        f"{emulator.base_url}/files/{task_part}/other.png",
        f"{emulator.base_url}/files/{'0' * 32}/x.png",
    ):
        body = await ask_download_url(emulator, emulator_client, outside)
        assert body["code"] == 422 and body["data"] is None, outside
    assert (await ask_download_url(emulator, emulator_client, None))["code"] == 400
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.post(emulator.base_url + DOWNLOAD_URL, json={"url": url}) as response,
    ):
        assert (await response.json())["code"] == 401


async def test_files_of_unfinished_or_unknown_tasks_are_404(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    body = {"model": "nano-banana-2", "input": {"prompt": "x"}}
    async with emulator_client.post(emulator.base_url + CREATE, json=body) as r:
        task_id = (await r.json())["data"]["taskId"]
    async with emulator_client.get(f"{emulator.base_url}/files/{task_id}/{task_id}_0.png") as response:
        assert response.status == 404  # still running
    async with emulator_client.get(f"{emulator.base_url}/files/{'a' * 32}/x.png") as response:
        assert response.status == 404


async def test_output_files_are_rendered_once_and_identical(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    url = await finished_output(emulator, emulator_client)

    async def fetch() -> bytes:
        async with emulator_client.get(url) as response:
            return await response.read()

    bodies = await asyncio.gather(*(fetch() for _ in range(5)))
    assert len(set(bodies)) == 1
    assert emulator.stats.files_served == 5 and emulator.stats.outputs_rendered == 1


async def test_blob_streams_exact_deterministic_bytes(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    async with emulator_client.get(emulator.base_url + "/_emulator/blob/200000") as response:
        assert response.status == 200 and response.content_length == 200_000
        first = await response.read()
    async with emulator_client.get(emulator.base_url + "/_emulator/blob/1M") as response:
        second = await response.read()
    assert len(first) == 200_000 and len(second) == 1024 * 1024
    assert second[:200_000] == first
    async with emulator_client.get(emulator.base_url + "/_emulator/blob/lots") as response:
        assert response.status == 400


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=0.05, render_on_completion=True)])
async def test_render_on_completion_fills_the_cache_before_any_download(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    url = await finished_output(emulator, emulator_client)
    for _ in range(50):
        if emulator.stats.tasks_succeeded:
            break
        await asyncio.sleep(0.02)
    task = emulator.task(urlsplit(url).path.split("/")[2])
    assert task is not None and task.finalized
    assert (emulator.stats.outputs_rendered, emulator.stats.files_served) == (1, 0)
    async with emulator_client.get(url) as response:
        assert (await response.read())[:8] == b"\x89PNG\r\n\x1a\n"
    assert emulator.stats.outputs_rendered == 1
