"""``KieEmulator``: both Kie.ai hosts on loopback, started and stopped as one unit."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from kie_async.core.settings import KieSettings, RateLimitSettings
from kie_async.emulator.chat_schemas import load_chat_schemas
from kie_async.emulator.config import EmulatorConfig
from kie_async.emulator.context import EmulatorContext
from kie_async.emulator.faults import FaultEndpoint, FaultKind, FaultRegistry, FaultRule
from kie_async.emulator.lifecycle import schedule_completion
from kie_async.emulator.market import build_market_app
from kie_async.emulator.policy import price_table_cost, schema_input_checker
from kie_async.emulator.price_table import load_price_catalogue
from kie_async.emulator.provider_schemas import load_provider_schemas
from kie_async.emulator.state import EmulatedTask
from kie_async.emulator.stats import EmulatorStats
from kie_async.emulator.uploads import build_upload_app, remove_tree

_UNLIMITED_CREATES = 1_000_000
_ADOPT_EVERY = 1.0


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class KieEmulator:
    """A local Kie.ai: ``async with KieEmulator(EmulatorConfig()) as emu: ... emu.settings() ...``.

    The market host (``base_url``) and the upload host (``upload_base_url``) listen on separate ports, as
    the real service uses separate hosts, so a client that mixes them up fails here too.
    """

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        base = config or EmulatorConfig()
        if overrides:  # re-validate; model_dump() would drop the excluded hook fields, so copy attributes
            base = EmulatorConfig(**{name: getattr(base, name) for name in EmulatorConfig.model_fields} | overrides)
        self.config = base
        self._ctx = EmulatorContext(self.config, Path())
        self._runners: list[web.AppRunner] = []
        self._temp_dir: str | None = None
        self._running = False

    async def __aenter__(self) -> KieEmulator:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> KieEmulator:
        if self._running:
            return self
        ctx = self._ctx
        if ctx.state is not None:
            balances = {self.config.api_key: self.config.credits, **self.config.extra_keys}
            ctx.url_secret = await asyncio.to_thread(ctx.state.open, balances)
        if ctx.state is None:  # an account in memory: its uploads and its SDK ledger live and die with it
            self._temp_dir = await asyncio.to_thread(tempfile.mkdtemp, prefix="kie-emulator-")
            ctx.upload_dir = Path(self._temp_dir)
        else:
            ctx.upload_dir = ctx.state.uploads_dir
        if self.config.upload_dir is not None:
            ctx.upload_dir = self.config.upload_dir
            await asyncio.to_thread(ctx.upload_dir.mkdir, parents=True, exist_ok=True)
        if self.config.input_checker is schema_input_checker or self.config.cost_fn is price_table_cost:
            await asyncio.to_thread(load_provider_schemas)  # read the bundled files now, not in a request
            await asyncio.to_thread(load_price_catalogue)
        await asyncio.to_thread(load_chat_schemas)  # the chat routes are built from them: read off the loop
        ctx.client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        try:
            market_sock = _bind(self.config.host, self.config.port)
            upload_sock = _bind(self.config.host, self.config.upload_port)
            ctx.market_port = market_sock.getsockname()[1]
            ctx.upload_port = upload_sock.getsockname()[1]
            host = self.config.url_host()
            ctx.base_url = f"http://{host}:{ctx.market_port}"
            ctx.upload_base_url = f"http://{host}:{ctx.upload_port}"
            for app, sock in ((build_market_app(ctx), market_sock), (build_upload_app(ctx), upload_sock)):
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
                await runner.setup()
                self._runners.append(runner)
                await web.SockSite(runner, sock).start()
        except BaseException:
            await self._teardown()
            raise
        self._running = True
        if ctx.state is not None:
            self._adopt_unfinished()
        return self

    def _adopt_unfinished(self, fired: asyncio.TimerHandle | None = None) -> None:
        """With a state folder: finish tasks other processes sold and left (now, then every second)."""
        ctx = self._ctx
        if fired is not None:
            ctx.timers.discard(fired)

        async def adopt() -> None:
            for task in await asyncio.to_thread(ctx.tasks.adopt_unfinished):
                schedule_completion(ctx, task)
            if self._running:
                handles: list[asyncio.TimerHandle] = []
                handles.append(
                    asyncio.get_running_loop().call_later(_ADOPT_EVERY, lambda: self._adopt_unfinished(handles[0]))
                )
                ctx.timers.add(handles[0])

        ctx.spawn(adopt())

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        await self._teardown()

    async def _teardown(self) -> None:
        await self._ctx.drain(timeout=self.config.callback_timeout)
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self._ctx.client is not None:
            await self._ctx.client.close()
            self._ctx.client = None
        if self._temp_dir is not None:
            await asyncio.to_thread(remove_tree, Path(self._temp_dir))
            self._temp_dir = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def base_url(self) -> str:
        """Market host, the emulator's ``https://api.kie.ai``."""
        return self._ctx.base_url

    @property
    def upload_base_url(self) -> str:
        """Upload host, the emulator's ``https://kieai.redpandaai.co``."""
        return self._ctx.upload_base_url

    @property
    def port(self) -> int:
        return self._ctx.market_port

    @property
    def upload_port(self) -> int:
        return self._ctx.upload_port

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def faults(self) -> FaultRegistry:
        return self._ctx.faults

    @property
    def stats(self) -> EmulatorStats:
        """Live counters (``.snapshot()`` for a frozen copy)."""
        return self._ctx.stats

    def settings(self, **overrides: Any) -> KieSettings:
        """SDK settings aimed at this emulator, with its key and its createTask limit."""
        limit = self.config.create_rate_limit or _UNLIMITED_CREATES
        values: dict[str, Any] = {
            "api_key": SecretStr(self.api_key),
            "base_url": self.base_url,
            "upload_base_url": self.upload_base_url,
            "rate_limit": RateLimitSettings(
                create_per_window=limit, create_window_seconds=self.config.create_rate_window
            ),
        }
        ledger = self.ledger_dir
        if ledger is not None:
            values["ledger_dir"] = str(ledger)
        values.update(overrides)
        return KieSettings(**values)

    @property
    def ledger_dir(self) -> Path | None:
        """Where an SDK aimed at this emulator keeps its purchase ledger: the emulated account's own, beside its
        state (or in its temporary folder), so it never mixes with a real account's or another emulator's."""
        if self.config.state_dir is not None:
            return self.config.state_dir / "ledger"
        return Path(self._temp_dir) / "ledger" if self._temp_dir is not None else None

    def fail_next(
        self, n: int = 1, code: str = "500", msg: str = "Generation failed (injected by the emulator)"
    ) -> FaultRule:
        """The next ``n`` created tasks end in ``fail`` with this failCode/failMsg."""
        return self.faults.add(FaultEndpoint.CREATE_TASK, FaultKind.TASK_FAIL, count=n, fail_code=code, fail_msg=msg)

    def credits(self, api_key: str | None = None) -> float:
        return self._ctx.ledger.balance(api_key or self.api_key)

    def set_credits(self, amount: float, api_key: str | None = None) -> None:
        self._ctx.ledger.set(api_key or self.api_key, amount)

    def task(self, task_id: str) -> EmulatedTask | None:
        """Inspect a task (e.g. to prove a reset_after request really created it)."""
        return self._ctx.tasks.get(task_id)

    def tasks(self) -> list[EmulatedTask]:
        return self._ctx.tasks.all()

    def __repr__(self) -> str:
        state = f"{self.base_url} / {self.upload_base_url}" if self._running else "stopped"
        return f"KieEmulator({state})"
