"""Shared fixtures. Keep this file small: helpers that only one test module needs belong in that module."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kie_async.emulator import EmulatorConfig, KieEmulator
from tests.redis_server import RedisServer

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # A non-interactive shell starts a background command with SIGINT ignored, and every child inherits that:
    # the tests that press Ctrl-C (tests/test_interrupts.py) then wait for an interrupt that never comes.
    signal.signal(signal.SIGINT, signal.default_int_handler)

if "KIE_ASYNC_CACHE_DIR" not in os.environ:  # the compiled spec index: one per test run, not the user's cache
    import tempfile

    os.environ["KIE_ASYNC_CACHE_DIR"] = tempfile.mkdtemp(prefix="kie-async-test-cache-")
if "XDG_STATE_HOME" not in os.environ:
    # The user's purchase ledger is never the suite's, not even for a subprocess whose environment drops KIE_*.
    import tempfile

    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="kie-async-test-state-")


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own state folder: what this machine remembers of shared ledgers must not leak between tests
    (the shared test Redis is flushed for every test, which a remembered ledger would rightly call a loss)."""
    monkeypatch.setenv("KIE_STATE_DIR", str(tmp_path_factory.mktemp("state")))


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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the whole test session (see tests/redis_server.py); tests get it flushed."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean Redis for one test."""
    if redis_server.proc is None:
        redis_server.start()  # an earlier test stopped it
    redis_server.flush()
    return redis_server.url


def provider_docs_root() -> Path | None:
    """Kie.ai's captured docs pages (reference material beside the repo, never inside it).

    ``KIE_PROVIDER_DOCS`` names the folder explicitly; otherwise ``../shared/kie-docs`` next to the checkout.
    """
    explicit = os.environ.get("KIE_PROVIDER_DOCS")
    candidates = [Path(explicit)] if explicit else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "kie-docs")
    for candidate in candidates:
        if (candidate / "manifest.json").is_file():
            return candidate
    return None


@pytest.fixture
def kie_docs() -> Path:
    """The captured provider docs; tests that compare against the pages skip (saying why) without them."""
    root = provider_docs_root()
    if root is None:
        pytest.skip("Kie.ai's captured docs pages are not here (set KIE_PROVIDER_DOCS or put ../shared/kie-docs)")
    return root
