"""Server-sent events from an aiohttp response: ``(event, data)`` pairs as they arrive.

The reader follows the SSE rules that matter for LLM streams: ``event:`` names the next event, ``data:`` lines
join with a newline, a blank line ends an event, ``:`` lines are comments (keep-alives), ``\\r\\n`` line ends are
accepted. A last event without its blank line is still delivered when the body ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp


async def iter_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, str]]:
    event: str | None = None
    data: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event, "\n".join(data)
