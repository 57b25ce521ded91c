"""``KieSession``: the one place that speaks HTTP to Kie.ai.

One ``aiohttp.ClientSession`` (one bounded connection pool) per ``KieSession``. Every API call goes through
``_api``, which adds auth, rate limits, parses the ``{code, msg, data}`` envelope (Kie.ai often reports errors
inside HTTP 200), maps codes to typed errors and applies the retry rules from :mod:`kie_async.wire.retry`.
Downloads and uploads share the same error mapping and retry policy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import mimetypes
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiofiles.os
import aiohttp
from pydantic import BaseModel, ValidationError

from kie_async.coordination import Coordinator, LocalCoordinator, ReadLimit, SubmitWindow, account_namespace
from kie_async.coordination.shared import open_shared_coordinator
from kie_async.core.errors import (
    KieAPIStatusError,
    KieConfigError,
    KieConnectionError,
    KieError,
    KieInputError,
    KieRateLimitError,
    KieResponseShapeError,
    KieSubmissionUncertainError,
    KieTaskFailedError,
    KieTimeoutError,
    KieValidationError,
    error_class_for_code,
)
from kie_async.core.evidence import error_body, response_evidence, scrub
from kie_async.core.limits import check_timeout
from kie_async.core.logs import log_request, setup_logging_from_env
from kie_async.core.loop_state import LoopState, not_open_error, running_loop, wrong_loop_error
from kie_async.core.media_sniff import MediaKind
from kie_async.core.settings import KieSettings, PollSettings
from kie_async.wire.api_models import (
    CreateTaskPayload,
    CreditBalance,
    DownloadResult,
    Envelope,
    JSONValue,
    TaskCreated,
    TaskRecord,
    TaskState,
    UploadedFile,
)
from kie_async.wire.callbacks import KIE_REQUEST_PARAM, request_token_from_url
from kie_async.wire.download import check_download_url, stream_response_to_file
from kie_async.wire.polling import (
    ProgressCallback,
    TaskProgress,
    first_poll_delay,
    is_finished,
    poll_interval,
    provider_generation_seconds,
    wait_for_expected,
)
from kie_async.wire.retry import RetryPolicy, is_retryable, parse_retry_after
from kie_async.wire.task_apis import TransportSpec, market_transport, pick
from kie_async.wire.transport import Transport, open_transport, transport_error, user_agent

if TYPE_CHECKING:
    from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest
    from kie_async.pipeline.handle import TaskHandle, TaskOutcome
    from kie_async.pipeline.outputs import FileOutput
    from kie_async.pipeline.run_models import PipelineOptions

log = logging.getLogger("kie_async.client.base")
T = TypeVar("T")

WireHook = Callable[[], Awaitable[None]]
"""Called once per createTask attempt, after the rate limiter and just before the request is sent."""
UnsentHook = Callable[[KieError], Awaitable[None]]
"""Called after a createTask attempt that provably did no work (never connected, or refused with 429)."""


AdoptionSink = Callable[[str, str], Awaitable[None]]
"""``sink(token, task_id)``: told of every adoption the session confirmed."""

def with_correlation(callback_url: str, token: str) -> str:
    """``callback_url`` with the correlation token added as the ``kie_request`` query parameter (others kept)."""
    parts = urlsplit(callback_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != KIE_REQUEST_PARAM]
    query.append((KIE_REQUEST_PARAM, token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def did_no_work(exc: KieError) -> bool:
    """True when a failed attempt provably neither reached the server nor made it do anything."""
    if isinstance(exc, KieRateLimitError):
        return True
    if isinstance(exc, KieConnectionError | KieTimeoutError):
        return not exc.request_sent
    return False

# Kie.ai's own paths; a proxy or gateway may move them (KieSettings.paths, KIE_*_PATH variables).
CREATE_TASK_PATH = "/api/v1/jobs/createTask"
RECORD_INFO_PATH = "/api/v1/jobs/recordInfo"
CREDIT_PATH = "/api/v1/chat/credit"
DOWNLOAD_URL_PATH = "/api/v1/common/download-url"
PRICING_COUNT_PATH = "/client/v1/model-pricing/count"
PRICING_PAGE_PATH = "/client/v1/model-pricing/page"
PRICING_MAX_PAGES = 100
UPLOAD_STREAM_PATH = "/api/file-stream-upload"
UPLOAD_URL_PATH = "/api/file-url-upload"
UPLOAD_BASE64_PATH = "/api/file-base64-upload"

BASE64_UPLOAD_LIMIT = 10 * 1024 * 1024
"""Kie.ai recommends base64 uploads up to 10 MB and the stream endpoint above that."""

_LATE_ADOPTIONS_KEPT = 10_000
_TASK_TRANSPORTS_KEPT = 10_000

# A task id Kie.ai has just issued may not be visible to recordInfo for a moment; tolerate that briefly.
_NEW_TASK_GRACE_SECONDS = 30.0


class SessionStats(BaseModel):
    """Counters for benchmarks and tests: what this session actually sent."""

    requests: dict[str, int] = {}
    retries: int = 0
    rate_limited: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0

    def count(self, endpoint: str) -> None:
        self.requests[endpoint] = self.requests.get(endpoint, 0) + 1


class KieSession:
    """Async client for Kie.ai (or the local emulator): ``async with KieSession(settings) as kie: ...``."""

    def __init__(
        self,
        settings: KieSettings | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        http_session: aiohttp.ClientSession | None = None,
        connector: aiohttp.BaseConnector | None = None,
    ) -> None:
        """``http_session`` / ``connector``: send through your own aiohttp pool; it is never closed by the session
        (see :mod:`kie_async.wire.transport`)."""
        setup_logging_from_env()
        self.settings = settings if settings is not None else KieSettings.from_env()
        self.retry_policy = retry_policy or RetryPolicy(self.settings.retry)
        self._coordinator: Coordinator = self._local_coordinator()
        self._byo_http = http_session
        self._byo_connector = connector
        self._transport: Transport | None = None
        self._loop_state: LoopState | None = None
        self._http: aiohttp.ClientSession | None = None
        self._wakeups: dict[str, set[asyncio.Event]] = {}
        self._generation_seconds: dict[str, float] = {}
        self._adoptions: dict[str, asyncio.Future[str]] = {}
        self._late_adoptions: dict[str, AdoptionSink] = {}
        self._adoption_apis: dict[str, TransportSpec] = {}
        self._task_apis: dict[str, TransportSpec] = {}
        self._relays: set[asyncio.Future[bool]] = set()
        self._callback_receivers = 0
        self._upload_cache: dict[str, asyncio.Future[UploadedFile]] = {}
        self._upload_waiters: dict[str, int] = {}
        self._shared_uploads: set[str] = set()
        self._auth_hosts = {urlsplit(self.settings.base_url).netloc, urlsplit(self.settings.upload_base_url).netloc}
        self.stats = SessionStats()

    def _local_coordinator(self) -> Coordinator:
        namespace = account_namespace(self.settings.key_value(), self.settings.coordination_prefix)
        return LocalCoordinator(namespace, self.settings.rate_limit)

    def __repr__(self) -> str:
        state = "open" if self._http is not None and not self._http.closed else "closed"
        return f"KieSession(base_url={self.settings.base_url!r}, {state})"

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the connection pool in the running loop; refuses the real Kie.ai unless live use was opted into.

        Opening again in the same loop does nothing; from another loop while still open it raises
        :class:`KieConfigError` (close it first). A closed session reopens in any loop.
        """
        if self._http is not None and self._loop_state is not None:
            self._loop_state.check("open again")
            return
        if self.settings.is_live and not self.settings.allow_live:
            raise KieConfigError(
                "refusing to call the real Kie.ai (it spends credits) without an explicit opt-in",
                hint="set KIE_ALLOW_LIVE=1 or KieSettings(allow_live=True); use `kie-async emulator` to work offline",
            )
        if self.settings.coordination_url is not None and self._coordinator.kind == "local":
            self._coordinator = await open_shared_coordinator(self.settings)
        self._coordinator.add_task_listener(self._wake_waiters)
        self._coordinator.add_adoption_listener(self._adoption_relayed)
        self._coordinator.add_resync_listener(self._wake_all_waiters)
        self._transport = open_transport(self.settings, http_session=self._byo_http, connector=self._byo_connector)
        self._loop_state = LoopState(self.settings)
        self._http = self._transport.http

    async def close(self) -> None:
        """Cancel uploads still in flight, then close the connection pool (never one the caller brought).

        From another loop than the one that opened it, only a pool whose loop has ended can be let go of
        (its connections cannot be awaited any more); while that loop runs, close it from there.
        """
        state = self._loop_state
        ended = state is not None and running_loop() is not state.loop
        if state is not None and ended and not state.loop.is_closed():
            raise wrong_loop_error("close", opened_loop_closed=False)
        if ended:
            # The loop that opened it has ended, and its tasks and connections with it: forget them, and only
            # let the pool go (aiohttp closes its sockets without the old loop).
            self._adoptions.clear()
            self._relays.clear()
            self._wakeups.clear()  # waiters of a dead loop: setting their events would touch that loop
            with contextlib.suppress(RuntimeError):
                if self._transport is not None:
                    await self._transport.close()
        else:
            for future in self._adoptions.values():
                future.cancel()
            self._adoptions.clear()
            for relay in self._relays:
                relay.cancel()
            self._relays.clear()
            pending = [task for task in self._upload_cache.values() if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            if self._transport is not None:
                await self._transport.close()
        self._upload_cache.clear()
        self._upload_waiters.clear()
        self._transport = None
        self._http = None
        self._loop_state = None
        if self._coordinator.kind != "local":
            if not ended:  # a shared store's connections belong to the loop that opened them
                await self._coordinator.close()
            self._coordinator = self._local_coordinator()  # a reopened session connects afresh

    def _bound(self, action: str = "send a request") -> LoopState:
        """The loop-bound state, after checking the session is open and used from the loop that opened it."""
        state = self._loop_state
        if state is None or self._http is None:
            raise not_open_error()
        state.check(action)
        if self._http.closed:
            raise KieConfigError(
                "the aiohttp.ClientSession this KieSession sends through was closed by its owner",
                hint="keep your http_session= open until the KieSession is closed",
            )
        return state

    def with_options(
        self, *, timeout: float | None = None, max_retries: int | None = None, poll: PollSettings | None = None
    ) -> KieSession:
        """This session with other defaults for the calls made through it; everything else is shared.

        ``timeout``: seconds per API request; ``max_retries``: retries of a failed read (0 = none);
        ``poll``: ``wait_for_task``'s schedule and deadline. The returned view shares this session's pool,
        rate limiters, coordination, caches and callback waiters, so two views together still keep Kie.ai's
        limits; closing a view closes nothing (see :mod:`kie_async.client.view`).
        """
        from kie_async.client.view import make_view, view_settings  # the view subclasses KieSession

        settings, policy = view_settings(
            self.settings, self.retry_policy, timeout=timeout, max_retries=max_retries, poll=poll
        )
        return make_view(self, settings, policy)

    @property
    def http(self) -> aiohttp.ClientSession:
        self._bound()
        assert self._http is not None  # _bound checked it
        return self._http

    @property
    def _upload_slots(self) -> asyncio.Semaphore:
        return self._bound("upload").upload_slots

    @property
    def _download_slots(self) -> asyncio.Semaphore:
        return self._bound("download").download_slots

    # -- the one request path ----------------------------------------------------------------------------

    def _headers(self, url: str, *, json_body: bool) -> dict[str, str]:
        headers: dict[str, str] = {"User-Agent": user_agent(self.settings)}  # also on a pool the caller brought
        if json_body:
            headers["Content-Type"] = "application/json"
        # The key goes only to Kie.ai's own API hosts, never to file hosts that serve outputs.
        if urlsplit(url).netloc in self._auth_hosts:
            key = self.settings.key_value()
            if not key:
                raise KieConfigError("no Kie.ai API key configured", hint="set KIE_API_KEY or KieSettings(api_key=...)")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _timeout(self, total: float | None, default: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total or default, sock_connect=self.settings.connect_timeout)

    @contextlib.asynccontextmanager
    async def _send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        timeout: aiohttp.ClientTimeout,
        json_body: JSONValue = None,
        data: Any = None,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request; aiohttp failures come out as typed ``KieError``s that say whether it was sent."""
        headers = self._headers(url, json_body=json_body is not None)
        http = self.http
        proxy = self._transport.proxy_for(url) if self._transport is not None else None
        self.stats.count(endpoint)
        path = urlsplit(url).path or "/"
        started = time.perf_counter()
        outcome: str | None = None
        try:
            async with http.request(
                method, url, json=json_body, data=data, params=params, headers=headers, timeout=timeout, proxy=proxy
            ) as response:
                outcome = str(response.status)
                try:
                    yield response
                except KieAPIStatusError as exc:
                    if exc.code != response.status:  # Kie.ai's error inside an HTTP 200
                        outcome += f" code={exc.code}"
                    raise
        except KieError:
            raise
        except BaseException as exc:
            outcome = f"{outcome} {type(exc).__name__}" if outcome else type(exc).__name__
            mapped = transport_error(exc, endpoint, timeout)
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            log_request(method, path, outcome or "?", elapsed_ms, endpoint=endpoint, proxied=proxy is not None)

    def _evidence(self, response: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
        """What an error keeps of ``response`` (body, headers, request id), with the key cut out."""
        return response_evidence(response.headers, body, [self.settings.key_value() or ""])

    async def _read_envelope(
        self, response: aiohttp.ClientResponse, endpoint: str, *, task_id: str | None = None
    ) -> Envelope:
        """Parse the envelope and raise the typed error its ``code`` (or the HTTP status) calls for."""
        body = await response.read()
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        envelope: Envelope | None = None
        problem = "a body that is not a Kie.ai envelope"
        if isinstance(payload, dict) and "code" in payload:
            try:
                envelope = Envelope.model_validate(payload)
            except ValidationError as exc:
                problem = f"an envelope Kie.ai would not send ({_first_error(exc)})"
        if envelope is None:
            evidence = self._evidence(response, body)
            message = f"HTTP {response.status} with {problem}: {evidence['body'][:200]!r}"
            if response.status < 400:
                raise KieResponseShapeError(
                    message, http_status=response.status, endpoint=endpoint, task_id=task_id, **evidence
                )
            raise error_class_for_code(response.status)(
                message,
                code=response.status,
                http_status=response.status,
                endpoint=endpoint,
                retry_after=retry_after,
                enveloped=False,
                task_id=task_id,
                **evidence,
            )
        code = envelope.code if envelope.code != 200 or response.status < 400 else response.status
        if code != 200:
            if code == 429:
                self.stats.rate_limited += 1
            raise error_class_for_code(code)(
                scrub(envelope.msg or response.reason or "error", [self.settings.key_value() or ""]),
                code=code,
                http_status=response.status,
                endpoint=endpoint,
                retry_after=retry_after,
                task_id=task_id,
                **self._evidence(response, body),
            )
        return envelope

    async def _api(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        idempotent: bool,
        json_body: JSONValue = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
        limiter: SubmitWindow | ReadLimit | None = None,
        on_wire: WireHook | None = None,
        on_unsent: UnsentHook | None = None,
        parse: Callable[[JSONValue], JSONValue] | None = None,
    ) -> JSONValue:
        """One API call with rate limiting, envelope parsing, error mapping and retries; returns ``data``.

        ``on_wire`` runs once per attempt after the rate limiter granted a slot, just before the request is
        sent (the journal's intent line); ``on_unsent`` runs after an attempt that provably did no work (a
        connect failure, a 429), so an intent is never left open while the request waits to be retried.
        ``parse`` turns ``data`` into the endpoint's model inside the attempt, so an unreadable answer
        (``KieResponseShapeError``) is retried like any other failed read.
        """
        self._bound()  # before the limiter: a wrong loop or a closed session fails here, having waited for nothing
        client_timeout = self._timeout(timeout, self.settings.request_timeout)

        async def attempt() -> JSONValue:
            async with contextlib.AsyncExitStack() as stack:
                if isinstance(limiter, SubmitWindow):
                    await stack.enter_async_context(limiter.slot())
                elif limiter is not None:
                    await limiter.acquire()
                if on_wire is not None:
                    await on_wire()
                try:
                    response = await stack.enter_async_context(
                        self._send(
                            method, url, endpoint=endpoint, timeout=client_timeout, json_body=json_body, params=params
                        )
                    )
                    try:
                        envelope = await self._read_envelope(response, endpoint, task_id=(params or {}).get("taskId"))
                    except KieRateLimitError as exc:
                        if isinstance(limiter, SubmitWindow):
                            await limiter.pause(exc.retry_after or 1.0)  # every submitter on the account waits
                        raise
                except KieError as exc:
                    if on_unsent is not None and did_no_work(exc):
                        await on_unsent(exc)
                    raise
                return parse(envelope.data) if parse is not None else envelope.data

        return await self._with_retries(attempt, idempotent=idempotent, what=endpoint)

    async def _with_retries(self, op: Callable[[], Awaitable[T]], *, idempotent: bool, what: str) -> T:
        def note(attempt: int, exc: KieError, wait: float) -> None:
            del attempt, exc, wait
            self.stats.retries += 1

        return await self.retry_policy.run(op, idempotent=idempotent, what=what, on_retry=note)

    def _path(self, api: TransportSpec, step: Literal["create", "status"]) -> str:
        """The market's paths come from ``settings.paths`` (a gateway may move them); a separate API's from its spec."""
        if api.is_market:
            return self.settings.paths.create_task if step == "create" else self.settings.paths.record_info
        return api.create.path if step == "create" else api.status.path

    def _url(self, path: str) -> str:
        return f"{self.settings.base_url}{path}"

    def _upload_url(self, path: str) -> str:
        return f"{self.settings.upload_base_url}{path}"

    # -- account and tasks ---------------------------------------------------------------------------------

    async def get_credits(self, *, timeout: float | None = None) -> CreditBalance:
        """Remaining credits on the account."""
        check_timeout("timeout", timeout)
        data = await self._api(
            "GET",
            self._url(self.settings.paths.credits),
            endpoint="credit",
            idempotent=True,
            timeout=timeout,
            limiter=self.coordinator.read_limit,
        )
        if isinstance(data, dict):  # tolerate {"credits": n} shapes
            data = data.get("credits", data.get("balance"))
        if not isinstance(data, int | float | str):
            raise KieAPIStatusError(f"credit balance has an unexpected shape: {data!r}", code=200, endpoint="credit")
        return CreditBalance(credits=float(data))

    async def get_pricing_records(self, *, page_size: int = 100, timeout: float | None = None
                                  ) -> list[dict[str, JSONValue]]:
        """Every row of the pricing API behind kie.ai/pricing (undocumented; facts file section 1), page by page.

        Read-only and free, so retried like any read. The row count comes from ``/count``; paging stops at
        ``PRICING_MAX_PAGES`` so a server that always claims more cannot keep the SDK looping.
        """
        check_timeout("timeout", timeout)
        if not 1 <= page_size <= 500:
            raise ValueError(f"page_size must be 1..500, got {page_size}")
        count = await self._api("GET", self._url(PRICING_COUNT_PATH), endpoint="pricing", idempotent=True,
                                timeout=timeout, limiter=self.coordinator.read_limit)
        total = count.get("all") if isinstance(count, dict) else None
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise KieAPIStatusError(f"pricing count has an unexpected shape: {count!r:.200}", code=200,
                                    endpoint="pricing")
        records: list[dict[str, JSONValue]] = []
        pages = min(PRICING_MAX_PAGES, max(1, -(-total // page_size)))
        for page_num in range(1, pages + 1):
            data = await self._api("POST", self._url(PRICING_PAGE_PATH), endpoint="pricing", idempotent=True,
                                   json_body={"pageNum": page_num, "pageSize": page_size}, timeout=timeout,
                                   limiter=self.coordinator.read_limit)
            rows = data.get("records") if isinstance(data, dict) else None
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise KieAPIStatusError(f"pricing page {page_num} has no records list", code=200,
                                        endpoint="pricing")
            records.extend(rows)
            if len(rows) < page_size:
                break
        return records

    async def create_task(
        self,
        payload: CreateTaskPayload | None = None,
        *,
        model: str | None = None,
        input: dict[str, JSONValue] | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
        on_wire: WireHook | None = None,
        on_unsent: UnsentHook | None = None,
        transport: TransportSpec | None = None,
    ) -> TaskCreated:
        """Submit a generation task. Spends credits, so it is never retried once the body may have arrived.

        Raises :class:`KieSubmissionUncertainError` when the request may have reached Kie.ai but no usable
        answer came back (a reset, a timeout, a gateway error page): a task may exist, so nothing is retried.
        Any other :class:`KieError` is a definite "no": nothing was bought. ``on_wire`` / ``on_unsent`` are
        the journal's seams (see :meth:`_api`). ``transport`` (or ``payload.transport``, set from the model
        spec) names the API that sells the model; the default is the market ``createTask``. The session
        remembers it per task id, so ``get_task``/``wait_for_task`` on that id read the matching status path.
        """
        check_timeout("timeout", timeout)
        if payload is None:
            if not model or input is None:
                raise KieInputError("create_task needs a CreateTaskPayload or model= and input=")
            payload = CreateTaskPayload(model=model, input=input, callback_url=callback_url, transport=transport)
        elif transport is not None:
            payload = payload.model_copy(update={"transport": transport})
        api = payload.api
        try:
            data = await self._api(
                "POST",
                self._url(self._path(api, "create")),
                endpoint="createTask",
                idempotent=False,
                json_body=payload.to_wire(),
                timeout=timeout,
                limiter=self.coordinator.submit_window,
                on_wire=on_wire,
                on_unsent=on_unsent,
            )
            created = TaskCreated.model_validate(_created_data(api, data))
        except (KieConnectionError, KieTimeoutError) as exc:
            if getattr(exc, "request_sent", True):
                raise KieSubmissionUncertainError(
                    f"createTask for {payload.model}: {exc.message}; it may have reached Kie.ai, so it was not retried"
                ) from exc
            raise
        except (KieResponseShapeError, ValidationError) as exc:
            # Kie.ai answered, so the request arrived; we just cannot read which task (if any) it created.
            detail = exc.message if isinstance(exc, KieError) else f"no task id in {str(data)[:200]!r}"
            raise KieSubmissionUncertainError(
                f"createTask for {payload.model} got an answer without a readable task id ({detail}); "
                "the task may exist, so it was not retried"
            ) from exc
        except KieAPIStatusError as exc:
            if not exc.enveloped and exc.code >= 500:
                # A gateway's error page, not Kie.ai's answer: the backend may have created the task behind it.
                raise KieSubmissionUncertainError(
                    f"createTask for {payload.model}: {exc.message}; it may have reached Kie.ai, so it was not retried"
                ) from exc
            raise
        log.info("created task %s (%s)", created.task_id, payload.model)
        self.remember_transport(created.task_id, api)
        return created

    def remember_transport(self, task_id: str, transport: TransportSpec | None) -> None:
        """Read ``task_id`` through ``transport`` from now on (``create_task`` does this; a resume may too)."""
        if transport is None or transport.is_market:
            return
        self._task_apis[task_id] = transport
        while len(self._task_apis) > _TASK_TRANSPORTS_KEPT:
            self._task_apis.pop(next(iter(self._task_apis)))

    def _transport_for(self, task_id: str, transport: TransportSpec | None) -> TransportSpec:
        return transport or self._task_apis.get(task_id) or market_transport()

    async def get_task(
        self, task_id: str, *, timeout: float | None = None, transport: TransportSpec | None = None
    ) -> TaskRecord:
        """One status read of a task (``recordInfo``, or the status path of the task's ``transport``).

        Without ``transport`` the one this session bought the task through is used, else the market's.
        """
        check_timeout("timeout", timeout)
        if not task_id:
            raise KieInputError("task_id is empty", hint="pass the taskId returned by create_task")
        api = self._transport_for(task_id, transport)
        try:
            record: TaskRecord = await self._api(
                "GET",
                self._url(self._path(api, "status")),
                endpoint="recordInfo",
                idempotent=True,
                params={api.status.task_id_param: task_id},
                timeout=timeout,
                limiter=self.coordinator.read_limit,
                parse=lambda data: _parse_record(task_id, data, api),
            )
        except KieResponseShapeError as exc:
            if exc.task_id is not None:
                raise
            raise KieResponseShapeError(
                f"task {task_id}: {exc.message}", task_id=task_id, http_status=exc.http_status, endpoint=exc.endpoint
            ) from exc
        return record

    async def wait_for_task(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        raise_on_failure: bool = True,
        callback_driven: bool = False,
        poll: PollSettings | None = None,
        transport: TransportSpec | None = None,
        first_poll_after: float | None = None,
    ) -> TaskRecord:
        """Poll until the task succeeds or fails.

        Polls fast first, then slower (``PollSettings.schedule``). With ``callback_driven=True`` a callback
        receiver is expected to call :meth:`notify_task_update`, and polling drops to a slow safety net.
        Cancelling the awaiting task stops polling at once; the task itself keeps running on Kie.ai.
        ``transport`` is the API the task was bought through (see :meth:`get_task`).
        ``first_poll_after`` delays the first read of a task just created (see :meth:`first_poll_delay`); a
        callback still wakes the wait early. Every successful record teaches the session its model's time.
        """
        check_timeout("timeout", timeout)
        api = self._transport_for(task_id, transport)
        settings = poll or self.settings.poll
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (timeout if timeout is not None else settings.timeout)
        wake = asyncio.Event()
        self._wakeups.setdefault(task_id, set()).add(wake)
        polls = 0
        outage: KieError | None = None
        unknown_seen: set[str | None] = set()
        waited_first = 0.0
        try:
            if first_poll_after is not None and first_poll_after > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, min(first_poll_after, deadline - loop.time()))):
                        await wake.wait()
                wake.clear()
                waited_first = loop.time() - started
            while True:
                elapsed = loop.time() - started
                try:
                    record = await self.get_task(task_id, transport=api)
                    outage = None
                except KieValidationError as exc:
                    if "recordInfo is null" not in exc.message or elapsed - waited_first > _NEW_TASK_GRACE_SECONDS:
                        raise
                    record = TaskRecord(task_id=task_id, state=TaskState.WAITING)
                except KieError as exc:
                    # An outage longer than one read's retries is not the task's fault: keep waiting (the task
                    # runs on regardless) until the deadline, instead of giving up on something already paid for.
                    if not is_retryable(exc, idempotent=True):
                        raise
                    outage = exc
                    record = TaskRecord(task_id=task_id, state=TaskState.WAITING)
                    log.warning("task %s: status read failed (%s); still waiting", task_id, exc.message)
                polls += 1
                elapsed = loop.time() - started
                if record.state is TaskState.UNKNOWN and record.raw_state not in unknown_seen:
                    unknown_seen.add(record.raw_state)
                    log.warning(
                        "task %s reports an unrecognised state %r; treating it as still running",
                        task_id,
                        record.raw_state,
                    )
                if is_finished(record):
                    self._learn_generation_time(record)
                    await _report(
                        on_progress,
                        TaskProgress(
                            task_id=task_id, state=record.state, elapsed=elapsed, polls=polls, next_poll_in=None
                        ),
                    )
                    if record.state.is_failure and raise_on_failure:
                        reason = record.fail_msg or (
                            "canceled by the provider" if record.state is TaskState.CANCELED else None
                        )
                        raise KieTaskFailedError(task_id, record.fail_code, reason)
                    return record
                remaining = deadline - loop.time()
                if remaining <= 0:
                    if outage is not None:
                        seen = f"status unreadable ({outage.message})"
                    elif record.state is TaskState.SUCCESS:
                        seen = "reported success but its resultJson never arrived"
                    else:
                        seen = f"still {record.state_description}"
                    raise KieTimeoutError(
                        f"task {task_id} {seen} after {elapsed:.0f}s",
                        hint="the task keeps running on Kie.ai; call wait_for_task again or raise timeout=",
                    )
                interval = settings.callback_safety_interval if callback_driven else poll_interval(elapsed, settings)
                if first_poll_after is not None and not callback_driven and outage is None and record.model:
                    # Bought here, still running: wait for what this model has since been seen to take.
                    learned = self._generation_seconds.get(record.model)
                    interval = wait_for_expected(interval, loop.time() - started, learned, settings)
                if isinstance(outage, KieAPIStatusError) and outage.retry_after:  # the server said when to ask again
                    interval = max(interval, outage.retry_after)
                interval = min(interval, remaining)
                await _report(
                    on_progress,
                    TaskProgress(
                        task_id=task_id, state=record.state, elapsed=elapsed, polls=polls, next_poll_in=interval
                    ),
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await wake.wait()
                wake.clear()
        finally:
            waiters = self._wakeups.get(task_id)
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    del self._wakeups[task_id]

    # -- task handles and readable outputs (the code lives in kie_async.pipeline.handle / .outputs) --

    async def submit(
        self, request: RawUserRequest | NormalizedRequest, *, options: PipelineOptions | None = None
    ) -> TaskHandle:
        """Validate, preflight, upload and buy one request; return a :class:`TaskHandle` to wait on later.

        Refusals before any spend raise :class:`KieRequestBlockedError`; createTask is sent once (see
        :mod:`kie_async.pipeline.handle`).
        """
        from kie_async.pipeline.handle import submit_request

        return await submit_request(self, request, options=options)

    def task(self, task_id: str, *, model_key: str | None = None) -> TaskHandle:
        """Re-attach to a task by id (created by this process or another); nothing is read until asked."""
        from kie_async.pipeline.handle import task_handle

        return task_handle(self, task_id, model_key=model_key)

    async def create_and_wait(
        self,
        request: RawUserRequest | NormalizedRequest,
        *,
        options: PipelineOptions | None = None,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> TaskOutcome:
        """``submit`` then ``wait``: one request to a finished :class:`TaskOutcome` with readable outputs."""
        from kie_async.pipeline.handle import create_and_wait

        check_timeout("timeout", timeout)
        return await create_and_wait(
            self, request, options=options, timeout=timeout, raise_on_failure=raise_on_failure
        )

    def output(self, url: str, *, kind: MediaKind | None = None) -> FileOutput:
        """A generated file's URL as a :class:`FileOutput` (``aiter_bytes``, ``aread``, ``save``)."""
        from kie_async.pipeline.outputs import FileOutput

        return FileOutput(self, url, kind=kind)

    # -- correlated callbacks: settling an uncertain createTask -----------------------------------------------

    def expect_adoption(self, token: str, *, transport: TransportSpec | None = None) -> asyncio.Future[str]:
        """A future that resolves with the task id a verified callback carrying ``token`` names.

        Kie.ai has no idempotency key, so after a lost createTask answer only the task's own callback can
        tell which task (if any) the request created; the pipeline waits on this future. ``transport`` is
        the API the lost request went to: the adoption is confirmed by reading the task there.
        """
        if transport is not None and not transport.is_market:
            self._adoption_apis[token] = transport
        future = self._adoptions.get(token)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._adoptions[token] = future
        return future

    def forget_adoption(self, token: str, *, late: AdoptionSink | None = None) -> None:
        """Stop waiting for ``token``; with ``late``, a callback that still arrives is handed to it instead.

        Late sinks live as long as the session (the most recent 10,000), so a long-running web process that
        receives the callback hours later still settles the request in its journal.
        """
        future = self._adoptions.pop(token, None)
        if future is not None and not future.done():
            future.cancel()
        if late is not None:
            self._late_adoptions[token] = late
            while len(self._late_adoptions) > _LATE_ADOPTIONS_KEPT:
                dropped = next(iter(self._late_adoptions))
                self._late_adoptions.pop(dropped)
                self._adoption_apis.pop(dropped, None)
        else:
            self._adoption_apis.pop(token, None)

    def attach_callback_receiver(self) -> None:
        """Say a receiver in this process feeds callbacks to this session (so a lost answer is worth awaiting)."""
        self._callback_receivers += 1

    @property
    def receives_callbacks(self) -> bool:
        return self._callback_receivers > 0

    async def adopt_task(self, token: str, task_id: str, *, fallback: AdoptionSink | None = None) -> bool:
        """Called by a callback receiver for a callback whose URL carried ``token``.

        The token sits in the (unsigned) URL query, so it is confirmed against the provider before anything
        is adopted: the task's own recorded request (``recordInfo`` ``param.callBackUrl``) must carry it.
        Returns whether the task was adopted.
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
        if await self._settle_adoption(token, task_id):
            return True
        relayed = self._coordinator.kind != "local"
        if relayed:  # the worker that lost the answer may be another process: tell every one of them
            await self._coordinator.publish_adoption(token, task_id)
        if fallback is not None:
            await fallback(token, task_id)
            return True
        if not relayed:
            log.info("callback token %s: no request of this session is waiting for it", token)
        return relayed

    async def _read_for_adoption(self, token: str, task_id: str) -> TaskRecord:
        """The task a callback names, read on the API its request went to.

        A process that did not send the request (another worker on the account) does not know that API: the
        market is read first, and only when it does not know the task, each separate API the specs describe.
        Reads spend nothing, and the token check that follows is what confirms the task, wherever it was read.
        """
        api = self._adoption_apis.get(token) or self._task_apis.get(task_id)
        if api is not None:
            return await self.get_task(task_id, transport=api)
        try:
            return await self.get_task(task_id)
        except KieValidationError as exc:
            if "recordInfo is null" not in exc.message:
                raise
            from kie_async.catalogue.specs import (
                aload_registry,  # the specs know every API; the session needs them only here
            )

            registry = await aload_registry()
            others = {spec.transport.name: spec.transport for spec in registry.specs.values()
                      if not spec.transport.is_market}
            for other in others.values():
                try:
                    return await self.get_task(task_id, transport=other)
                except KieValidationError as miss:
                    if "recordInfo is null" not in miss.message:
                        raise
            raise

    async def _settle_adoption(self, token: str, task_id: str) -> bool:
        """Hand a confirmed adoption to this process's waiting run, or to the batch that ended uncertain."""
        future = self._adoptions.get(token)
        if future is not None and not future.done():
            future.set_result(task_id)  # the pipeline that lost the answer is still waiting: it records it
            return True
        late = self._late_adoptions.pop(token, None)
        if late is None:
            return False
        await late(token, task_id)
        return True

    def _adoption_relayed(self, token: str, task_id: str) -> None:
        """Another process confirmed an adoption (it checked recordInfo): settle it here if it is ours."""
        if token in self._adoptions or token in self._late_adoptions:
            task = asyncio.ensure_future(self._settle_adoption(token, task_id))
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)

    @property
    def coordinator(self) -> Coordinator:
        """Where this session meets the others on the same account (in-process unless ``coordination_url``)."""
        return self._coordinator

    def notify_task_update(self, task_id: str) -> bool:
        """Wake every ``wait_for_task`` waiting on ``task_id`` in this process (a callback receiver calls it)."""
        return self._wake_waiters(task_id)

    async def publish_task_update(self, task_id: str) -> None:
        """Wake ``task_id``'s waiters in every process on the account (through the coordinator)."""
        self._wake_waiters(task_id)
        if self._coordinator.kind != "local":
            await self._coordinator.publish_task_update(task_id)

    def _wake_all_waiters(self) -> None:
        """Callbacks may have been lost (the shared channel was down): every waiter re-reads its task now."""
        for waiters in self._wakeups.values():
            for event in waiters:
                event.set()

    def _wake_waiters(self, task_id: str) -> bool:
        waiters = self._wakeups.get(task_id)
        for event in waiters or ():
            event.set()
        return bool(waiters)

    def first_poll_delay(self, model: str | None, typical_seconds: float | None = None) -> float:
        """The wait before the first status read of a task of ``model`` just created.

        Seeded from the model's typical generation time (``typical_seconds``, from its spec) and replaced by
        what this session has seen that model take (provider-reported, averaged), so a task that is done on its
        first read costs one status request instead of the 2 an immediate read plus the schedule's first step
        cost. Capped by ``PollSettings.first_poll_max``; after the first read the schedule applies unchanged.
        """
        learned = self._generation_seconds.get(model) if model else None
        return first_poll_delay(learned if learned is not None else typical_seconds, self.settings.poll)

    def _learn_generation_time(self, record: TaskRecord) -> None:
        took = provider_generation_seconds(record)
        if took is None or not record.model:
            return
        seen = self._generation_seconds.get(record.model)
        # A moving average: follows a model that slows down (provider load) without one outlier dominating.
        self._generation_seconds[record.model] = took if seen is None else 0.7 * seen + 0.3 * took

    # -- files ---------------------------------------------------------------------------------------------

    async def get_download_url(self, url: str, *, timeout: float | None = None) -> str:
        """A 20-minute download link for a Kie.ai-generated file URL (outside URLs answer 422)."""
        check_timeout("timeout", timeout)
        data = await self._api(
            "POST",
            self._url(self.settings.paths.download_url),
            endpoint="download-url",
            idempotent=True,
            json_body={"url": url},
            timeout=timeout,
            limiter=self.coordinator.read_limit,
        )
        if not isinstance(data, str) or not data:
            raise KieAPIStatusError(f"download-url returned no URL: {data!r}", code=200, endpoint="download-url")
        return data

    async def download(
        self,
        url: str,
        dest: str | Path,
        *,
        via_download_url: bool = False,
        timeout: float | None = None,
        expect_kind: MediaKind | None = None,
        name_from_content: bool = False,
    ) -> DownloadResult:
        """Stream ``url`` to ``dest`` atomically (temp file + size and content checks + rename); retried from scratch.

        ``expect_kind`` ("image", "video", "audio") makes a 200 answer that is not that media (empty, an HTML
        page, a header that does not read) a retryable :class:`KieDownloadContentError` that leaves no file.
        ``name_from_content`` gives the saved file the extension of what was received (``dest.with_suffix``),
        so a server URL ending in ``.sh`` cannot name it; the result's ``destination_path`` says where it
        landed. A URL that can never be fetched (``ftp://``, ``file://``, no host) raises
        :class:`KieDownloadURLError` before any request and is not retried.
        """
        check_timeout("timeout", timeout)
        target = Path(dest)
        check_download_url(url)
        source = await self.get_download_url(url) if via_download_url else url
        check_download_url(source)
        client_timeout = aiohttp.ClientTimeout(
            total=timeout or self.settings.download_timeout,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.request_timeout,
        )

        async def attempt() -> DownloadResult:
            async with (
                self._download_slots,
                self._send("GET", source, endpoint="download", timeout=client_timeout) as response,
            ):
                if response.status >= 400:
                    raise error_class_for_code(response.status)(
                        f"file host answered HTTP {response.status} for {_redact_url(source)}",
                        code=response.status,
                        http_status=response.status,
                        endpoint="download",
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                        **self._evidence(response, await error_body(response)),
                    )
                try:
                    saved = await stream_response_to_file(
                        response, target, expect_kind=expect_kind, name_from_content=name_from_content
                    )
                except aiohttp.ClientPayloadError as exc:
                    raise KieConnectionError(f"download of {target.name} was cut short") from exc
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    raise KieConnectionError(f"download of {target.name}: connection dropped") from exc
                except TimeoutError as exc:
                    raise KieTimeoutError(f"download of {target.name} timed out") from exc
                self.stats.bytes_downloaded += saved.bytes_written
                return DownloadResult(
                    url=url,
                    destination_path=str(saved.path),
                    bytes_written=saved.bytes_written,
                    content_type=response.headers.get("Content-Type"),
                    format=saved.sniffed.format,
                    extension=saved.sniffed.extension,
                    sha256=saved.sha256,
                )

        return await self._with_retries(attempt, idempotent=True, what="download")

    async def _upload(
        self, path: str, body_factory: Callable[[], Awaitable[tuple[Any, Any]]], *, what: str
    ) -> UploadedFile:
        """Shared upload path: bounded concurrency, retries (uploads spend no credits), typed result."""
        client_timeout = self._timeout(None, self.settings.upload_timeout)

        async def attempt() -> UploadedFile:
            json_body, form = await body_factory()
            try:
                async with (
                    self._upload_slots,
                    self._send(
                        "POST",
                        self._upload_url(path),
                        endpoint=what,
                        timeout=client_timeout,
                        json_body=json_body,
                        data=form,
                    ) as response,
                ):
                    envelope = await self._read_envelope(response, what)
            finally:
                closer = getattr(form, "_kie_close", None)
                if closer is not None:
                    await asyncio.to_thread(closer)
            if not isinstance(envelope.data, dict):
                raise KieAPIStatusError(f"{what} returned no file data", code=200, endpoint=what)
            return UploadedFile.model_validate(envelope.data)

        return await self._with_retries(attempt, idempotent=True, what=what)

    async def upload_once(
        self, content_key: str, upload: Callable[[], Awaitable[UploadedFile]]
    ) -> tuple[UploadedFile, bool]:
        """Upload identical content (same ``content_key``, e.g. a sha256) once per session, or once per account.

        Returns the hosted file and whether it was reused. Concurrent callers share one in-flight upload; a
        failed upload is forgotten so a later call retries; when the last caller waiting on an in-flight
        upload is cancelled, the upload is cancelled too. With a shared coordinator, a file another process
        uploaded recently (well within Kie.ai's 3-day upload lifetime) is reused instead.
        """
        task = self._upload_cache.get(content_key)
        started = task is None or (task.done() and (task.cancelled() or task.exception() is not None))
        if task is None or started:
            task = asyncio.ensure_future(self._upload_or_reuse(content_key, upload))
            self._upload_cache[content_key] = task
            self._upload_waiters[content_key] = 0
        self._upload_waiters[content_key] = self._upload_waiters.get(content_key, 0) + 1
        try:
            hosted = await asyncio.shield(task)
            return hosted, not started or content_key in self._shared_uploads
        finally:
            self._upload_waiters[content_key] -= 1
            if self._upload_waiters[content_key] == 0 and not task.done():
                task.cancel()
                self._upload_cache.pop(content_key, None)

    async def _upload_or_reuse(self, content_key: str, upload: Callable[[], Awaitable[UploadedFile]]) -> UploadedFile:
        if self._coordinator.kind != "local":
            found = await self._coordinator.find_upload(content_key)
            if found is not None:
                self._shared_uploads.add(content_key)
                return found
        uploaded = await upload()
        await self._coordinator.remember_upload(content_key, uploaded)
        return uploaded

    async def upload_file(
        self, path: str | Path, *, upload_path: str | None = None, file_name: str | None = None
    ) -> UploadedFile:
        """Upload a local file with the stream endpoint (no size limit, flat memory)."""
        source = Path(path)
        if not await aiofiles.os.path.isfile(source):
            raise KieInputError(f"upload source {str(source)!r} is not a file", hint="check the path")
        size = await aiofiles.os.path.getsize(source)
        name = file_name or _unique_name(source.name)
        content_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"

        async def body() -> tuple[Any, Any]:
            fh: BinaryIO = await asyncio.to_thread(source.open, "rb")
            form = aiohttp.FormData()
            form.add_field("file", fh, filename=name, content_type=content_type)
            form.add_field("uploadPath", upload_path or self.settings.upload_path)
            form.add_field("fileName", name)
            form._kie_close = fh.close  # type: ignore[attr-defined]
            return None, form

        result = await self._upload(self.settings.paths.upload_stream, body, what="file-stream-upload")
        self.stats.bytes_uploaded += size
        return result

    async def upload_bytes(
        self, data: bytes, filename: str, *, upload_path: str | None = None, content_type: str | None = None
    ) -> UploadedFile:
        """Upload in-memory bytes: base64 JSON up to 10 MB, the stream endpoint above (Kie.ai's advice)."""
        if not data:
            raise KieInputError("upload_bytes got no data", hint="pass non-empty bytes")
        name = _unique_name(filename)
        target = upload_path or self.settings.upload_path
        mime = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if len(data) <= BASE64_UPLOAD_LIMIT:
            encoded = await asyncio.to_thread(base64.b64encode, data) if len(data) > 65536 else base64.b64encode(data)

            async def b64_body() -> tuple[Any, Any]:
                return {
                    "base64Data": f"data:{mime};base64,{encoded.decode('ascii')}",
                    "uploadPath": target,
                    "fileName": name,
                }, None

            result = await self._upload(self.settings.paths.upload_base64, b64_body, what="file-base64-upload")
        else:

            async def stream_body() -> tuple[Any, Any]:
                form = aiohttp.FormData()
                form.add_field("file", data, filename=name, content_type=mime)
                form.add_field("uploadPath", target)
                form.add_field("fileName", name)
                return None, form

            result = await self._upload(self.settings.paths.upload_stream, stream_body, what="file-stream-upload")
        self.stats.bytes_uploaded += len(data)
        return result

    async def upload_url(
        self, url: str, *, upload_path: str | None = None, file_name: str | None = None
    ) -> UploadedFile:
        """Have Kie.ai fetch a remote file (it gives up after 30 s) and host it for model inputs."""
        if not url.startswith(("http://", "https://")):
            raise KieInputError(f"upload_url needs an http(s) URL, got {url!r}")
        body_json: dict[str, JSONValue] = {"fileUrl": url, "uploadPath": upload_path or self.settings.upload_path}
        if file_name:
            body_json["fileName"] = file_name

        async def body() -> tuple[Any, Any]:
            return body_json, None

        return await self._upload(self.settings.paths.upload_url, body, what="file-url-upload")


def _created_data(api: TransportSpec, data: JSONValue) -> JSONValue:
    """A create answer's ``data`` as ``TaskCreated`` reads it (the task id found where ``api`` says it is)."""
    if not isinstance(data, dict):
        return data
    return {"taskId": pick(data, api.create.task_id), "recordId": data.get("recordId")}


def _parse_record(task_id: str, data: JSONValue, api: TransportSpec | None = None) -> TaskRecord:
    """Status data → ``TaskRecord`` for ``task_id``; anything unreadable is a typed, retryable error.

    A separate API's answer is first translated into the ``recordInfo`` shape by its transport spec.
    """
    if data is None:
        raise KieValidationError("recordInfo is null", code=422, endpoint="recordInfo")
    if not isinstance(data, dict):
        raise KieResponseShapeError(
            f"recordInfo for task {task_id} is {type(data).__name__}, not an object: {str(data)[:120]!r}",
            task_id=task_id,
            endpoint="recordInfo",
        )
    data = (api or market_transport()).record_data(data)
    answered = data.get("taskId", data.get("task_id"))
    if answered is None or answered == "":
        data = {**data, "taskId": task_id}
    elif str(answered) != task_id or not isinstance(answered, str | int) or isinstance(answered, bool):
        raise KieResponseShapeError(
            f"recordInfo asked for task {task_id} answered for task {str(answered)[:80]!r}",
            task_id=task_id,
            endpoint="recordInfo",
        )
    try:
        return TaskRecord.model_validate(data)
    except ValidationError as exc:
        raise KieResponseShapeError(
            f"recordInfo for task {task_id} has an unexpected shape ({_first_error(exc)})",
            task_id=task_id,
            endpoint="recordInfo",
        ) from exc


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"


async def _report(callback: ProgressCallback | None, progress: TaskProgress) -> None:
    if callback is None:
        return
    result = callback(progress)
    if asyncio.iscoroutine(result):
        await result


def _unique_name(filename: str) -> str:
    """Kie.ai overwrites uploads with the same name, so prefix a short random id."""
    return f"{uuid.uuid4().hex[:10]}-{Path(filename).name or 'upload.bin'}"


def _redact_url(url: str) -> str:
    """Drop query strings (signed links) from URLs that go into messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"

