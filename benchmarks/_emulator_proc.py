"""Run a KieEmulator in its own process for a benchmark, so the emulator's CPU is not billed to the SDK.

    python benchmarks/_emulator_proc.py '{"generation_seconds": 2, "create_rate_limit": 200}'

``"_render": "template"`` (set by the fan-out benchmarks) swaps the emulator's per-task pyvips rendering
(about 12 ms of CPU for a 256 px PNG, plus 4 ms of random padding per MB) for one rendered template per
format/size padded once from a cached noise block: still a valid image of ``output_bytes``, the same bytes for
every task of one format, size and length (padding each output cost ~0.5 ms of crc32 and copies per MiB).
On a 2-core machine the provider's rendering would otherwise compete with the SDK for the same cores; the
real provider renders on its own servers. ``"full"`` keeps the emulator as shipped.

Prints one JSON line (base_url, upload_base_url, api_key, create limit) once listening, then serves until
stdin closes or SIGTERM arrives. The real Kie.ai is remote; a separate process is the closest stand-in on one
machine, and it keeps event-loop lag figures about the client loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

from kie_async.emulator import EmulatorConfig, KieEmulator


def install_template_renderer() -> None:
    import threading

    from kie_async.emulator import lifecycle, media

    templates: dict[tuple[bool, str, tuple[int, int]], tuple[bytes, str]] = {}
    padded: dict[tuple[tuple[bool, str, tuple[int, int]], int], bytes] = {}
    noise = {"block": b""}
    lock = threading.Lock()

    def cached_noise(seed_text: str, size: int) -> bytes:
        del seed_text
        with lock:
            if len(noise["block"]) < size:
                noise["block"] = os.urandom(size)
        return noise["block"][:size]

    def render(
        seed_text: str,
        params: dict[str, Any],
        *,
        video: bool,
        long_edge: int,
        target_bytes: int | None,
        audio: bool = False,
    ) -> tuple[bytes, str]:
        if audio:  # the WAV is tiny and fixed: nothing to cache
            return media.render_output(
                seed_text, params, video=video, long_edge=long_edge, target_bytes=target_bytes, audio=True
            )
        key = (video, media.output_format(params), media.output_size(params, long_edge))
        with lock:
            base = templates.get(key)
        if base is None:
            base = media.render_output("template", params, video=video, long_edge=long_edge, target_bytes=None)
            with lock:
                templates[key] = base
        data, content_type = base
        if not target_bytes:
            return data, content_type
        with lock:
            done = padded.get((key, target_bytes))
        if done is None:  # the noise is cached too, so every output of one format/size/length is the same bytes
            if video:
                done = media.pad_mp4(data, target_bytes, seed_text)
            elif key[1] == "jpeg":
                done = media.pad_jpeg(data, target_bytes, seed_text)
            else:
                done = media.pad_png(data, target_bytes, seed_text)
            with lock:
                padded[(key, target_bytes)] = done
        return done, content_type

    media._noise = cached_noise
    lifecycle.render_output = render  # type: ignore[attr-defined]


async def serve(overrides: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def stdin_closed() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), stdin_closed)
    async with KieEmulator(EmulatorConfig(**overrides)) as emu:
        print(
            json.dumps(
                {
                    "base_url": emu.base_url,
                    "upload_base_url": emu.upload_base_url,
                    "api_key": emu.api_key,
                    "create_rate_limit": emu.config.create_rate_limit,
                    "create_rate_window": emu.config.create_rate_window,
                }
            ),
            flush=True,
        )
        await stop.wait()


def main() -> int:
    overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if overrides.pop("_render", "full") == "template":
        install_template_renderer()
    profile_to = os.environ.get("KIE_BENCH_EMULATOR_PROFILE")  # diagnosis: where the emulator's CPU goes
    profiler = None
    if profile_to:
        import cProfile
        import time

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(overrides))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
