"""Where a session's HTTP pool comes from: built by the session, or brought by the caller, and which proxy each
request takes.

A web app often has one ``aiohttp.ClientSession`` already (its own limits, tracing, TLS settings); a
``KieSession`` can use it (``http_session=``) or a connector (``connector=``) instead of building its own.
What the caller brings stays the caller's: the session never closes it.

Proxies: ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` from the environment are honoured by default
(``KieSettings.trust_env``), like curl, requests and httpx do, because a proxy is the operator's decision and
silently going around it fails in locked-down networks. The proxy is chosen per request here rather than by
aiohttp's own ``trust_env`` for two reasons: loopback hosts (the emulator, a local receiver) always go
direct, and aiohttp's ``trust_env`` would also read ``~/.netrc`` and send credentials found there to file
hosts. HTTPS goes through the proxy as a CONNECT tunnel, so the proxy never sees the API key.

:func:`transport_error` turns what aiohttp raises into the typed error that says whether the request was sent
(``request_sent``), which is what decides whether a ``createTask`` may be retried.
"""

from __future__ import annotations

import asyncio
import urllib.request
from urllib.parse import urlsplit

import aiohttp

from kie_async._version import __version__
from kie_async.core.errors import KieConfigError, KieConnectionError, KieError, KieTimeoutError
from kie_async.core.settings import KieSettings, is_loopback_host


class Transport:
    """The pool a session sends through, whether it closes it, and the proxies read at ``open()``."""

    def __init__(self, http: aiohttp.ClientSession, *, owned: bool, proxies: dict[str, str]) -> None:
        self.http = http
        self.owned = owned
        self.proxies = proxies

    def __repr__(self) -> str:
        return f"Transport(owned={self.owned}, proxied_schemes={sorted(k for k in self.proxies if k != 'no')})"

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for ``url`` (``None``: connect directly)."""
        if not self.proxies:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # (missing from typeshed)
        if is_loopback_host(host) or bypass(host, self.proxies):
            return None
        return self.proxies.get(parts.scheme)

    async def close(self) -> None:
        if self.owned:
            await self.http.close()


def user_agent(settings: KieSettings) -> str:
    return f"{settings.user_agent} kie-async/{__version__}"


def open_transport(
    settings: KieSettings,
    *,
    http_session: aiohttp.ClientSession | None = None,
    connector: aiohttp.BaseConnector | None = None,
) -> Transport:
    """Build (or adopt) the pool in the running loop. Call only from inside that loop."""
    if http_session is not None and connector is not None:
        raise KieConfigError(
            "KieSession got both http_session= and connector=", hint="pass one: your ClientSession or a connector"
        )
    if http_session is not None and not isinstance(http_session, aiohttp.ClientSession):
        raise KieConfigError(
            f"http_session must be an aiohttp.ClientSession, got {type(http_session).__name__}",
            hint="pass an aiohttp.ClientSession you opened, or leave it out to let the session build its own pool",
        )
    if connector is not None and not isinstance(connector, aiohttp.BaseConnector):
        raise KieConfigError(
            f"connector must be an aiohttp connector (e.g. aiohttp.TCPConnector), got {type(connector).__name__}",
            hint="pass aiohttp.TCPConnector(...), or leave it out",
        )
    proxies = _env_proxies() if settings.trust_env else {}
    if http_session is not None:
        if getattr(http_session, "_loop", None) not in (None, asyncio.get_running_loop()):
            raise KieConfigError(
                "the aiohttp.ClientSession passed as http_session= belongs to another event loop",
                hint="create it inside the loop that opens the KieSession (e.g. in the same `async def`)",
            )
        if http_session.closed:
            raise KieConfigError(
                "the aiohttp.ClientSession passed as http_session= is closed",
                hint="pass an open ClientSession; KieSession never closes the one you bring",
            )
        return Transport(http_session, owned=False, proxies=proxies)
    http = aiohttp.ClientSession(
        connector=connector or aiohttp.TCPConnector(limit=settings.max_connections, limit_per_host=0),
        connector_owner=connector is None,  # a connector the caller brings stays the caller's
        headers={"User-Agent": user_agent(settings)},
        timeout=aiohttp.ClientTimeout(total=settings.request_timeout, sock_connect=settings.connect_timeout),
        raise_for_status=False,
    )
    return Transport(http, owned=True, proxies=proxies)


def _env_proxies() -> dict[str, str]:
    """``{"https": url, "http": url, "no": "host,…"}`` from the environment (either case of the names)."""
    found = urllib.request.getproxies_environment()
    return {scheme: url for scheme, url in found.items() if scheme in ("http", "https", "no") and url}


def transport_error(exc: BaseException, endpoint: str, timeout: aiohttp.ClientTimeout) -> KieError | None:
    """An aiohttp failure as the typed error that says whether the request was sent; None for anything else."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy refused the CONNECT tunnel: the request never left for Kie.ai.
        return KieConnectionError(
            f"{endpoint}: the proxy refused the tunnel (HTTP {exc.status})",
            request_sent=False,
            hint="check HTTPS_PROXY / NO_PROXY, or KieSettings(trust_env=False) to go direct",
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return KieTimeoutError(f"{endpoint}: connecting timed out", request_sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return KieConnectionError(f"{endpoint}: cannot connect to {exc.host}:{exc.port}", request_sent=False)
    if isinstance(exc, TimeoutError):
        return KieTimeoutError(f"{endpoint}: no complete response within {timeout.total}s")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return KieConnectionError(f"{endpoint}: response body cut short ({exc.__class__.__name__})")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return KieConnectionError(f"{endpoint}: connection dropped ({exc.__class__.__name__})")
    if isinstance(exc, aiohttp.ClientError):
        return KieConnectionError(f"{endpoint}: {exc.__class__.__name__}: {exc}")
    return None
