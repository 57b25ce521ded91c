"""Callback adoption: settling an uncertain createTask from the task's own callback.

Kie.ai has no idempotency key, so after a lost createTask answer only the task's callback can tell which task
(if any) the request created. The request's callback URL carries a correlation token (``with_correlation``);
the pipeline waits on ``expect``'s future, a callback receiver calls ``adopt`` with the token it saw, and the
desk confirms the task against the provider before settling. With a shared coordinator a confirmation is
relayed to every process on the account, since the worker that lost the answer may be another one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kie_async.client.connection import Connection
from kie_async.client.request_path import RequestPath, TaskReader
from kie_async.core.errors import KieError, KieValidationError
from kie_async.wire.api_models import TaskRecord
from kie_async.wire.callbacks import KIE_REQUEST_PARAM, request_token_from_url
from kie_async.wire.task_apis import TransportSpec, market_transport

log = logging.getLogger("kie_async.client.adoption")

AdoptionSink = Callable[[str, str], Awaitable[None]]
"""``sink(token, task_id)``: told of every adoption the session confirmed."""

OtherTransports = Callable[[], Awaitable[Iterable[TransportSpec]]]
"""The separate APIs (besides the market) a task may have been bought through; the catalogue knows them."""

_LATE_ADOPTIONS_KEPT = 10_000


def with_correlation(callback_url: str, token: str) -> str:
    """``callback_url`` with the correlation token added as the ``kie_request`` query parameter (others kept)."""
    parts = urlsplit(callback_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != KIE_REQUEST_PARAM]
    query.append((KIE_REQUEST_PARAM, token))
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclasses.dataclass
class AdoptionState:
    """Shared by a session and its views: the requests waiting for a callback, and who gets a late one."""

    waiting: dict[str, asyncio.Future[str]] = dataclasses.field(default_factory=dict)
    late: dict[str, AdoptionSink] = dataclasses.field(default_factory=dict)
    apis: dict[str, TransportSpec] = dataclasses.field(default_factory=dict)
    relays: set[asyncio.Future[bool]] = dataclasses.field(default_factory=set)
    receivers: int = 0


class AdoptionDesk:
    """Expects, confirms and hands over adoptions for one session (and its views, through the shared state)."""

    def __init__(
        self,
        requests: RequestPath,
        read: TaskReader,
        connection: Connection,
        state: AdoptionState,
        other_transports: OtherTransports,
    ) -> None:
        """``read`` is the session's ``get_task``; ``other_transports`` comes from above the client (the catalogue)."""
        self._requests = requests
        self._read_task = read
        self._connection = connection
        self._state = state
        self._other_transports = other_transports

    def expect(self, token: str, *, transport: TransportSpec | None) -> asyncio.Future[str]:
        if transport is not None and not transport.is_market:
            self._state.apis[token] = transport
        future = self._state.waiting.get(token)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._state.waiting[token] = future
        return future

    def forget(self, token: str, *, late: AdoptionSink | None) -> None:
        state = self._state
        future = state.waiting.pop(token, None)
        if future is not None and not future.done():
            future.cancel()
        if late is not None:
            state.late[token] = late
            while len(state.late) > _LATE_ADOPTIONS_KEPT:
                dropped = next(iter(state.late))
                state.late.pop(dropped)
                state.apis.pop(dropped, None)
        else:
            state.apis.pop(token, None)

    def attach_receiver(self) -> None:
        self._state.receivers += 1

    @property
    def receives_callbacks(self) -> bool:
        return self._state.receivers > 0

    async def adopt(self, token: str, task_id: str, *, fallback: AdoptionSink | None) -> bool:
        """Confirm ``task_id`` carries ``token`` in its own recorded callback URL, then settle or relay it."""
        if not await self.confirm(token, task_id):
            return False
        if await self._settle(token, task_id):
            return True
        coordinator = self._connection.coordinator
        relayed = coordinator.kind != "local"
        if relayed:  # the worker that lost the answer may be another process: tell every one of them
            await coordinator.publish_adoption(token, task_id)
        if fallback is not None:
            await fallback(token, task_id)
            return True
        if not relayed:
            log.info("callback token %s: no request of this session is waiting for it", token)
        return relayed

    async def confirm(self, token: str, task_id: str) -> bool:
        """Whether the provider's own record of ``task_id`` carries ``token`` in its callback URL.

        The one check before any adoption, whoever names the pair: a callback (its URL is the caller's to
        forge), or a relay on the shared channel (any client of the store can publish there).
        """
        try:
            record = await self._read_for_adoption(token, task_id)
        except KieError as exc:
            log.warning("callback token %s: cannot read task %s to confirm it (%s)", token, task_id, exc.message)
            return False
        stored = record.request_param.get("callBackUrl")
        if request_token_from_url(stored if isinstance(stored, str) else None) != token:
            log.warning("callback token %s does not match task %s's own callBackUrl; not adopted", token, task_id)
            return False
        return True

    async def _read_for_adoption(self, token: str, task_id: str) -> TaskRecord:
        """The task a callback names, read on the API its request went to.

        A process that did not send the request (another worker on the account) does not know that API: the
        market is read first, and only when it does not know the task, each separate API the specs describe.
        Reads spend nothing, and the token check that follows is what confirms the task, wherever it was read.
        """
        api = self._state.apis.get(token) or self._requests.known_transport(task_id)
        if api is not None:
            return await self._read_task(task_id, transport=api)
        try:
            return await self._read_task(task_id)
        except KieValidationError as exc:
            if not market_transport().status.says_unknown(exc.message):
                raise
            for other in await self._other_transports():
                try:
                    return await self._read_task(task_id, transport=other)
                except KieValidationError as miss:
                    if not other.status.says_unknown(miss.message):
                        raise
            raise

    async def _settle(self, token: str, task_id: str) -> bool:
        """Hand a confirmed adoption to this process's waiting run, or to the batch that ended uncertain."""
        future = self._state.waiting.get(token)
        if future is not None and not future.done():
            future.set_result(task_id)  # the pipeline that lost the answer is still waiting: it records it
            return True
        late = self._state.late.pop(token, None)
        if late is None:
            return False
        await late(token, task_id)
        return True

    def relayed(self, token: str, task_id: str) -> None:
        """Another process says it confirmed an adoption: if the token is ours, confirm it here too, then settle.

        The channel is not proof (any client of the store can publish ``adopt:<token> <task id>``), so this
        process reads the task itself and checks the token against its recorded callback URL before adopting.
        """
        if token in self._state.waiting or token in self._state.late:
            task = asyncio.ensure_future(self._confirm_then_settle(token, task_id))
            self._state.relays.add(task)
            task.add_done_callback(self._state.relays.discard)

    async def _confirm_then_settle(self, token: str, task_id: str) -> bool:
        if not await self.confirm(token, task_id):
            log.warning(
                "relayed adoption of %s for token %s refused: the task does not carry the token", task_id, token
            )
            return False
        return await self._settle(token, task_id)

    def cancel_all(self) -> None:
        """Closing in the loop that opened the session: stop every wait for a callback and every relay."""
        for future in self._state.waiting.values():
            future.cancel()
        self._state.waiting.clear()
        for relay in self._state.relays:
            relay.cancel()
        self._state.relays.clear()

    def forget_all(self) -> None:
        """Closing after the loop that opened the session ended: its futures died with it, just drop them."""
        self._state.waiting.clear()
        self._state.relays.clear()
