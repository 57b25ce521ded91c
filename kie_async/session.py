"""The session a user opens: ``async with KieSession() as kie``.

Its machinery lives in :mod:`kie_async.client` (the HTTP request path, waiting, callback adoption, uploads);
this is its public home, and where the calls built on top of it join it: chat (:mod:`kie_async.pipeline.chat`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kie_async.client.base import KieSession as _BaseSession
from kie_async.ledger.budget import CreditBudget
from kie_async.pipeline.chat import ChatStream, MessagesIn, chat, chat_stream
from kie_async.wire.chat.models import ChatResult


class KieSession(_BaseSession):
    __doc__ = _BaseSession.__doc__

    async def chat(self, model: str, messages: MessagesIn, *, system: str | None = None,
                   options: Mapping[str, Any] | None = None, budget: CreditBudget | None = None,
                   reserve_credits: float | None = None, allow_unknown_cost: bool = False,
                   provider_model: str | None = None, timeout: float | None = None) -> ChatResult:
        """Ask a chat model and get the whole answer (see :func:`kie_async.pipeline.chat.chat`)."""
        return await chat(self, model, messages, system=system, options=options, budget=budget,
                          reserve_credits=reserve_credits, allow_unknown_cost=allow_unknown_cost,
                          provider_model=provider_model, timeout=timeout)

    def chat_stream(self, model: str, messages: MessagesIn, *, system: str | None = None,
                    options: Mapping[str, Any] | None = None, budget: CreditBudget | None = None,
                    reserve_credits: float | None = None, allow_unknown_cost: bool = False,
                    provider_model: str | None = None, timeout: float | None = None) -> ChatStream:
        """Ask a chat model and ``async for`` over the answer as it arrives (see
        :func:`kie_async.pipeline.chat.chat_stream`)."""
        return chat_stream(self, model, messages, system=system, options=options, budget=budget,
                           reserve_credits=reserve_credits, allow_unknown_cost=allow_unknown_cost,
                           provider_model=provider_model, timeout=timeout)


__all__ = ["KieSession"]
