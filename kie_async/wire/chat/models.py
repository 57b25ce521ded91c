"""The typed chat interface: messages in, deltas while streaming, one result out, the same for all four formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ChatRole = Literal["system", "user", "assistant", "tool"]
WireFormatName = Literal["openai-chat", "openai-responses", "anthropic-messages", "gemini"]


class ChatMessage(BaseModel):
    """One turn of a conversation. ``tool`` turns answer a tool call (``tool_call_id``) where the format has them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: ChatRole
    content: str
    tool_call_id: str | None = None

    @classmethod
    def system(cls, text: str) -> ChatMessage:
        return cls(role="system", content=text)

    @classmethod
    def user(cls, text: str) -> ChatMessage:
        return cls(role="user", content=text)

    @classmethod
    def assistant(cls, text: str) -> ChatMessage:
        return cls(role="assistant", content=text)


class ToolCall(BaseModel):
    """A function the model asks the caller to run; ``arguments`` is the JSON text the model wrote."""

    model_config = ConfigDict(frozen=True)

    id: str | None = None
    name: str
    arguments: str = ""


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
