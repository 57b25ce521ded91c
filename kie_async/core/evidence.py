"""What an API error keeps of the answer that caused it: enough to report a bug, nothing that is a secret.

A failed call is only debuggable with the evidence: the body Kie.ai (or a proxy in front of it) sent, the
response headers and a request id to quote to support. Errors end up in logs, bug reports and chat threads, so
the evidence is trimmed (bodies capped at :data:`MAX_BODY_CHARS`) and scrubbed first: cookies, authorization
and other secret-looking headers are replaced, and the API key, or any ``Bearer`` token, is cut out of the body
and of every header value wherever it was echoed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from kie_async.core.redact import REDACTED, is_secret_key, redact_text

MAX_BODY_CHARS = 4096
"""An error page can be megabytes; the first 4 KiB say what it is."""

REQUEST_ID_HEADERS = (
    "x-request-id",
    "request-id",
    "x-requestid",
    "x-amzn-requestid",
    "x-amz-request-id",
    "x-correlation-id",
    "x-trace-id",
    "traceparent",
    "cf-ray",
)
"""Kie.ai documents no request id header; these are the ones its gateways and CDNs commonly send."""

_SECRET_HEADERS = frozenset({"set-cookie", "cookie", "authorization", "proxy-authorization", "www-authenticate"})


def response_evidence(headers: Mapping[str, str], body: bytes, secrets: Iterable[str]) -> dict[str, Any]:
    """``body``, ``headers`` and ``request_id`` keyword arguments for a :class:`KieAPIStatusError`."""
    known = tuple(secret for secret in secrets if secret)
    return {
        "body": capped_body(body, known),
        "headers": redacted_headers(headers, known),
        "request_id": request_id(headers),
    }


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` (a server's message) with the given secrets and any ``Bearer`` token cut out."""
    return redact_text(text, tuple(secret for secret in secrets if secret))


async def error_body(response: aiohttp.ClientResponse) -> bytes:
    """The first bytes of an error answer, as evidence; a body that breaks off is no reason to lose the status."""
    try:
        return await response.content.read(MAX_BODY_CHARS)
    except (aiohttp.ClientError, TimeoutError):
        return b""


def capped_body(body: bytes, secrets: Iterable[str]) -> str:
    """The body as text, secrets cut out, capped at :data:`MAX_BODY_CHARS` (with how much was left off)."""
    known = tuple(secrets)
    # Scrub a window one secret longer than the cap, so a secret that starts inside the cap is gone whole.
    window = MAX_BODY_CHARS + max((len(secret) for secret in known), default=0) + 64
    text = redact_text(body[: window * 4].decode("utf-8", "replace")[:window], known)
    if len(text) <= MAX_BODY_CHARS and len(body) <= window:
        return text
    return f"{text[:MAX_BODY_CHARS]}… [{len(body)} bytes in all]"


def redacted_headers(headers: Mapping[str, str], secrets: Iterable[str]) -> dict[str, str]:
    """Response headers (repeated ones joined), cookies and credentials replaced by ``[redacted]``."""
    known = tuple(secrets)
    kept: dict[str, str] = {}
    items = headers.items()
    for name, value in items:
        lowered = name.lower()
        shown = REDACTED if lowered in _SECRET_HEADERS or is_secret_key(lowered) else redact_text(value, known)
        kept[name] = f"{kept[name]}, {shown}" if name in kept else shown
    return kept


def request_id(headers: Mapping[str, str]) -> str | None:
    """The first request/trace id header the response carries (what support asks for), capped at 200 chars."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in REQUEST_ID_HEADERS:
        value = lowered.get(name)
        if value:
            return value.strip()[:200]
    return None
