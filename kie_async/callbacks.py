"""Callback signatures, per Kie.ai's webhook-verification page.

``X-Webhook-Signature = base64(HMAC_SHA256(key, f"{task_id}.{timestamp}"))`` with the timestamp (Unix
seconds) in ``X-Webhook-Timestamp``. Only the task id and timestamp are signed, not the body, so a max-age
window is what stops a captured callback from being replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from kie_async.errors import KieCallbackVerificationError

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
DEFAULT_MAX_AGE_SECONDS = 300.0


def sign_callback(task_id: str, timestamp: int, hmac_key: str) -> str:
    """The signature Kie.ai sends (standard base64 of the raw digest, not hex)."""
    digest = hmac.new(hmac_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


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
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        raise KieCallbackVerificationError(f"callback timestamp {timestamp!r} is not Unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - ts) > max_age_seconds:
        raise KieCallbackVerificationError(
            f"callback timestamp {ts} is {current - ts:.0f}s from now (allowed ±{max_age_seconds:.0f}s)",
            hint="stale or replayed callback; reject it (clocks must be in sync)",
        )
    expected = sign_callback(task_id, ts, hmac_key)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise KieCallbackVerificationError(f"callback signature for task {task_id} does not match")
