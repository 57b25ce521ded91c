"""The upload host: stream, URL and base64 uploads, their errors, and serving the stored files."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from kie_async.emulator import KieEmulator

STREAM = "/api/file-stream-upload"
URL = "/api/file-url-upload"
B64 = "/api/file-base64-upload"
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def post(client: aiohttp.ClientSession, url: str, **kwargs: Any) -> dict[str, Any]:
    async with client.post(url, **kwargs) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return body


def form(
    payload: bytes,
    upload_path: str | None = "images/user-uploads",
    file_name: str | None = None,
    filename: str = "photo.png",
) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("file", payload, filename=filename, content_type="image/png")
    if upload_path is not None:
        data.add_field("uploadPath", upload_path)
    if file_name is not None:
        data.add_field("fileName", file_name)
    return data


async def fetch(client: aiohttp.ClientSession, url: str) -> bytes:
    async with client.get(url) as response:
        assert response.status == 200
        return await response.read()


def assert_uploaded(body: dict[str, Any], emu: KieEmulator, size: int, name: str | None = None) -> dict[str, Any]:
    assert body["success"] is True and body["code"] == 200 and body["msg"] == "File uploaded successfully"
    data: dict[str, Any] = body["data"]
    assert data["downloadUrl"].startswith(emu.upload_base_url + "/kieai/")
    assert data["downloadUrl"].endswith("/" + data["filePath"].split("/", 2)[2])
    assert data["filePath"].startswith("kieai/")
    assert data["fileSize"] == size and data["uploadedAt"].endswith("Z")
    if name is not None:
        assert data["fileName"] == name
    return data


async def test_stream_upload_round_trip(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    body = await post(emulator_client, emulator.upload_base_url + STREAM, data=form(PNG_1PX, file_name="me.png"))
    data = assert_uploaded(body, emulator, len(PNG_1PX), "me.png")
    assert data["mimeType"] == "image/png"
    assert "/images/user-uploads/me.png" in data["downloadUrl"]
    assert await fetch(emulator_client, data["downloadUrl"]) == PNG_1PX
    assert emulator.stats.uploads == 1 and emulator.stats.upload_bytes == len(PNG_1PX)


async def test_repeated_file_name_overwrites(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    first = await post(emulator_client, emulator.upload_base_url + STREAM, data=form(b"one", file_name="same.txt"))
    second = await post(emulator_client, emulator.upload_base_url + STREAM, data=form(b"two!", file_name="same.txt"))
    assert first["data"]["downloadUrl"] == second["data"]["downloadUrl"]
    assert await fetch(emulator_client, second["data"]["downloadUrl"]) == b"two!"


async def test_stream_upload_without_file_name_keeps_the_extension(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    body = await post(emulator_client, emulator.upload_base_url + STREAM, data=form(PNG_1PX))
    assert body["data"]["fileName"].endswith(".png")


@pytest.mark.parametrize("endpoint", [STREAM, URL, B64])
async def test_upload_path_is_required(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession, endpoint: str
) -> None:
    url = emulator.upload_base_url + endpoint
    if endpoint == STREAM:
        body = await post(emulator_client, url, data=form(PNG_1PX, upload_path=None))
    elif endpoint == URL:
        body = await post(emulator_client, url, json={"fileUrl": emulator.base_url + "/_emulator/blob/10"})
    else:
        body = await post(emulator_client, url, json={"base64Data": "aGk="})
    assert body == {"success": False, "code": 400, "msg": "Missing required parameter: uploadPath", "data": None}
    assert emulator.stats.uploads == 0


async def test_bad_upload_paths_and_names_are_400(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    url = emulator.upload_base_url + B64
    for upload_path in ("/leading", "trailing/", "a/../b", "sp ace"):
        body = await post(emulator_client, url, json={"base64Data": "aGk=", "uploadPath": upload_path})
        assert body["code"] == 400, upload_path
    body = await post(emulator_client, url, json={"base64Data": "aGk=", "uploadPath": "a", "fileName": "../x"})
    assert body["code"] == 400
    body = await post(emulator_client, url, json={"base64Data": "not base64!", "uploadPath": "a"})
    assert body["code"] == 400


async def test_uploads_need_the_key(emulator: KieEmulator) -> None:
    async with aiohttp.ClientSession() as anonymous:
        body = await post(anonymous, emulator.upload_base_url + B64, json={"base64Data": "aGk=", "uploadPath": "a"})
    assert body["code"] == 401 and body["success"] is False


async def test_base64_upload_plain_and_data_url(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    encoded = base64.b64encode(PNG_1PX).decode()
    plain = await post(
        emulator_client,
        emulator.upload_base_url + B64,
        json={"base64Data": encoded, "uploadPath": "images/b64", "fileName": "plain.png"},
    )
    data = assert_uploaded(plain, emulator, len(PNG_1PX), "plain.png")
    assert await fetch(emulator_client, data["downloadUrl"]) == PNG_1PX

    data_url = await post(
        emulator_client,
        emulator.upload_base_url + B64,
        json={"base64Data": f"data:image/png;base64,{encoded}", "uploadPath": "images/b64"},
    )
    data = assert_uploaded(data_url, emulator, len(PNG_1PX))
    assert data["fileName"].endswith(".png") and data["mimeType"] == "image/png"
    assert await fetch(emulator_client, data["downloadUrl"]) == PNG_1PX


async def test_url_upload_fetches_loopback_urls(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    source = emulator.base_url + "/_emulator/blob/100000"
    body = await post(
        emulator_client,
        emulator.upload_base_url + URL,
        json={"fileUrl": source, "uploadPath": "videos/in", "fileName": "clip.bin"},
    )
    data = assert_uploaded(body, emulator, 100_000, "clip.bin")
    assert await fetch(emulator_client, data["downloadUrl"]) == await fetch(emulator_client, source)


async def test_url_upload_refuses_the_internet_and_reports_fetch_errors(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    url = emulator.upload_base_url + URL
    body = await post(emulator_client, url, json={"fileUrl": "https://example.com/a.png", "uploadPath": "a"})
    assert body["code"] == 400 and body["success"] is False
    body = await post(emulator_client, url, json={"fileUrl": emulator.base_url + "/files/x/y.png", "uploadPath": "a"})
    assert body["code"] == 400 and "404" in body["msg"]
    assert emulator.stats.uploads == 0


async def test_uploaded_files_cannot_escape_the_upload_dir(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    async with emulator_client.get(emulator.upload_base_url + "/kieai/..%2F..%2Fetc%2Fpasswd") as response:
        assert response.status == 404


async def test_file_names_with_spaces_get_a_working_quoted_url(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    body = await post(emulator_client, emulator.upload_base_url + STREAM, data=form(b"abc", file_name="my photo.png"))
    data = body["data"]
    assert data["fileName"] == "my photo.png" and data["downloadUrl"].endswith("/my%20photo.png")
    assert await fetch(emulator_client, data["downloadUrl"]) == b"abc"
