"""OpenTelemetry traces and metrics: on when the application configured OpenTelemetry, free when it did not.

kie-async instruments itself with ``opentelemetry-api`` (the ``[otel]`` extra): a span per pipeline run and
per ``run_many`` batch, a child span per stage and per HTTP request, and metrics for credits, purchases, 429s,
waits, status reads, generation time, stage time and downloads. Names follow OpenTelemetry's GenAI semantic
conventions where they fit (``gen_ai.*``) and a ``kie.`` namespace for the rest.

Cost when nobody listens: an application that configured OpenTelemetry has imported ``opentelemetry.trace``
(or ``.metrics``), so when those modules are absent from ``sys.modules`` every helper here returns at once
without importing anything; when they are present but only the API's default (proxy/no-op) provider is set,
one ``isinstance`` check per call decides the same.

What never becomes an attribute: the API key, prompts' text and media URLs (prompts are content: off unless
``KIE_OTEL_CAPTURE_CONTENT=1``), query strings (HTTP spans carry the path only).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, cast

from kie_async._version import __version__

CAPTURE_CONTENT_ENV = "KIE_OTEL_CAPTURE_CONTENT"
PROVIDER = "kie.ai"
SCOPE = "kie_async"

retry_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar("kie_retry_reason", default=None)
"""Why the running attempt of a retried call is a retry (the previous attempt's error class), else None."""

AttributeValue = str | bool | int | float
_providers: dict[str, Any] = {}
"""Providers given to :func:`configure` (tests, apps that keep several): they win over the global ones."""
_tracers: dict[str, tuple[Any, Any]] = {}  # "tracer": (the provider, its tracer for kie_async)


def configure(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Use these providers instead of the global ones (``None`` puts the global one back)."""
    for name, provider in (("tracer", tracer_provider), ("meter", meter_provider)):
        if provider is None:
            _providers.pop(name, None)
        else:
            _providers[name] = provider
    _instruments.clear()
    _observed.clear()
    _tracers.clear()


def capture_content() -> bool:
    """Whether prompts may become span attributes (the application's opt-in; off by default)."""
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("1", "true", "yes")


def _tracer() -> Any | None:
    provider = _providers.get("tracer")
    if provider is None:
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:
            return None  # nothing in this process configured tracing: free
        provider = trace.get_tracer_provider()
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            return None
    cached = _tracers.get("tracer")
    if cached is not None and cached[0] is provider:
        return cached[1]
    tracer = provider.get_tracer(SCOPE, __version__)
    _tracers["tracer"] = (provider, tracer)
    return tracer


_SCALARS = frozenset((str, bool, int, float))


class Attributes(dict[str, AttributeValue]):
    """Attributes cleaned once and shared by many records (a metric's fixed set): passed on as they are. Never
    change one after :func:`attributes` made it."""


def attributes(values: Mapping[str, object]) -> Attributes:
    """``values`` cleaned once, for a set recorded again and again (cache the result)."""
    return Attributes(_clean(values))


def _clean(attributes: Mapping[str, object] | None) -> dict[str, AttributeValue]:
    """Attributes OpenTelemetry accepts: None dropped, anything else not a scalar made a string."""
    if not attributes:
        return {}
    if type(attributes) is Attributes:
        return attributes
    return {
        key: value if type(value) in _SCALARS or isinstance(value, str | bool | int | float) else str(value)  # type: ignore[misc]
        for key, value in attributes.items()
        if value is not None
    }


class Span:
    """A span to add attributes to; a no-op when tracing is off (the same calls cost nothing then)."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    @property
    def recording(self) -> bool:
        return self._span is not None

    def set(self, **attributes: object) -> None:
        """Set attributes given as ``name=value`` with dots spelled ``__`` (``kie__task_id``)."""
        if self._span is not None:
            self.set_all({key.replace("__", "."): value for key, value in attributes.items()})

    def set_all(self, attributes: Mapping[str, object]) -> None:
        if self._span is not None:
            self._span.set_attributes(_clean(attributes))

    def set_one(self, name: str, value: AttributeValue) -> None:
        """One attribute (cheaper than a mapping of one: the SDK checks a mapping as a whole first)."""
        if self._span is not None:
            self._span.set_attribute(name, value)

    def link(self, traceparent: str) -> None:
        """Link this (still open) span to the span a ``traceparent`` names; malformed ones are skipped."""
        found = _link(traceparent) if self._span is not None else None
        if found is not None:
            self._span.add_link(found.context)

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` with its typed error's class and code (``error.type``, ``kie.error.code``)."""
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode  # present: a span exists

        kind = "cancelled" if type(exc).__name__ == "CancelledError" else type(exc).__name__
        self._span.set_attributes(_clean({"error.type": kind, "kie.error.code": getattr(exc, "code", None)}))
        self._span.record_exception(exc, attributes={"exception.type": kind})
        self._span.set_status(Status(StatusCode.ERROR, kind))

    def error(self, kind: str, message: str | None = None) -> None:
        """Mark the span failed without an exception (a run that ended blocked, failed or incomplete)."""
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attributes({"error.type": kind})
        self._span.set_status(Status(StatusCode.ERROR, message or kind))


NO_SPAN = Span()


def tracing() -> bool:
    """Whether spans are recorded (the application configured a tracer provider)."""
    return _tracer() is not None


class _Scope:
    """What :func:`span` returns while tracing: the span is current inside the block and ends with it. A class
    rather than a generator: one is opened per stage and per HTTP request, and every microsecond shows."""

    __slots__ = ("_handle", "_token")

    def __init__(self, raw: Any) -> None:
        self._handle = Span(raw)
        self._token: object = None

    def __enter__(self) -> Span:
        api = _api()
        self._token = api.attach(api.set_span_in_context(self._handle._span))
        return self._handle

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc is not None:
                self._handle.fail(exc)
        finally:
            _api().detach(self._token)
            self._handle._span.end()


_NO_SCOPE: contextlib.nullcontext[Span] = contextlib.nullcontext(NO_SPAN)


def span(
    name: str,
    attributes: Mapping[str, object] | Callable[[], Mapping[str, object]] | None = None,
    *,
    client: bool = False,
    server: bool = False,
    links: Sequence[str] = (),
) -> AbstractContextManager[Span]:
    """A span around the block (current for what runs inside it); exceptions are recorded and re-raised.

    ``links``: W3C ``traceparent`` values of spans this one is causally tied to (a callback received here links
    to the span of the run that waits on its task, maybe in another process); malformed ones are skipped.
    ``attributes`` may be a function that builds them: it is called only when the span is recorded."""
    tracer = _tracer()
    if tracer is None:
        return _NO_SCOPE
    if callable(attributes):
        attributes = attributes()
    api = _api()
    raw = tracer.start_span(
        name,
        kind=api.CLIENT if client else api.SERVER if server else api.INTERNAL,
        attributes=_clean(attributes),
        links=[found for value in links if (found := _link(value)) is not None] if links else None,
    )
    return _Scope(raw)


@functools.cache
def _api() -> types.SimpleNamespace:
    """The OpenTelemetry API calls a span needs, looked up once (only ever called once a tracer exists)."""
    from opentelemetry import context, trace

    return types.SimpleNamespace(
        attach=context.attach,
        detach=context.detach,
        set_span_in_context=trace.set_span_in_context,
        CLIENT=trace.SpanKind.CLIENT,
        SERVER=trace.SpanKind.SERVER,
        INTERNAL=trace.SpanKind.INTERNAL,
    )


def record_span(
    name: str, attributes: Mapping[str, object], start_ns: int, *, error: str | None = None, client: bool = True
) -> None:
    """A span that ends now and began at ``start_ns`` (``time.time_ns()``): for work that outlives one block,
    such as a chat stream read by the caller's own ``async for``. Its parent is the span current now."""
    tracer = _tracer()
    if tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    span = tracer.start_span(name, kind=kind, attributes=_clean(attributes), start_time=start_ns)
    if error is not None:
        span.set_attributes({"error.type": error})
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the active span, for log lines; None when no span is recording."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the span recording now (ids and flags only: nothing secret), else None.

    What a wait announces through the coordinator, so the process that receives its task's callback can link to
    it."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags) & 0xFF:02x}"


def current_span() -> Span:
    """The span recording now, to add to later (a wait's span, linked when its task's callback arrives)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return NO_SPAN
    raw = trace.get_current_span()
    return Span(raw) if raw.is_recording() else NO_SPAN


def _link(value: str) -> Any | None:
    """A span link to the (remote) span a ``traceparent`` names; None for anything malformed or all-zero."""
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:
        return None
    flags = TraceFlags(int(match[3], 16) & TraceFlags.SAMPLED)
    return Link(SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags))


# -- metrics ------------------------------------------------------------------------------------------------

_INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    # name: (kind, unit, description)
    "gen_ai.client.operation.duration": ("histogram", "s", "a generation (first stage to last) or a chat call"),
    "gen_ai.client.token.usage": ("histogram", "{token}", "tokens of one chat call, by gen_ai.token.type"),
    "kie.credits.estimated": ("counter", "{credit}", "credits estimated before purchases, by model and status"),
    "kie.credits.charged": ("counter", "{credit}", "credits charged (the provider's figure, else the estimate)"),
    "kie.purchases": ("counter", "{purchase}", "requests that reached a final state, by state"),
    "kie.http.rate_limited": ("counter", "{response}", "HTTP 429 answers (and Kie.ai's code 429 in a 200)"),
    "kie.rate_limit.wait": ("histogram", "s", "time spent waiting for the client-side rate limiter"),
    "kie.task.status_reads": ("histogram", "{read}", "status reads one task needed until it finished"),
    "kie.generation.duration": ("histogram", "s", "from purchase to the provider's success, by model"),
    "kie.stage.duration": ("histogram", "s", "one pipeline stage, by stage and status"),
    "kie.download.size": ("histogram", "By", "bytes of one downloaded output"),
    "kie.download.duration": ("histogram", "s", "time to download one output"),
    "kie.batch.in_flight": ("observed", "{request}", "run_many requests started and not finished"),
}
_instruments: dict[str, tuple[Any, Callable[..., None]]] = {}
"""name: (the meter provider, its instrument's ``record`` or ``add``), made once per provider."""
_meter_seen: list[Any] = [None, None]  # [the last global meter provider looked at, it or None when a no-op]


def _meter_provider() -> Any | None:
    provider = _providers.get("meter")
    if provider is None:
        metrics = sys.modules.get("opentelemetry.metrics")
        if metrics is None:
            return None
        provider = metrics.get_meter_provider()
        if provider is not _meter_seen[0]:
            noop = isinstance(provider, metrics.NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider"
            _meter_seen[:] = [provider, None if noop else provider]
        return _meter_seen[1]
    return provider


def _instrument(provider: Any, name: str) -> Callable[..., None]:
    meter = provider.get_meter(SCOPE, __version__)
    kind, unit, description = _INSTRUMENTS[name]
    if kind == "observed":
        raise TypeError(f"{name} is observed: move it with adjust(), not record()")
    if kind == "histogram":
        return cast("Callable[..., None]", meter.create_histogram(name, unit=unit, description=description).record)
    make = meter.create_counter if kind == "counter" else meter.create_up_down_counter
    return cast("Callable[..., None]", make(name, unit=unit, description=description).add)


_levels: dict[str, float] = {}
"""The value now of each observed up-down counter (``adjust``): the SDK reads it when it collects, so moving it
costs a run no SDK call at all."""
_observed: dict[str, Any] = {}
"""name: the meter provider its observable instrument is registered with."""


def adjust(name: str, delta: float) -> None:
    """Move observed up-down counter ``name`` (``kie.batch.in_flight``) by ``delta``."""
    _levels[name] = _levels.get(name, 0.0) + delta
    provider = _meter_provider()
    if provider is None or _observed.get(name) is provider:
        return
    from opentelemetry.metrics import Observation

    def observe(options: object) -> list[Observation]:
        return [Observation(_levels.get(name, 0.0))]

    _, unit, description = _INSTRUMENTS[name]
    provider.get_meter(SCOPE, __version__).create_observable_up_down_counter(
        name, callbacks=[observe], unit=unit, description=description
    )
    _observed[name] = provider


def record(name: str, value: float, attributes: Mapping[str, object] | None = None) -> None:
    """Add ``value`` to counter/up-down counter ``name`` or record it in histogram ``name`` (no-op when off)."""
    provider = _meter_provider()
    if provider is None:
        return
    found = _instruments.get(name)
    if found is None or found[0] is not provider:
        found = _instruments[name] = (provider, _instrument(provider, name))
    found[1](value, attributes=_clean(attributes) if attributes else None)
