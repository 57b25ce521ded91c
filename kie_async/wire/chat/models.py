"""The typed chat interface: messages in, deltas while streaming, one result out, the same for all four formats."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ChatRole = Literal["system", "user", "assistant", "tool"]
WireFormatName = Literal["openai-chat", "openai-responses", "anthropic-messages", "gemini"]


class ToolCall(BaseModel):
    """A function the model asks the caller to run; ``arguments`` is the JSON text the model wrote."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    name: str
    arguments: str = ""


class ChatMessage(BaseModel):
    """One turn of a conversation.

    Tool turns, where the format has tools: an ``assistant`` turn may carry the ``tool_calls`` the model made
    (``result.message()`` gives it back), and a ``tool`` turn answers one of them (``ChatMessage.tool(call,
    output)``): ``tool_call_id`` is the call's id and ``name`` its function (Gemini matches results by name).
    Each format gets them in its own shape (see ``docs/chat.md``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: ChatRole
    content: str = ""
    tool_call_id: str | None = None
    name: str | None = Field(default=None, description="a tool turn: the function that answered")
    tool_calls: tuple[ToolCall, ...] = Field(default=(), description="an assistant turn: the calls it made")

    @model_validator(mode="after")
    def _tool_fields_fit_the_role(self) -> ChatMessage:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"tool_calls belong to an assistant turn, not a {self.role!r} one")
        if self.role != "tool" and (self.tool_call_id is not None or self.name is not None):
            raise ValueError(f"tool_call_id and name belong to a tool turn, not a {self.role!r} one")
        if self.role == "tool" and not (self.tool_call_id or self.name):
            raise ValueError(
                "a tool turn names the call it answers: pass tool_call_id (and name), or use "
                "ChatMessage.tool(call, output) with a ToolCall from result.tool_calls"
            )
        return self

    @classmethod
    def system(cls, text: str) -> ChatMessage:
        return cls(role="system", content=text)

    @classmethod
    def user(cls, text: str) -> ChatMessage:
        return cls(role="user", content=text)

    @classmethod
    def assistant(cls, text: str = "", tool_calls: Sequence[ToolCall] = ()) -> ChatMessage:
        return cls(role="assistant", content=text, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, call: ToolCall, output: str | Mapping[str, Any] | Sequence[Any]) -> ChatMessage:
        """The result of running ``call``: ``output`` as text, or a JSON value (sent as JSON text)."""
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        return cls(role="tool", content=text, tool_call_id=call.id, name=call.name)


class ChatUsage(BaseModel):
    """Token counts as the answer states them (each ``None`` when the format or the answer leaves it out)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None


class ChatResult(BaseModel):
    """The outcome of one chat call, streamed or not.

    ``complete`` is False when a stream broke off before its end marker: ``text`` and ``tool_calls`` then hold
    what arrived, ``incomplete_reason`` says why, and ``credits_consumed`` is whatever the answer had said by
    then (usually ``None``; a budget then keeps the reservation as spent). ``credits_charged`` is what the
    session counted against a budget.
    """

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="the chat model key")
    provider_model: str
    wire_format: WireFormatName
    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: ChatUsage = Field(default_factory=ChatUsage)
    credits_consumed: float | None = None
    credits_charged: float | None = None
    request_id: str | None = Field(default=None, description="the gateway's request id header, if one was sent")
    response_id: str | None = Field(default=None, description="the id in the answer's body")
    streamed: bool = False
    complete: bool = True
    incomplete_reason: str | None = None
    events: int = Field(default=0, description="SSE events read (0 for a plain JSON answer)")
    raw: dict[str, Any] | None = Field(default=None, description="the JSON answer of a call that did not stream")

    def message(self) -> ChatMessage:
        """This answer as the assistant turn to send back in the next call (its text and its tool calls)."""
        return ChatMessage.assistant(self.text, self.tool_calls)


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """One piece of a streamed answer: text, a tool call's name or argument fragment, or reasoning text.

    ``tool_index`` numbers the tool calls of one answer from 0; a tool call's first delta carries its
    ``tool_name`` (and ``tool_call_id`` where the format gives one), later ones only ``text`` (argument JSON).
    """

    kind: Literal["text", "tool_call", "reasoning"]
    text: str = ""
    tool_index: int | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ChatWire(BaseModel):
    """How one model's chat call goes on the wire: everything a codec needs, taken from the model's spec."""

    model_config = ConfigDict(frozen=True)

    wire_format: WireFormatName
    path: str
    provider_model: str
    model_field: str | None
    messages_field: str
    roles: tuple[str, ...]
    content: Literal["text", "parts"]
    system_prompt: Literal["role", "field", "fold"]
    stream_supported: bool
