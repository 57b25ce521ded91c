"""Quotes: what a dry run of ``run_request`` hands the agent, and what its confirmed call must bring back.

A quote binds the request's hash, the price it was shown (or "unpriced") and an expiry, signed with an HMAC
under a secret that lives only in this server process: the agent cannot forge one, change its price or move
it to another request, and a restarted server honours none of the old ones (a new dry run is cheap).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Quote:
    """A genuine quote, read back: request key, quoted credits (None = unpriced), expiry (unix seconds), nonce."""

    key: str
    credits: float | None
    expires_at: float
    nonce: str


class QuoteProblem(Exception):
    """A quote that cannot be used; the text reads ``quote_id: problem (fix)``."""


_REDO = "call run_request again without confirm (a dry run) and confirm with the quote_id it returns"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class QuoteSigner:
    """Issues and checks quotes with one per-process secret."""

    def __init__(self, ttl_seconds: float = 600.0, *, secret: bytes | None = None) -> None:
        self.ttl_seconds = ttl_seconds
        self._secret = secret or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"QuoteSigner(ttl_seconds={self.ttl_seconds})"

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, key: str, credits: float | None, *, now: float | None = None) -> str:
        stamp = time.time() if now is None else now
        fields = {"k": key, "c": credits, "e": round(stamp + self.ttl_seconds, 3), "n": secrets.token_hex(8)}
        body = _b64(json.dumps(fields, separators=(",", ":")).encode())
        return f"q1.{body}.{self._mac(body)}"

    def read(self, quote_id: str) -> Quote:
        """The quote if this server signed it, else :class:`QuoteProblem`."""
        parts = quote_id.strip().split(".")
        if len(parts) != 3 or parts[0] != "q1" or not hmac.compare_digest(self._mac(parts[1]), parts[2]):
            raise QuoteProblem(
                f"quote_id: not a quote this server issued (it is signed; a restarted server "
                f"honours none of its earlier quotes) (fix: {_REDO})"
            )
        try:
            fields = json.loads(_unb64(parts[1]))
            return Quote(
                key=str(fields["k"]), credits=fields["c"], expires_at=float(fields["e"]), nonce=str(fields["n"])
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise QuoteProblem(f"quote_id: unreadable (fix: {_REDO})") from None

    def check(
        self,
        quote_id: str | None,
        key: str,
        credits: float | None,
        *,
        used: set[str] | frozenset[str] = (frozenset()),
        now: float | None = None,
    ) -> Quote:
        """The quote for buying ``key`` at ``credits`` now: present, genuine, not ``used``, same request, same
        price, in time."""
        if not quote_id or not quote_id.strip():
            raise QuoteProblem(f"quote_id: missing; a confirmed run needs the quote_id of its dry run (fix: {_REDO})")
        quote = self.read(quote_id)
        if quote.nonce in used:
            raise QuoteProblem(
                "quote_id: already used for a delivered run (fix: call run_request without confirm "
                "for a new quote to buy this request again)"
            )
        if quote.key != key:
            raise QuoteProblem(
                f"quote_id: it was issued for another request (model, prompt, options or media "
                f"differ) (fix: {_REDO} for exactly this request)"
            )
        if quote.credits != credits:
            shown = "unpriced" if quote.credits is None else f"{quote.credits:g} credits"
            price = "unpriced" if credits is None else f"{credits:g} credits"
            raise QuoteProblem(
                f"quote_id: it quoted {shown}, the price is now {price} (fix: {_REDO}, and "
                f"confirm the new price with the user)"
            )
        if (time.time() if now is None else now) > quote.expires_at:
            raise QuoteProblem(f"quote_id: expired ({self.ttl_seconds:g} s after its dry run) (fix: {_REDO})")
        return quote
