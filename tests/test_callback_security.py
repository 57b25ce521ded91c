"""Callbacks from a hostile network: re-spelled timestamps, rewritten bodies, deep JSON, correlation tokens.

Only the task id and the timestamp are signed. A replay must be recognised whatever the spelling of its
timestamp, a rewritten body must never be passed on as fact, and a malformed body costs a 400, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieCallbackBodyError, KieCallbackVerificationError
from kie_async.interfaces.callback_receiver import CallbackReceiver
from kie_async.session import KieSession
from kie_async.wire.api_models import CallbackEvent, TaskState
from kie_async.wire.callbacks import (
    KIE_REQUEST_PARAM,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackReplayGuard,
    parse_callback_timestamp,
    request_token_from_url,
    sign_callback,
    verify_callback,
)

KEY = "whk-security"
TASK = "ee9c2715375b7837f8bb51d641ff5863"
NB2 = {"prompt": "a red fox"}
SLOW_POLL = PollSettings(callback_safety_interval=60.0)


def signed(task_id: str, ts: int, key: str = KEY) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign_callback(task_id, ts, key)}


def body_for(task_id: str, **data: Any) -> bytes:
    return json.dumps({"code": 200, "msg": "success", "data": {"task_id": task_id, **data}}).encode()


# -- the timestamp has one spelling ---------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["0", "1795000000", 1795000000])
def test_canonical_timestamps_parse(good: str | int) -> None:
    assert parse_callback_timestamp(good) == int(good)


@pytest.mark.parametrize(
    "bad",
    [
        "+1795000000",
        "01795000000",
        " 1795000000",
        "1795000000 ",
        "1_795_000_000",
        "\u0661\u0667\u0669\u0665",  # Arabic-Indic digits: int() reads them
        "１７９５００００００",  # fullwidth digits: int() reads them too
        "-5",
        "1e9",
        "0x1f",
        "1" * 13,
        "",
        None,
        -1,
        True,
    ],
)
def test_other_timestamp_spellings_are_refused(bad: Any) -> None:
    with pytest.raises(KieCallbackVerificationError):
        parse_callback_timestamp(bad)


def test_verify_callback_refuses_a_respelled_timestamp_even_with_a_valid_signature() -> None:
    now = time.time()
    ts = int(now)
    good = signed(TASK, ts)
    body = body_for(TASK)
    assert verify_callback(good, body, KEY, now=now).timestamp == ts
    for spelling in (f"+{ts}", f"0{ts}", f" {ts}", f"{ts} ", f"{str(ts)[:1]}_{str(ts)[1:]}"):
        with pytest.raises(KieCallbackVerificationError, match="plain Unix seconds"):
            verify_callback({**good, TIMESTAMP_HEADER: spelling}, body, KEY, now=now)


def test_verify_callback_headers_are_case_insensitive_and_not_ambiguous() -> None:
    now = time.time()
    ts = int(now)
    headers = {"x-webhook-timestamp": str(ts), "X-WEBHOOK-SIGNATURE": sign_callback(TASK, ts, KEY)}
    event = verify_callback(headers, body_for(TASK), KEY, now=now)
    assert event == CallbackEvent(task_id=TASK, timestamp=ts, verified=True, unverified_body=json.loads(body_for(TASK)))
    twice = CIMultiDict(headers)
    twice.add(TIMESTAMP_HEADER, str(ts + 1))
    with pytest.raises(KieCallbackVerificationError, match="more than once"):
        verify_callback(twice, body_for(TASK), KEY, now=now)


def test_replay_guard_keys_on_task_and_integer_timestamp() -> None:
    guard = CallbackReplayGuard(max_age_seconds=300)
    event = CallbackEvent(task_id=TASK, timestamp=1795000000, verified=True)
    assert guard.first_time(event, now=1795000000)
    assert not guard.first_time(event.model_copy(update={"unverified_body": {"x": 1}}), now=1795000001)
    assert guard.first_time(event.model_copy(update={"timestamp": 1795000001}), now=1795000001)
    assert guard.first_time(event.model_copy(update={"task_id": "other"}), now=1795000001)
    assert not guard.first_time(event, now=1795000000 + 600)  # still inside 2 × max-age: remembered
    assert guard.first_time(event, now=1795000000 + 700)  # forgotten (freshness refuses it anyway)
    assert len(guard) == 1


# -- bodies -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[" * 200_000, "deeper"),
        (b'{"taskId": "t", "data": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}", "deeper"),
        (b"not json", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"data": {"state": "success"}}', "no taskId"),
        (b'{"taskId": 5}', "not a task id"),
        (b'{"taskId": "a", "data": {"task_id": "b"}}', "more than one"),
        (b" " * (1024 * 1024 + 1), "bytes"),
    ],
)
def test_bad_bodies_are_body_errors(body: bytes, needle: str) -> None:
    started = time.perf_counter()
    with pytest.raises(KieCallbackBodyError, match=needle):
        verify_callback({}, body, None)
    assert time.perf_counter() - started < 1.0


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    body = json.dumps({"taskId": TASK, "data": {"prompt": "[[[[{{{{" * 100 + '\\"]]'}}).encode()
    assert verify_callback({}, body, None).task_id == TASK


def test_request_token_comes_from_the_url_query() -> None:
    assert request_token_from_url(f"/kie/callback?{KIE_REQUEST_PARAM}=req-42") == "req-42"
    assert request_token_from_url(f"https://h/x?a=1&{KIE_REQUEST_PARAM}=r.1_~Z") == "r.1_~Z"
    for url in (
        None,
        "/kie/callback",
        f"/cb?{KIE_REQUEST_PARAM}=",
        f"/cb?{KIE_REQUEST_PARAM}=a&{KIE_REQUEST_PARAM}=b",
        f"/cb?{KIE_REQUEST_PARAM}=has%20space",
        f"/cb?{KIE_REQUEST_PARAM}=" + "x" * 129,
    ):
        assert request_token_from_url(url) is None, url


# -- the aiohttp receiver, end to end with the emulator's signed delivery ------------------------------------


@dataclass
class Hook:
    """The receiver behind a route that also keeps a copy of each request, as a captured callback."""

    receiver: CallbackReceiver
    url: str
    events: list[CallbackEvent] = field(default_factory=list)
    captured: list[tuple[dict[str, str], bytes, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.3, webhook_hmac_key=KEY)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=SLOW_POLL)) as session:
        yield session


@pytest.fixture
async def hook(kie: KieSession) -> AsyncIterator[Hook]:
    events: list[CallbackEvent] = []
    receiver = CallbackReceiver(kie, hmac_key=KEY, on_event=events.append)
    state = Hook(receiver=receiver, url="", events=events)

    async def route(request: web.Request) -> web.StreamResponse:
        if (request.content_length or 0) <= 64 * 1024:  # keep small ones; the receiver judges big ones itself
            state.captured.append((dict(request.headers), await request.read(), str(request.rel_url)))
        response = await receiver.handle(request)
        state.arrived.set()
        return response

    app = web.Application()
    app.router.add_post("/kie/callback", route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}/kie/callback"
    yield state
    await runner.cleanup()


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(url, data=body, headers={"Content-Type": "application/json", **headers}) as response,
    ):
        return response.status


async def test_replays_of_a_genuine_callback_are_refused_in_every_spelling(kie: KieSession, hook: Hook) -> None:
    created = await kie.create_task(model="nano-banana-2", input=NB2, callback_url=hook.url)
    record = await kie.wait_for_task(created.task_id, callback_driven=True, timeout=10)
    assert record.state is TaskState.SUCCESS  # woken by the callback long before the 60 s safety poll
    await asyncio.wait_for(hook.arrived.wait(), 5)
    captured_headers, body, _ = hook.captured[0]
    headers = {name: captured_headers[name] for name in (TIMESTAMP_HEADER, SIGNATURE_HEADER)}
    ts = headers[TIMESTAMP_HEADER]
    assert [e.task_id for e in hook.events] == [created.task_id]

    forged_body = json.loads(body)
    forged_body["data"].update(state="fail", resultJson=json.dumps({"resultUrls": ["https://evil.test/x.png"]}))
    replays = {
        "same": (ts, body, 409),
        "rewritten body": (ts, json.dumps(forged_body).encode(), 409),
        "plus sign": (f"+{ts}", body, 401),
        "leading zero": (f"0{ts}", body, 401),
        "underscore": (f"{ts[:1]}_{ts[1:]}", body, 401),
        "leading space": (f" {ts}", body, 409),  # HTTP strips the space: it arrives as the same timestamp
    }
    statuses = {}
    for name, (stamp, payload, _) in replays.items():
        statuses[name] = await post(hook.url, payload, {**headers, TIMESTAMP_HEADER: stamp})
    assert statuses == {name: expected for name, (_, _, expected) in replays.items()}
    assert len(hook.events) == 1  # on_event ran once, for the genuine delivery only
    assert hook.receiver.stats.accepted == 1 and hook.receiver.stats.replayed == 3


async def test_rewritten_body_on_a_valid_signature_does_not_become_the_state(
    kie: KieSession, hook: Hook, emulator: KieEmulator
) -> None:
    created = await kie.create_task(model="nano-banana-2", input=NB2, callback_url=hook.url)
    waiter = asyncio.create_task(kie.wait_for_task(created.task_id, callback_driven=True, timeout=10))
    await asyncio.sleep(0.05)
    # A signature captured for this task (say from an earlier delivery), sent with a body claiming failure.
    lie = body_for(
        created.task_id, state="fail", failMsg="nope", resultJson=json.dumps({"resultUrls": ["https://evil.test/x"]})
    )
    ts = int(time.time()) - 2
    assert await post(hook.url, lie, signed(created.task_id, ts)) == 200
    record = await asyncio.wait_for(waiter, 10)
    # The waiter re-read recordInfo: the task succeeded with the emulator's own output, not the claimed failure.
    assert record.state is TaskState.SUCCESS
    assert record.output_urls and all(u.startswith(emulator.base_url) for u in record.output_urls)
    first = hook.events[0]
    assert first.verified and first.timestamp == ts and first.task_id == created.task_id
    assert not hasattr(first, "state") and not hasattr(first, "record")
    assert first.unverified_body["data"]["state"] == "fail"  # kept, but only under that name


async def test_deeply_nested_body_gets_400_quickly(kie: KieSession, hook: Hook) -> None:
    ts = int(time.time())
    started = time.perf_counter()
    status = await post(hook.url, b"[" * 200_000, signed(TASK, ts))
    assert status == 400 and time.perf_counter() - started < 2
    assert await post(hook.url, b"{" * 200_000, {}) == 401  # unsigned: refused on headers, body never parsed
    assert await post(hook.url, b"x" * (1024 * 1024 + 10), signed(TASK, ts)) == 400
    assert hook.events == [] and hook.receiver.stats.rejected == 3


async def test_correlation_token_arrives_on_the_event(kie: KieSession, hook: Hook) -> None:
    url = f"{hook.url}?{KIE_REQUEST_PARAM}=req-0042"
    created = await kie.create_task(model="nano-banana-2", input=NB2, callback_url=url)
    await kie.wait_for_task(created.task_id, callback_driven=True, timeout=10)
    await asyncio.wait_for(hook.arrived.wait(), 5)
    event = hook.events[0]
    assert event.task_id == created.task_id and event.request_token == "req-0042" and event.verified
    # The URL is not signed; the task's own record confirms which callBackUrl (and token) it was created with.
    record = await kie.get_task(created.task_id)
    assert request_token_from_url(record.request_param["callBackUrl"]) == event.request_token


async def test_unsigned_receiver_still_never_trusts_the_body(kie: KieSession) -> None:
    events: list[CallbackEvent] = []
    receiver = CallbackReceiver(kie, on_event=events.append)
    app = web.Application()
    app.router.add_post("/cb", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        url = f"http://{host}:{port}/cb?{KIE_REQUEST_PARAM}=abc"
        assert await post(url, body_for(TASK, state="success"), {}) == 200
        assert await post(url, b"[" * 200_000, {}) == 400
    finally:
        await runner.cleanup()
    assert len(events) == 1
    assert events[0].verified is False and events[0].timestamp is None and events[0].request_token == "abc"
