"""OpenTelemetry, for real: the SDK's in-memory span exporter and metric reader against the emulator.

A run, a batch with faults (the retries and the 429 visible), a resumed run; every span and metric is searched for
the API key, the prompt and the media URLs, which must never be attributes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core import telemetry
from kie_async.core.logs import setup_logging_from_env
from kie_async.core.settings import PollSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.callback_receiver import add_callback_route
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession
from tests.conftest import serve_app

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=60.0)
FAST_RETRY = RetrySettings(max_retries=4, initial_backoff=0.01, max_backoff=0.05)
PROMPT = "a very particular lighthouse at dusk"


class Collected:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        meter_provider = MeterProvider(metric_readers=[self.metrics])
        telemetry.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name.startswith(prefix)]

    def metric_points(self) -> dict[str, list[object]]:
        data = self.metrics.get_metrics_data()
        found: dict[str, list[object]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Collected]:
    collected = Collected()
    yield collected
    telemetry.configure()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


def _options(tmp_path: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=tmp_path / "out", derivatives=ArtifactDerivativeSettings(enabled=False))
    return PipelineOptions(artifacts=artifacts)


def _everything(otel: Collected) -> str:
    """Every span (name, attributes, events) and metric point as text, to search for what must not be there."""
    spans = [json.loads(s.to_json()) for s in otel.finished()]
    return json.dumps(spans) + repr(otel.metric_points())


async def test_a_run_is_one_span_with_its_stages_and_requests(
    emulator: KieEmulator, tmp_path: Path, otel: Collected
) -> None:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        result = await run_pipeline(
            RawUserRequest(model_key="nano-banana-2", prompt=PROMPT), kie, options=_options(tmp_path)
        )
    assert result.succeeded
    (run,) = otel.named("generate_content ")
    attributes = dict(run.attributes or {})
    assert attributes["gen_ai.request.model"] == "nano-banana-2" and attributes["gen_ai.response.id"] == result.task_id
    assert attributes["gen_ai.provider.name"] == "kie.ai" and attributes["kie.request.state"] == "succeeded"
    assert attributes["kie.credits.estimated"] == result.credits_estimated
    stages = {s.name: s for s in otel.named("kie.stage ")}
    assert {"kie.stage normalize", "kie.stage submit", "kie.stage wait", "kie.stage download"} <= set(stages)
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in stages.values())
    (create,) = [s for s in otel.finished() if (s.attributes or {}).get("kie.endpoint") == "createTask"]
    # The createTask request is started just before the submit stage opens (the send is a task of its own):
    # it belongs to the run, under the run's span or the stage's.
    assert create.parent is not None and create.parent.span_id in {
        run.context.span_id,
        stages["kie.stage submit"].context.span_id,
    }
    assert (create.attributes or {})["http.response.status_code"] == 200
    assert all("?" not in str((s.attributes or {}).get("url.template", "")) for s in otel.finished())
    points = otel.metric_points()
    for name in (
        "gen_ai.client.operation.duration",
        "kie.purchases",
        "kie.stage.duration",
        "kie.download.size",
        "kie.task.status_reads",
        "kie.credits.estimated",
    ):
        assert points.get(name), f"no {name} recorded"
    text = _everything(otel)
    assert emulator.api_key not in text and PROMPT not in text
    assert not any(url in text for url in result.output_urls)
    assert not any(urlsplit(url).path in text for url in result.output_urls)  # a file's path is part of its URL
    downloads = [s for s in otel.finished() if (s.attributes or {}).get("kie.endpoint") == "download"]
    assert downloads and all(s.name == "GET" and "url.template" not in (s.attributes or {}) for s in downloads)


async def test_a_batch_with_faults_shows_its_retries_and_429s(
    emulator: KieEmulator, tmp_path: Path, otel: Collected
) -> None:
    emulator.faults.add("createTask", "rate_limit", count=1, retry_after=0)
    emulator.faults.add("recordInfo", "server_error", count=2)
    requests = [RawUserRequest(model_key="nano-banana-2", prompt=f"{PROMPT} {i}") for i in range(3)]
    async with KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY)) as kie:
        results = await run_many(requests, kie, options=_options(tmp_path))
    assert all(r.succeeded for r in results)
    (batch,) = otel.named("kie.batch")
    assert (batch.attributes or {})["kie.batch.size"] == 3
    runs = otel.named("generate_content ")
    assert len(runs) == 3 and all(r.parent is not None and r.parent.span_id == batch.context.span_id for r in runs)
    retried = [s for s in otel.finished() if (s.attributes or {}).get("kie.attempt", 1) > 1]
    assert {str((s.attributes or {}).get("kie.retry.reason")) for s in retried} >= {"KieRateLimitError"}
    points = otel.metric_points()
    assert sum(p.value for p in points["kie.http.rate_limited"]) == 1  # type: ignore[attr-defined]
    # the 429 paused the createTask window (1 s without Retry-After): the retry's wait for it is recorded
    assert sum(p.sum for p in points["kie.rate_limit.wait"]) >= 0.5  # type: ignore[attr-defined]
    assert [p.value for p in points["kie.batch.in_flight"]] == [0]  # type: ignore[attr-defined]
    text = _everything(otel)
    assert emulator.api_key not in text and PROMPT not in text


async def test_a_resumed_run_says_so(emulator: KieEmulator, tmp_path: Path, otel: Collected) -> None:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        created = await kie.create_task(model="nano-banana-2", input={"prompt": PROMPT})
        result = await run_pipeline(
            RawUserRequest(model_key="nano-banana-2", prompt=PROMPT),
            kie,
            options=_options(tmp_path),
            resume_task_id=created.task_id,
        )
    assert result.succeeded and result.resumed
    (run,) = otel.named("generate_content ")
    assert (run.attributes or {})["kie.resumed"] is True
    assert (run.attributes or {})["gen_ai.response.id"] == created.task_id


async def test_a_failed_run_marks_its_span_with_the_typed_error(
    emulator: KieEmulator, tmp_path: Path, otel: Collected
) -> None:
    emulator.faults.add("createTask", "task_fail", count=1)
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        result = await run_pipeline(
            RawUserRequest(model_key="nano-banana-2", prompt=PROMPT), kie, options=_options(tmp_path)
        )
    assert not result.succeeded
    (run,) = otel.named("generate_content ")
    assert run.status.status_code.name == "ERROR" and (run.attributes or {})["error.type"]


def test_without_an_application_configuring_opentelemetry_nothing_is_imported(tmp_path: Path) -> None:
    """An app that never imported OpenTelemetry pays nothing: the SDK does not even import it."""
    script = tmp_path / "run.py"
    script.write_text(
        "import asyncio, sys\n"
        "from kie_async import KieSession, RawUserRequest, run_pipeline, PipelineOptions, ArtifactSettings\n"
        "from kie_async.emulator import KieEmulator\n"
        "async def main():\n"
        "    async with KieEmulator() as emulator, KieSession(emulator.settings()) as kie:\n"
        f"        opts = PipelineOptions(artifacts=ArtifactSettings(root={str(tmp_path / 'out')!r}))\n"
        "        request = RawUserRequest(model_key='nano-banana-2', prompt='x')\n"
        "        result = await run_pipeline(request, kie, options=opts)\n"
        "    assert result.succeeded, result.error\n"
        "    print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env={**os.environ, "KIE_LOG": ""}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_kie_log_lines_carry_the_trace_and_span_ids(
    emulator: KieEmulator,
    tmp_path: Path,
    otel: Collected,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KIE_LOG", "info")
    logger = logging.getLogger("kie_async")
    before = list(logger.handlers), logger.level
    try:
        assert setup_logging_from_env() == logging.INFO
        async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
            result = await run_pipeline(
                RawUserRequest(model_key="nano-banana-2", prompt=PROMPT), kie, options=_options(tmp_path)
            )
    finally:
        logger.handlers[:], logger.level = before
    (run,) = otel.named("generate_content ")
    trace_id = f"{run.context.trace_id:032x}"
    lines = [line for line in capfd.readouterr().err.splitlines() if "createTask" in line]
    assert result.succeeded and lines and all(f"trace={trace_id} span=" in line for line in lines)


@pytest.mark.parametrize("shared", [True, False], ids=["two-workers-on-redis", "one-session"])
async def test_a_callback_span_links_to_the_span_of_the_run_waiting_on_its_task(
    redis_url: str, tmp_path: Path, otel: Collected, shared: bool
) -> None:
    """Worker B receives the signed callback; its span links to the wait of the run on worker A, and that wait's
    span links back to B's (both through Redis)."""
    config = EmulatorConfig(generation_seconds=0.4, webhook_hmac_key="link-key")
    poll = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0, callback_safety_interval=60.0)
    extra = {"coordination_url": redis_url} if shared else {}
    async with KieEmulator(config) as emulator:
        async with (
            KieSession(emulator.settings(poll=poll, retry=FAST_RETRY, **extra)) as waiting_worker,
            KieSession(emulator.settings(poll=poll, retry=FAST_RETRY, **extra)) as other,
        ):
            receiving_worker = other if shared else waiting_worker
            app = web.Application()
            add_callback_route(app, receiving_worker, "/cb", hmac_key="link-key")
            async with serve_app(app) as base:
                options = _options(tmp_path).model_copy(update={"callback_url": f"{base}/cb", "callback_driven": True})
                result = await run_pipeline(
                    RawUserRequest(model_key="nano-banana-2", prompt=PROMPT), waiting_worker, options=options
                )
        assert result.succeeded and emulator.stats.callbacks_delivered == 1
    (run,) = otel.named("generate_content ")
    (wait,) = otel.named("kie.stage wait")
    (callback,) = otel.named("kie.callback")
    assert wait.parent is not None and wait.parent.span_id == run.context.span_id
    assert callback.kind is SpanKind.SERVER and (callback.attributes or {})["gen_ai.response.id"] == result.task_id
    assert callback.context.trace_id != run.context.trace_id  # B's own trace, tied to A's by the link
    assert [(link.context.trace_id, link.context.span_id) for link in callback.links] == [
        (run.context.trace_id, wait.context.span_id)
    ]
    # and back: the waiting run's wait stage links to the span that handled the callback (relayed through Redis)
    assert [(link.context.trace_id, link.context.span_id) for link in wait.links] == [
        (callback.context.trace_id, callback.context.span_id)
    ]
    assert emulator.api_key not in _everything(otel)
    if shared:  # what went through Redis is the wait's trace context and nothing else
        async with aioredis.from_url(redis_url, decode_responses=True) as store:
            keys = [key async for key in store.scan_iter(match="*waiting*")]
            assert len(keys) == 1 and keys[0].endswith(result.task_id)
            assert await store.smembers(keys[0]) == {
                f"00-{run.context.trace_id:032x}-{wait.context.span_id:016x}-{int(wait.context.trace_flags):02x}"
            }


def test_links_come_only_from_well_formed_trace_contexts(otel: Collected) -> None:
    with telemetry.span("outer") as outer:
        announced = telemetry.traceparent()
    assert outer.recording and announced is not None
    zero = "00-" + "0" * 32 + "-" + "0" * 16 + "-01"
    with telemetry.span("linked", links=["not a traceparent", zero, announced.upper(), announced]):
        pass
    (first,) = otel.named("outer")
    (linked,) = otel.named("linked")
    assert [(link.context.trace_id, link.context.span_id) for link in linked.links] == [
        (first.context.trace_id, first.context.span_id)
    ]
    assert linked.links[0].context.is_remote
