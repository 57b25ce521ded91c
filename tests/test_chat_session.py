"""Chat through the session, against the emulator: four formats, streamed and whole, and the money rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kie_async import KieSession
from kie_async.catalogue.chat_specs import load_chat_registry
from kie_async.core.settings import RetrySettings
from kie_async.emulator import KieEmulator
from kie_async.errors import (
    KieBadRequestError,
    KieInputError,
    KieRateLimitError,
    KieRequestBlockedError,
    KieServerError,
    KieTimeoutError,
)
from kie_async.ledger.budget import CreditBudget
from kie_async.pipeline.chat import chat, chat_stream
from kie_async.wire.chat import ChatDelta, ChatMessage

MODELS = sorted(load_chat_registry().specs)
TOOLS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "openai-chat": (
        "gemini-2.5-pro",
        [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}],
    ),
    "openai-responses": (
        "gpt-codex",
        [
            {
                "type": "function",
                "name": "lookup",
                "description": "find",
                "parameters": {"type": "object", "properties": {}},
            }
        ],
    ),
    "anthropic-messages": (
        "claude-haiku-4.5",
        [
            {
                "name": "lookup",
                "description": "find",
                "input_schema": {"type": "object", "properties": {}, "required": []},
            }
        ],
    ),
    "gemini": (
        "gemini-3-flash-v1beta",
        [{"functionDeclarations": [{"name": "lookup", "description": "find", "parameters": {"type": "object"}}]}],
    ),
}


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    settings = emulator.settings(retry=RetrySettings(initial_backoff=0.01, max_backoff=0.02))
    async with KieSession(settings) as session:
        yield session


def chat_requests(emulator: KieEmulator) -> int:
    return sum(n for route, n in emulator.stats.requests.items() if route.startswith("chat:"))


@pytest.mark.parametrize("model", MODELS)
async def test_every_model_answers_whole_and_streamed_alike(model: str, kie: KieSession, emulator: KieEmulator) -> None:
    before = emulator.credits()
    whole = await chat(kie, model, "Name three rivers", system="Answer in one line")
    async with chat_stream(kie, model, "Name three rivers", system="Answer in one line") as stream:
        deltas = [d async for d in stream]
    streamed = stream.result
    spec = load_chat_registry().specs[model]
    assert whole.complete and streamed.complete and whole.text and whole.model == model
    assert f"[{spec.provider_model}]" in whole.text and "Name three rivers" in whole.text
    assert "".join(d.text for d in deltas if d.kind == "text") == streamed.text
    assert streamed.text.split(" (reply")[0] == whole.text.split(" (reply")[0]
    assert whole.credits_consumed and whole.credits_consumed == streamed.credits_consumed
    assert whole.usage.input_tokens and whole.usage.output_tokens and whole.request_id
    assert whole.finish_reason and streamed.finish_reason == whole.finish_reason
    assert streamed.streamed is spec.stream.supported and whole.streamed is False
    if spec.stream.supported:  # realistic chunking: many small pieces
        assert len(deltas) > 5 and streamed.events > len(deltas) // 2
    assert emulator.credits() == pytest.approx(before - 2 * whole.credits_consumed)


@pytest.mark.parametrize("wire_format", sorted(TOOLS))
async def test_tool_calls_in_each_format(wire_format: str, kie: KieSession) -> None:
    model, tools = TOOLS[wire_format]
    whole = await chat(kie, model, "weather in Oslo", options={"tools": tools})
    assert [c.name for c in whole.tool_calls] == ["lookup"] and whole.text == ""
    assert '"query": "weather in Oslo"' in whole.tool_calls[0].arguments
    stream = chat_stream(kie, model, "weather in Oslo", options={"tools": tools})
    deltas: list[ChatDelta] = [d async for d in stream]
    assert stream.result.tool_calls[0].name == "lookup"
    assert stream.result.tool_calls[0].arguments.replace(" ", "") == whole.tool_calls[0].arguments.replace(" ", "")
    assert {d.kind for d in deltas} == {"tool_call"} and deltas[0].tool_name == "lookup"


async def test_a_stream_cut_midway_returns_what_arrived_marked_incomplete(
    kie: KieSession, emulator: KieEmulator
) -> None:
    full = await chat(kie, "claude-opus-4.6", "tell me a long story please")
    emulator.faults.add("chat", "stream_cut", after_events=6)
    budget = CreditBudget(5)
    stream = chat_stream(kie, "claude-opus-4.6", "tell me a long story please", budget=budget, reserve_credits=1)
    deltas = [d async for d in stream]
    result = stream.result
    assert not result.complete and "broke off" in (result.incomplete_reason or "")
    assert deltas and result.text and full.text.startswith(result.text) and result.text != full.text
    assert result.credits_consumed is None and result.credits_charged == 1  # unknown: the reservation counts
    assert budget.snapshot().spent == 1 and budget.snapshot().reserved == 0
    assert chat_requests(emulator) == 2  # never retried


async def test_a_server_error_is_not_retried_and_releases_the_budget(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("chat", "server_error", status=500, http_status=True)
    budget = CreditBudget(5)
    with pytest.raises(KieServerError) as caught:
        await chat(kie, "gpt-5.4", "hello", budget=budget, reserve_credits=2)
    assert chat_requests(emulator) == 1 and caught.value.code == 500 and caught.value.body
    assert budget.snapshot().spent == 0 and budget.snapshot().reserved == 0


async def test_a_429_is_retried_because_nothing_was_done(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("chat", "rate_limit", count=1, retry_after=0)
    result = await chat(kie, "gemini-3-pro", "hello")
    assert result.complete and chat_requests(emulator) == 2
    emulator.faults.add("chat", "rate_limit", count=None, retry_after=0)
    with pytest.raises(KieRateLimitError):
        await chat(kie, "gemini-3-pro", "hello")


async def test_a_slow_first_byte_waits_or_times_out_unretried(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("chat", "latency", delay=0.2)
    stream = chat_stream(kie, "gpt-5.5", "hello", timeout=5)
    first = await anext(stream)
    assert first.kind == "text" and (await stream.final()).complete
    emulator.faults.add("chat", "latency", delay=3.0)
    budget = CreditBudget(5)
    with pytest.raises(KieTimeoutError):
        await chat(kie, "gpt-5.5", "hello", timeout=0.05, budget=budget, reserve_credits=1)
    assert chat_requests(emulator) == 2  # the timed-out call was not sent again
    assert budget.snapshot().spent == 1  # it may have reached the server: the reservation stays spent


async def test_budget_unknown_price_rule(kie: KieSession, emulator: KieEmulator) -> None:
    budget = CreditBudget(1)
    with pytest.raises(KieRequestBlockedError, match="no token price is known"):
        await chat(kie, "gpt-5.2", "hello", budget=budget)
    with pytest.raises(KieRequestBlockedError, match="would pass the budget"):
        await chat(kie, "gpt-5.2", "hello", budget=budget, reserve_credits=2)
    assert chat_requests(emulator) == 0
    result = await chat(kie, "gpt-5.2", "hello", budget=budget, allow_unknown_cost=True)
    assert result.credits_charged == result.credits_consumed and budget.snapshot().spent == result.credits_consumed


async def test_inputs_are_checked_before_anything_is_sent(kie: KieSession, emulator: KieEmulator) -> None:
    with pytest.raises(KieInputError, match="takes no option 'temperature'"):
        await chat(kie, "gpt-5.2", "hi", options={"temperature": 0.2})
    with pytest.raises(KieInputError, match="not one of"):
        await chat(kie, "gpt-5.2", "hi", options={"reasoning_effort": "medium"})
    with pytest.raises(KieInputError, match="unknown chat model"):
        await chat(kie, "gpt-9", "hi")
    stray = ChatMessage(role="tool", content="x", tool_call_id="call_1")  # tool turns: tests/test_chat_tool_turns.py
    with pytest.raises(KieInputError, match="answers no tool call of an earlier assistant turn"):
        await chat(kie, "claude-haiku-4.5", [ChatMessage.user("hi"), stray])
    assert chat_requests(emulator) == 0


async def test_the_emulator_judges_the_body_by_the_page(kie: KieSession, emulator: KieEmulator) -> None:
    with pytest.raises(KieBadRequestError, match="reasoning") as caught:
        await chat(kie, "gpt-codex", "hi", options={"reasoning": {"effort": "extreme"}})
    assert caught.value.http_status == 400 and "invalid_request_error" in (caught.value.body or "")


async def test_leaving_a_stream_early_keeps_what_arrived(kie: KieSession) -> None:
    async with chat_stream(kie, "gemini-2.5-flash", "count the stars tonight") as stream:
        async for _ in stream:
            break
    assert not stream.result.complete and "closed by the caller" in (stream.result.incomplete_reason or "")


async def test_a_conversation_with_a_codex_version_and_the_system_prompt(kie: KieSession) -> None:
    turns = [
        ChatMessage.system("be short"),
        ChatMessage.user("first"),
        ChatMessage.assistant("ok"),
        ChatMessage.user("second question"),
    ]
    result = await chat(kie, "gpt-codex", turns, provider_model="gpt-5.2-codex")
    assert result.provider_model == "gpt-5.2-codex" and "[gpt-5.2-codex]" in result.text
    assert "second question" in result.text
    with pytest.raises(KieInputError, match="sells"):
        await chat(kie, "gpt-codex", "hi", provider_model="gpt-4")


async def test_a_whole_answer_cut_short_is_incomplete_and_keeps_the_hold(
    kie: KieSession, emulator: KieEmulator
) -> None:
    emulator.faults.add("chat", "stream_cut")
    budget = CreditBudget(5)
    result = await chat(kie, "gpt-5.2", "hello", budget=budget, reserve_credits=0.5)
    assert not result.complete and result.text == "" and "broke off" in (result.incomplete_reason or "")
    assert budget.snapshot().spent == 0.5 and chat_requests(emulator) == 1


async def test_a_failed_call_is_over_and_never_sent_again(kie: KieSession, emulator: KieEmulator) -> None:
    emulator.faults.add("chat", "server_error", status=503, http_status=True)
    stream = chat_stream(kie, "claude-sonnet-4.6", "hello")
    with pytest.raises(KieServerError):
        await anext(stream)
    assert [d async for d in stream] == [] and chat_requests(emulator) == 1
    assert not stream.result.complete and "KieServerError" in (stream.result.incomplete_reason or "")


async def test_a_stream_cancelled_midway_settles_its_hold_on_close(kie: KieSession, emulator: KieEmulator) -> None:
    budget = CreditBudget(5)
    reading = asyncio.Event()

    async def consume() -> None:
        async with kie.chat_stream("gpt-5.4", "a long tale please", budget=budget, reserve_credits=1) as stream:
            async for _ in stream:
                reading.set()
                await asyncio.sleep(3600)  # stuck in the caller's own code

    task = asyncio.create_task(consume())
    await reading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.snapshot().reserved == 0 and budget.snapshot().spent == 1  # may have been spent: counted


async def test_a_with_options_view_chats_with_its_own_retries_and_timeout(
    kie: KieSession, emulator: KieEmulator
) -> None:
    before = emulator.credits()
    view = kie.with_options(max_retries=0)
    whole = await view.chat("claude-haiku-4.5", "hello from a view", system="Be brief")
    async with view.chat_stream("gpt-5.5", "hello again") as stream:
        deltas = [d async for d in stream]
    assert whole.complete and "hello from a view" in whole.text and whole.credits_consumed
    assert stream.result.complete and "".join(d.text for d in deltas) == stream.result.text
    assert emulator.credits() == pytest.approx(before - whole.credits_consumed - stream.result.credits_consumed)
    assert kie.stats.requests.get("chat") == view.stats.requests.get("chat") == 2  # one pool, one count

    emulator.faults.add("chat", "rate_limit", count=1, retry_after=0)
    with pytest.raises(KieRateLimitError):  # the view's max_retries=0: the 429 is not tried again
        await view.chat("gemini-3-pro", "hello")
    assert chat_requests(emulator) == 3
    emulator.faults.add("chat", "rate_limit", count=1, retry_after=0)
    assert (await kie.chat("gemini-3-pro", "hello")).complete  # the session itself still retries it
    assert chat_requests(emulator) == 5

    emulator.faults.add("chat", "latency", delay=3.0)
    budget = CreditBudget(5)
    with pytest.raises(KieTimeoutError):  # the view's timeout bounds the wait for the first byte
        await kie.with_options(timeout=0.1).chat("gpt-5.5", "hello", budget=budget, reserve_credits=1)
    assert chat_requests(emulator) == 6 and budget.snapshot().spent == 1
    assert kie.settings.request_timeout != 0.1
