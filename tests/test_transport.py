"""Bring your own transport (a ClientSession or a connector, never closed by us) and environment proxies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from kie_async import KieSession
from kie_async.core.settings import KieSettings, RetrySettings
from kie_async.emulator import KieEmulator
from kie_async.errors import KieConfigError, KieConnectionError, KieSubmissionUncertainError
from kie_async.wire.transport import Transport

FAKE_HOST = "kie.invalid"  # RFC 6761: never resolves, so only the proxy can reach it


class TinyProxy:
    """A forward HTTP proxy on loopback: absolute-form requests go to 127.0.0.1 on the same port; CONNECT is refused."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            first, *lines = [line for line in head.split("\r\n") if line]
            method, target, _ = first.split(" ")
            self.seen.append((method, target))
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            hop = ("connection:", "proxy-connection:", "keep-alive:")
            kept = [line for line in lines if not line.lower().startswith(hop)]
            sizes = [int(line.split(":", 1)[1]) for line in kept if line.lower().startswith("content-length:")]
            length = sizes[0] if sizes else 0
            body = await reader.readexactly(length) if length else b""
            parts = urlsplit(target)
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", parts.port)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            request = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in kept)
            request += "Connection: close\r\n\r\n"
            upstream_writer.write(request.encode("latin-1") + body)
            writer.write(await upstream_reader.read())
            upstream_writer.close()
        finally:
            await writer.drain()
            writer.close()

    async def __aenter__(self) -> TinyProxy:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TinyProxy]:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    async with TinyProxy() as server:
        monkeypatch.setenv("HTTP_PROXY", server.url)
        monkeypatch.setenv("HTTPS_PROXY", server.url)
        yield server


def via_fake_host(emulator: KieEmulator, **overrides: object) -> KieSettings:
    """The emulator under a host name only the proxy can reach (so live use must be opted into)."""
    values: dict[str, object] = {
        "base_url": f"http://{FAKE_HOST}:{emulator.port}",
        "upload_base_url": f"http://{FAKE_HOST}:{emulator.upload_port}",
        "allow_live": True,
        "retry": RetrySettings(max_retries=0),
    }
    return emulator.settings(**{**values, **overrides})


async def test_http_proxy_from_the_environment_is_used(emulator: KieEmulator, proxy: TinyProxy) -> None:
    async with KieSession(via_fake_host(emulator)) as kie:
        assert (await kie.get_credits()).credits == emulator.credits()
        task = await kie.create_task(model="nano-banana-2", input={"prompt": "fox"})
    assert [method for method, _ in proxy.seen] == ["GET", "POST"]
    assert proxy.seen[0][1].startswith(f"http://{FAKE_HOST}:{emulator.port}/api/v1/chat/credit")
    assert emulator.task(task.task_id) is not None


async def test_no_proxy_and_loopback_go_direct(
    emulator: KieEmulator, proxy: TinyProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with KieSession(emulator.settings()) as kie:  # 127.0.0.1: the emulator is never proxied
        await kie.get_credits()
    assert proxy.seen == []
    monkeypatch.setenv("NO_PROXY", f"example.org,{FAKE_HOST}")
    async with KieSession(via_fake_host(emulator)) as kie:
        with pytest.raises(KieConnectionError) as caught:
            await kie.get_credits()  # direct to a name that never resolves
    assert caught.value.request_sent is False
    assert proxy.seen == []


async def test_trust_env_off_ignores_the_proxy(emulator: KieEmulator, proxy: TinyProxy) -> None:
    async with KieSession(via_fake_host(emulator, trust_env=False)) as kie:
        with pytest.raises(KieConnectionError):
            await kie.get_credits()
    assert proxy.seen == []
    assert KieSettings.from_env().trust_env is True


def test_kie_trust_env_variable_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIE_TRUST_ENV", "0")
    assert KieSettings.from_env().trust_env is False
    transport = Transport.__new__(Transport)
    transport.proxies = {}
    assert transport.proxy_for("https://api.kie.ai/x") is None


async def test_proxy_refusing_the_tunnel_is_not_an_uncertain_submission(
    emulator: KieEmulator, proxy: TinyProxy
) -> None:
    settings = via_fake_host(emulator, base_url=f"https://{FAKE_HOST}")
    async with KieSession(settings) as kie:
        with pytest.raises(KieConnectionError) as caught:
            await kie.create_task(model="nano-banana-2", input={"prompt": "fox"})
    assert not isinstance(caught.value, KieSubmissionUncertainError)
    assert caught.value.request_sent is False and "proxy refused" in str(caught.value)
    assert proxy.seen == [("CONNECT", f"{FAKE_HOST}:443")]
    assert emulator.stats.tasks_created == 0


async def test_own_client_session_is_used_and_never_closed(emulator: KieEmulator) -> None:
    async with aiohttp.ClientSession() as mine:
        kie = KieSession(emulator.settings(), http_session=mine)
        async with kie:
            assert kie.http is mine
            await kie.get_credits()
        assert not mine.closed
        async with kie:  # reopened on the same pool
            await kie.get_credits()
        assert not mine.closed
        async with mine.get(emulator.base_url + "/api/v1/chat/credit") as response:
            assert response.status == 200  # still the caller's, still working
    assert emulator.stats.requests["credit"] == 3


async def test_own_session_closed_under_us_is_a_typed_error(emulator: KieEmulator) -> None:
    mine = aiohttp.ClientSession()
    async with KieSession(emulator.settings(), http_session=mine) as kie:
        await mine.close()
        with pytest.raises(KieConfigError) as caught:
            await kie.get_credits()
        assert "closed by its owner" in str(caught.value)
    with pytest.raises(KieConfigError):
        await KieSession(emulator.settings(), http_session=mine).open()


async def test_own_connector_is_used_and_never_closed(emulator: KieEmulator) -> None:
    connector = aiohttp.TCPConnector(limit=2)
    try:
        async with KieSession(emulator.settings(), connector=connector) as kie:
            assert kie.http.connector is connector
            await asyncio.gather(*(kie.get_credits() for _ in range(5)))
        assert not connector.closed
    finally:
        await connector.close()
    with pytest.raises(KieConfigError):
        async with aiohttp.ClientSession() as mine:
            await KieSession(emulator.settings(), http_session=mine, connector=aiohttp.TCPConnector()).open()


async def test_things_that_are_not_a_pool_are_refused_by_name(emulator: KieEmulator) -> None:
    for kwargs, named in (({"http_session": "a string"}, "http_session"), ({"connector": object()}, "connector")):
        with pytest.raises(KieConfigError) as caught:
            await KieSession(emulator.settings(), **kwargs).open()  # type: ignore[arg-type]
        assert named in str(caught.value)


async def test_own_session_from_another_loop_is_refused(emulator: KieEmulator) -> None:
    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    theirs = await asyncio.to_thread(asyncio.run, make())
    with pytest.raises(KieConfigError) as caught:
        await KieSession(emulator.settings(), http_session=theirs).open()
    assert "another event loop" in str(caught.value)
