"""Unit-level HTTP tests (aioresponses): envelope parsing, error mapping and the retry decisions.

The no-double-spend rule lives here: createTask is retried only when the request provably never reached
the server (connect failure) or was refused before any work (429).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from kie_async.core.settings import KieSettings, PollSettings, RetrySettings
from kie_async.errors import (
    KieAPIStatusError,
    KieAuthenticationError,
    KieConfigError,
    KieConnectionError,
    KieInputError,
    KieInsufficientCreditsError,
    KieNotFoundError,
    KieRateLimitError,
    KieServerError,
    KieSubmissionUncertainError,
    KieTaskFailedError,
    KieTimeoutError,
    KieUsageLimitError,
    KieValidationError,
)
from kie_async.session import KieSession
from kie_async.wire.api_models import CreateTaskPayload, TaskState
from kie_async.wire.retry import RetryPolicy
from tests.aioresponses_compat import patch_aioresponses  # noqa: F401  (autouse fixture)

SECRET = "sk-unit-SECRET-9f8e7d"
BASE = "http://kie.test"
UPLOAD = "http://upload.test"
CREATE = f"{BASE}/api/v1/jobs/createTask"
CREDIT = f"{BASE}/api/v1/chat/credit"
RECORD = re.compile(r"^http://kie\.test/api/v1/jobs/recordInfo\?taskId=.*$")


class RecordingSleep:
    """Stands in for asyncio.sleep inside the retry policy so tests see the delays without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_settings(**overrides: Any) -> KieSettings:
    values: dict[str, Any] = {
        "api_key": SECRET,
        "base_url": BASE,
        "upload_base_url": UPLOAD,
        "allow_live": True,  # kie.test is not loopback; aioresponses answers, nothing leaves the process
        "retry": RetrySettings(max_retries=3, initial_backoff=0.01, max_backoff=0.05),
        "poll": PollSettings(schedule=((float("inf"), 0.01),), timeout=5.0),
    }
    values.update(overrides)
    return KieSettings(**values)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def kie(sleeps: RecordingSleep) -> Any:
    settings = make_settings()
    async with KieSession(settings, retry_policy=RetryPolicy(settings.retry, sleep=sleeps)) as session:
        yield session


def calls(m: aioresponses, method: str, url: str) -> int:
    return sum(len(v) for (meth, u), v in m.requests.items() if meth == method and str(u).startswith(url))


def record(task_id: str, state: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "taskId": task_id,
        "model": "nano-banana-2",
        "state": state,
        "param": json.dumps({"model": "nano-banana-2", "input": json.dumps({"prompt": "a cat"})}),
        "resultJson": "",
        "failCode": None,
        "failMsg": None,
        "costTime": None,
        "completeTime": None,
        "createTime": 1765178625768,
    }
    body.update(extra)
    return {"code": 200, "msg": "success", "data": body}


def success_record(task_id: str) -> dict[str, Any]:
    return record(task_id, "success", resultJson=json.dumps({"resultUrls": [f"http://files.test/{task_id}.png"]}))


async def test_credits_parse_float(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(CREDIT, payload={"code": 200, "msg": "success", "data": 60.62})
        balance = await kie.get_credits()
    assert balance.credits == pytest.approx(60.62)
    assert balance.usd == pytest.approx(0.3031)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, KieAPIStatusError),
        (401, KieAuthenticationError),
        (402, KieInsufficientCreditsError),
        (404, KieNotFoundError),
        (422, KieValidationError),
        (433, KieUsageLimitError),
        (501, KieServerError),
        (505, KieServerError),
    ],
)
async def test_envelope_errors_inside_http_200_are_typed_and_not_retried(
    kie: KieSession, code: int, cls: type[Exception]
) -> None:
    with aioresponses() as m:
        m.get(CREDIT, payload={"code": code, "msg": f"problem {code}", "data": None}, repeat=True)
        with pytest.raises(cls) as info:
            await kie.get_credits()
        assert calls(m, "GET", CREDIT) == 1
    assert f"problem {code}" in str(info.value)
    assert str(code) in str(info.value)


async def test_envelope_accepts_message_alias(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(CREDIT, payload={"code": 402, "message": "credits insufficient"})
        with pytest.raises(KieInsufficientCreditsError, match="credits insufficient"):
            await kie.get_credits()


async def test_non_envelope_403_maps_to_auth_error(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(CREDIT, status=403, body="error code: 1010", content_type="text/plain")
        with pytest.raises(KieAuthenticationError) as info:
            await kie.get_credits()
    assert info.value.http_status == 403
    assert "1010" in str(info.value)


async def test_reads_retry_on_5xx_then_succeed(kie: KieSession, sleeps: RecordingSleep) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload={"code": 500, "msg": "internal"})
        m.get(RECORD, status=503, body="bad gateway")
        m.get(RECORD, payload=record("t1", "generating"))
        rec = await kie.get_task("t1")
    assert rec.state is TaskState.GENERATING
    assert len(sleeps.delays) == 2
    assert kie.stats.retries == 2
    # exponential: the second delay's ceiling is twice the first's
    assert 0 < sleeps.delays[0] <= 0.01 and 0 < sleeps.delays[1] <= 0.02


async def test_reads_honour_retry_after(kie: KieSession, sleeps: RecordingSleep) -> None:
    with aioresponses() as m:
        m.get(CREDIT, status=429, payload={"code": 429, "msg": "Rate limit exceeded"}, headers={"Retry-After": "3"})
        m.get(CREDIT, payload={"code": 200, "msg": "success", "data": 10})
        balance = await kie.get_credits()
    assert balance.credits == 10
    assert len(sleeps.delays) == 1 and 3.0 <= sleeps.delays[0] <= 3.02
    assert kie.stats.rate_limited == 1


async def test_reads_give_up_after_max_retries(kie: KieSession, sleeps: RecordingSleep) -> None:
    with aioresponses() as m:
        m.get(RECORD, exception=aiohttp.ServerDisconnectedError(), repeat=True)
        with pytest.raises(KieConnectionError):
            await kie.get_task("t1")
        assert calls(m, "GET", f"{BASE}/api/v1/jobs/recordInfo") == 4
    assert len(sleeps.delays) == 3


async def test_read_timeout_is_retried(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, exception=TimeoutError())
        m.get(RECORD, payload=record("t1", "queuing"))
        rec = await kie.get_task("t1")
    assert rec.state is TaskState.QUEUING


PAYLOAD = CreateTaskPayload(model="nano-banana-2", input={"prompt": "a cat"})


@pytest.mark.parametrize(
    "failure",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        TimeoutError(),
        aiohttp.ClientPayloadError("truncated"),
    ],
    ids=["disconnect", "reset", "timeout", "truncated"],
)
async def test_create_task_never_retried_once_sent(kie: KieSession, failure: Exception) -> None:
    with aioresponses() as m:
        m.post(CREATE, exception=failure)
        m.post(CREATE, payload={"code": 200, "msg": "success", "data": {"taskId": "t2"}})
        with pytest.raises(KieSubmissionUncertainError) as info:
            await kie.create_task(PAYLOAD)
        assert calls(m, "POST", CREATE) == 1
    assert "not retried" in str(info.value)
    assert "dashboard" in str(info.value)


async def test_create_task_server_error_not_retried(kie: KieSession) -> None:
    with aioresponses() as m:
        m.post(CREATE, payload={"code": 500, "msg": "This field is required"}, repeat=True)
        with pytest.raises(KieServerError, match="This field is required"):
            await kie.create_task(PAYLOAD)
        assert calls(m, "POST", CREATE) == 1


async def test_create_task_retried_after_connect_failure(kie: KieSession) -> None:
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("kie.test", 80, False, True, None, None, None), OSError(111, "refused")
    )
    with aioresponses() as m:
        m.post(CREATE, exception=refused)
        m.post(CREATE, payload={"code": 200, "msg": "success", "data": {"taskId": "abc", "recordId": "abc"}})
        created = await kie.create_task(PAYLOAD)
        assert calls(m, "POST", CREATE) == 2
    assert created.task_id == "abc" and created.record_id == "abc"


async def test_create_task_retried_after_429_with_retry_after(kie: KieSession, sleeps: RecordingSleep) -> None:
    with aioresponses() as m:
        m.post(CREATE, status=429, payload={"code": 429, "msg": "Rate limit exceeded"}, headers={"Retry-After": "2"})
        m.post(CREATE, payload={"code": 200, "msg": "success", "data": {"taskId": "abc"}})
        created = await kie.create_task(PAYLOAD)
        assert calls(m, "POST", CREATE) == 2
    assert created.task_id == "abc"
    assert sleeps.delays and sleeps.delays[0] >= 2.0


async def test_create_task_sends_wire_body(kie: KieSession) -> None:
    with aioresponses() as m:
        m.post(CREATE, payload={"code": 200, "msg": "success", "data": {"taskId": "abc"}})
        await kie.create_task(model="nano-banana-2", input={"prompt": "x"}, callback_url="http://cb.test/hook")
        sent = next(iter(m.requests.values()))[0].kwargs
    assert sent["json"] == {"model": "nano-banana-2", "input": {"prompt": "x"}, "callBackUrl": "http://cb.test/hook"}
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert sent["headers"]["Content-Type"] == "application/json"


async def test_record_parsing_double_encoded_param_and_result(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=success_record("t9"))
        rec = await kie.get_task("t9")
    assert rec.is_terminal
    assert rec.output_urls == ["http://files.test/t9.png"]
    assert rec.request_param["input"] == {"prompt": "a cat"}
    assert rec.fail_code is None and rec.created_at is not None


async def test_unknown_task_is_typed_validation_error(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload={"code": 422, "msg": "recordInfo is null", "data": None})
        with pytest.raises(KieValidationError, match="recordInfo is null"):
            await kie.get_task("nope")


async def test_wait_for_task_polls_until_success_and_reports_progress(kie: KieSession) -> None:
    seen: list[TaskState] = []
    with aioresponses() as m:
        m.get(RECORD, payload=record("t1", "waiting"))
        m.get(RECORD, payload=record("t1", "generating"))
        m.get(RECORD, payload=success_record("t1"))
        rec = await kie.wait_for_task("t1", on_progress=lambda p: seen.append(p.state))
    assert rec.state is TaskState.SUCCESS
    assert seen == [TaskState.WAITING, TaskState.GENERATING, TaskState.SUCCESS]


async def test_wait_for_task_raises_task_failure(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=record("t1", "fail", failCode="501", failMsg="content policy"))
        with pytest.raises(KieTaskFailedError) as info:
            await kie.wait_for_task("t1")
    assert info.value.task_id == "t1" and info.value.fail_code == "501"
    assert "content policy" in str(info.value)


async def test_wait_for_task_failure_returned_when_asked(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=record("t1", "fail", failCode="501", failMsg="x"))
        rec = await kie.wait_for_task("t1", raise_on_failure=False)
    assert rec.state is TaskState.FAIL


async def test_wait_for_task_times_out(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=record("t1", "generating"), repeat=True)
        with pytest.raises(KieTimeoutError, match="still generating"):
            await kie.wait_for_task("t1", timeout=0.1)


async def test_wait_for_task_cancellation_stops_polling(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=record("t1", "generating"), repeat=True)
        waiter = asyncio.create_task(kie.wait_for_task("t1"))
        await asyncio.sleep(0.08)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        polled = calls(m, "GET", f"{BASE}/api/v1/jobs/recordInfo")
        await asyncio.sleep(0.08)
        assert calls(m, "GET", f"{BASE}/api/v1/jobs/recordInfo") == polled
    assert polled >= 2
    assert "t1" not in kie._wakeups


async def test_notify_wakes_callback_driven_waiter(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=record("t1", "generating"))
        m.get(RECORD, payload=success_record("t1"))
        waiter = asyncio.create_task(kie.wait_for_task("t1", callback_driven=True))
        for _ in range(100):
            if kie.notify_task_update("t1"):
                break
            await asyncio.sleep(0.005)
        # safety interval is 60 s: finishing quickly proves the notification woke the poller
        rec = await asyncio.wait_for(waiter, timeout=2)
    assert rec.state is TaskState.SUCCESS


async def test_download_writes_file_and_sends_no_key_to_file_host(kie: KieSession, tmp_path: Path) -> None:
    url = "http://files.test/out/image.png"
    with aioresponses() as m:
        m.get(url, body=b"\x89PNG" + b"x" * 1000, headers={"Content-Type": "image/png"})
        result = await kie.download(url, tmp_path / "sub" / "image.png")
        sent = m.requests[("GET", URL(url))][0].kwargs
    assert "Authorization" not in sent["headers"]
    assert (tmp_path / "sub" / "image.png").read_bytes().startswith(b"\x89PNG")
    assert result.bytes_written == 1004
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["image.png"]


async def test_download_404_leaves_nothing(kie: KieSession, tmp_path: Path) -> None:
    url = "http://files.test/gone.png"
    with aioresponses() as m:
        m.get(url, status=404, body="not found")
        with pytest.raises(KieNotFoundError):
            await kie.download(url, tmp_path / "gone.png")
    assert list(tmp_path.iterdir()) == []


async def test_upload_bytes_small_uses_base64_data_url(kie: KieSession) -> None:
    endpoint = f"{UPLOAD}/api/file-base64-upload"
    data = {"fileName": "a.png", "filePath": "kieai/1/a.png", "downloadUrl": "http://upload.test/kieai/1/a.png"}
    with aioresponses() as m:
        m.post(endpoint, payload={"success": True, "code": 200, "msg": "ok", "data": data})
        uploaded = await kie.upload_bytes(b"\x89PNGdata", "a.png")
        sent = m.requests[("POST", URL(endpoint))][0].kwargs
    assert uploaded.download_url == "http://upload.test/kieai/1/a.png"
    assert sent["json"]["base64Data"].startswith("data:image/png;base64,")
    assert sent["json"]["uploadPath"] == "kie-async/uploads"
    assert sent["json"]["fileName"].endswith("-a.png")
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"


async def test_upload_accepts_older_file_url_shape(kie: KieSession, tmp_path: Path) -> None:
    src = tmp_path / "in.jpg"
    src.write_bytes(b"\xff\xd8\xff" + b"0" * 100)
    endpoint = f"{UPLOAD}/api/file-stream-upload"
    with aioresponses() as m:
        m.post(endpoint, payload={"code": 200, "msg": "ok", "data": {"fileUrl": "http://upload.test/f/in.jpg"}})
        uploaded = await kie.upload_file(src)
    assert uploaded.download_url == "http://upload.test/f/in.jpg"
    assert kie.stats.bytes_uploaded == 103


async def test_upload_missing_file_is_input_error(kie: KieSession, tmp_path: Path) -> None:
    with pytest.raises(KieInputError, match="not a file"):
        await kie.upload_file(tmp_path / "missing.png")


async def test_live_host_needs_opt_in() -> None:
    with pytest.raises(KieConfigError, match="opt-in"):
        async with KieSession(KieSettings(api_key=SECRET)):
            pass
    async with KieSession(KieSettings(api_key=SECRET, allow_live=True)) as kie:
        assert "open" in repr(kie)


@pytest.mark.parametrize(
    ("base", "live"),
    [
        ("https://api.kie.ai", True),
        ("https://API.kie.ai:443", True),
        ("https://kie-proxy.example.com", True),
        ("http://127.0.0.1:8787", False),
        ("http://127.9.9.9:1", False),
        ("http://localhost:8787", False),
        ("http://[::1]:8787", False),
    ],
)
def test_anything_off_this_machine_counts_as_live(base: str, live: bool) -> None:
    settings = KieSettings(api_key=SECRET, base_url=base, upload_base_url=base)
    assert settings.is_live is live
    assert KieSettings(api_key=SECRET, base_url="http://127.0.0.1:1").is_live  # default upload host is real


async def test_missing_key_is_config_error() -> None:
    async with KieSession(make_settings(api_key=None)) as kie:
        with pytest.raises(KieConfigError, match="KIE_API_KEY"):
            await kie.get_credits()


async def test_secret_never_in_reprs_errors_or_logs(kie: KieSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with aioresponses() as m:
        m.get(CREDIT, payload={"code": 401, "msg": "You do not have access permissions"})
        m.post(CREATE, exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(KieAuthenticationError) as auth:
            await kie.get_credits()
        with pytest.raises(KieSubmissionUncertainError) as unsure:
            await kie.create_task(PAYLOAD)
    texts = [repr(kie), repr(kie.settings), str(kie.settings), kie.settings.model_dump_json(), caplog.text]
    texts += [str(auth.value), repr(auth.value), str(unsure.value), kie.stats.model_dump_json()]
    assert all(SECRET not in t for t in texts)
    assert "KIE_API_KEY" in str(auth.value)


async def test_rate_limit_error_class_for_http_429_without_envelope(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(CREDIT, status=429, body="slow down", repeat=True)
        with pytest.raises(KieRateLimitError):
            await kie.get_credits()
        assert calls(m, "GET", CREDIT) == 4
