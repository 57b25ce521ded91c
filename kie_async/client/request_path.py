"""The one request path to Kie.ai: auth, rate limits, the ``{code, msg, data}`` envelope, typed errors, retries.

Every API call goes through :meth:`RequestPath.api`, which adds auth, waits for the rate limiter, parses the
envelope (Kie.ai often reports errors inside HTTP 200), maps codes to typed errors and applies the retry
rules from :mod:`kie_async.wire.retry`. Downloads and uploads (:mod:`kie_async.client.files`) send through
:meth:`RequestPath.send` and share the same error mapping and retry policy. The account reads and the task
calls (credits, pricing, createTask, recordInfo) live here too: each is one ``api`` call and its answer's shape.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import SplitResult, urlsplit

import aiohttp
from pydantic import ValidationError

from kie_async.client.connection import Connection, SessionStats
from kie_async.client.options import SessionOptions
from kie_async.coordination import Coordinator, ReadLimit, SubmitWindow
from kie_async.core import telemetry
from kie_async.core.errors import (
    KieAPIStatusError,
    KieConfigError,
    KieConnectionError,
    KieError,
    KieInputError,
    KieRateLimitError,
    KieResponseShapeError,
    KieSubmissionUncertainError,
    KieTimeoutError,
    KieValidationError,
    error_class_for_code,
)
from kie_async.core.evidence import response_evidence, scrub
from kie_async.core.limits import check_timeout
from kie_async.core.logs import attempt_number, log_request
from kie_async.wire.api_models import CreateTaskPayload, CreditBalance, Envelope, JSONValue, TaskCreated, TaskRecord
from kie_async.wire.retry import parse_retry_after
from kie_async.wire.task_apis import TransportSpec, market_transport, pick
from kie_async.wire.transport import transport_error, user_agent

log = logging.getLogger("kie_async.client.request_path")
T = TypeVar("T")

WireHook = Callable[[], Awaitable[None]]
"""Called once per createTask attempt, after the rate limiter and just before the request is sent."""
UnsentHook = Callable[[KieError], Awaitable[None]]
"""Called after a createTask attempt that provably did no work (never connected, or refused with 429)."""

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

_TASK_TRANSPORTS_KEPT = 10_000
_HELD_SECONDS = 0.001
"""A rate-limiter wait shorter than this is no wait (the limiter let the request through at once): not recorded."""


class TaskReader(Protocol):
    """One status read of a task, as ``KieSession.get_task`` does it (the waiter and adoption desk read so)."""

    def __call__(self, task_id: str, *, transport: TransportSpec | None = None) -> Awaitable[TaskRecord]: ...


def _http_attributes(method: str, parts: SplitResult, endpoint: str, *, api: bool) -> dict[str, object]:
    """An HTTP span's attributes: an API route's path (never the query: a signed link's token lives there); a file
    host's path is part of a media URL, so a download names no path at all."""
    return {
        "http.request.method": method,
        "url.template": (parts.path or "/") if api else None,
        "server.address": parts.hostname,
        "server.port": parts.port,
        "kie.endpoint": endpoint,
        "kie.attempt": attempt_number.get(),
        "kie.retry.reason": telemetry.retry_reason.get(),
    }


@functools.cache
def _endpoint_attributes(endpoint: str) -> telemetry.Attributes:
    """A rate-limit metric's attributes, built once per endpoint."""
    return telemetry.attributes({"kie.endpoint": endpoint})


def did_no_work(exc: KieError) -> bool:
    """True when a failed attempt provably neither reached the server nor made it do anything."""
    if isinstance(exc, KieRateLimitError):
        return True
    if isinstance(exc, KieConnectionError | KieTimeoutError):
        return not exc.request_sent
    return False


class RequestPath:
    """Sends a session's requests; one per session or view (its own options), over the shared connection.

    ``task_apis`` (task id → the API it was bought through) is shared with the views: a task bought through
    one is read on the right status path through any other.
    """

    def __init__(
        self,
        options: SessionOptions,
        connection: Connection,
        stats: SessionStats,
        task_apis: dict[str, TransportSpec],
    ) -> None:
        self._options = options
        self._connection = connection
        self._stats = stats
        self._task_apis = task_apis

    # -- sending ---------------------------------------------------------------------------------------------

    def _headers(self, url: str, *, json_body: bool) -> dict[str, str]:
        settings = self._options.settings
        headers: dict[str, str] = {"User-Agent": user_agent(settings)}  # also on a pool the caller brought
        if json_body:
            headers["Content-Type"] = "application/json"
        # The key goes only to Kie.ai's own API hosts, never to file hosts that serve outputs.
        if urlsplit(url).netloc in self._connection.auth_hosts:
            key = settings.key_value()
            if not key:
                raise KieConfigError("no Kie.ai API key configured", hint="set KIE_API_KEY or KieSettings(api_key=...)")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def timeout(self, total: float | None, default: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total or default, sock_connect=self._options.settings.connect_timeout)

    @contextlib.asynccontextmanager
    async def send(
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
        http = self._connection.checked_http()
        proxy = self._connection.proxy_for(url)
        self._stats.count(endpoint)
        parts = urlsplit(url)
        path = parts.path or "/"
        api = endpoint != "download" and parts.netloc in self._connection.auth_hosts  # a route, not a file's path
        started = time.perf_counter()
        outcome: str | None = None
        attributes = functools.partial(_http_attributes, method, parts, endpoint, api=api)  # built only when traced
        with telemetry.span(f"{method} {path}" if api else method, attributes, client=True) as span:
            try:
                async with http.request(
                    method,
                    url,
                    json=json_body,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=timeout,
                    proxy=proxy,
                ) as response:
                    outcome = str(response.status)
                    span.set_one("http.response.status_code", response.status)
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

    def evidence(self, response: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
        """What an error keeps of ``response`` (body, headers, request id), with the key cut out."""
        return response_evidence(response.headers, body, [self._options.settings.key_value() or ""])

    async def read_envelope(
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
            evidence = self.evidence(response, body)
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
                self._stats.rate_limited += 1
            raise error_class_for_code(code)(
                scrub(envelope.msg or response.reason or "error", [self._options.settings.key_value() or ""]),
                code=code,
                http_status=response.status,
                endpoint=endpoint,
                retry_after=retry_after,
                task_id=task_id,
                **self.evidence(response, body),
            )
        return envelope

    async def api(
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
        self._connection.bound()  # before the limiter: a wrong loop or a closed session fails having waited for nothing
        client_timeout = self.timeout(timeout, self._options.settings.request_timeout)

        async def attempt() -> JSONValue:
            async with contextlib.AsyncExitStack() as stack:
                waited = time.perf_counter()
                if isinstance(limiter, SubmitWindow):
                    await stack.enter_async_context(limiter.slot())
                elif limiter is not None:
                    await limiter.acquire()
                held = time.perf_counter() - waited
                if limiter is not None and held >= _HELD_SECONDS:  # a request let through at once records nothing
                    telemetry.record("kie.rate_limit.wait", held, _endpoint_attributes(endpoint))
                if on_wire is not None:
                    await on_wire()
                try:
                    response = await stack.enter_async_context(
                        self.send(
                            method, url, endpoint=endpoint, timeout=client_timeout, json_body=json_body, params=params
                        )
                    )
                    try:
                        envelope = await self.read_envelope(response, endpoint, task_id=(params or {}).get("taskId"))
                    except KieRateLimitError as exc:
                        telemetry.record("kie.http.rate_limited", 1, _endpoint_attributes(endpoint))
                        if isinstance(limiter, SubmitWindow):
                            await limiter.pause(exc.retry_after or 1.0)  # every submitter on the account waits
                        raise
                except KieError as exc:
                    if on_unsent is not None and did_no_work(exc):
                        await on_unsent(exc)
                    raise
                return parse(envelope.data) if parse is not None else envelope.data

        return await self.with_retries(attempt, idempotent=idempotent, what=endpoint)

    async def with_retries(self, op: Callable[[], Awaitable[T]], *, idempotent: bool, what: str) -> T:
        def note(attempt: int, exc: KieError, wait: float) -> None:
            del attempt, exc, wait
            self._stats.retries += 1

        return await self._options.retry_policy.run(op, idempotent=idempotent, what=what, on_retry=note)

    def _path(self, api: TransportSpec, step: Literal["create", "status"]) -> str:
        """The market's paths come from ``settings.paths`` (a gateway may move them); a separate API's from its spec."""
        if api.is_market:
            paths = self._options.settings.paths
            return paths.create_task if step == "create" else paths.record_info
        return api.create.path if step == "create" else api.status.path

    def url(self, path: str) -> str:
        return f"{self._options.settings.base_url}{path}"

    def upload_url(self, path: str) -> str:
        return f"{self._options.settings.upload_base_url}{path}"

    def read_limit(self) -> ReadLimit:
        return self._connection.coordinator.read_limit

    def coordinator(self) -> Coordinator:
        return self._connection.coordinator

    # -- account and tasks -------------------------------------------------------------------------------------

    async def get_credits(self, *, timeout: float | None = None) -> CreditBalance:
        check_timeout("timeout", timeout)
        data = await self.api(
            "GET",
            self.url(self._options.settings.paths.credits),
            endpoint="credit",
            idempotent=True,
            timeout=timeout,
            limiter=self.read_limit(),
        )
        if isinstance(data, dict):  # tolerate {"credits": n} shapes
            data = data.get("credits", data.get("balance"))
        if not isinstance(data, int | float | str):
            raise KieAPIStatusError(f"credit balance has an unexpected shape: {data!r}", code=200, endpoint="credit")
        return CreditBalance(credits=float(data))

    async def get_pricing_records(self, *, page_size: int, timeout: float | None) -> list[dict[str, JSONValue]]:
        check_timeout("timeout", timeout)
        if not 1 <= page_size <= 500:
            raise ValueError(f"page_size must be 1..500, got {page_size}")
        count = await self.api(
            "GET",
            self.url(PRICING_COUNT_PATH),
            endpoint="pricing",
            idempotent=True,
            timeout=timeout,
            limiter=self.read_limit(),
        )
        total = count.get("all") if isinstance(count, dict) else None
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise KieAPIStatusError(
                f"pricing count has an unexpected shape: {count!r:.200}", code=200, endpoint="pricing"
            )
        records: list[dict[str, JSONValue]] = []
        pages = min(PRICING_MAX_PAGES, max(1, -(-total // page_size)))
        for page_num in range(1, pages + 1):
            data = await self.api(
                "POST",
                self.url(PRICING_PAGE_PATH),
                endpoint="pricing",
                idempotent=True,
                json_body={"pageNum": page_num, "pageSize": page_size},
                timeout=timeout,
                limiter=self.read_limit(),
            )
            rows = data.get("records") if isinstance(data, dict) else None
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise KieAPIStatusError(f"pricing page {page_num} has no records list", code=200, endpoint="pricing")
            records.extend(rows)
            if len(rows) < page_size:
                break
        return records

    async def create_task(
        self,
        payload: CreateTaskPayload,
        *,
        timeout: float | None,
        on_wire: WireHook | None,
        on_unsent: UnsentHook | None,
    ) -> TaskCreated:
        """Send ``payload`` once (see ``KieSession.create_task``); a maybe-arrived request is never retried.

        The caller remembers the task's API (``remember_transport``) so its status is read on the right path.
        """
        api = payload.api
        data: JSONValue = None
        try:
            data = await self.api(
                "POST",
                self.url(self._path(api, "create")),
                endpoint="createTask",
                idempotent=False,
                json_body=payload.to_wire(),
                timeout=timeout,
                limiter=self._connection.coordinator.submit_window,
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
        return created

    def remember_transport(self, task_id: str, transport: TransportSpec | None) -> None:
        """Read ``task_id`` through ``transport`` from now on (the market is the default and is not stored)."""
        if transport is None or transport.is_market:
            return
        self._task_apis[task_id] = transport
        while len(self._task_apis) > _TASK_TRANSPORTS_KEPT:
            self._task_apis.pop(next(iter(self._task_apis)))

    def known_transport(self, task_id: str) -> TransportSpec | None:
        """The API this session (or a view of it) bought ``task_id`` through, if it did."""
        return self._task_apis.get(task_id)

    def transport_for(self, task_id: str, transport: TransportSpec | None) -> TransportSpec:
        return transport or self._task_apis.get(task_id) or market_transport()

    async def get_task(
        self, task_id: str, *, timeout: float | None = None, transport: TransportSpec | None = None
    ) -> TaskRecord:
        """One status read (see ``KieSession.get_task``)."""
        check_timeout("timeout", timeout)
        if not task_id:
            raise KieInputError("task_id is empty", hint="pass the taskId returned by create_task")
        api = self.transport_for(task_id, transport)
        try:
            record: TaskRecord = await self.api(
                "GET",
                self.url(self._path(api, "status")),
                endpoint="recordInfo",
                idempotent=True,
                params={api.status.task_id_param: task_id},
                timeout=timeout,
                limiter=self.read_limit(),
                parse=lambda data: _parse_record(task_id, data, api),
            )
        except KieResponseShapeError as exc:
            if exc.task_id is not None:
                raise
            raise KieResponseShapeError(
                f"task {task_id}: {exc.message}", task_id=task_id, http_status=exc.http_status, endpoint=exc.endpoint
            ) from exc
        return record


def _created_data(api: TransportSpec, data: JSONValue) -> JSONValue:
    """A create answer's ``data`` as ``TaskCreated`` reads it (the task id found where ``api`` says it is)."""
    if not isinstance(data, dict):
        return data
    return {"taskId": pick(data, api.create.task_id), "recordId": data.get("recordId")}


def _parse_record(task_id: str, data: JSONValue, api: TransportSpec | None = None) -> TaskRecord:
    """Status data → ``TaskRecord`` for ``task_id``; anything unreadable is a typed, retryable error.

    A separate API's answer is first translated into the ``recordInfo`` shape by its transport spec.
    """
    api = api or market_transport()
    if data is None:
        raise KieValidationError(api.status.unknown_task[0], code=422, endpoint="recordInfo")
    if not isinstance(data, dict):
        raise KieResponseShapeError(
            f"recordInfo for task {task_id} is {type(data).__name__}, not an object: {str(data)[:120]!r}",
            task_id=task_id,
            endpoint="recordInfo",
        )
    data = api.record_data(data)
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
