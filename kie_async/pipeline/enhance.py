"""The built-in prompt enhancer: ``PipelineOptions(enhance="kie:<chat model>")`` rewrites the prompt through Kie chat.

The preset's system prompt (rendered for the model and task mode) and the user's prompt go to the chat model; its
answer is the enhanced prompt, which ``prompt_policy`` then sends, previews or hands to the reviewer. The chat
call runs through the run's session and counts against the run's budget (holding
``PipelineOptions.enhance_reserve_credits`` while it runs, settled to the answer's ``credits_consumed``); what it
cost and which model wrote it are kept in :class:`PromptChat` on the run result and in the run record.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from kie_async.catalogue.presets import PromptContext
from kie_async.client import BaseSession
from kie_async.ledger.budget import CreditBudget
from kie_async.pipeline.chat import chat
from kie_async.wire.chat.models import ChatMessage

KIE_PREFIX = "kie:"


class PromptChat(BaseModel):
    """The chat call that enhanced a run's prompt."""

    model_config = ConfigDict(frozen=True)

    model: str
    provider_model: str
    credits_consumed: float | None = None
    credits_charged: float | None = None
    request_id: str | None = None
    complete: bool = True

    @property
    def charged(self) -> float | None:
        """What a budget counted (the answer's figure, else the hold), or the answer's figure without a budget."""
        return self.credits_charged if self.credits_charged is not None else self.credits_consumed


def kie_model(enhance: str) -> str:
    """The chat model named by ``kie:<model>`` (ValueError for anything else)."""
    model = enhance.removeprefix(KIE_PREFIX).strip() if enhance.startswith(KIE_PREFIX) else ""
    if not model:
        raise ValueError(f"enhance={enhance!r}: a string enhancer is 'kie:<chat model>', e.g. 'kie:claude-haiku-4.5'")
    return model


async def enhance_with_kie(
    model: str, context: PromptContext, session: BaseSession, *, budget: CreditBudget | None, reserve_credits: float
) -> tuple[str | None, PromptChat]:
    """The enhanced prompt (``None`` when the answer is empty or broke off) and what the call cost."""
    messages: list[ChatMessage] = []
    if context.system_prompt:
        messages.append(ChatMessage(role="system", content=context.system_prompt))
    messages.append(ChatMessage(role="user", content=context.raw_prompt or ""))
    result = await chat(
        session, model, messages, budget=budget, reserve_credits=reserve_credits if budget is not None else None
    )
    record = PromptChat(
        model=result.model,
        provider_model=result.provider_model,
        credits_consumed=result.credits_consumed,
        credits_charged=result.credits_charged,
        request_id=result.request_id,
        complete=result.complete,
    )
    text = result.text.strip()
    return (text if text and result.complete else None), record
