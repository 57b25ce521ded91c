"""Chat on Kie.ai at the wire: the typed models, the four formats' codecs and the SSE reader."""

from kie_async.wire.chat.models import ChatDelta, ChatMessage, ChatResult, ChatUsage, ChatWire, ToolCall

__all__ = ["ChatDelta", "ChatMessage", "ChatResult", "ChatUsage", "ChatWire", "ToolCall"]
