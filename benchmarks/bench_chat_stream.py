"""Chat streaming overhead: ``KieSession.chat_stream`` vs a raw aiohttp SSE reader on the same emulator.

    python benchmarks/bench_chat_stream.py            # full (about 30 s)
    python benchmarks/bench_chat_stream.py --quick    # seconds

The emulator runs in its own process and streams a deterministic answer of about a hundred small chunks. The raw
client posts the same body with the same headers, reads the body line by line, and ``json.loads`` every ``data:``
line to take the text out (what any hand-written SSE client does); the SDK adds spec lookup, the codec, typed
deltas, the accumulated result and the budget-free bookkeeping. Calls alternate SDK and raw one by one.

Figures (medians over repeats of per-repeat medians):
  * time to first token (ms), SDK and raw, and their ratio (goal <= 1.1);
  * whole-stream time (ms) and the SDK's extra time per chunk (µs; goal <= 50).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp
from _common import EmulatorProcess, add_common_flags, fmt, median, print_table, ratio, write_results

from kie_async import KieSession
from kie_async.catalogue.chat_specs import load_chat_registry
from kie_async.pipeline.chat import chat_wire
from kie_async.wire.chat import ChatMessage
from kie_async.wire.chat.codecs import codec_for

PROMPT = " ".join(f"word{n}" for n in range(60))


async def sdk_call(kie: KieSession, model: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first = 0.0
    chunks = 0
    async with kie.chat_stream(model, PROMPT) as stream:
        async for delta in stream:
            if delta.kind == "text" and delta.text:
                if not chunks:
                    first = time.perf_counter() - t0
                chunks += 1
    assert stream.result.complete
    return first, time.perf_counter() - t0, chunks


async def raw_call(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first = 0.0
    chunks = 0
    async with http.post(url, data=body, headers=headers) as response:
        async for line in response.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    if not chunks:
                        first = time.perf_counter() - t0
                    chunks += 1
    return first, time.perf_counter() - t0, chunks


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    calls, repeats, warmup = (10, 2, 3) if args.quick else (args.calls, args.repeats, 10)
    spec = load_chat_registry().get(args.model)
    assert spec.wire_format == "openai-chat", "the raw reader parses OpenAI chat chunks; pick such a model"
    wire = chat_wire(spec)
    body = json.dumps(codec_for(wire).body([ChatMessage.user(PROMPT)], {}, True)).encode()
    per_repeat: list[dict[str, float]] = []
    async with EmulatorProcess() as emu:
        headers = {
            "Authorization": f"Bearer {emu.api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        url = emu.base_url + wire.path
        async with KieSession(emu.settings()) as kie, aiohttp.ClientSession() as http:
            for _ in range(warmup):
                await sdk_call(kie, args.model)
                await raw_call(http, url, body, headers)
            for r in range(repeats):
                got: dict[str, list[tuple[float, float, int]]] = {"sdk": [], "raw": []}
                for n in range(calls):
                    order = ["sdk", "raw"] if (n + r) % 2 == 0 else ["raw", "sdk"]
                    for name in order:
                        got[name].append(
                            await sdk_call(kie, args.model)
                            if name == "sdk"
                            else await raw_call(http, url, body, headers)
                        )
                chunks = median([c for _, _, c in got["sdk"]])
                assert chunks == median([c for _, _, c in got["raw"]])
                sdk_first, raw_first = median([f for f, _, _ in got["sdk"]]), median([f for f, _, _ in got["raw"]])
                sdk_all, raw_all = median([t for _, t, _ in got["sdk"]]), median([t for _, t, _ in got["raw"]])
                per_repeat.append(
                    {
                        "sdk_ttft_ms": sdk_first * 1000,
                        "raw_ttft_ms": raw_first * 1000,
                        "ttft_ratio": ratio(sdk_first, raw_first),
                        "sdk_stream_ms": sdk_all * 1000,
                        "raw_stream_ms": raw_all * 1000,
                        "stream_ratio": ratio(sdk_all, raw_all),
                        "per_chunk_overhead_us": (sdk_all - raw_all) / chunks * 1e6,
                        "chunks": chunks,
                    }
                )
    figures = {key: round(median([p[key] for p in per_repeat]), 4) for key in per_repeat[0]}
    print_table(
        f"chat stream ({args.model}, {figures['chunks']:g} chunks), medians of {repeats} repeats x {calls} calls",
        ["figure", "SDK", "raw aiohttp SSE", "SDK / raw"],
        [
            [
                "time to first token (ms)",
                fmt(figures["sdk_ttft_ms"], 3),
                fmt(figures["raw_ttft_ms"], 3),
                fmt(figures["ttft_ratio"]),
            ],
            [
                "whole stream (ms)",
                fmt(figures["sdk_stream_ms"], 3),
                fmt(figures["raw_stream_ms"], 3),
                fmt(figures["stream_ratio"]),
            ],
            ["extra per chunk (µs)", fmt(figures["per_chunk_overhead_us"], 1), "", ""],
        ],
    )
    write_results(
        "bench_chat_stream",
        args.out,
        quick=args.quick,
        params={
            "model": args.model,
            "calls_per_repeat": calls,
            "repeats": repeats,
            "warmup": warmup,
            "emulator": "separate process",
        },
        figures=figures,
        samples={"per_repeat": per_repeat},
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser)
    parser.add_argument("--model", default="gemini-2.5-flash", help="an OpenAI-chat-format chat model key")
    parser.add_argument("--calls", type=int, default=40, help="streamed calls per client per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
