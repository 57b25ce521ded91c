"""Keep secrets out of manifests and index lines.

Manifests are meant to be shared, synced and committed, so anything that looks like a credential is replaced
before it is written: values under secret-looking keys, signature/token query parameters of signed URLs,
``user:password@`` in URLs, ``Bearer`` tokens, and any exact secret value the caller names (the API key).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(api[_-]?key|apikey|secret|token|password|passwd|authorization|auth[_-]?header|cookie|signature|"
    r"private[_-]?key|credential|x-amz-security-token|x-amz-signature|x-amz-credential|sig)$",
    re.IGNORECASE,
)
# An Authorization value: the scheme, then a token-looking word (long, with a digit) so that prompts such as
# "basic watercolours" are left alone.
_BEARER = re.compile(r"\b(Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{12,}", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    # Cached: a manifest asks about the same few dozen keys for every run.
    return bool(_SECRET_KEY.search(key.strip()))


def redact_url(url: str) -> str:
    """Drop userinfo and blank out credential-like query parameters; leave the rest of the URL usable."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_key(k) else v) for k, v in pairs], safe="[]")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redacted_url(url: str) -> str:
    """A URL for messages about a service (a Redis store): scheme, host, port and path, never a user name or password.

    Stricter than :func:`redact_url`: the query and fragment go too, since they may carry options with secrets.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if "://" in text and " " not in text.strip():
        text = redact_url(text)
    return text


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Return a copy of a JSON-like value with secrets replaced; structure and non-secret data are kept."""
    return _redact(value, tuple(s for s in secrets if s))


def _redact(value: Any, known: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) and v not in (None, "") else _redact(v, known))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, known) for v in value]
    return value
