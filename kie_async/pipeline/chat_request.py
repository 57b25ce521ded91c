"""A chat call as one request of a ``run_many`` batch, beside media requests, and what it comes back as.

:class:`ChatRequest` is the typed form (``ChatRequest(model="gpt-5.5", messages="...", system=..., options=...)``);
a ``run-batch`` JSONL line with a ``"messages"`` field is one. Its result is a :class:`ChatRunResult`: a
``RunResult`` (status, state, credits, the journal key), with the chat's answer in ``chat`` (``text`` for short).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from kie_async.catalogue.request_models import RawUserRequest
from kie_async.pipeline.run_models import RunResult
from kie_async.wire.chat.models import ChatMessage, ChatResult

__all__ = ["BatchRequest", "ChatRequest", "ChatRunResult", "chat_request_key"]


class ChatRequest(BaseModel):
    """One chat call in a batch: the model, the conversation (a prompt string or turns), a system prompt, and the
    extra fields the model's page documents (``options``), exactly as :func:`kie_async.pipeline.chat.chat` takes."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    model: str = Field(
        min_length=1,
        validation_alias=AliasChoices("model", "model_key"),
        description="a chat model key, alias or provider id (``model_key`` is accepted too, as on media lines)",
    )
    messages: str | list[ChatMessage] = Field(description="a prompt, or the turns ({role, content} objects)")
    system: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    provider_model: str | None = None

    @property
    def model_key(self) -> str:
        """The model as written (the name a batch reports it under, like a media request's ``model_key``)."""
        return self.model


BatchRequest = RawUserRequest | ChatRequest
"""What one line of a batch may be: a media request or a chat call."""


def chat_request_key(request: ChatRequest) -> str:
    """The journal key of a chat call: a stable hash of the call as written (``chat-`` and 24 hex digits)."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), default=str)
    return "chat-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


class ChatRunResult(RunResult):
    """A chat call's outcome in a batch: a ``RunResult`` whose ``chat`` is the answer (``None`` when the call was
    not made, or its saved answer is gone); ``credits_charged`` is what the batch budget counted for it."""

    chat: ChatResult | None = None

    @property
    def text(self) -> str | None:
        """The answer's text (what arrived, for a call that broke off); ``None`` without an answer."""
        return self.chat.text if self.chat is not None else None
