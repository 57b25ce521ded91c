"""Receiving Kie.ai callbacks in any web framework: verify, de-duplicate, then wake the matching ``wait_for_task``.

A callback is only a hint (delivery is not documented as guaranteed), so it never replaces polling: it makes
the waiter poll *now* instead of at its slow safety interval. The checks themselves are framework-neutral
(:func:`kie_async.wire.callbacks.verify_callback` and :class:`~kie_async.wire.callbacks.CallbackReplayGuard`); this
module adds what a receiver does with a good one and maps the rest to HTTP answers (400 bad body, 401 bad
signature or timestamp, 409 replay) as a :class:`CallbackReply`. :meth:`CallbackReceiver.receive` takes any
framework's headers and body (bytes or a chunk stream); ``handle`` is the aiohttp handler built on it, and a
FastAPI/Starlette route is three lines (see docs/callbacks.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from kie_async.core import telemetry
from kie_async.core.errors import KieCallbackBodyError, KieCallbackVerificationError, KieInputError
from kie_async.ledger.account import AccountLedger, settle_in_ledger
from kie_async.ledger.journal import settle_from_callback
from kie_async.session import KieSession
from kie_async.wire.api_models import CallbackEvent, JSONValue
from kie_async.wire.callbacks import (
    DEFAULT_MAX_AGE_SECONDS,
    MAX_CALLBACK_BODY_BYTES,
    CallbackReplayGuard,
    verify_callback,
)

log = logging.getLogger("kie_async.wire.callbacks")

EventHandler = Callable[[CallbackEvent], Awaitable[None] | None]


class CallbackReply(BaseModel):
    """What to answer a callback with, in any framework: ``status`` and the JSON ``body``."""

    model_config = ConfigDict(frozen=True)

    status: int
    body: dict[str, JSONValue]


class CallbackReceiverStats(BaseModel):
    model_config = ConfigDict(validate_assignment=True)

    accepted: int = 0
    rejected: int = 0
    replayed: int = 0
    settled: int = Field(default=0, description="lost createTask answers settled in the journal")


class CallbackReceiver:
    """An aiohttp handler for Kie.ai callbacks, bound to the session whose waiters it wakes.

    ``on_event`` receives a :class:`CallbackEvent`: the signed task id and timestamp, the correlation
    ``request_token`` from the URL, and the body only as ``unverified_body``. It runs once per accepted
    ``(task id, timestamp)``.

    A callback whose URL carries a correlation token settles a request whose createTask answer was lost: the
    session's own waiting run takes it, else the batch ``journal`` given here records it (for a receiver that
    outlives the batch, e.g. in a web process). Either way the token is first confirmed against recordInfo.
    """

    def __init__(
        self,
        session: KieSession,
        *,
        hmac_key: str | None = None,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        on_event: EventHandler | None = None,
        clock: Callable[[], float] = time.time,
        journal: str | Path | None = None,
    ) -> None:
        self._session = session
        self._journal = Path(journal) if journal is not None else None
        self._hmac_key = hmac_key
        self._max_age = max_age_seconds
        self._on_event = on_event
        self._clock = clock
        self._replays = CallbackReplayGuard(max_age_seconds)
        self.stats = CallbackReceiverStats()
        session.attach_callback_receiver()

    def __repr__(self) -> str:
        return f"CallbackReceiver(signed={self._hmac_key is not None}, accepted={self.stats.accepted})"

    async def _fallback(self, token: str, task_id: str) -> None:
        """No run of this process waits on the token: settle the one journal the token names, if it is known here.

        A file journal (``journal=``) takes only its own attempts; a shared batch (the token's scope, with a
        shared coordinator) is looked up in the store and takes only its own attempts too.
        """
        if self._journal is not None:
            settled = await settle_from_callback(self._journal, token, task_id)
        else:
            settled = await self._session.coordinator.settle_adoption(token, task_id)
        # The account's ledger records every purchase too: its entry for the attempt learns the task.
        await settle_in_ledger(AccountLedger.for_settings(self._session.settings), token, task_id)
        if settled:
            self.stats.settled += 1

    async def _first_on_account(self, event: CallbackEvent) -> bool:
        """With a shared coordinator the replay memory is the account's: one replay over N workers runs once."""
        if event.timestamp is None:
            return True
        return await self._session.coordinator.first_callback(event.task_id, event.timestamp, 2 * self._max_age + 1)

    def _refuse(self, status: int, message: str) -> CallbackReply:
        self.stats.rejected += 1
        return CallbackReply(status=status, body={"code": status, "msg": message})

    async def receive(
        self,
        headers: Mapping[str, str],
        body: bytes | AsyncIterable[bytes],
        *,
        request_url: str | None = None,
    ) -> CallbackReply:
        """Check and act on one callback from any web framework; answer with the returned status and JSON body.

        ``headers`` is the request's header mapping (a repeated signature header must show in ``items()``, as
        it does in Starlette's and aiohttp's), ``body`` the raw bytes or the framework's chunk stream (read at
        most :data:`MAX_CALLBACK_BODY_BYTES`, so a huge body is refused without being buffered), and
        ``request_url`` the URL (path and query are enough) for the correlation token. Answers: 200 done,
        400 bad body, 401 bad signature or timestamp, 409 replay.
        """
        if isinstance(body, str):
            raise KieInputError("CallbackReceiver.receive needs the raw body bytes, not text", hint="pass request.body")
        announced = _content_length(headers)
        if announced is not None and announced > MAX_CALLBACK_BODY_BYTES:
            return self._refuse(400, f"bad callback: body over {MAX_CALLBACK_BODY_BYTES} bytes")
        if not isinstance(body, bytes | bytearray):
            read = await _read_capped(body)
            if read is None:
                return self._refuse(400, f"bad callback: body over {MAX_CALLBACK_BODY_BYTES} bytes")
            body = read
        now = self._clock()
        try:
            event = verify_callback(
                headers, bytes(body), self._hmac_key, request_url=request_url, max_age_seconds=self._max_age, now=now
            )
        except KieCallbackBodyError as exc:
            log.warning("rejected callback body: %s", exc.message)
            return self._refuse(400, f"bad callback: {exc.message}")
        except KieCallbackVerificationError as exc:
            log.warning("rejected callback: %s", exc.message)
            return self._refuse(401, exc.message)
        if not self._replays.first_time(event, now) or not await self._first_on_account(event):
            self.stats.replayed += 1
            return self._refuse(409, "callback already received")
        self.stats.accepted += 1
        # Traced: the span handling the callback links to the run(s) waiting on the task, in whichever process.
        links = await self._session.waiting_spans(event.task_id) if telemetry.tracing() else []
        with telemetry.span("kie.callback", _callback_attributes(event), server=True, links=links):
            await self._accepted(event)
        return CallbackReply(status=200, body={"code": 200, "msg": "success"})

    async def _accepted(self, event: CallbackEvent) -> None:
        """Act on a verified, first-seen callback: wake its waiters everywhere, settle a lost answer, tell on_event."""
        await self._session.publish_task_update(event.task_id)  # wakes its waiters in every process
        if event.request_token:  # a request whose createTask answer was lost (confirmed against recordInfo first)
            await self._session.adopt_task(event.request_token, event.task_id, fallback=self._fallback)
        if self._on_event is not None:
            result = self._on_event(event)
            if asyncio.iscoroutine(result):
                await result

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler: :meth:`receive` on the request's headers, body and URL.

        ``request.read()`` (not the raw stream) so that middleware that already read the body still works;
        aiohttp refuses bodies over the app's ``client_max_size`` (1 MiB by default, the same cap) itself.
        """
        announced = request.content_length
        if announced is not None and announced > MAX_CALLBACK_BODY_BYTES:
            reply = self._refuse(400, f"bad callback: body over {MAX_CALLBACK_BODY_BYTES} bytes")
        else:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                body = None
            if body is None or len(body) > MAX_CALLBACK_BODY_BYTES:
                reply = self._refuse(400, f"bad callback: body over {MAX_CALLBACK_BODY_BYTES} bytes")
            else:
                reply = await self.receive(request.headers, body, request_url=str(request.rel_url))
        return web.json_response(reply.body, status=reply.status)


def _callback_attributes(event: CallbackEvent) -> dict[str, object]:
    """The callback span's attributes: the task and whether it names a lost answer (never the token or body)."""
    return {
        "gen_ai.provider.name": telemetry.PROVIDER,
        "gen_ai.response.id": event.task_id,
        "kie.callback.correlated": event.request_token is not None,
    }


def _content_length(headers: Mapping[str, str]) -> int | None:
    for key, value in headers.items():
        if key.lower() == "content-length":
            text = value.strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


async def _read_capped(chunks: AsyncIterable[bytes]) -> bytes | None:
    """The whole body, or None as soon as it passes the cap (the rest is never read into memory)."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_CALLBACK_BODY_BYTES:
            return None
    return bytes(body)


def add_callback_route(
    app: web.Application,
    session: KieSession,
    path: str = "/kie/callback",
    *,
    hmac_key: str | None = None,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    on_event: EventHandler | None = None,
    journal: str | Path | None = None,
) -> CallbackReceiver:
    """Mount a :class:`CallbackReceiver` on ``app`` at ``path`` (POST) and return it."""
    receiver = CallbackReceiver(
        session, hmac_key=hmac_key, max_age_seconds=max_age_seconds, on_event=on_event, journal=journal
    )
    app.router.add_post(path, receiver.handle)
    return receiver
