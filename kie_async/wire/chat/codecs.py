"""The four chat wire formats: request bodies, JSON answers and SSE streams, into one typed shape.

Each codec is a small class; which one runs is the model spec's ``wire_format``. Readers are lenient in what
they take (a field the page documents may be missing, numbers may come as strings) and keep what a stream had
said when it breaks off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kie_async.core.errors import KieInputError
from kie_async.wire.chat.models import ChatDelta, ChatMessage, ChatUsage, ChatWire, ToolCall

JSON = dict[str, Any]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _credits(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


class Collected:
    """What an answer (whole or streamed so far) has said."""

    __slots__ = ("credits", "finish_reason", "finished", "provider_model", "response_id", "text", "tools", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tools: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
        self.finish_reason: str | None = None
        self.usage = ChatUsage()
        self.credits: float | None = None
        self.response_id: str | None = None
        self.provider_model: str | None = None
        self.finished = False

    def tool(self, index: int, call_id: str | None = None, name: str | None = None) -> list[Any]:
        entry = self.tools.setdefault(index, [None, None, []])
        if call_id:
            entry[0] = call_id
        if name:
            entry[1] = name
        return entry

    def note_credits(self, payload: Mapping[str, Any]) -> None:
        found = _credits(payload.get("credits_consumed"))
        if found is not None:
            self.credits = found

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(id=entry[0], name=entry[1] or "", arguments="".join(entry[2]))
            for _, entry in sorted(self.tools.items())
        ]


def _usage(raw: Any, input_key: str, output_key: str, total_key: str, reasoning: tuple[str, str]) -> ChatUsage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get(reasoning[0])
    return ChatUsage(
        input_tokens=_int(raw.get(input_key)),
        output_tokens=_int(raw.get(output_key)),
        total_tokens=_int(raw.get(total_key)),
        reasoning_tokens=_int(details.get(reasoning[1])) if isinstance(details, dict) else _int(raw.get(reasoning[1])),
    )


def _merged(old: ChatUsage, new: ChatUsage | None) -> ChatUsage:
    if new is None:
        return old
    return ChatUsage(**{k: v if v is not None else getattr(old, k) for k, v in new.model_dump().items()})


def _text(text: str) -> JSON:
    return {"type": "text", "text": text}


def _arguments(call: ToolCall) -> JSON:
    """A tool call's arguments as the JSON object the Anthropic and Gemini formats carry."""
    try:
        value = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise KieInputError(
            f"tool call {call.name!r} ({call.id or 'no id'}): arguments must be a JSON object, got {call.arguments!r}",
            hint="send back the ToolCall as the answer gave it (result.tool_calls)",
        )
    return value


def answered_tool_turns(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The conversation with each tool turn checked against the calls before it (and its ``name`` filled in).

    A tool turn must answer a call of an earlier assistant turn, by id (or by name where the format gave no
    id); no format accepts a result of a call nobody made.
    """
    calls: dict[str, ToolCall] = {}
    names: set[str] = set()
    out: list[ChatMessage] = []
    for index, message in enumerate(messages):
        for made in message.tool_calls:
            names.add(made.name)
            if made.id:
                calls[made.id] = made
        if message.role == "tool":
            call = calls.get(message.tool_call_id or "")
            if call is None and not (message.tool_call_id is None and message.name in names):
                raise KieInputError(
                    f"messages[{index}]: tool turn (tool_call_id {message.tool_call_id!r}, name {message.name!r}) "
                    "answers no tool call of an earlier assistant turn",
                    hint="put the assistant turn with the call before it (result.message()), and build the "
                    "result with ChatMessage.tool(call, output)",
                )
            if call is not None and message.name is None:
                message = message.model_copy(update={"name": call.name})
        out.append(message)
    return out


class Codec:
    """One wire format: build a body, read a JSON answer, read one SSE event."""

    def __init__(self, wire: ChatWire) -> None:
        self.wire = wire

    # -- requests
    def body(self, messages: Sequence[ChatMessage], options: Mapping[str, Any], stream: bool | None) -> JSON:
        turns = self._fold_system(answered_tool_turns(messages))
        body: JSON = {}
        if self.wire.model_field:
            body[self.wire.model_field] = self.wire.provider_model
        body[self.wire.messages_field] = self.turns(turns)
        if self.wire.system_prompt == "field":
            system = "\n\n".join(m.content for m in messages if m.role == "system")
            if system:
                body["system"] = system
        if stream is not None and self.wire.stream_supported:
            body["stream"] = stream
        for name, value in options.items():
            body[name] = value
        return body

    def _fold_system(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        if self.wire.system_prompt == "role":
            return list(messages)
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns = [m for m in messages if m.role != "system"]
        if system and self.wire.system_prompt == "fold":
            first = next((i for i, m in enumerate(turns) if m.role == "user"), None)
            if first is None:
                turns.insert(0, ChatMessage(role="user", content=system))
            else:
                turns[first] = ChatMessage(role="user", content=f"{system}\n\n{turns[first].content}")
        return turns

    def role(self, message: ChatMessage) -> str:
        role: str = message.role
        if role == "system" and "system" not in self.wire.roles and "developer" in self.wire.roles:
            role = "developer"
        if role not in self.wire.roles:
            raise KieInputError(
                f"{self.wire.provider_model} takes no {message.role!r} messages "
                f"(its page lists {list(self.wire.roles)})"
            )
        return role

    def turn(self, message: ChatMessage) -> JSON:
        raise NotImplementedError

    def turns(self, messages: Sequence[ChatMessage]) -> list[JSON]:
        """The conversation on the wire (a format may merge or split turns: tool results, tool calls)."""
        return [self.turn(m) for m in messages]

    def _needs_id(self, message: ChatMessage, call_id: str | None, field: str) -> str:
        if not call_id:
            raise KieInputError(
                f"{self.wire.provider_model} ({self.wire.wire_format}) needs the id of each tool call; "
                f"a {message.role} turn has no {field}",
                hint="send back the ToolCall objects of result.tool_calls (result.message(), ChatMessage.tool)",
            )
        return call_id

    # -- answers
    def read(self, payload: JSON) -> Collected:
        raise NotImplementedError

    def feed(self, acc: Collected, event: str | None, payload: JSON) -> list[ChatDelta]:
        raise NotImplementedError


class OpenAIChatCodec(Codec):
    def turn(self, message: ChatMessage) -> JSON:
        out: JSON = {"role": self.role(message)}
        parts = [{"type": "text", "text": message.content}] if message.content or not message.tool_calls else []
        out["content"] = parts if self.wire.content == "parts" else message.content
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": self._needs_id(message, call.id, "tool_calls[].id"),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments or "{}"},
                }
                for call in message.tool_calls
            ]
        if message.role == "tool":
            out["tool_call_id"] = self._needs_id(message, message.tool_call_id, "tool_call_id")
        return out

    @staticmethod
    def _usage(raw: Any) -> ChatUsage | None:
        return _usage(
            raw, "prompt_tokens", "completion_tokens", "total_tokens", ("completion_tokens_details", "reasoning_tokens")
        )

    def read(self, payload: JSON) -> Collected:
        acc = Collected()
        acc.response_id, acc.provider_model = payload.get("id"), payload.get("model")
        choices = payload.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if isinstance(content, str):
            acc.text.append(content)
        for index, call in enumerate(message.get("tool_calls") or []):
            fn = call.get("function") or {}
            acc.tool(index, call.get("id"), fn.get("name"))[2].append(str(fn.get("arguments") or ""))
        acc.finish_reason = choice.get("finish_reason")
        acc.usage = _merged(acc.usage, self._usage(payload.get("usage")))
        acc.note_credits(payload)
        acc.finished = True
        return acc

    def feed(self, acc: Collected, event: str | None, payload: JSON) -> list[ChatDelta]:
        out: list[ChatDelta] = []
        acc.response_id = acc.response_id or payload.get("id")
        acc.provider_model = acc.provider_model or payload.get("model")
        for choice in payload.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                acc.text.append(text)
                out.append(ChatDelta("text", text))
            reasoning = delta.get("reasoning_content")
            if reasoning:
                out.append(ChatDelta("reasoning", reasoning))
            for call in delta.get("tool_calls") or ():
                index = _int(call.get("index")) or 0
                fn = call.get("function") or {}
                entry = acc.tool(index, call.get("id"), fn.get("name"))
                args = fn.get("arguments") or ""
                entry[2].append(args)
                out.append(ChatDelta("tool_call", args, index, fn.get("name"), call.get("id")))
            if choice.get("finish_reason"):
                acc.finish_reason = choice["finish_reason"]
        if payload.get("usage"):
            acc.usage = _merged(acc.usage, self._usage(payload["usage"]))
        acc.note_credits(payload)
        return out


class ResponsesCodec(Codec):
    """The Responses pages document input items of role and content only (no ``function_call`` or
    ``function_call_output`` items), so a tool call goes back as an assistant item and its result as a ``tool``
    item, in that shape, with the call's ``call_id`` (and ``name``, ``arguments``) beside it; the content
    restates the call as JSON for a gateway that keeps only role and content."""

    def turn(self, message: ChatMessage) -> JSON:
        item: JSON = {"role": self.role(message), "content": [{"type": "input_text", "text": message.content}]}
        if message.role == "tool":
            item["call_id"] = self._needs_id(message, message.tool_call_id, "tool_call_id")
        return item

    def turns(self, messages: Sequence[ChatMessage]) -> list[JSON]:
        items: list[JSON] = []
        for message in messages:
            if message.content or not message.tool_calls:
                items.append(self.turn(message))
            for call in message.tool_calls:
                call_id = self._needs_id(message, call.id, "tool_calls[].id")
                stated = {"type": "function_call", "call_id": call_id, "name": call.name, "arguments": call.arguments}
                text = json.dumps(stated, ensure_ascii=False)
                items.append(
                    {
                        "role": self.role(message),
                        "content": [{"type": "input_text", "text": text}],
                        "call_id": call_id,
                        "name": call.name,
                        "arguments": call.arguments or "{}",
                    }
                )
        return items

    @staticmethod
    def _usage(raw: Any) -> ChatUsage | None:
        return _usage(
            raw, "input_tokens", "output_tokens", "total_tokens", ("output_tokens_details", "reasoning_tokens")
        )

    def _read_response(self, acc: Collected, response: JSON, *, take_output: bool) -> None:
        acc.response_id = response.get("id") or acc.response_id
        acc.provider_model = response.get("model") or acc.provider_model
        if take_output:
            for item in response.get("output") or ():
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "message":
                    for part in item.get("content") or ():
                        if isinstance(part, dict) and part.get("type") == "output_text":
                            acc.text.append(str(part.get("text") or ""))
                elif item.get("type") == "function_call":
                    entry = acc.tool(len(acc.tools), item.get("call_id") or item.get("id"), item.get("name"))
                    entry[2].append(str(item.get("arguments") or ""))
        status = response.get("status")
        if isinstance(status, str):
            acc.finish_reason = status
        acc.usage = _merged(acc.usage, self._usage(response.get("usage")))
        acc.note_credits(response)

    def read(self, payload: JSON) -> Collected:
        acc = Collected()
        self._read_response(acc, payload, take_output=True)
        acc.finished = True
        return acc

    def feed(self, acc: Collected, event: str | None, payload: JSON) -> list[ChatDelta]:
        kind = payload.get("type") or event
        if kind == "response.output_text.delta":
            text = str(payload.get("delta") or "")
            acc.text.append(text)
            return [ChatDelta("text", text)] if text else []
        if kind == "response.output_item.added":
            item = payload.get("item") or {}
            if item.get("type") == "function_call":
                index = _int(payload.get("output_index"))
                index = len(acc.tools) if index is None else index
                acc.tool(index, item.get("call_id") or item.get("id"), item.get("name"))
                return [ChatDelta("tool_call", "", index, item.get("name"), item.get("call_id") or item.get("id"))]
            return []
        if kind == "response.function_call_arguments.delta":
            index = _int(payload.get("output_index"))
            index = (max(acc.tools) if acc.tools else 0) if index is None else index
            text = str(payload.get("delta") or "")
            acc.tool(index)[2].append(text)
            return [ChatDelta("tool_call", text, index)]
        if kind == "response.reasoning_summary_text.delta":
            return [ChatDelta("reasoning", str(payload.get("delta") or ""))]
        response = payload.get("response")
        if isinstance(response, dict):
            self._read_response(acc, response, take_output=False)
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                acc.finished = True
        acc.note_credits(payload)
        return []


class AnthropicCodec(Codec):
    """Tool calls go back as ``tool_use`` blocks of the assistant turn; results as ``tool_result`` blocks of a
    user turn (consecutive results in one turn, as the Messages API wants them)."""

    def role(self, message: ChatMessage) -> str:
        return "user" if message.role == "tool" else super().role(message)

    def turn(self, message: ChatMessage) -> JSON:
        if message.role == "tool":
            call_id = self._needs_id(message, message.tool_call_id, "tool_call_id")
            block = {"type": "tool_result", "tool_use_id": call_id, "content": message.content}
            return {"role": "user", "content": [block]}
        if not message.tool_calls:
            text: Any = message.content
            return {"role": self.role(message), "content": text if self.wire.content == "text" else [_text(text)]}
        blocks: list[JSON] = [_text(message.content)] if message.content else []
        for call in message.tool_calls:
            call_id = self._needs_id(message, call.id, "tool_calls[].id")
            blocks.append({"type": "tool_use", "id": call_id, "name": call.name, "input": _arguments(call)})
        return {"role": self.role(message), "content": blocks}

    def turns(self, messages: Sequence[ChatMessage]) -> list[JSON]:
        out: list[JSON] = []
        for previous, message in zip([None, *messages], messages, strict=False):
            turn = self.turn(message)
            if message.role == "tool" and previous is not None and previous.role == "tool":
                out[-1]["content"].extend(turn["content"])
            else:
                out.append(turn)
        return out

    @staticmethod
    def _usage(raw: Any) -> ChatUsage | None:
        usage = _usage(raw, "input_tokens", "output_tokens", "total_tokens", ("", ""))
        if (
            usage is not None
            and usage.total_tokens is None
            and usage.input_tokens is not None
            and usage.output_tokens is not None
        ):
            usage = usage.model_copy(update={"total_tokens": usage.input_tokens + usage.output_tokens})
        return usage

    def read(self, payload: JSON) -> Collected:
        acc = Collected()
        acc.response_id, acc.provider_model = payload.get("id"), payload.get("model")
        for block in payload.get("content") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                acc.text.append(str(block.get("text") or ""))
            elif block.get("type") == "tool_use":
                acc.tool(len(acc.tools), block.get("id"), block.get("name"))[2].append(
                    json.dumps(block.get("input") or {}, ensure_ascii=False)
                )
        acc.finish_reason = payload.get("stop_reason")
        acc.usage = _merged(acc.usage, self._usage(payload.get("usage")))
        acc.note_credits(payload)
        acc.finished = True
        return acc

    def feed(self, acc: Collected, event: str | None, payload: JSON) -> list[ChatDelta]:
        kind = payload.get("type") or event
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            index = _int(payload.get("index")) or 0
            if delta.get("type") == "input_json_delta":
                text = str(delta.get("partial_json") or "")
                acc.tool(index)[2].append(text)
                return [ChatDelta("tool_call", text, self._tool_number(acc, index))]
            if delta.get("type") == "thinking_delta":
                return [ChatDelta("reasoning", str(delta.get("thinking") or ""))]
            text = str(delta.get("text") or "")
            acc.text.append(text)
            return [ChatDelta("text", text)] if text else []
        if kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = _int(payload.get("index")) or 0
                acc.tool(index, block.get("id"), block.get("name"))
                return [ChatDelta("tool_call", "", self._tool_number(acc, index), block.get("name"), block.get("id"))]
            return []
        if kind == "message_start":
            message = payload.get("message") or {}
            acc.response_id, acc.provider_model = message.get("id"), message.get("model")
            acc.usage = _merged(acc.usage, self._usage(message.get("usage")))
        elif kind == "message_delta":
            acc.finish_reason = (payload.get("delta") or {}).get("stop_reason") or acc.finish_reason
            acc.usage = _merged(acc.usage, self._usage(payload.get("usage")))
            if acc.usage.input_tokens is not None and acc.usage.output_tokens is not None:
                acc.usage = acc.usage.model_copy(
                    update={"total_tokens": acc.usage.input_tokens + acc.usage.output_tokens}
                )
        elif kind == "message_stop":
            acc.finished = True
        elif kind == "error":
            acc.finish_reason = "error"
        acc.note_credits(payload)
        return []

    @staticmethod
    def _tool_number(acc: Collected, index: int) -> int:
        return sorted(acc.tools).index(index) if index in acc.tools else len(acc.tools)


class GeminiCodec(Codec):
    def role(self, message: ChatMessage) -> str:
        role = {"assistant": "model", "tool": "user"}.get(message.role, message.role)
        if role not in self.wire.roles:
            raise KieInputError(
                f"{self.wire.provider_model} takes no {message.role!r} messages "
                f"(its page lists {list(self.wire.roles)})"
            )
        return role

    def turn(self, message: ChatMessage) -> JSON:
        if message.role == "tool":
            try:
                value = json.loads(message.content)
            except ValueError:
                value = None
            response = value if isinstance(value, dict) else {"result": message.content}
            answer: JSON = {"name": message.name, "response": response}
            if message.tool_call_id:
                answer["id"] = message.tool_call_id
            return {"role": "user", "parts": [{"functionResponse": answer}]}
        parts: list[JSON] = [{"text": message.content}] if message.content or not message.tool_calls else []
        for call in message.tool_calls:
            function: JSON = {"name": call.name, "args": _arguments(call)}
            if call.id:
                function["id"] = call.id
            parts.append({"functionCall": function})
        return {"role": self.role(message), "parts": parts}

    def turns(self, messages: Sequence[ChatMessage]) -> list[JSON]:
        out: list[JSON] = []
        for previous, message in zip([None, *messages], messages, strict=False):
            turn = self.turn(message)
            if message.role == "tool" and previous is not None and previous.role == "tool":
                out[-1]["parts"].extend(turn["parts"])  # all the function responses of one step in one turn
            else:
                out.append(turn)
        return out

    @staticmethod
    def _usage(raw: Any) -> ChatUsage | None:
        return _usage(raw, "promptTokenCount", "candidatesTokenCount", "totalTokenCount", ("", "thoughtsTokenCount"))

    def _take(self, acc: Collected, payload: JSON) -> list[ChatDelta]:
        out: list[ChatDelta] = []
        acc.response_id = payload.get("responseId") or acc.response_id
        acc.provider_model = payload.get("modelVersion") or acc.provider_model
        candidates = payload.get("candidates") or ()
        candidate = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        for part in (candidate.get("content") or {}).get("parts") or ():
            if not isinstance(part, dict):
                continue
            if "functionCall" in part:
                call = part["functionCall"] or {}
                index = len(acc.tools)
                args = json.dumps(call.get("args") or {}, ensure_ascii=False)
                acc.tool(index, call.get("id"), call.get("name"))[2].append(args)
                out.append(ChatDelta("tool_call", args, index, call.get("name"), call.get("id")))
            elif isinstance(part.get("text"), str):
                if part.get("thought"):
                    out.append(ChatDelta("reasoning", part["text"]))
                elif part["text"]:
                    acc.text.append(part["text"])
                    out.append(ChatDelta("text", part["text"]))
        if candidate.get("finishReason"):
            acc.finish_reason = candidate["finishReason"]
            acc.finished = True
        acc.usage = _merged(acc.usage, self._usage(payload.get("usageMetadata")))
        acc.note_credits(payload)
        return out

    def read(self, payload: JSON) -> Collected:
        acc = Collected()
        self._take(acc, payload)
        acc.finished = True
        return acc

    def feed(self, acc: Collected, event: str | None, payload: JSON) -> list[ChatDelta]:
        return self._take(acc, payload)


_CODECS: dict[str, type[Codec]] = {
    "openai-chat": OpenAIChatCodec,
    "openai-responses": ResponsesCodec,
    "anthropic-messages": AnthropicCodec,
    "gemini": GeminiCodec,
}


def codec_for(wire: ChatWire) -> Codec:
    return _CODECS[wire.wire_format](wire)
