"""Receiving Kie.ai callbacks in aiohttp: verify, de-duplicate, then wake the matching ``wait_for_task``.

A callback is only a hint (delivery is not documented as guaranteed), so it never replaces polling: it makes
the waiter poll *now* instead of at its slow safety interval. The checks themselves are framework-neutral
(:func:`kie_async.callbacks.verify_callback` and :class:`~kie_async.callbacks.CallbackReplayGuard`); this
module only maps them to HTTP answers: 400 bad body, 401 bad signature or timestamp, 409 replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from kie_async.api_models import CallbackEvent
from kie_async.callbacks import (
    DEFAULT_MAX_AGE_SECONDS,
    MAX_CALLBACK_BODY_BYTES,
    CallbackReplayGuard,
    verify_callback,
)
from kie_async.errors import KieCallbackBodyError, KieCallbackVerificationError
from kie_async.journal import settle_from_callback
from kie_async.session import KieSession

log = logging.getLogger("kie_async.callbacks")

EventHandler = Callable[[CallbackEvent], Awaitable[None] | None]


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
        if self._journal is not None:
            settled = await settle_from_callback(self._journal, token, task_id)
            if settled:
                self.stats.settled += 1

    def _refuse(self, status: int, message: str) -> web.Response:
        self.stats.rejected += 1
        return web.json_response({"code": status, "msg": message}, status=status)

    async def handle(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_CALLBACK_BODY_BYTES:
            return self._refuse(400, f"bad callback: body over {MAX_CALLBACK_BODY_BYTES} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(400, "bad callback: body too large")
        now = self._clock()
        try:
            event = verify_callback(
                request.headers,
                body,
                self._hmac_key,
                request_url=str(request.rel_url),
                max_age_seconds=self._max_age,
                now=now,
            )
        except KieCallbackBodyError as exc:
            log.warning("rejected callback body: %s", exc.message)
            return self._refuse(400, f"bad callback: {exc.message}")
        except KieCallbackVerificationError as exc:
            log.warning("rejected callback: %s", exc.message)
            return self._refuse(401, exc.message)
        if not self._replays.first_time(event, now):
            self.stats.replayed += 1
            return self._refuse(409, "callback already received")
        self.stats.accepted += 1
        await self._session.publish_task_update(event.task_id)  # wakes its waiters in every process
        if event.request_token:  # a request whose createTask answer was lost (confirmed against recordInfo first)
            await self._session.adopt_task(event.request_token, event.task_id, fallback=self._fallback)
        if self._on_event is not None:
            result = self._on_event(event)
            if asyncio.iscoroutine(result):
                await result
        return web.json_response({"code": 200, "msg": "success"})


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
