"""The emulator's chat endpoints at the wire (no SDK): bundled page schemas, auth, SSE shapes, charges, faults."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kie_async.emulator import KieEmulator
from kie_async.emulator.chat_routes import pieces
from kie_async.emulator.chat_schemas import CHAT_BUNDLE_DIR, extract_chat, load_chat_schemas

GPT52 = "/gpt-5-2/v1/chat/completions"
CLAUDE = "/claude/v1/messages"
RESPONSES = "/api/v1/responses"
GEMINI = "/gemini-3-pro/v1/chat/completions"


def test_bundled_chat_schemas_match_their_pages(kie_docs: Path) -> None:
    wanted = {name: bundle.to_json() for name, bundle in extract_chat(kie_docs).items()}
    present = {p.name: p.read_text(encoding="utf-8") for p in CHAT_BUNDLE_DIR.glob("*.json")}
    assert len(wanted) == 15 and wanted == present, "regenerate with `python scripts/extract_provider_schemas.py`"


def test_every_bundle_names_its_page_and_format() -> None:
    bundle = load_chat_schemas()
    assert {s.wire_format for s in bundle.schemas} == {
        "openai-chat",
        "openai-responses",
        "anthropic-messages",
        "gemini",
    }
    for schema in bundle.schemas:
        assert (schema.page["url"] or "").startswith("https://docs.kie.ai/") and len(schema.page["sha256"] or "") == 64
        assert '"description": "' not in json.dumps(schema.schema_)  # facts only, no prose


def test_chunking_keeps_every_character() -> None:
    text = "A supercalifragilistic answer, with  two spaces."
    bits = list(pieces(text))
    assert "".join(bits) == text and len(bits) > 6 and max(len(b) for b in bits) <= 6


async def _post(client: aiohttp.ClientSession, url: str, body: Any, **headers: str) -> tuple[int, str, str]:
    async with client.post(url, json=body, headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_auth_and_the_page_schema_judge_each_request(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    async with aiohttp.ClientSession() as anonymous:
        status, _, text = await _post(anonymous, emulator.base_url + GPT52, {"messages": []})
    assert status == 401 and json.loads(text)["error"]["type"] == "authentication_error"
    # the page's Message schema wants content as a list of parts, not a bare string
    status, _, text = await _post(
        emulator_client, emulator.base_url + GPT52, {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 400 and "messages.0.content" in json.loads(text)["error"]["message"]
    status, _, text = await _post(
        emulator_client,
        emulator.base_url + CLAUDE,
        {"model": "claude-sonnet-4-5", "messages": [{"role": "system", "content": "x"}]},
    )
    assert status == 400 and "'system' is not one of" in text
    balance = emulator.credits()
    status, _, text = await _post(
        emulator_client,
        emulator.base_url + RESPONSES,
        {"model": "gpt-5.3-codex", "input": "plain string input", "stream": False},
    )
    answer = json.loads(text)
    assert (
        status == 200
        and answer["status"] == "completed"
        and "[gpt-5.3-codex]" in answer["output"][0]["content"][0]["text"]
    )
    assert emulator.credits() == pytest.approx(balance - answer["credits_consumed"])


async def test_claude_takes_the_x_api_key_header(emulator: KieEmulator) -> None:
    async with aiohttp.ClientSession() as client:
        status, kind, text = await _post(
            client,
            emulator.base_url + CLAUDE,
            {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "stream": False},
            **{"x-api-key": emulator.api_key},
        )
    assert status == 200 and kind.startswith("application/json") and json.loads(text)["stop_reason"] == "end_turn"


async def test_streams_follow_each_format_and_the_page_default(
    emulator: KieEmulator, emulator_client: aiohttp.ClientSession
) -> None:
    parts = [{"type": "text", "text": "hi there"}]
    # Gemini's OpenAI-style pages default to streaming: no `stream` field means SSE
    status, kind, text = await _post(
        emulator_client, emulator.base_url + GEMINI, {"messages": [{"role": "user", "content": parts}]}
    )
    assert status == 200 and kind.startswith("text/event-stream")
    assert text.rstrip().endswith("data: [DONE]") and '"credits_consumed"' in text
    status, kind, text = await _post(
        emulator_client,
        emulator.base_url + CLAUDE,
        {"model": "claude-opus-4-5", "messages": [{"role": "user", "content": "hi"}]},
    )
    events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop" and "content_block_delta" in events
    # GPT 5.2's page documents no stream switch: it answers whole even when asked to stream
    status, kind, _ = await _post(
        emulator_client, emulator.base_url + GPT52, {"messages": [{"role": "user", "content": parts}], "stream": True}
    )
    assert status == 200 and kind.startswith("application/json")


async def test_a_cut_stream_drops_after_n_events(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.faults.add("chat", "stream_cut", after_events=2)
    lines: list[bytes] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with emulator_client.post(
            emulator.base_url + RESPONSES, json={"model": "gpt-5-codex", "input": "hello", "stream": True}
        ) as response:
            async for line in response.content:
                lines.append(line)
    assert sum(1 for line in lines if line.startswith(b"data: ")) == 2


async def test_no_credits_is_a_402(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.set_credits(0)
    status, _, text = await _post(
        emulator_client,
        emulator.base_url + CLAUDE,
        {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 402 and "insufficient" in text


async def test_slow_body_paces_the_events(emulator: KieEmulator, emulator_client: aiohttp.ClientSession) -> None:
    emulator.faults.add("chat", "slow_body", chunk_delay=0.02)
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()
    async with emulator_client.post(
        emulator.base_url + RESPONSES, json={"model": "gpt-5-codex", "input": "hello there", "stream": True}
    ) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                arrivals.append(loop.time())
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert len(arrivals) > 5 and gaps[len(gaps) // 2] >= 0.01  # most events arrive on their own, paced
