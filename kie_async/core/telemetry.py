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
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kie_async._version import __version__

CAPTURE_CONTENT_ENV = "KIE_OTEL_CAPTURE_CONTENT"
PROVIDER = "kie.ai"
SCOPE = "kie_async"

retry_reason: contextvars.ContextVar[str | None] = contextvars.ContextVar("kie_retry_reason", default=None)
"""Why the running attempt of a retried call is a retry (the previous attempt's error class), else None."""

AttributeValue = str | bool | int | float
_providers: dict[str, Any] = {}
_tracers: dict[int, Any] = {}
"""Providers given to :func:`configure` (tests, apps that keep several): they win over the global ones."""


def configure(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Use these providers instead of the global ones (``None`` puts the global one back)."""
    for name, provider in (("tracer", tracer_provider), ("meter", meter_provider)):
        if provider is None:
            _providers.pop(name, None)
        else:
            _providers[name] = provider
    _instruments.clear()
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
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return None
    tracer = _tracers.get(id(provider))
    if tracer is None:
        tracer = _tracers[id(provider)] = provider.get_tracer(SCOPE, __version__)
    return tracer


def _clean(attributes: Mapping[str, object] | None) -> dict[str, AttributeValue]:
    """Attributes OpenTelemetry accepts: None dropped, anything else not a scalar made a string."""
    clean: dict[str, AttributeValue] = {}
    for key, value in (attributes or {}).items():
        if value is None:
            continue
        clean[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return clean


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


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, object] | None = None,
    *,
    client: bool = False,
    server: bool = False,
    links: Sequence[str] = (),
) -> Iterator[Span]:
    """A span around the block (current for what runs inside it); exceptions are recorded and re-raised.

    ``links``: W3C ``traceparent`` values of spans this one is causally tied to (a callback received here links
    to the span of the run that waits on its task, maybe in another process); malformed ones are skipped."""
    tracer = _tracer()
    if tracer is None:
        yield NO_SPAN
        return
    from opentelemetry.trace import SpanKind

    kind = SpanKind.CLIENT if client else SpanKind.SERVER if server else SpanKind.INTERNAL
    with tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=_clean(attributes),
        links=[found for value in links if (found := _link(value)) is not None] or None,
        record_exception=False,
        set_status_on_exception=False,
    ) as raw:
        handle = Span(raw)
        try:
            yield handle
        except BaseException as exc:
            handle.fail(exc)
            raise


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
    "kie.batch.in_flight": ("updown", "{request}", "run_many requests started and not finished"),
}
_instruments: dict[str, Any] = {}


def _meter_provider() -> Any | None:
    provider = _providers.get("meter")
    if provider is None:
        metrics = sys.modules.get("opentelemetry.metrics")
        if metrics is None:
            return None
        provider = metrics.get_meter_provider()
        if isinstance(provider, metrics.NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider":
            return None
    return provider


def _instrument(name: str) -> Any | None:
    provider = _meter_provider()
    if provider is None:
        return None
    key = f"{id(provider)}:{name}"
    found = _instruments.get(key)
    if found is None:
        meter = provider.get_meter(SCOPE, __version__)
        kind, unit, description = _INSTRUMENTS[name]
        make = {
            "histogram": meter.create_histogram,
            "counter": meter.create_counter,
            "updown": meter.create_up_down_counter,
        }[kind]
        found = _instruments[key] = make(name, unit=unit, description=description)
    return found


def record(name: str, value: float, attributes: Mapping[str, object] | None = None) -> None:
    """Add ``value`` to counter/up-down counter ``name`` or record it in histogram ``name`` (no-op when off)."""
    instrument = _instrument(name)
    if instrument is None:
        return
    if _INSTRUMENTS[name][0] == "histogram":
        instrument.record(value, attributes=_clean(attributes))
    else:
        instrument.add(value, attributes=_clean(attributes))
