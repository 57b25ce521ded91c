"""Callback signatures, per Kie.ai's webhook-verification page, and framework-neutral callback checking.

``X-Webhook-Signature = base64(HMAC_SHA256(key, f"{task_id}.{timestamp}"))`` with the timestamp (Unix
seconds) in ``X-Webhook-Timestamp``. Only the task id and timestamp are signed, not the body, so:

- the timestamp must be plain ASCII digits, because ``int()`` also reads ``+TS``, ``0TS``, `` TS`` and
  ``1_795…``, and each spelling would otherwise look like a new callback to a replay memory;
- a replay memory keyed on ``(task id, integer timestamp)`` plus a max-age window stops captured callbacks;
- nothing in the body is trusted: :func:`verify_callback` returns the signed task id and timestamp, and the
  body only as ``CallbackEvent.unverified_body``. The waiter re-reads ``recordInfo`` for the real state.

The body is checked for size and nesting depth before it is parsed, so a hostile body costs a 400, not a
``RecursionError``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from kie_async.core.errors import KieCallbackBodyError, KieCallbackVerificationError
from kie_async.wire.api_models import CallbackEvent, JSONValue

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
DEFAULT_MAX_AGE_SECONDS = 300.0

KIE_REQUEST_PARAM = "kie_request"
"""Query parameter of the ``callBackUrl`` that carries a caller's correlation token (``event.request_token``)."""

MAX_CALLBACK_BODY_BYTES = 1024 * 1024
"""A callback body is recordInfo-sized (the create request plus result URLs); far larger is refused."""

MAX_CALLBACK_JSON_DEPTH = 32
"""recordInfo nests three or four levels; anything deeper is not a Kie.ai callback."""

MAX_TIMESTAMP_DIGITS = 12
MAX_TASK_ID_LENGTH = 256

_TIMESTAMP = re.compile(r"(?:0|[1-9][0-9]*)")  # ASCII only: \d would admit other scripts' digits
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{1,128}")  # URL-unreserved characters, so it needs no escaping
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN = frozenset(b"[{")


def sign_callback(task_id: str, timestamp: int, hmac_key: str) -> str:
    """The signature Kie.ai sends (standard base64 of the raw digest, not hex)."""
    digest = hmac.new(hmac_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_callback_timestamp(value: str | int | None) -> int:
    """Unix seconds from the timestamp header; only the canonical digit spelling is accepted.

    One timestamp must have exactly one spelling, or a replay memory keyed on the header text could be
    bypassed by re-spelling it (``+``, leading zeros, ``_``, whitespace, non-ASCII digits).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < 10**MAX_TIMESTAMP_DIGITS:
            return value
    elif isinstance(value, str) and len(value) <= MAX_TIMESTAMP_DIGITS and _TIMESTAMP.fullmatch(value):
        return int(value)
    if value is None or value == "":
        raise KieCallbackVerificationError("callback has no timestamp header")
    raise KieCallbackVerificationError(f"callback timestamp {str(value)[:40]!r} is not plain Unix seconds")


def verify_callback_signature(
    task_id: str,
    timestamp: str | int | None,
    signature: str | None,
    hmac_key: str,
    *,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise :class:`KieCallbackVerificationError` unless the signature is valid and fresh."""
    if not signature or timestamp is None or timestamp == "":
        raise KieCallbackVerificationError(f"callback for task {task_id} has no signature or timestamp headers")
    ts = parse_callback_timestamp(timestamp)
    _check_fresh(ts, max_age_seconds, now)
    expected = sign_callback(task_id, ts, hmac_key)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise KieCallbackVerificationError(f"callback signature for task {task_id} does not match")


def _check_fresh(ts: int, max_age_seconds: float, now: float | None) -> None:
    current = time.time() if now is None else now
    if abs(current - ts) > max_age_seconds:
        raise KieCallbackVerificationError(
            f"callback timestamp {ts} is {current - ts:.0f}s from now (allowed ±{max_age_seconds:.0f}s)",
            hint="stale or replayed callback; reject it (clocks must be in sync)",
        )


def request_token_from_url(url: str | None) -> str | None:
    """The ``kie_request`` query value of a callback URL, or ``None`` if absent, repeated or not a plain token.

    Also useful on ``TaskRecord.request_param["callBackUrl"]``: the URL Kie.ai stored with the task.
    """
    if not url:
        return None
    try:
        values = parse_qs(urlsplit(url).query, keep_blank_values=True).get(KIE_REQUEST_PARAM, [])
    except ValueError:
        return None
    if len(values) != 1 or not _TOKEN.fullmatch(values[0]):
        return None
    return values[0]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup; a signed header sent twice with different values is refused as ambiguous."""
    wanted = name.lower()
    found: str | None = None
    items = headers.items()
    for key, value in items:
        if key.lower() != wanted:
            continue
        if found is not None and value != found:
            raise KieCallbackVerificationError(f"callback carries {name} more than once")
        found = value
    return found


def _json_too_deep(body: bytes, limit: int) -> bool:
    """Bracket depth outside strings, without parsing (the parser itself recurses)."""
    skeleton = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in skeleton:
        if byte in _OPEN:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _parse_body(body: bytes) -> dict[str, JSONValue]:
    if len(body) > MAX_CALLBACK_BODY_BYTES:
        raise KieCallbackBodyError(f"callback body is {len(body)} bytes (at most {MAX_CALLBACK_BODY_BYTES})")
    if _json_too_deep(body, MAX_CALLBACK_JSON_DEPTH):
        raise KieCallbackBodyError(f"callback body nests deeper than {MAX_CALLBACK_JSON_DEPTH} levels")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise KieCallbackBodyError(f"callback body is not JSON ({type(exc).__name__})") from None
    if not isinstance(parsed, dict):
        raise KieCallbackBodyError(f"callback body is a JSON {type(parsed).__name__}, not an object")
    return parsed


def _task_id(body: dict[str, JSONValue]) -> str:
    """The task id, from ``taskId``, ``data.taskId`` or ``data.task_id`` (the market shape is UNCONFIRMED)."""
    data = body.get("data")
    places = [("taskId", body.get("taskId"))]
    if isinstance(data, dict):
        places += [("data.taskId", data.get("taskId")), ("data.task_id", data.get("task_id"))]
    found: set[str] = set()
    for where, value in places:
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) > MAX_TASK_ID_LENGTH or not value.isprintable():
            raise KieCallbackBodyError(f"callback {where} is not a task id")
        found.add(value)
    if not found:
        raise KieCallbackBodyError("callback body has no taskId (looked at taskId, data.taskId, data.task_id)")
    if len(found) > 1:
        raise KieCallbackBodyError("callback body names more than one task id")
    return found.pop()


def verify_callback(
    headers: Mapping[str, str],
    body: bytes,
    hmac_key: str | None,
    *,
    request_url: str | None = None,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    now: float | None = None,
) -> CallbackEvent:
    """Check one callback request and return what can be relied on; any web framework can call this.

    With ``hmac_key``, the headers are checked first (present, canonical timestamp, inside the window),
    then the body (size, depth, JSON object, one task id), then the signature. Raises
    :class:`KieCallbackBodyError` (answer 400) for a bad body and :class:`KieCallbackVerificationError`
    (answer 401) for everything else. Without a key nothing is verified (``event.verified`` is False).
    ``request_url`` (path and query are enough) gives ``event.request_token``. Replays are the caller's
    to refuse: see :class:`CallbackReplayGuard`.
    """
    timestamp: int | None = None
    signature: str | None = None
    if hmac_key is not None:
        signature = _header(headers, SIGNATURE_HEADER)
        raw_timestamp = _header(headers, TIMESTAMP_HEADER)
        if not signature or not raw_timestamp:
            raise KieCallbackVerificationError("callback has no signature or timestamp headers")
        timestamp = parse_callback_timestamp(raw_timestamp)
        _check_fresh(timestamp, max_age_seconds, now)
    parsed = _parse_body(body)
    task_id = _task_id(parsed)
    if hmac_key is not None and timestamp is not None and signature is not None:
        expected = sign_callback(task_id, timestamp, hmac_key)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            raise KieCallbackVerificationError(f"callback signature for task {task_id} does not match")
    return CallbackEvent(
        task_id=task_id,
        timestamp=timestamp,
        verified=hmac_key is not None,
        request_token=request_token_from_url(request_url),
        unverified_body=parsed,
    )


class CallbackReplayGuard:
    """Remembers accepted ``(task id, timestamp)`` pairs so the same signed callback is acted on once.

    A pair can only pass the freshness check within ``max_age_seconds`` of its timestamp, so an entry is
    kept for twice that after acceptance and then forgotten.
    """

    def __init__(self, max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS) -> None:
        self._max_age = max_age_seconds
        self._seen: OrderedDict[tuple[str, int], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, event: CallbackEvent, now: float | None = None) -> bool:
        """Record a verified event; False if its ``(task id, timestamp)`` was already accepted (a replay)."""
        if event.timestamp is None:
            return True  # unverified events have no signed identity to remember
        current = time.time() if now is None else now
        while self._seen and next(iter(self._seen.values())) < current - 2 * self._max_age - 1:
            self._seen.popitem(last=False)
        key = (event.task_id, event.timestamp)
        if key in self._seen:
            return False
        self._seen[key] = current
        return True
