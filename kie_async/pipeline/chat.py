"""Chat on Kie.ai through a session: one call for all four wire formats, whole or streamed, under a budget.

``await chat(kie, "claude-sonnet-4.5", "Write a haiku")`` returns a :class:`ChatResult`; ``chat_stream`` returns a
:class:`ChatStream` to ``async for`` over :class:`ChatDelta` pieces, whose ``result`` is the same ``ChatResult``
once the stream ends. The model's spec (``model_specs/chat``) says which format, path and body shape to use.

Money rules, as for tasks:

* A chat call is retried only when provably nothing reached the server (a refused connection, a 429, which
  Kie.ai drops unprocessed); never once its bytes may have arrived.
* A stream that breaks off returns what arrived, ``complete=False``, with ``credits_consumed`` if the answer had
  said it by then.
* With a ``budget``: no token price is known for any chat page, so the unknown-price rule applies. The call is
  refused unless the caller either reserves a ceiling (``reserve_credits``) or accepts an open cost
  (``allow_unknown_cost=True``, reserving 0); the answer's ``credits_consumed`` then settles the budget. An
  error answer releases the reservation; a connection lost after sending keeps it as spent.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp
from pydantic import ValidationError

from kie_async.catalogue.blocked import KieRequestBlockedError
from kie_async.catalogue.chat_specs import ChatRegistry, ChatSpec, load_chat_registry
from kie_async.client import BaseSession
from kie_async.core import telemetry
from kie_async.core.errors import (
    KieAPIStatusError,
    KieConnectionError,
    KieError,
    KieInputError,
    KieTimeoutError,
    error_class_for_code,
)
from kie_async.core.evidence import error_body, request_id, response_evidence
from kie_async.ledger.budget import CreditBudget
from kie_async.wire.chat.codecs import Codec, Collected, codec_for
from kie_async.wire.chat.models import ChatDelta, ChatMessage, ChatResult, ChatWire
from kie_async.wire.chat.sse import iter_sse
from kie_async.wire.retry import parse_retry_after
from kie_async.wire.transport import Transport, transport_error, user_agent

ENDPOINT = "chat"
MessagesIn = str | Sequence[ChatMessage | Mapping[str, Any]]

_REGISTRIES: dict[str, ChatRegistry] = {}


async def chat_registry() -> ChatRegistry:
    """The chat specs (parsed in a worker thread the first time, then kept)."""
    env = os.environ.get("KIE_MODEL_SPECS_DIR", "")
    found = _REGISTRIES.get(env)
    if found is None:
        found = _REGISTRIES[env] = await asyncio.to_thread(load_chat_registry)
    return found


_WIRES: dict[tuple[int, str], tuple[ChatSpec, ChatWire]] = {}


def chat_wire(spec: ChatSpec, provider_model: str | None = None) -> ChatWire:
    """How ``spec``'s calls go on the wire (built once per spec and provider model)."""
    model = provider_model or spec.provider_model
    found = _WIRES.get((id(spec), model))
    if found is not None and found[0] is spec:
        return found[1]
    if model not in spec.provider_models:
        raise KieInputError(f"{spec.key} sells {spec.provider_models}, not {model!r}")
    wire = _WIRES[(id(spec), model)] = spec, _build_wire(spec, model)
    return wire[1]


def _build_wire(spec: ChatSpec, model: str) -> ChatWire:
    return ChatWire(
        wire_format=spec.wire_format,
        path=spec.endpoint,
        provider_model=model,
        model_field=spec.model_field,
        messages_field=spec.messages_field,
        roles=tuple(spec.roles),
        content=spec.content,
        system_prompt=spec.system_prompt,
        stream_supported=spec.stream.supported,
    )


def _message(index: int, message: ChatMessage | Mapping[str, Any]) -> ChatMessage:
    if isinstance(message, ChatMessage):
        return message
    try:
        return ChatMessage.model_validate(message)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KieInputError(
            f"messages[{index}]{'.' + where if where else ''}: {first['msg'].removeprefix('Value error, ')}",
            hint="a message is {role, content} (plus tool_calls on an assistant turn, tool_call_id and name on a "
            "tool turn); ChatMessage.user/.assistant/.tool build them",
        ) from None


def _messages(messages: MessagesIn, system: str | None) -> list[ChatMessage]:
    if isinstance(messages, str):
        turns = [ChatMessage(role="user", content=messages)]
    else:
        turns = [_message(i, m) for i, m in enumerate(messages)]
    if system:
        turns.insert(0, ChatMessage(role="system", content=system))
    if not any(m.role == "user" for m in turns):
        raise KieInputError("a chat needs at least one user message")
    return turns


def _check_options(spec: ChatSpec, options: Mapping[str, Any]) -> None:
    for name, value in options.items():
        opt = spec.options.get(name)
        if opt is None:
            raise KieInputError(
                f"{spec.key} takes no option {name!r}; its page documents {sorted(spec.options) or 'none'}"
            )
        if opt.allowed is not None and value not in opt.allowed:
            raise KieInputError(f"{spec.key}: {name}={value!r} is not one of {opt.allowed}")


async def check_chat_call(
    model: str,
    messages: MessagesIn,
    *,
    system: str | None = None,
    options: Mapping[str, Any] | None = None,
    provider_model: str | None = None,
) -> ChatSpec:
    """The spec of the chat model a call names, once its messages and options are checked against it (nothing is
    sent): what :func:`chat` refuses with ``KieInputError`` before the wire, found up front (a batch's chat lines)."""
    try:
        spec = (await chat_registry()).get(model)
    except KeyError as exc:
        raise KieInputError(str(exc.args[0])) from None
    chat_wire(spec, provider_model)
    _check_options(spec, dict(options or {}))
    _messages(messages, system)
    return spec


class ChatStream:
    """An answer as it arrives: ``async for delta in stream``; then ``stream.result``.

    Use it as ``async with`` (or call :meth:`aclose`) so a stream left early still settles its budget and frees
    its connection; :meth:`final` reads the rest and returns the result.
    """

    def __init__(
        self,
        session: BaseSession,
        model: str,
        messages: MessagesIn,
        *,
        system: str | None,
        options: Mapping[str, Any] | None,
        budget: CreditBudget | None,
        reserve_credits: float | None,
        allow_unknown_cost: bool,
        provider_model: str | None,
        timeout: float | None,
        stream: bool,
    ) -> None:
        self._session = session
        self._model = model
        self._turns = _messages(messages, system)
        self._options = dict(options or {})
        self._budget = budget
        self._reserve = reserve_credits
        self._allow_unknown = allow_unknown_cost
        self._provider_model = provider_model
        self._timeout = timeout
        self._stream = stream
        self._pending: deque[ChatDelta] = deque()
        self._acc = Collected()
        self._response: aiohttp.ClientResponse | None = None
        self._events: AsyncIterator[tuple[str | None, str]] | None = None
        self._codec: Codec | None = None
        self._spec: ChatSpec | None = None
        self._reserved = 0.0
        self._held = False  # a budget hold is taken and not yet settled or released
        self._count = 0
        self._raw: dict[str, Any] | None = None
        self._result: ChatResult | None = None
        self._request_id: str | None = None
        self._started_ns = time.time_ns()
        self._reported = False

    # -- the public face
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatDelta:
        while not self._pending:
            if self._result is not None:
                raise StopAsyncIteration
            await self._step()
        return self._pending.popleft()

    @property
    def result(self) -> ChatResult:
        if self._result is None:
            raise RuntimeError("the stream has not ended yet: iterate it to the end, or await stream.final()")
        return self._result

    async def final(self) -> ChatResult:
        """Read the rest of the answer and return the result."""
        while self._result is None:
            await self._step()
        self._pending.clear()
        return self._result

    async def aclose(self) -> None:
        """Stop reading; a stream left before its end counts as incomplete (what arrived is kept)."""
        if self._result is None and self._response is not None:
            await self._finish("closed by the caller before the stream ended")
        elif self._result is None:
            self._result = self._build("closed before anything was sent")
        if self._held and self._budget is not None:  # left by a cancellation mid-stream: it may have been spent
            self._held = False
            await self._budget.settle(self._reserved, self._acc.credits)
        self._report()

    # -- the machinery
    async def _step(self) -> None:
        """One step; after a failure the call is over (never sent again) and its result says so."""
        if self._result is not None:
            return
        try:
            await self._advance()
        except BaseException as exc:
            if self._response is not None:
                self._response.release()
                self._response = None
            if self._result is None:
                self._result = self._build(f"failed: {type(exc).__name__}: {exc}")
            self._report(type(exc).__name__)
            raise

    async def _advance(self) -> None:
        if self._response is None:
            await self._open()
            return
        if self._events is None:
            await self._read_json()
            return
        try:
            event, data = await anext(self._events)
        except StopAsyncIteration:
            await self._finish(None if self._acc.finished else "the stream ended without its end marker")
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._finish(f"the stream broke off ({type(exc).__name__})")
            return
        assert self._codec is not None
        self._count += 1
        if data == "[DONE]":
            self._acc.finished = True
            await self._finish(None)
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return  # a keep-alive or a line no format defines: nothing to take from it
        if not isinstance(payload, dict):
            return
        error = payload.get("error")
        if isinstance(error, dict) and not payload.get("choices"):
            await self._finish(f"the stream reported an error: {error.get('message') or error}")
            return
        self._pending.extend(self._codec.feed(self._acc, event, payload))

    async def _open(self) -> None:
        registry = await chat_registry()
        try:
            spec = registry.get(self._model)
        except KeyError as exc:
            raise KieInputError(str(exc.args[0])) from None
        self._spec = spec
        wire = chat_wire(spec, self._provider_model)
        _check_options(spec, self._options)
        self._codec = codec_for(wire)
        body = self._codec.body(self._turns, self._options, self._stream if spec.stream.supported else None)
        await self._hold_budget(spec)
        session = self._session
        settings = session.settings
        url = settings.base_url.rstrip("/") + wire.path
        key = settings.key_value()
        if not key:
            await self._release()
            raise KieInputError("no Kie.ai API key configured", hint="set KIE_API_KEY or KieSettings(api_key=...)")
        headers = {
            "Authorization": f"Bearer {key}",
            "User-Agent": user_agent(settings),
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if self._stream else "application/json",
        }
        data = json.dumps(body, ensure_ascii=False).encode()  # bytes go out with the headers in one write
        proxy = _proxy_for(session, url)
        read = self._timeout or settings.request_timeout
        timeout = aiohttp.ClientTimeout(
            total=None if self._stream else read, sock_connect=settings.connect_timeout, sock_read=read
        )

        async def attempt() -> aiohttp.ClientResponse:
            session.stats.count(ENDPOINT)
            try:
                response = await session.http.post(url, data=data, headers=headers, timeout=timeout, proxy=proxy)
            except KieError:
                raise
            except Exception as exc:
                mapped = transport_error(exc, ENDPOINT, timeout)
                if mapped is None:
                    raise
                raise mapped from exc
            if response.status >= 400:
                raw = await error_body(response)
                response.release()
                raise self._error(response.status, response.headers, raw)
            return response

        try:
            self._response = await session.retry_policy.run(attempt, idempotent=False, what=f"chat {spec.key}")
        except KieError as exc:
            await self._after_error(exc)
            raise
        self._request_id = request_id(self._response.headers)
        if "text/event-stream" in self._response.headers.get("Content-Type", ""):
            self._events = iter_sse(self._response.content)

    async def _read_json(self) -> None:
        assert self._response is not None and self._codec is not None
        response = self._response
        try:
            raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._finish(f"the answer broke off ({type(exc).__name__})")
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or _is_error(payload):
            problem = self._error(response.status, response.headers, raw, payload)
            response.release()
            self._response = None
            if isinstance(payload, dict):  # the service's own refusal: nothing was generated
                await self._after_error(problem)
            elif self._budget is not None and self._held:  # an answer nobody can read may still have been billed
                self._held = False
                await self._budget.settle(self._reserved, None)
            raise problem
        self._raw = payload
        self._acc = self._codec.read(payload)
        text = "".join(self._acc.text)
        if text:
            self._pending.append(ChatDelta("text", text))
        for index, call in enumerate(self._acc.tool_calls()):
            self._pending.append(ChatDelta("tool_call", call.arguments, index, call.name, call.id))
        await self._finish(None)

    async def _finish(self, incomplete: str | None) -> None:
        if self._events is not None:
            closer = getattr(self._events, "aclose", None)
            if closer is not None:
                await closer()
        if self._response is not None:
            self._response.release()
        self._result = self._build(incomplete)
        if self._budget is not None and self._held:
            self._held = False
            await self._budget.settle(self._reserved, self._acc.credits)
            charged = self._acc.credits if self._acc.credits is not None else self._reserved
            self._result = self._result.model_copy(update={"credits_charged": charged})
        self._report()

    def _report(self, error: str | None = None) -> None:
        """Once per call: its span and metrics (no prompt or answer text: they are content)."""
        if self._reported or self._result is None:
            return
        self._reported = True
        result = self._result
        error = error or (None if result.complete else "incomplete")
        model = {
            "gen_ai.provider.name": telemetry.PROVIDER,
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": result.model,
        }
        attributes = {
            **model,
            "gen_ai.response.id": result.response_id or result.request_id,
            "gen_ai.response.finish_reasons": result.finish_reason,
            "gen_ai.usage.input_tokens": result.usage.input_tokens,
            "gen_ai.usage.output_tokens": result.usage.output_tokens,
            "kie.credits.consumed": result.credits_consumed,
            "kie.credits.charged": result.credits_charged,
            "kie.chat.streamed": result.streamed,
            "kie.chat.wire_format": result.wire_format,
        }
        telemetry.record_span(f"chat {result.model}", attributes, self._started_ns, error=error)
        telemetry.record(
            "gen_ai.client.operation.duration",
            (time.time_ns() - self._started_ns) / 1e9,
            {**model, "error.type": error},
        )
        for kind, tokens in (("input", result.usage.input_tokens), ("output", result.usage.output_tokens)):
            if tokens is not None:
                telemetry.record("gen_ai.client.token.usage", tokens, {**model, "gen_ai.token.type": kind})
        if result.credits_charged is not None:
            telemetry.record("kie.credits.charged", result.credits_charged, model)

    def _build(self, incomplete: str | None) -> ChatResult:
        acc = self._acc
        spec = self._spec
        wire_format = spec.wire_format if spec else "openai-chat"
        return ChatResult(
            model=spec.key if spec else self._model,
            provider_model=self._provider_model or (spec.provider_model if spec else self._model),
            wire_format=wire_format,
            text="".join(acc.text),
            tool_calls=acc.tool_calls(),
            finish_reason=acc.finish_reason,
            usage=acc.usage,
            credits_consumed=acc.credits,
            request_id=self._request_id,
            response_id=acc.response_id,
            streamed=self._events is not None,
            complete=incomplete is None,
            incomplete_reason=incomplete,
            events=self._count,
            raw=self._raw,
        )

    async def _hold_budget(self, spec: ChatSpec) -> None:
        if self._budget is None:
            return
        if self._reserve is not None:
            amount = self._reserve
        elif spec.price is not None:
            chars = sum(len(m.content) for m in self._turns)
            amount = chars / 4000 * spec.price.input_per_1k + 4.096 * spec.price.output_per_1k
        elif self._allow_unknown:
            amount = 0.0
        else:
            raise KieRequestBlockedError(
                f"no token price is known for chat model {spec.key}, so its cost cannot be held against the budget",
                hint="pass reserve_credits=N (a ceiling to hold) or allow_unknown_cost=True (hold 0); the answer's "
                "credits_consumed settles the budget either way; nothing was spent",
            )
        if not await self._budget.reserve(amount):
            snap = self._budget.snapshot()
            raise KieRequestBlockedError(
                f"holding {amount:g} credits for {spec.key} would pass the budget (remaining {snap.remaining:g})",
                hint="raise the cap; nothing was spent",
            )
        self._reserved = amount
        self._held = True

    async def _release(self) -> None:
        if self._budget is not None and self._held:
            self._held = False
            await self._budget.release(self._reserved)

    async def _after_error(self, exc: KieError) -> None:
        """An error answer, or a call refused before it was sent, spent nothing; a connection lost after sending
        may have spent the reservation, so it stays counted."""
        if self._budget is None:
            return
        sent = isinstance(exc, KieConnectionError | KieTimeoutError) and exc.request_sent
        if sent and self._held:
            self._held = False
            await self._budget.settle(self._reserved, None)
        else:
            await self._release()

    def _error(self, status: int, headers: Mapping[str, str], raw: bytes, payload: Any = None) -> KieAPIStatusError:
        if payload is None:
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = None
        code = status if status >= 400 else 502
        message = f"HTTP {status} with a body that is not a chat answer"
        enveloped = False
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, dict) and error.get("message"):
                message, enveloped = str(error["message"]), True
            elif isinstance(payload.get("code"), int) and payload.get("code") != 200:
                code = payload["code"] if status < 400 else status
                message, enveloped = str(payload.get("msg") or "error"), True
        evidence = response_evidence(headers, raw, [self._session.settings.key_value() or ""])
        return error_class_for_code(code)(
            message,
            code=code,
            http_status=status,
            endpoint=ENDPOINT,
            enveloped=enveloped,
            retry_after=parse_retry_after(headers.get("Retry-After")),
            **evidence,
        )


def _proxy_for(session: BaseSession, url: str) -> str | None:
    """The proxy the session's own requests would use for ``url`` (``HTTPS_PROXY``/``NO_PROXY`` when
    ``trust_env``; never for loopback), by the transport's rule."""
    if not session.settings.trust_env:
        return None
    found = urllib.request.getproxies_environment()
    proxies = {scheme: value for scheme, value in found.items() if scheme in ("http", "https", "no") and value}
    return Transport(session.http, owned=False, proxies=proxies).proxy_for(url) if proxies else None


def _is_error(payload: dict[str, Any]) -> bool:
    if isinstance(payload.get("error"), dict):
        return True
    code = payload.get("code")
    return isinstance(code, int) and code != 200 and "msg" in payload


def chat_stream(
    session: BaseSession,
    model: str,
    messages: MessagesIn,
    *,
    system: str | None = None,
    options: Mapping[str, Any] | None = None,
    budget: CreditBudget | None = None,
    reserve_credits: float | None = None,
    allow_unknown_cost: bool = False,
    provider_model: str | None = None,
    timeout: float | None = None,
) -> ChatStream:
    """Start a streamed chat (nothing is sent until the first ``async for`` step or :meth:`ChatStream.final`).

    A model whose page documents no ``stream`` switch answers in one piece; the stream then yields it as one
    text delta. ``timeout`` bounds each wait for the next bytes (a slow first token included)."""
    return ChatStream(
        session,
        model,
        messages,
        system=system,
        options=options,
        budget=budget,
        reserve_credits=reserve_credits,
        allow_unknown_cost=allow_unknown_cost,
        provider_model=provider_model,
        timeout=timeout,
        stream=True,
    )


async def chat(
    session: BaseSession,
    model: str,
    messages: MessagesIn,
    *,
    system: str | None = None,
    options: Mapping[str, Any] | None = None,
    budget: CreditBudget | None = None,
    reserve_credits: float | None = None,
    allow_unknown_cost: bool = False,
    provider_model: str | None = None,
    timeout: float | None = None,
) -> ChatResult:
    """One chat call, answered whole: ``messages`` is a prompt string or a list of :class:`ChatMessage` (or
    dicts); ``system`` a system prompt; ``options`` the page's extra fields (tools, reasoning effort, ...)."""
    call = ChatStream(
        session,
        model,
        messages,
        system=system,
        options=options,
        budget=budget,
        reserve_credits=reserve_credits,
        allow_unknown_cost=allow_unknown_cost,
        provider_model=provider_model,
        timeout=timeout,
        stream=False,
    )
    async with call:
        return await call.final()
