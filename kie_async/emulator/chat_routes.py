"""The chat endpoints in the four wire formats: judged by the page's schema, answered deterministically, charged.

Every documented chat path gets a route. A request is authorised (Bearer, or the ``x-api-key`` /
``x-goog-api-key`` headers some pages name), judged by its page's bundled schema (400 with every violation),
charged ``credits_consumed`` from token counts, and answered whole or as SSE, in small chunks the way the
providers send them. The reply is a pure function of the model and the conversation, so tests can predict it;
when the request declares a custom function tool, the reply is a call of that function instead, and when the
conversation ends with tool results (:mod:`.chat_tools` checks they answer calls made before them), the reply
restates what the tools returned.

Faults (endpoint ``chat``): ``rate_limit`` and ``server_error`` answer before any work, ``latency`` delays the
first byte, ``slow_body`` pauses ``chunk_delay`` between events, ``stream_cut`` drops the connection after
``after_events`` events (the charge has been made: the real service bills what it generated).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

from aiohttp import hdrs, web

from kie_async.emulator.chat_schemas import ChatSchema, ChatSchemaBundle, load_chat_schemas
from kie_async.emulator.chat_tools import Exchange, read_exchange
from kie_async.emulator.context import EmulatorContext
from kie_async.emulator.faults import FaultKind
from kie_async.emulator.wire import POST_FAULT_KEY, context, drop_connection

CREDITS_PER_1K_INPUT = 0.5
CREDITS_PER_1K_OUTPUT = 2.0
"""The emulator's own token prices (Kie.ai publishes none for chat): enough to make credits_consumed move."""

_BUILTIN_TOOLS = {"web_search", "googleSearch", "google_search"}


def _key(request: web.Request, ctx: EmulatorContext) -> str | None:
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    token = token or request.headers.get("x-api-key", "") or request.headers.get("x-goog-api-key", "")
    match = None
    for key in ctx.ledger.keys():  # noqa: SIM118 (CreditLedger is not a dict)
        if token and hmac.compare_digest(key.encode(), token.encode()):
            match = key
    return match


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind}}, status=status)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def _turns(fmt: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    if fmt == "gemini":
        return [
            (str(c.get("role")), _text_of(c.get("parts"))) for c in body.get("contents") or [] if isinstance(c, dict)
        ]
    field = "input" if fmt == "openai-responses" else "messages"
    raw = body.get(field)
    if isinstance(raw, str):
        return [("user", raw)]
    return [(str(m.get("role")), _text_of(m.get("content"))) for m in raw or [] if isinstance(m, dict)]


def _custom_tool(fmt: str, body: dict[str, Any]) -> str | None:
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        names = [tool.get("name"), (tool.get("function") or {}).get("name")]
        names += [d.get("name") for d in tool.get("functionDeclarations") or [] if isinstance(d, dict)]
        for name in names:
            if isinstance(name, str) and name and name not in _BUILTIN_TOOLS:
                return name
    return None


def reply_text(model: str, turns: list[tuple[str, str]]) -> str:
    """The deterministic answer: names the model and restates the last user turn."""
    last = next((text for role, text in reversed(turns) if role == "user"), "")
    words = " ".join(last.split()[-60:])  # the end: a system prompt folded in front stays out of the way
    digest = hashlib.sha256(f"{model}\n{last}".encode()).hexdigest()[:8]
    return f"[{model}] Here is a considered answer to: {words} (reply {digest})."


def pieces(text: str) -> Iterator[str]:
    """Split like a tokenizer would stream it: words with their leading space, long words in 4-char bits."""
    start = 0
    for index in range(1, len(text) + 1):
        if index == len(text) or (text[index] == " " and index > start) or index - start >= 6:
            yield text[start:index]
            start = index


def tool_reply_text(model: str, results: list[str]) -> str:
    """The deterministic answer to tool results: names the model and restates what the tools returned."""
    said = " ".join(" ".join(results).split()[-60:])
    digest = hashlib.sha256(f"{model}\n{said}".encode()).hexdigest()[:8]
    return f"[{model}] The tool returned: {said} (reply {digest})."


class _Answer:
    def __init__(self, fmt: str, model: str, body: dict[str, Any], exchange: Exchange | None = None) -> None:
        self.fmt = fmt
        self.model = model
        turns = _turns(fmt, body)
        exchange = exchange or Exchange()
        answered = exchange.last_is_result  # a conversation ending in tool results gets an answer, not a call
        self.tool = None if answered else _custom_tool(fmt, body)
        if answered:
            self.text = tool_reply_text(model, exchange.results)
        else:
            self.text = "" if self.tool else reply_text(model, turns)
        last = next((t for r, t in reversed(turns) if r == "user"), "")
        self.tool_args = json.dumps({"query": " ".join(last.split()[:8])})
        said = sum(len(t) for _, t in turns) + sum(len(r) for r in exchange.results)
        self.input_tokens = max(1, math.ceil(said / 4))
        self.output_tokens = max(1, math.ceil(len(self.text or self.tool_args) / 4))
        self.credits = round(
            self.input_tokens / 1000 * CREDITS_PER_1K_INPUT + self.output_tokens / 1000 * CREDITS_PER_1K_OUTPUT, 6
        )
        self.id = uuid.uuid4().hex[:24]
        self.call_id = f"call_{self.id[:12]}"

    # -- whole answers
    def whole(self) -> dict[str, Any]:
        usage_openai = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }
        if self.fmt == "openai-chat":
            message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
            if self.tool:
                message["tool_calls"] = [
                    {
                        "id": self.call_id,
                        "type": "function",
                        "function": {"name": self.tool, "arguments": self.tool_args},
                    }
                ]
            return {
                "id": f"chatcmpl-{self.id}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if self.tool else "stop"}],
                "usage": usage_openai,
                "credits_consumed": self.credits,
            }
        if self.fmt == "openai-responses":
            return {
                "id": f"resp_{self.id}",
                "object": "response",
                "model": self.model,
                "status": "completed",
                "output": [self._responses_item()],
                "usage": self._responses_usage(),
                "credits_consumed": self.credits,
            }
        if self.fmt == "anthropic-messages":
            block: dict[str, Any] = {"type": "text", "text": self.text}
            if self.tool:
                block = {
                    "type": "tool_use",
                    "id": f"toolu_{self.id}",
                    "name": self.tool,
                    "input": json.loads(self.tool_args),
                }
            return {
                "id": f"msg_{self.id}",
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [block],
                "stop_reason": "tool_use" if self.tool else "end_turn",
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
                "credits_consumed": self.credits,
            }
        part: dict[str, Any] = {"text": self.text}
        if self.tool:
            part = {"functionCall": {"name": self.tool, "args": json.loads(self.tool_args), "id": self.id[:8]}}
        return {
            "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}],
            "modelVersion": self.model,
            "usageMetadata": self._gemini_usage(),
            "credits_consumed": self.credits,
            "responseId": self.id,
        }

    def _responses_item(self) -> dict[str, Any]:
        if self.tool:
            return {
                "type": "function_call",
                "id": f"fc_{self.id}",
                "call_id": self.call_id,
                "name": self.tool,
                "arguments": self.tool_args,
                "status": "completed",
            }
        return {
            "type": "message",
            "id": f"msg_{self.id}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": self.text}],
        }

    def _responses_usage(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def _gemini_usage(self) -> dict[str, int]:
        return {
            "promptTokenCount": self.input_tokens,
            "candidatesTokenCount": self.output_tokens,
            "totalTokenCount": self.input_tokens + self.output_tokens,
        }

    # -- streams: (event name or None, data) pairs
    def events(self) -> Iterator[tuple[str | None, str]]:
        yield from getattr(self, "_events_" + self.fmt.replace("-", "_"))()

    def _events_openai_chat(self) -> Iterator[tuple[str | None, str]]:
        base = {
            "id": f"chatcmpl-{self.id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, str]:
            return None, json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        yield chunk({"role": "assistant", "content": ""})
        if self.tool:
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": self.call_id,
                            "type": "function",
                            "function": {"name": self.tool, "arguments": ""},
                        }
                    ]
                }
            )
            for bit in pieces(self.tool_args):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": bit}}]})
        for bit in pieces(self.text):
            yield chunk({"content": bit})
        yield chunk({}, "tool_calls" if self.tool else "stop")
        usage = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }
        yield None, json.dumps({**base, "choices": [], "usage": usage, "credits_consumed": self.credits})
        yield None, "[DONE]"

    def _events_openai_responses(self) -> Iterator[tuple[str | None, str]]:
        head = {"id": f"resp_{self.id}", "object": "response", "model": self.model, "status": "in_progress"}
        yield "response.created", json.dumps({"type": "response.created", "response": head})
        item = self._responses_item()
        started = {**item, "status": "in_progress"}
        if self.tool:
            started["arguments"] = ""
        else:
            started["content"] = []
        yield (
            "response.output_item.added",
            json.dumps({"type": "response.output_item.added", "output_index": 0, "item": started}),
        )
        kind = "response.function_call_arguments.delta" if self.tool else "response.output_text.delta"
        for bit in pieces(self.tool_args if self.tool else self.text):
            yield kind, json.dumps({"type": kind, "output_index": 0, "content_index": 0, "delta": bit})
        yield (
            "response.output_item.done",
            json.dumps({"type": "response.output_item.done", "output_index": 0, "item": item}),
        )
        done = {
            **head,
            "status": "completed",
            "output": [item],
            "usage": self._responses_usage(),
            "credits_consumed": self.credits,
        }
        yield "response.completed", json.dumps({"type": "response.completed", "response": done})
        yield None, "[DONE]"

    def _events_anthropic_messages(self) -> Iterator[tuple[str | None, str]]:
        def event(kind: str, **data: Any) -> tuple[str, str]:
            return kind, json.dumps({"type": kind, **data})

        yield event(
            "message_start",
            message={
                "id": f"msg_{self.id}",
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
            },
        )
        if self.tool:
            yield event(
                "content_block_start",
                index=0,
                content_block={"type": "tool_use", "id": f"toolu_{self.id}", "name": self.tool, "input": {}},
            )
            for bit in pieces(self.tool_args):
                yield event("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": bit})
        else:
            yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
            yield event("ping")
            for bit in pieces(self.text):
                yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": bit})
        yield event("content_block_stop", index=0)
        yield event(
            "message_delta",
            delta={"stop_reason": "tool_use" if self.tool else "end_turn"},
            usage={"output_tokens": self.output_tokens},
            credits_consumed=self.credits,
        )
        yield event("message_stop")

    def _events_gemini(self) -> Iterator[tuple[str | None, str]]:
        base = {"modelVersion": self.model, "responseId": self.id}
        if self.tool:
            whole = self.whole()
            yield None, json.dumps(whole)
            return
        bits = list(pieces(self.text))
        for index, bit in enumerate(bits):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": bit}]}}
            extra: dict[str, Any] = {}
            if index == len(bits) - 1:
                candidate["finishReason"] = "STOP"
                extra = {"usageMetadata": self._gemini_usage(), "credits_consumed": self.credits}
            yield None, json.dumps({"candidates": [candidate], **base, **extra})


def _sse(event: str | None, data: str) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


async def _bundle() -> ChatSchemaBundle:
    return await asyncio.to_thread(load_chat_schemas)


def _model_of(schema: ChatSchema, body: dict[str, Any]) -> str:
    if "model" in (schema.schema_.get("properties") or {}):
        return str(body.get("model"))
    path = schema.endpoint
    if path.endswith("/chat/completions"):
        return path.strip("/").split("/")[0]
    return path.rsplit("/", 1)[-1].split(":")[0]


async def chat_endpoint(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    bundle = await _bundle()
    key = _key(request, ctx)
    if key is None:
        return _error(401, "Unauthorized", "authentication_error")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return _error(400, "Request body must be a JSON object", "invalid_request_error")
    schema = bundle.pick(request.path, body.get("model"))
    if schema is None:
        return _error(404, "Not Found", "not_found_error")
    problems = bundle.violations(schema, body)
    exchange = read_exchange(schema.wire_format, body) if not problems else None
    problems += exchange.problems if exchange else []
    if problems:
        return _error(400, "; ".join(problems), "invalid_request_error")
    stream = body.get("stream", schema.stream_default) if schema.stream_documented else False
    answer = _Answer(schema.wire_format, _model_of(schema, body), body, exchange)
    if not ctx.ledger.try_charge(key, answer.credits):
        return _error(402, "The current credits are insufficient. Please top up.", "insufficient_credits")
    rule = request.get(POST_FAULT_KEY)
    cut = rule.after_events if rule is not None and rule.kind == FaultKind.STREAM_CUT else None
    pace = rule.chunk_delay if rule is not None and rule.kind == FaultKind.SLOW_BODY else 0.0
    headers = {"x-request-id": f"req_{answer.id}"}
    if not stream:
        whole = json.dumps(answer.whole()).encode()
        if cut is None:
            return web.Response(body=whole, content_type="application/json", headers=headers)
        response = web.StreamResponse(status=200, headers={**headers, "Content-Type": "application/json"})
        response.content_length = len(whole)
        await response.prepare(request)
        await response.write(whole[: len(whole) // 2])
        drop_connection(request)
        return response
    response = web.StreamResponse(
        status=200, headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    for sent, (event, data) in enumerate(answer.events()):
        if cut is not None and sent >= cut:
            drop_connection(request)
            return response
        if pace and sent:
            await asyncio.sleep(pace)  # tokens trickling in, as a loaded model sends them
        await response.write(_sse(event, data))
    await response.write_eof()
    return response


def add_chat_routes(router: web.UrlDispatcher) -> None:
    """One POST route per documented chat path (the bundled schemas name them)."""
    for index, path in enumerate(load_chat_schemas().endpoints()):
        router.add_post(path, chat_endpoint, name=f"chat:route{index}")
