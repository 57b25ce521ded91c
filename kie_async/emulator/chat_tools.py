"""Tool turns sent back to the chat endpoints, in the four formats: the calls a conversation made, the results it
sends, and what the providers refuse.

The bundled schemas judge each turn's shape as the page writes it; what they cannot say, the providers check
too, so the emulator does: a result must answer a call made earlier in the conversation (OpenAI Chat
Completions by ``tool_call_id``, Responses by ``call_id``, Anthropic by ``tool_use_id`` against the assistant
turn just before it, Gemini by the function's name), and a call sent back must carry what the format needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Exchange:
    """What a request's conversation says about tools."""

    calls: list[tuple[str | None, str]] = field(default_factory=list)
    """(id, function name) of every call an assistant turn made, in order."""
    results: list[str] = field(default_factory=list)
    """The text of every tool result, in order."""
    last_is_result: bool = False
    """The conversation ends with tool results: the model answers them (it does not call again)."""
    problems: list[str] = field(default_factory=list)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return json.dumps(content) if content is not None else ""


def _openai_chat(messages: list[Any], out: Exchange) -> None:
    ids: set[str] = set()
    for index, message in enumerate(messages):
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and calls is not None:
            for number, call in enumerate(calls if isinstance(calls, list) else []):
                fn = call.get("function") if isinstance(call, dict) else None
                where = f"messages[{index}].tool_calls[{number}]"
                if not isinstance(fn, dict) or not isinstance(call.get("id"), str) or call.get("type") != "function":
                    out.problems.append(f"{where}: needs an id, type 'function' and a function {{name, arguments}}")
                    continue
                if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
                    out.problems.append(f"{where}.function: name and arguments (a JSON string) are required")
                    continue
                ids.add(call["id"])
                out.calls.append((call["id"], fn["name"]))
        if message.get("role") == "tool":
            if message.get("tool_call_id") not in ids:
                out.problems.append(
                    f"messages[{index}]: Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceding message with 'tool_calls' (tool_call_id {message.get('tool_call_id')!r})"
                )
            out.results.append(_text(message.get("content")))
    out.last_is_result = bool(messages) and messages[-1].get("role") == "tool"


def _responses(items: list[Any], out: Exchange) -> None:
    ids: set[str] = set()
    for index, item in enumerate(items):
        role, call_id = item.get("role"), item.get("call_id")
        if role == "assistant" and call_id is not None:
            if not isinstance(call_id, str) or not isinstance(item.get("name"), str):
                out.problems.append(f"input[{index}]: a function call needs a call_id and a name")
                continue
            ids.add(call_id)
            out.calls.append((call_id, item["name"]))
        if role == "tool":
            if call_id not in ids:
                out.problems.append(
                    f"input[{index}]: No tool call found for function call output with call_id {call_id!r}"
                )
            out.results.append(_text(item.get("content")))
    out.last_is_result = bool(items) and items[-1].get("role") == "tool"


def _anthropic(messages: list[Any], out: Exchange) -> None:
    previous: set[str] = set()
    ends_with_result = False
    for index, message in enumerate(messages):
        blocks = message.get("content") if isinstance(message.get("content"), list) else []
        blocks = [b for b in blocks if isinstance(b, dict)]
        if message.get("role") == "assistant":
            previous = set()
            for number, block in enumerate(b for b in blocks if b.get("type") == "tool_use"):
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                    out.problems.append(f"messages.{index}.content.{number}: tool_use needs an id and a name")
                elif not isinstance(block.get("input"), dict):
                    out.problems.append(f"messages.{index}.content.{number}.input: Input should be a valid dictionary")
                else:
                    previous.add(block["id"])
                    out.calls.append((block["id"], block["name"]))
            continue
        results = [b for b in blocks if b.get("type") == "tool_result"]
        for block in results:
            if block.get("tool_use_id") not in previous:
                out.problems.append(
                    f"messages.{index}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.get('tool_use_id')!r}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message."
                )
            out.results.append(_text(block.get("content")))
        ends_with_result = bool(results)
        previous = set()
    out.last_is_result = ends_with_result and messages[-1].get("role") == "user"


def _gemini(contents: list[Any], out: Exchange) -> None:
    names: set[str] = set()
    ids: set[str] = set()
    ends_with_result = False
    for index, content in enumerate(contents):
        parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
        for part in parts:
            call = part.get("functionCall")
            if isinstance(call, dict) and isinstance(call.get("name"), str):
                names.add(call["name"])
                call_id = call.get("id") if isinstance(call.get("id"), str) else None
                ids.update([call_id] if call_id else [])
                out.calls.append((call_id, call["name"]))
        responses = [p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict)]
        for response in responses:
            if response.get("name") not in names:
                out.problems.append(
                    f"contents[{index}]: functionResponse {response.get('name')!r} answers no functionCall before it"
                )
            elif "id" in response and response["id"] not in ids:
                out.problems.append(
                    f"contents[{index}]: functionResponse id {response['id']!r} matches no functionCall id"
                )
            if not isinstance(response.get("response"), dict):
                out.problems.append(f"contents[{index}].functionResponse.response: must be an object")
            out.results.append(json.dumps(response.get("response"), ensure_ascii=False))
        ends_with_result = bool(responses)
    out.last_is_result = ends_with_result


def read_exchange(fmt: str, body: dict[str, Any]) -> Exchange:
    """The tool calls and results of a request body (already judged by its page's schema)."""
    out = Exchange()
    field_name = {"gemini": "contents", "openai-responses": "input"}.get(fmt, "messages")
    turns = body.get(field_name)
    if not isinstance(turns, list):
        return out
    turns = [t for t in turns if isinstance(t, dict)]
    reader = {"openai-chat": _openai_chat, "openai-responses": _responses, "anthropic-messages": _anthropic}
    reader.get(fmt, _gemini)(turns, out)
    return out
