"""What a finished run tells OpenTelemetry: its span's outcome attributes and the run-level metrics.

Kept apart from the pipeline so the stages stay a list of calls; :mod:`kie_async.core.telemetry` makes every
call here free when the application configured no OpenTelemetry.
"""

from __future__ import annotations

from kie_async.core import telemetry
from kie_async.pipeline.run_models import RunResult


def describe_run(span: telemetry.Span, result: RunResult, seconds: float) -> None:
    """Outcome attributes on the run's span, and the run's metrics (credits, purchase, durations)."""
    model = {"gen_ai.request.model": result.model_key, "gen_ai.provider.name": telemetry.PROVIDER}
    span.set_all(
        {
            "gen_ai.response.id": result.task_id,
            "gen_ai.output.type": _output_type(result),
            "kie.request.state": result.state.value,
            "kie.request.key": result.request_key,
            "kie.run.status": result.status,
            "kie.run.id": result.run_id,
            "kie.credits.estimated": result.credits_estimated,
            "kie.credits.charged": result.credits_charged,
            "kie.credits.unknown": result.credits_unknown,
            "kie.resumed": result.resumed,
        }
    )
    if result.status != "succeeded":
        span.error(result.error_type or result.status, result.error)
    status = {**model, "kie.run.status": result.status}
    telemetry.record(
        "gen_ai.client.operation.duration",
        seconds,
        {
            **model,
            "gen_ai.operation.name": "generate_content",
            "error.type": None if result.succeeded else (result.error_type or result.status),
        },
    )
    if result.credits_estimated is not None:
        telemetry.record("kie.credits.estimated", result.credits_estimated, status)
    if result.credits_charged is not None and not result.spent_nothing:
        telemetry.record("kie.credits.charged", result.credits_charged, status)
    if not result.spent_nothing:
        telemetry.record("kie.purchases", 1, {**model, "kie.request.state": result.state.value})
    wait = result.stage("wait")
    if result.succeeded and wait is not None:
        telemetry.record("kie.generation.duration", wait.seconds, model)


def _output_type(result: RunResult) -> str | None:
    kinds = {str(o.kind) for o in result.outputs if o.kind}
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    return {"audio": "speech"}.get(kind or "", kind)
