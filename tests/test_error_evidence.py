"""API errors keep the evidence (body, headers, request id, endpoint, task id) and never a secret."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from kie_async import KieSession
from kie_async.core.evidence import MAX_BODY_CHARS
from kie_async.core.settings import KieSettings, RetrySettings
from kie_async.emulator import KieEmulator
from kie_async.errors import (
    KieAPIStatusError,
    KieAuthenticationError,
    KieResponseShapeError,
    KieServerError,
    KieValidationError,
)
from tests.conftest import serve_app

KEY = "sk-live-0123456789abcdefSECRET"


def echoing_app() -> web.Application:
    """A hostile gateway: echoes the key in the message, the body and the headers, sets cookies."""

    async def credit(request: web.Request) -> web.Response:
        auth = request.headers["Authorization"]
        body = {"code": 401, "msg": f"bad token {auth}\nsecond line", "data": {"seen": auth, "key": KEY}}
        headers = {
            "X-Request-Id": "req-42",
            "Set-Cookie": "session=abc123; HttpOnly",
            "X-Echo-Authorization": auth,
            "X-Api-Key": KEY,
            "X-Note": f"the key was {KEY}",
        }
        return web.json_response(body, status=200, headers=headers)

    async def record(request: web.Request) -> web.Response:
        return web.json_response({"code": 422, "msg": "recordInfo is null", "data": None}, headers={"cf-ray": "8f-FRA"})

    async def download_url(request: web.Request) -> web.Response:
        # 100 KB of HTML from a proxy, the key near the start and across the cap (starts inside, ends outside).
        page = "<html>" + "x" * 50 + KEY + "y" * (MAX_BODY_CHARS - 100) + KEY + "z" * 100_000 + "</html>"
        return web.Response(text=page, status=502, content_type="text/html", headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_get("/api/v1/chat/credit", credit)
    app.router.add_get("/api/v1/jobs/recordInfo", record)
    app.router.add_post("/api/v1/common/download-url", download_url)
    return app


def assert_no_secret(error: KieAPIStatusError) -> None:
    shown = " ".join([str(error), repr(error), error.body or "", json.dumps(error.headers), error.request_id or ""])
    assert KEY not in shown and KEY[:20] not in shown
    assert "abc123" not in shown  # the cookie
    assert "\n" not in str(error)


async def test_error_keeps_body_headers_request_id_without_secrets() -> None:
    async with serve_app(echoing_app()) as url:
        settings = KieSettings(api_key=KEY, base_url=url, upload_base_url=url, retry=RetrySettings(max_retries=0))
        async with KieSession(settings) as kie:
            with pytest.raises(KieAuthenticationError) as caught:
                await kie.get_credits()
            error = caught.value
            assert_no_secret(error)
            assert error.request_id == "req-42" and "req-42" in str(error)
            assert error.endpoint == "credit" and error.code == 401 and error.http_status == 200
            assert error.headers["Set-Cookie"] == "[redacted]"
            assert error.headers["X-Echo-Authorization"] == "[redacted]"
            assert error.headers["X-Api-Key"] == "[redacted]"
            assert error.headers["X-Note"] == "the key was [redacted]"
            assert error.body is not None and json.loads(error.body)["data"]["key"] == "[redacted]"
            assert str(error).endswith(error.hint) and "second line" in str(error)

            with pytest.raises(KieValidationError) as caught_record:
                await kie.get_task("task-77")
            assert caught_record.value.task_id == "task-77" and "task-77" in str(caught_record.value)
            assert caught_record.value.request_id == "8f-FRA"

            with pytest.raises(KieServerError) as caught_page:
                await kie.get_download_url("https://tempfile.example/x.png")
            page_error = caught_page.value
            assert_no_secret(page_error)
            assert page_error.enveloped is False and page_error.retry_after == 3
            assert page_error.body is not None and page_error.body.startswith("<html>")
            assert len(page_error.body) < MAX_BODY_CHARS + 100 and "bytes in all]" in page_error.body
            assert page_error.body.count("[redacted]") >= 1


async def test_emulator_errors_carry_envelope_and_task_id(emulator: KieEmulator) -> None:
    async with KieSession(emulator.settings(retry=RetrySettings(max_retries=0))) as kie:
        emulator.faults.add("credit", "server_error", count=1, status=500)
        with pytest.raises(KieServerError) as caught:
            await kie.get_credits()
        assert caught.value.body is not None and json.loads(caught.value.body)["code"] == 500
        assert "Content-Type" in caught.value.headers
        assert emulator.api_key not in caught.value.body

        emulator.faults.add("recordInfo", "wrong_body", count=1, wrong_body="html")
        created = await kie.create_task(model="nano-banana-2", input={"prompt": "fox"})
        with pytest.raises(KieResponseShapeError) as shape:
            await kie.get_task(created.task_id)
        assert shape.value.task_id == created.task_id and shape.value.body is not None
        assert "<html" in shape.value.body.lower()
