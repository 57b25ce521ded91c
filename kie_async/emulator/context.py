"""Shared runtime state of one emulator instance, handed to both aiohttp apps."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kie_async.emulator.config import EmulatorConfig
from kie_async.emulator.faults import FaultRegistry
from kie_async.emulator.media import OutputCache
from kie_async.emulator.persist import PersistentLedger, PersistentTaskStore, StateFolder
from kie_async.emulator.state import CreditLedger, SlidingWindowLimiter, TaskStore
from kie_async.emulator.stats import EmulatorStats

log = logging.getLogger("kie_async.emulator")


class EmulatorContext:
    """Everything the route handlers share; one per :class:`~kie_async.emulator.KieEmulator`."""

    def __init__(self, config: EmulatorConfig, upload_dir: Path) -> None:
        self.config = config
        self.faults = FaultRegistry(config.seed)
        self.stats = EmulatorStats()
        self.tasks = TaskStore()
        self.create_arrivals: deque[dict[str, str | None]] = deque(maxlen=100_000)
        self.ledger = CreditLedger({config.api_key: config.credits, **config.extra_keys})
        self.create_limiter = (
            SlidingWindowLimiter(config.create_rate_limit, config.create_rate_window)
            if config.create_rate_limit
            else None
        )
        self.record_limiter = (
            SlidingWindowLimiter(config.record_info_rate_limit, 1.0) if config.record_info_rate_limit else None
        )
        self.outputs = OutputCache(config.output_cache_bytes)
        self.render_locks: dict[str, asyncio.Lock] = {}
        self.upload_dir = upload_dir
        self.url_secret = secrets.token_bytes(32)
        self.state: StateFolder | None = None
        if config.state_dir is not None:  # the account lives on disk, shared with other processes (opened by start)
            self.state = StateFolder(config.state_dir)
            self.tasks = PersistentTaskStore(self.state)
            self.ledger = PersistentLedger(self.state)
        self.base_url = ""
        self.upload_base_url = ""
        self.market_port = 0
        self.upload_port = 0
        self.client: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.timers: set[asyncio.TimerHandle] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run fire-and-forget work (callbacks) that stop() can still wait for or cancel."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout: float) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        pending = list(self._background)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)

    def http_client(self) -> aiohttp.ClientSession:
        if self.client is None or self.client.closed:
            raise RuntimeError("emulator is not running")
        return self.client


CONTEXT_KEY: web.AppKey[EmulatorContext] = web.AppKey("kie_emulator_context", EmulatorContext)
