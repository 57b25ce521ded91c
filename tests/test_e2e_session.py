"""The SDK against the emulator on ephemeral ports: happy path, every fault kind, cancellation, atomic
downloads, no double spend, rate limiting, callbacks, and the key never printed."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pyvips
from aiohttp import web

from kie_async import (
    KieAuthenticationError,
    KieConnectionError,
    KieInsufficientCreditsError,
    KieSession,
    KieSettings,
    KieSubmissionUncertainError,
    KieTaskFailedError,
    KieTimeoutError,
    PollSettings,
    RetrySettings,
)
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieServerError
from kie_async.interfaces.callback_receiver import add_callback_route
from kie_async.types import TaskState
from kie_async.wire.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_callback
from tests.waiting import until

SECRET = "sk-e2e-SECRET-5c1a2b"
FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=20.0, callback_safety_interval=30.0)
FAST_RETRY = RetrySettings(max_retries=3, initial_backoff=0.02, max_backoff=0.1)
NB2 = {"prompt": "a lighthouse", "aspect_ratio": "1:1", "resolution": "1K", "output_format": "png"}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.2, api_key=SECRET)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY)) as session:
        yield session


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


async def test_happy_path_credits_submit_wait_download(kie: KieSession, emulator: KieEmulator, tmp_path: Path) -> None:
    before = await kie.get_credits()
    created = await kie.create_task(model="nano-banana-2", input=NB2)
    states: list[TaskState] = []
    record = await kie.wait_for_task(created.task_id, on_progress=lambda p: states.append(p.state))
    assert record.state is TaskState.SUCCESS and states[-1] is TaskState.SUCCESS
    assert record.request_param["input"]["prompt"] == "a lighthouse"
    result = await kie.download(record.output_urls[0], tmp_path / "out.png")
    image = await asyncio.to_thread(pyvips.Image.new_from_file, result.destination_path)
    assert (image.width, image.height) == (256, 256)
    after = await kie.get_credits()
    assert (
        before.credits - after.credits == pytest.approx(emulator.stats.credits_spent) and after.credits < before.credits
    )
    assert files_in(tmp_path) == ["out.png"]


async def test_download_via_download_url(kie: KieSession, tmp_path: Path) -> None:
    created = await kie.create_task(model="nano-banana-2", input=NB2)
    record = await kie.wait_for_task(created.task_id)
    link = await kie.get_download_url(record.output_urls[0])
    assert link != record.output_urls[0]
    result = await kie.download(record.output_urls[0], tmp_path / "x.png", via_download_url=True)
    assert result.bytes_written == (tmp_path / "x.png").stat().st_size > 0


async def test_video_model_downloads_mp4(kie: KieSession, tmp_path: Path) -> None:
    created = await kie.create_task(
        model="kling-2.6/text-to-video",
        input={"prompt": "waves", "sound": False, "aspect_ratio": "16:9", "duration": "5"},
    )
    record = await kie.wait_for_task(created.task_id)
    await kie.download(record.output_urls[0], tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize(
    ("endpoint", "kind", "params"),
    [
        ("recordInfo", "rate_limit", {"retry_after": 1}),
        ("recordInfo", "server_error", {"status": 503}),
        ("recordInfo", "server_error", {"status": 500, "http_status": True}),
        ("recordInfo", "reset", {}),
        ("recordInfo", "truncated_body", {}),
        ("recordInfo", "latency", {"delay": 1.0}),
    ],
)
async def test_status_reads_survive_each_fault(
    emulator: KieEmulator, endpoint: str, kind: str, params: dict[str, Any]
) -> None:
    settings = emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, request_timeout=0.5)
    async with KieSession(settings) as kie:
        created = await kie.create_task(model="nano-banana-2", input=NB2)
        emulator.faults.add(endpoint, kind, count=1, **params)
        record = await kie.wait_for_task(created.task_id)
        assert record.state is TaskState.SUCCESS
        # aiohttp itself re-sends an idempotent GET once when a reused keep-alive connection drops,
        # so a single reset may never reach the SDK's retry loop; every other fault must.
        assert kie.stats.retries == (kie.stats.retries if kind == "reset" else 1)
    assert sum(emulator.stats.faults_fired.values()) == 1
    if kind == "rate_limit":
        assert emulator.stats.rate_limited == 1 and kie.stats.rate_limited == 1


async def test_credit_read_retries_on_truncated_body(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("credit", "truncated_body", count=2)
    balance = await kie.get_credits()
    assert balance.credits == emulator.credits()
    assert kie.stats.retries == 2


async def test_create_task_reset_after_send_is_not_retried(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("createTask", "reset_after", count=1)
    with pytest.raises(KieSubmissionUncertainError):
        await kie.create_task(model="nano-banana-2", input=NB2)
    # The server did create (and charge) the task; the SDK did not create a second one.
    assert emulator.stats.tasks_created == 1
    assert emulator.stats.requests.get("createTask", 0) == 1


async def test_create_task_reset_before_is_still_not_retried(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("createTask", "reset_before", count=1)
    with pytest.raises(KieSubmissionUncertainError):
        await kie.create_task(model="nano-banana-2", input=NB2)
    assert emulator.stats.tasks_created == 0  # from the client's side the two resets look the same


async def test_create_task_timeout_is_not_retried(emulator: KieEmulator) -> None:
    emulator.faults.add("createTask", "latency", count=1, delay=1.0)
    async with KieSession(emulator.settings(retry=FAST_RETRY, request_timeout=0.3)) as kie:
        with pytest.raises(KieSubmissionUncertainError):
            await kie.create_task(model="nano-banana-2", input=NB2)
    await until(lambda: emulator.stats.requests.get("createTask", 0) >= 1, "the createTask to arrive")
    await asyncio.sleep(0.9)  # a re-send would arrive in this time (its absence cannot be awaited)
    assert emulator.stats.requests.get("createTask", 0) == 1  # sent once, never re-sent


async def test_create_task_429_is_retried_once_and_creates_one_task(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("createTask", "rate_limit", count=1, retry_after=0)
    created = await kie.create_task(model="nano-banana-2", input=NB2)
    assert emulator.stats.tasks_created == 1 and emulator.task(created.task_id) is not None
    assert kie.stats.retries == 1


async def test_create_task_server_error_is_not_retried(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("createTask", "server_error", count=1, status=500)
    with pytest.raises(KieServerError):
        await kie.create_task(model="nano-banana-2", input=NB2)
    assert emulator.stats.requests.get("createTask", 0) == 1 and emulator.stats.tasks_created == 0


async def test_connect_failure_is_retried_then_reported_as_not_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = KieSettings(
        api_key=SECRET,
        base_url=f"http://127.0.0.1:{port}",
        upload_base_url=f"http://127.0.0.1:{port}",
        retry=FAST_RETRY,
    )
    async with KieSession(settings) as kie:
        with pytest.raises(KieConnectionError) as info:
            await kie.create_task(model="nano-banana-2", input=NB2)
        assert not isinstance(info.value, KieSubmissionUncertainError)
        assert info.value.request_sent is False
        assert kie.stats.retries == 3


async def test_task_failure_is_typed(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.fail_next(1, code="400", msg="prompt rejected by safety filter")
    created = await kie.create_task(model="nano-banana-2", input=NB2)
    with pytest.raises(KieTaskFailedError) as info:
        await kie.wait_for_task(created.task_id)
    assert info.value.fail_code == "400" and "safety filter" in str(info.value)


async def test_insufficient_credits_and_bad_key(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.set_credits(1)
    with pytest.raises(KieInsufficientCreditsError, match="top up"):
        await kie.create_task(model="nano-banana-2", input=NB2)
    async with KieSession(emulator.settings(api_key="wrong-key", retry=FAST_RETRY)) as bad:
        with pytest.raises(KieAuthenticationError):
            await bad.get_credits()


async def test_download_retries_truncated_then_completes(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    record = await kie.wait_for_task((await kie.create_task(model="nano-banana-2", input=NB2)).task_id)
    emulator.faults.add("files", "truncated_body", count=2)
    result = await kie.download(record.output_urls[0], tmp_path / "img.png")
    assert kie.stats.retries == 2
    assert (tmp_path / "img.png").stat().st_size == result.bytes_written
    await asyncio.to_thread(pyvips.Image.new_from_file, str(tmp_path / "img.png"))
    assert files_in(tmp_path) == ["img.png"]


async def test_download_that_always_breaks_leaves_nothing(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    record = await kie.wait_for_task((await kie.create_task(model="nano-banana-2", input=NB2)).task_id)
    emulator.faults.add("files", "truncated_body", count=None)
    with pytest.raises(KieConnectionError):
        await kie.download(record.output_urls[0], tmp_path / "img.png")
    assert files_in(tmp_path) == []


async def test_cancelled_download_leaves_no_partial_file(emulator_config: EmulatorConfig, tmp_path: Path) -> None:
    emulator_config.output_bytes = 400_000
    async with KieEmulator(emulator_config) as emulator, KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        record = await kie.wait_for_task((await kie.create_task(model="nano-banana-2", input=NB2)).task_id)
        emulator.faults.add("files", "slow_body", count=1, chunk_size=4096, chunk_delay=0.02)
        job = asyncio.create_task(kie.download(record.output_urls[0], tmp_path / "big.png"))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if any(p.name.endswith(".part") for p in tmp_path.iterdir()):
                break
        assert any(p.name.endswith(".part") for p in tmp_path.iterdir()), "download never started writing"
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await asyncio.sleep(0.05)
    assert files_in(tmp_path) == []


async def test_slow_body_download_completes(kie: KieSession, emulator: KieEmulator, tmp_path: Path) -> None:
    record = await kie.wait_for_task((await kie.create_task(model="nano-banana-2", input=NB2)).task_id)
    emulator.faults.add("files", "slow_body", count=1, chunk_size=512, chunk_delay=0.005)
    result = await kie.download(record.output_urls[0], tmp_path / "slow.png")
    assert result.bytes_written > 0 and kie.stats.retries == 0


async def test_cancelling_wait_stops_polling(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.config.generation_seconds = 30
    created = await kie.create_task(model="nano-banana-2", input=NB2)
    waiter = asyncio.create_task(kie.wait_for_task(created.task_id))
    await until(lambda: emulator.stats.status_requests.get(created.task_id, 0) >= 2, "two polls")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    polled = emulator.stats.status_requests[created.task_id]
    await asyncio.sleep(0.3)  # a poll after the cancel would land in this time (its absence cannot be awaited)
    assert polled >= 2 and emulator.stats.status_requests[created.task_id] == polled


async def test_wait_timeout(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.config.generation_seconds = 30
    created = await kie.create_task(model="nano-banana-2", input=NB2)
    with pytest.raises(KieTimeoutError, match="keeps running"):
        await kie.wait_for_task(created.task_id, timeout=0.3)


async def test_client_rate_limiter_prevents_429s(emulator_config: EmulatorConfig) -> None:
    emulator_config.create_rate_limit = 5
    emulator_config.create_rate_window = 0.5
    async with KieEmulator(emulator_config) as emulator:
        async with KieSession(emulator.settings()) as kie:
            created = await asyncio.gather(*(kie.create_task(model="nano-banana-2", input=NB2) for _ in range(12)))
        assert len({c.task_id for c in created}) == 12
        assert emulator.stats.rate_limited == 0
        # without the client limiter the same burst is refused by the server (and then retried)
        loose = emulator.settings(retry=RetrySettings(max_retries=8, initial_backoff=0.05, max_backoff=0.3))
        loose = loose.model_copy(update={"rate_limit": loose.rate_limit.model_copy(update={"create_per_window": 1000})})
        async with KieSession(loose) as kie:
            await asyncio.gather(*(kie.create_task(model="nano-banana-2", input=NB2) for _ in range(12)))
        assert emulator.stats.rate_limited > 0
        assert emulator.stats.tasks_created == 24


async def test_uploads_all_three_ways(kie: KieSession, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    await asyncio.to_thread(pyvips.Image.black(32, 16).write_to_file, str(src))
    from_file = await kie.upload_file(src)
    from_bytes = await kie.upload_bytes(src.read_bytes(), "again.png")
    from_url = await kie.upload_url(from_file.download_url)
    for n, uploaded in enumerate((from_file, from_bytes, from_url)):
        await kie.download(uploaded.download_url, tmp_path / "back" / f"{n}.png")
    back = sorted((tmp_path / "back").iterdir())
    assert len(back) == 3 and all(p.read_bytes() == src.read_bytes() for p in back)


@pytest.fixture
def signed_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.3, api_key=SECRET, webhook_hmac_key="whk-test")


async def test_callback_wakes_waiter_and_rejects_forgeries(signed_config: EmulatorConfig) -> None:
    async with KieEmulator(signed_config) as emulator, KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        app = web.Application()
        events: list[str] = []
        receiver = add_callback_route(app, kie, hmac_key="whk-test", on_event=lambda e: events.append(e.task_id))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        hook = f"http://127.0.0.1:{port}/kie/callback"
        try:
            created = await kie.create_task(model="nano-banana-2", input=NB2, callback_url=hook)
            started = time.monotonic()
            record = await kie.wait_for_task(created.task_id, callback_driven=True)
            # the safety-net poll interval is 30 s: finishing fast means the callback woke the waiter
            assert time.monotonic() - started < 10
            assert record.state is TaskState.SUCCESS and events == [created.task_id]
            assert receiver.stats.accepted == 1

            async with aiohttp.ClientSession() as client:
                ts = int(time.time()) + 1  # not the second the genuine callback was signed in
                body = {"code": 200, "msg": "ok", "data": {"taskId": created.task_id, "state": "success"}}
                good = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign_callback(created.task_id, ts, "whk-test")}
                forged = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign_callback(created.task_id, ts, "guess")}
                stale_ts = ts - 3600
                stale = {
                    TIMESTAMP_HEADER: str(stale_ts),
                    SIGNATURE_HEADER: sign_callback(created.task_id, stale_ts, "whk-test"),
                }
                statuses = []
                for headers in (good, good, forged, stale, {}):
                    async with client.post(hook, json=body, headers=headers) as resp:
                        statuses.append(resp.status)
            assert statuses == [200, 409, 401, 401, 401]
            assert receiver.stats.replayed == 1 and receiver.stats.accepted == 2
        finally:
            await runner.cleanup()


async def test_secret_never_in_logs_reprs_or_files(
    emulator: KieEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.faults.add("recordInfo", "server_error", count=1)
    emulator.faults.add("createTask", "reset_after", count=1)
    async with KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY)) as kie:
        with pytest.raises(KieSubmissionUncertainError) as unsure:
            await kie.create_task(model="nano-banana-2", input=NB2)
        record = await kie.wait_for_task((await kie.create_task(model="nano-banana-2", input=NB2)).task_id)
        await kie.download(record.output_urls[0], tmp_path / "o.png")
        texts = [
            caplog.text,
            repr(kie),
            repr(kie.settings),
            str(unsure.value),
            repr(emulator),
            kie.stats.model_dump_json(),
        ]
    assert all(SECRET not in text for text in texts)
    assert all(SECRET.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
