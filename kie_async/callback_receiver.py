"""Receiving Kie.ai callbacks: verify, de-duplicate, then wake the matching ``wait_for_task``.

A callback is only a hint (delivery is not documented as guaranteed), so it never replaces polling: it makes
the waiter poll *now* instead of at its slow safety interval. Only the task id and timestamp are signed, so a
captured callback could be replayed; a timestamp window plus a memory of recent signatures rejects that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from kie_async.api_models import CallbackEvent
from kie_async.callbacks import DEFAULT_MAX_AGE_SECONDS, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_callback_signature
from kie_async.errors import KieCallbackVerificationError
from kie_async.session import CORRELATION_PARAM, KieSession

log = logging.getLogger("kie_async.callbacks")

EventHandler = Callable[[CallbackEvent], Awaitable[None] | None]


class CallbackReceiverStats(BaseModel):
    model_config = ConfigDict(validate_assignment=True)

    accepted: int = 0
    rejected: int = 0
    replayed: int = 0


class CallbackReceiver:
    """An aiohttp handler for Kie.ai callbacks, bound to the session whose waiters it wakes."""

    def __init__(
        self,
        session: KieSession,
        *,
        hmac_key: str | None = None,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        on_event: EventHandler | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._hmac_key = hmac_key
        self._max_age = max_age_seconds
        self._on_event = on_event
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.stats = CallbackReceiverStats()
        session.attach_callback_receiver()

    def __repr__(self) -> str:
        return f"CallbackReceiver(signed={self._hmac_key is not None}, accepted={self.stats.accepted})"

    def _remember(self, fingerprint: str, now: float) -> bool:
        """False if this exact signed callback was already accepted inside the window (a replay)."""
        while self._seen and next(iter(self._seen.values())) < now - 2 * self._max_age:
            self._seen.popitem(last=False)
        if fingerprint in self._seen:
            return False
        self._seen[fingerprint] = now
        return True

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=json.loads)
            if not isinstance(body, dict):
                raise ValueError("callback body is not a JSON object")
            event = CallbackEvent.from_body(body)
        except ValueError as exc:
            self.stats.rejected += 1
            return web.json_response({"code": 400, "msg": f"bad callback: {exc}"}, status=400)
        now = self._clock()
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        if self._hmac_key is not None:
            try:
                verify_callback_signature(
                    event.task_id, timestamp, signature, self._hmac_key, max_age_seconds=self._max_age, now=now
                )
            except KieCallbackVerificationError as exc:
                self.stats.rejected += 1
                log.warning("rejected callback for task %s: %s", event.task_id, exc.message)
                return web.json_response({"code": 401, "msg": exc.message}, status=401)
            if not self._remember(f"{event.task_id}|{timestamp}|{signature}", now):
                self.stats.replayed += 1
                self.stats.rejected += 1
                return web.json_response({"code": 409, "msg": "callback already received"}, status=409)
        self.stats.accepted += 1
        self._session.notify_task_update(event.task_id)
        token = request.query.get(CORRELATION_PARAM)
        if token:  # settles a request whose createTask answer was lost (confirmed against recordInfo first)
            await self._session.adopt_task(token, event.task_id)
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
) -> CallbackReceiver:
    """Mount a :class:`CallbackReceiver` on ``app`` at ``path`` (POST) and return it."""
    receiver = CallbackReceiver(session, hmac_key=hmac_key, max_age_seconds=max_age_seconds, on_event=on_event)
    app.router.add_post(path, receiver.handle)
    return receiver
