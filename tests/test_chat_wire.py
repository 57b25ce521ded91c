"""The chat wire against hand-written server answers: SSE edge cases, error events, envelopes with evidence.

A small aiohttp app stands in for the service where the emulator is too well-behaved: it splits lines across
writes, uses CRLF, comments and multi-line data, reports an error mid-stream, or answers 200 with an envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from kie_async import CreditBudget, KieSession, KieSettings
from kie_async.core.errors import KieInsufficientCreditsError, KieServerError
from kie_async.pipeline.chat import chat, chat_stream
from tests.conftest import serve_app

PATH = "/gemini-3-pro/v1/chat/completions"
Writer = Callable[[web.StreamResponse], Coroutine[Any, Any, None]]


def chunk(text: str, finish: str | None = None) -> str:
    return json.dumps(
        {
            "id": "c1",
            "model": "gemini-3-pro",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
        }
    )


def _app(
    write: Writer, *, status: int = 200, content_type: str = "text/event-stream", headers: dict[str, str] | None = None
) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type, **(headers or {})})
        await response.prepare(request)
        await write(response)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(PATH, handler)
    return app


@contextlib.asynccontextmanager
async def _session(write: Writer, **kwargs: Any) -> AsyncIterator[KieSession]:
    async with serve_app(_app(write, **kwargs)) as url:
        settings = KieSettings(api_key=SecretStr("k"), base_url=url, upload_base_url=url)
        async with KieSession(settings) as kie:
            yield kie


async def test_sse_lines_split_across_writes_crlf_comments_and_multiline_data() -> None:
    async def write(response: web.StreamResponse) -> None:
        raw = (
            ": keep-alive\r\n\r\n"
            f"data: {chunk('Hel')}\r\n\r\n"
            f"event: message\ndata: {chunk('lo')}\n\n"
            # one event whose JSON is split over two data lines (joined with a newline: still valid JSON)
            'data: {"id": "c1", "model": "gemini-3-pro",\ndata:  "choices": [{"index": 0, "delta": '
            '{"content": " world"}, "finish_reason": "stop"}], "credits_consumed": 0.5}\n\n'
            "data: [DONE]"
        )  # the last event without its blank line
        for start in range(0, len(raw), 7):  # the service's chunking never follows line ends
            await response.write(raw[start : start + 7].encode())
            await asyncio.sleep(0)

    async with _session(write) as kie:
        stream = chat_stream(kie, "gemini-3-pro", "hi")
        texts = [d.text async for d in stream]
    assert texts == ["Hel", "lo", " world"]
    result = stream.result
    assert result.complete and result.text == "Hello world" and result.credits_consumed == 0.5
    assert result.finish_reason == "stop" and result.events == 4


async def test_an_error_event_mid_stream_keeps_what_arrived() -> None:
    async def write(response: web.StreamResponse) -> None:
        await response.write(f"data: {chunk('partial')}\n\n".encode())
        await response.write(b'data: {"error": {"message": "upstream overloaded", "type": "server_error"}}\n\n')

    async with _session(write) as kie, chat_stream(kie, "gemini-3-pro", "hi") as stream:
        [d async for d in stream]
    assert not stream.result.complete and stream.result.text == "partial"
    assert "upstream overloaded" in (stream.result.incomplete_reason or "")


async def test_a_stream_without_its_end_marker_is_incomplete() -> None:
    async def write(response: web.StreamResponse) -> None:
        await response.write(f"data: {chunk('only this')}\n\n".encode())

    async with _session(write) as kie:
        result = await chat_stream(kie, "gemini-3-pro", "hi").final()
    assert not result.complete and result.text == "only this" and "end marker" in (result.incomplete_reason or "")


async def test_an_envelope_error_in_a_200_carries_its_evidence() -> None:
    async def write(response: web.StreamResponse) -> None:
        await response.write(json.dumps({"code": 402, "msg": "credits insufficient", "data": None}).encode())

    async with _session(write, content_type="application/json", headers={"x-request-id": "rq-42"}) as kie:
        with pytest.raises(KieInsufficientCreditsError) as caught:
            await chat(kie, "gemini-3-pro", "hi")
    error = caught.value
    assert error.code == 402 and error.http_status == 200 and error.request_id == "rq-42"
    assert "credits insufficient" in (error.body or "") and "rq-42" in str(error)


async def test_an_unreadable_200_keeps_the_hold_as_spent() -> None:
    async def write(response: web.StreamResponse) -> None:
        await response.write(b"<html>gateway says hi</html>")

    budget = CreditBudget(5)
    async with _session(write, content_type="application/json") as kie:
        with pytest.raises(KieServerError, match="not a chat answer") as caught:
            await chat(kie, "gemini-3-pro", "hi", budget=budget, reserve_credits=1)
    assert caught.value.enveloped is False and "gateway says hi" in (caught.value.body or "")
    assert budget.snapshot().spent == 1 and budget.snapshot().reserved == 0


async def test_chat_uses_the_proxy_the_session_would(monkeypatch: pytest.MonkeyPatch) -> None:
    from kie_async.pipeline.chat import _proxy_for

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "uploads.example")
    settings = KieSettings(api_key=SecretStr("k"), base_url="https://api.kie.ai", allow_live=True)
    async with KieSession(settings) as kie:  # opening sends nothing
        assert _proxy_for(kie, "https://api.kie.ai/claude/v1/messages") == "http://proxy.example:3128"
        assert _proxy_for(kie, "https://uploads.example/x") is None
        assert _proxy_for(kie, "http://127.0.0.1:9/x") is None
    async with KieSession(settings.model_copy(update={"trust_env": False})) as kie:
        assert _proxy_for(kie, "https://api.kie.ai/claude/v1/messages") is None
