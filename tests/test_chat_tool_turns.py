"""Tool-call turns sent back: the assistant's calls and the tool results go into the next call, typed, in each
format that has tools, and the emulator judges them by the page's schema and the provider's own rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from kie_async import KieSession
from kie_async.catalogue.chat_specs import load_chat_registry
from kie_async.emulator import KieEmulator
from kie_async.errors import KieInputError
from kie_async.pipeline.chat import chat_wire
from kie_async.wire.chat import ChatMessage, ChatResult, ToolCall
from kie_async.wire.chat.codecs import codec_for
from tests.test_chat_session import TOOLS

WEATHER = {"temp_c": 4, "sky": "grey"}


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings()) as session:
        yield session


def chat_requests(emulator: KieEmulator) -> int:
    return sum(n for route, n in emulator.stats.requests.items() if route.startswith("chat:"))


async def _first_call(kie: KieSession, model: str, tools: list[dict[str, Any]]) -> ChatResult:
    first = await kie.chat(model, "weather in Oslo", options={"tools": tools})
    assert first.tool_calls and first.tool_calls[0].name == "lookup" and first.tool_calls[0].id
    return first


@pytest.mark.parametrize("wire_format", sorted(TOOLS))
async def test_the_calls_and_their_results_go_back_in_the_next_call(
    wire_format: str, kie: KieSession, emulator: KieEmulator
) -> None:
    model, tools = TOOLS[wire_format]
    first = await _first_call(kie, model, tools)
    turns = [ChatMessage.user("weather in Oslo"), first.message(), ChatMessage.tool(first.tool_calls[0], WEATHER)]
    second = await kie.chat(model, turns, options={"tools": tools})
    assert second.complete and second.tool_calls == [] and second.wire_format == wire_format
    assert second.text.startswith("[") and 'The tool returned: {"temp_c": 4, "sky": "grey"}' in second.text
    async with kie.chat_stream(model, turns, options={"tools": tools}) as stream:
        pieces = [d.text async for d in stream if d.kind == "text"]
    assert stream.result.complete and "".join(pieces) == stream.result.text
    assert stream.result.text.split(" (reply")[0] == second.text.split(" (reply")[0]
    assert chat_requests(emulator) == 3  # every call accepted the first time


@pytest.mark.parametrize("wire_format", sorted(TOOLS))
async def test_a_streamed_call_goes_back_like_a_whole_one(wire_format: str, kie: KieSession) -> None:
    model, tools = TOOLS[wire_format]
    async with kie.chat_stream(model, "weather in Oslo", options={"tools": tools}) as stream:
        async for _ in stream:
            pass
    call = stream.result.tool_calls[0]
    assert call.id and call.name == "lookup" and json.loads(call.arguments) == {"query": "weather in Oslo"}
    answer = await kie.chat(
        model,
        [ChatMessage.user("weather in Oslo"), stream.result.message(), ChatMessage.tool(call, "it is sunny")],
        options={"tools": tools},
    )
    assert "The tool returned: " in answer.text and "it is sunny" in answer.text  # Gemini wraps text: {"result": ...}


def _body(model: str, turns: list[ChatMessage]) -> dict[str, Any]:
    spec = load_chat_registry().get(model)
    return codec_for(chat_wire(spec)).body(turns, {}, None)


CALL = ToolCall(id="call_1", name="lookup", arguments='{"query": "Oslo"}')
OTHER = ToolCall(id="call_2", name="lookup", arguments='{"query": "Bergen"}')
TURNS = [
    ChatMessage.user("weather in Oslo and Bergen"),
    ChatMessage.assistant("Looking both up.", [CALL, OTHER]),
    ChatMessage.tool(CALL, "4 C"),
    ChatMessage.tool(OTHER, {"temp_c": 7}),
]


def test_each_format_carries_the_turns_in_its_own_shape() -> None:
    chat = _body("gemini-2.5-pro", TURNS)["messages"]
    assert chat[1]["tool_calls"][1] == {
        "id": "call_2",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"query": "Bergen"}'},
    }
    assert chat[2] == {"role": "tool", "content": [{"type": "text", "text": "4 C"}], "tool_call_id": "call_1"}
    claude = _body("claude-haiku-4.5", TURNS)["messages"]
    assert [t["role"] for t in claude] == ["user", "assistant", "user"]  # both results in one user turn
    assert claude[1]["content"][1] == {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"query": "Oslo"}}
    assert claude[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "4 C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": '{"temp_c": 7}'},
    ]
    gemini = _body("gemini-3-flash-v1beta", TURNS)["contents"]
    assert [t["role"] for t in gemini] == ["user", "model", "user"]
    assert gemini[1]["parts"][1] == {"functionCall": {"name": "lookup", "args": {"query": "Oslo"}, "id": "call_1"}}
    assert gemini[2]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"result": "4 C"}, "id": "call_1"}},
        {"functionResponse": {"name": "lookup", "response": {"temp_c": 7}, "id": "call_2"}},
    ]
    responses = _body("gpt-codex", TURNS)["input"]
    assert [(i["role"], i.get("call_id")) for i in responses] == [
        ("user", None),
        ("assistant", None),
        ("assistant", "call_1"),
        ("assistant", "call_2"),
        ("tool", "call_1"),
        ("tool", "call_2"),
    ]
    assert json.loads(responses[2]["content"][0]["text"])["name"] == "lookup"


async def test_several_calls_answered_at_once_in_each_format(kie: KieSession, emulator: KieEmulator) -> None:
    for model, tools in TOOLS.values():
        answer = await kie.chat(model, TURNS, options={"tools": tools})
        assert "The tool returned:" in answer.text and "4 C" in answer.text and '"temp_c": 7' in answer.text
    assert chat_requests(emulator) == len(TOOLS)


async def test_a_result_that_answers_no_call_is_refused_before_anything_is_sent(
    kie: KieSession, emulator: KieEmulator
) -> None:
    stray = ChatMessage.tool(ToolCall(id="call_9", name="lookup"), "4 C")
    for model, _ in TOOLS.values():
        with pytest.raises(KieInputError, match=r"messages\[1\]: tool turn .*'call_9'.* answers no tool call"):
            await kie.chat(model, [ChatMessage.user("hi"), stray])
    with pytest.raises(KieInputError, match=r"messages\[1\]: a tool turn names the call it answers: pass tool_call_id"):
        await kie.chat("gpt-5.2", [{"role": "user", "content": "hi"}, {"role": "tool", "content": "4 C"}])
    with pytest.raises(ValidationError, match="tool_calls belong to an assistant turn"):
        ChatMessage(role="user", content="hi", tool_calls=(CALL,))
    bad = ChatMessage.assistant("", [ToolCall(id="c", name="lookup", arguments="[1]")])
    with pytest.raises(KieInputError, match="arguments must be a JSON object"):
        await kie.chat("claude-haiku-4.5", [ChatMessage.user("hi"), bad, ChatMessage.tool(bad.tool_calls[0], "x")])
    no_id = ChatMessage.assistant("", [ToolCall(name="lookup", arguments="{}")])
    with pytest.raises(KieInputError, match="needs the id of each tool call"):
        await kie.chat("gpt-5.2", [ChatMessage.user("hi"), no_id, ChatMessage.tool(no_id.tool_calls[0], "x")])
    assert chat_requests(emulator) == 0


async def test_gemini_matches_a_result_by_name_when_the_call_had_no_id(kie: KieSession) -> None:
    model, tools = TOOLS["gemini"]
    call = ToolCall(name="lookup", arguments='{"query": "Oslo"}')
    turns = [ChatMessage.user("weather in Oslo"), ChatMessage.assistant("", [call]), ChatMessage.tool(call, WEATHER)]
    answer = await kie.chat(model, turns, options={"tools": tools})
    assert '"sky": "grey"' in answer.text
    assert _body(model, turns)["contents"][1]["parts"] == [
        {"functionCall": {"name": "lookup", "args": {"query": "Oslo"}}}
    ]


GPT52 = "/gpt-5-2/v1/chat/completions"
CLAUDE = "/claude/v1/messages"


async def _post(client: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, str]:
    async with client.post(url, json=body) as response:
        return response.status, await response.text()


async def test_the_emulator_refuses_a_result_of_a_call_nobody_made(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    text = [{"type": "text", "text": "hi"}]
    stray = {"role": "tool", "tool_call_id": "call_x", "content": [{"type": "text", "text": "4"}]}
    status, body = await _post(
        emulator_client, emulator.base_url + GPT52, {"messages": [{"role": "user", "content": text}, stray]}
    )
    assert status == 400 and "must be a response to a preceding message with 'tool_calls'" in body
    claude = {
        "model": "claude-haiku-4-5",
        "stream": False,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "4"}]},
        ],
    }
    status, body = await _post(emulator_client, emulator.base_url + CLAUDE, claude)
    assert status == 400 and "unexpected `tool_use_id`" in body and "'toolu_2'" in body
    claude["messages"][2]["content"][0]["tool_use_id"] = "toolu_1"
    status, body = await _post(emulator_client, emulator.base_url + CLAUDE, claude)
    assert status == 200 and "The tool returned: 4" in json.loads(body)["content"][0]["text"]


async def test_turns_given_as_dicts_and_a_text_answer_sent_back(kie: KieSession) -> None:
    model, tools = TOOLS["openai-chat"]
    first = await kie.chat(model, "weather in Oslo", options={"tools": tools})
    call = first.tool_calls[0]
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": "weather in Oslo"},
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "4 C and grey"},
    ]
    second = await kie.chat(model, turns, options={"tools": tools})
    assert "4 C and grey" in second.text and second.message() == ChatMessage.assistant(second.text)
    third = await kie.chat(model, [*turns, second.message().model_dump(), {"role": "user", "content": "and Bergen?"}])
    assert "and Bergen?" in third.text and not third.tool_calls


async def test_the_emulator_matches_gemini_results_by_name_and_id(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    url = emulator.base_url + load_chat_registry().get("gemini-3-flash-v1beta").endpoint
    call = {"functionCall": {"name": "lookup", "args": {}, "id": "c1"}}
    contents = [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [call]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"t": 4}, "id": "c2"}}]},
    ]
    status, body = await _post(emulator_client, url, {"contents": contents})
    assert status == 400 and "id 'c2' matches no functionCall id" in body
    contents[2]["parts"][0]["functionResponse"]["name"] = "other"
    status, body = await _post(emulator_client, url, {"contents": contents})
    assert status == 400 and "'other' answers no functionCall before it" in body
    contents[2]["parts"][0]["functionResponse"].update(name="lookup", id="c1")
    status, body = await _post(emulator_client, url, {"contents": contents})
    assert status == 200 and '"finishReason": "STOP"' in body  # streamed: the text comes in pieces
