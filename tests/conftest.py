"""Shared fixtures. Keep this file small: helpers that only one test module needs belong in that module."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from kie_async.emulator import EmulatorConfig, KieEmulator


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a test module (or parametrize indirectly) to change how ``emulator`` behaves."""
    return EmulatorConfig(generation_seconds=0.2)


@pytest.fixture
async def emulator(emulator_config: EmulatorConfig) -> AsyncIterator[KieEmulator]:
    """A running emulator on ephemeral loopback ports, stopped after the test."""
    async with KieEmulator(emulator_config) as emu:
        yield emu


@pytest.fixture
async def emulator_client(emulator: KieEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session that sends the emulator's Bearer key (for wire-level tests, no SDK)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {emulator.api_key}"}) as session:
        yield session


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port for the block; yields its base URL (e.g. for a callback receiver)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
