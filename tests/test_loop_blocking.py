"""Never block the event loop: asyncio's debug mode reports any callback that holds the loop too long.

A whole pipeline (4K input hashed and uploaded, 4K output downloaded, manifest, pyvips derivatives, index)
runs with ``slow_callback_duration`` at 100 ms; the control test proves the detector catches a real block.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
import pyvips

from kie_async import KieSession, PipelineOptions, PollSettings, RawUserRequest, run_many
from kie_async.artifacts import ArtifactSettings
from kie_async.emulator import EmulatorConfig, KieEmulator

SLOW = 0.1


def slow_callbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asyncio" and "Executing" in r.getMessage()]


@pytest.fixture
def watch_loop(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    loop = asyncio.get_running_loop() if False else None
    del loop
    caplog.set_level(logging.WARNING, logger="asyncio")
    return caplog


async def test_detector_catches_a_blocking_call(watch_loop: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW

    async def blocker() -> None:
        time.sleep(SLOW * 1.5)  # the thing the SDK must never do

    await asyncio.create_task(blocker())
    loop.set_debug(False)
    assert slow_callbacks(watch_loop), "debug mode did not report a 150 ms block"


async def test_pipeline_with_4k_media_never_blocks(watch_loop: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    source = tmp_path / "input-4k.png"
    await asyncio.to_thread(
        lambda: pyvips.Image.gaussnoise(3840, 2160).cast("uchar").bandjoin([128, 64]).write_to_file(str(source))
    )
    config = EmulatorConfig(generation_seconds=0.2, image_long_edge=3840, create_rate_limit=400)
    requests = [
        RawUserRequest(model_key="nano-banana-pro", prompt=f"edit {i}", images=[source], options={"resolution": "4K"})
        for i in range(3)
    ]
    async with KieEmulator(config) as emulator:
        settings = emulator.settings(poll=PollSettings(schedule=((float("inf"), 0.05),)))
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW
        try:
            async with KieSession(settings) as kie:
                results = await run_many(
                    requests,
                    kie,
                    concurrency=3,
                    options=PipelineOptions(artifacts=ArtifactSettings(root=tmp_path / "out")),
                )
        finally:
            loop.set_debug(False)
    assert all(r.succeeded for r in results), [r.error for r in results]
    assert emulator.stats.uploads == 1  # identical input hashed and uploaded once
    assert slow_callbacks(watch_loop) == []
