"""The connection pool a session and its views send through, the loop it belongs to, and the coordinator.

One ``aiohttp.ClientSession`` (one bounded pool) per session, opened in the running loop by ``open()`` and
refused from any other loop (see :mod:`kie_async.core.loop_state`). The coordinator is where sessions on the
same account meet (rate limits, callbacks, uploads); it is in-process unless ``coordination_url`` is set, and
then connects on ``open()``. Views made by ``with_options`` hold the same ``Connection``, so one opened after
a view was made is the one the view sends through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel

from kie_async.coordination import Coordinator, LocalCoordinator, account_namespace
from kie_async.coordination.shared import open_shared_coordinator
from kie_async.core.errors import KieConfigError
from kie_async.core.loop_state import LoopState, not_open_error, running_loop, wrong_loop_error
from kie_async.core.settings import KieSettings
from kie_async.wire.transport import Transport, open_transport


class SessionStats(BaseModel):
    """Counters for benchmarks and tests: what this session actually sent."""

    requests: dict[str, int] = {}
    retries: int = 0
    rate_limited: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0

    def count(self, endpoint: str) -> None:
        self.requests[endpoint] = self.requests.get(endpoint, 0) + 1


def local_coordinator(settings: KieSettings) -> Coordinator:
    """The in-process coordinator for the account ``settings`` names (a fresh one has its own limits)."""
    namespace = account_namespace(settings.key_value(), settings.coordination_prefix)
    return LocalCoordinator(namespace, settings.rate_limit)


class Connection:
    """The pool, its loop and the coordinator; built once per session and shared with its views."""

    def __init__(
        self,
        settings: KieSettings,
        *,
        http_session: aiohttp.ClientSession | None = None,
        connector: aiohttp.BaseConnector | None = None,
    ) -> None:
        self.coordinator: Coordinator = local_coordinator(settings)
        self._byo_http = http_session
        self._byo_connector = connector
        self.transport: Transport | None = None
        self.loop_state: LoopState | None = None
        self.http: aiohttp.ClientSession | None = None
        # The key goes only to these hosts (Kie.ai's own API hosts), never to file hosts that serve outputs.
        self.auth_hosts = {urlsplit(settings.base_url).netloc, urlsplit(settings.upload_base_url).netloc}

    @property
    def is_open(self) -> bool:
        return self.http is not None and not self.http.closed

    async def open(self, settings: KieSettings, attach: Callable[[Coordinator], None]) -> None:
        """Create the pool in the running loop (see ``KieSession.open``); ``attach`` subscribes to the coordinator."""
        if self.http is not None and self.loop_state is not None:
            self.loop_state.check("open again")
            return
        if settings.is_live and not settings.allow_live:
            raise KieConfigError(
                "refusing to call the real Kie.ai (it spends credits) without an explicit opt-in",
                hint="set KIE_ALLOW_LIVE=1 or KieSettings(allow_live=True); use `kie-async emulator` to work offline",
            )
        if settings.coordination_url is not None and self.coordinator.kind == "local":
            self.coordinator = await open_shared_coordinator(settings)
        attach(self.coordinator)
        self.transport = open_transport(settings, http_session=self._byo_http, connector=self._byo_connector)
        self.loop_state = LoopState(settings)
        self.http = self.transport.http

    def loop_ended(self) -> bool:
        """Whether the loop that opened the pool is gone; raises if it still runs and this is another loop.

        From another loop than the one that opened it, only a pool whose loop has ended can be let go of (its
        connections cannot be awaited any more); while that loop runs, close it from there.
        """
        state = self.loop_state
        ended = state is not None and running_loop() is not state.loop
        if state is not None and ended and not state.loop.is_closed():
            raise wrong_loop_error("close", opened_loop_closed=False)
        return ended

    async def close_pool(self, *, ended: bool) -> None:
        """Close the pool (never one the caller brought; aiohttp lets one of a dead loop go without it)."""
        if self.transport is not None:
            if ended:
                with contextlib.suppress(RuntimeError):
                    await self.transport.close()
            else:
                await self.transport.close()
        self.transport = None
        self.http = None
        self.loop_state = None

    async def close_coordinator(self, settings: KieSettings, *, ended: bool) -> None:
        """Let a shared coordinator go; a reopened session connects afresh."""
        if self.coordinator.kind != "local":
            if not ended:  # a shared store's connections belong to the loop that opened them
                await self.coordinator.close()
            self.coordinator = local_coordinator(settings)

    def bound(self, action: str = "send a request") -> LoopState:
        """The loop-bound state, after checking the session is open and used from the loop that opened it."""
        state = self.loop_state
        if state is None or self.http is None:
            raise not_open_error()
        state.check(action)
        if self.http.closed:
            raise KieConfigError(
                "the aiohttp.ClientSession this KieSession sends through was closed by its owner",
                hint="keep your http_session= open until the KieSession is closed",
            )
        return state

    def checked_http(self) -> aiohttp.ClientSession:
        """The pool, after :meth:`bound`'s checks."""
        self.bound()
        assert self.http is not None  # bound checked it
        return self.http

    def proxy_for(self, url: str) -> str | None:
        return self.transport.proxy_for(url) if self.transport is not None else None

    def upload_slots(self) -> asyncio.Semaphore:
        return self.bound("upload").upload_slots

    def download_slots(self) -> asyncio.Semaphore:
        return self.bound("download").download_slots
