"""The pipeline coroutine: normalize → prompt → (enhance) → validate → preflight → prepare → submit → wait →
download → artifact, with every stage's outcome and timing recorded in a typed :class:`RunResult`.

The rule that shapes it: nothing before ``submit`` spends credits, and the pipeline stops there on
``needs_input`` / ``invalid`` / a failed preflight / an exhausted budget. After submit, failures are recorded
(a failed task still gets a run folder) rather than retried, because a retry would be a second purchase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from kie_async.api_models import TaskRecord, TaskState
from kie_async.artifacts import (
    ArtifactSettings,
    ArtifactSource,
    PromptRecord,
    ProviderTrace,
    RunArtifactCreateRequest,
    RunStatus,
    create_run_artifact,
)
from kie_async.budget import CreditBudget
from kie_async.errors import KieError, KieSubmissionUncertainError
from kie_async.model_data import preload_model_data
from kie_async.normalize import normalize_request
from kie_async.preflight import PreflightResult, run_preflight
from kie_async.prepare import PreparedRequest, prepare_request_for_submission
from kie_async.presets import PromptContext, apply_enhanced_prompt, resolve_prompt_context
from kie_async.request_models import MediaInput, NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.session import KieSession
from kie_async.submit import submit_prepared_request
from kie_async.validate import validate_request

log = logging.getLogger("kie_async.pipeline")

StageName = Literal[
    "normalize", "prompt", "enhance", "validate", "preflight", "prepare", "submit", "wait", "download", "artifact"
]
StageStatus = Literal["running", "ok", "skipped", "blocked", "failed", "cancelled"]
PipelineStatus = Literal["succeeded", "failed", "blocked", "over_budget", "submit_uncertain"]
"""Cancellation is not a status: it propagates as ``asyncio.CancelledError`` after cleaning up."""

Enhancer = Callable[[PromptContext], Awaitable[str | None]]
"""An async prompt enhancer (e.g. an LLM call): gets the rendered preset context, returns the new prompt."""


class StageOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: StageName
    status: StageStatus
    seconds: float
    detail: str | None = None


class RunOutput(MediaInput):
    """A downloaded output; pass it as media to another request to chain runs (lineage is recorded)."""

    run_id: str | None = None
    url: str | None = None

    @property
    def path(self) -> Path:
        return Path(str(self.source))

    def as_media(self, role: Literal["first_frame", "last_frame", "reference"] | None = None) -> RunOutput:
        """This output as an input with a role, e.g. ``run.outputs[0].as_media("first_frame")``."""
        return self.model_copy(update={"role": role})


class RunResult(BaseModel):
    """Everything that happened to one request, stage by stage."""

    model_config = ConfigDict(frozen=True)

    status: PipelineStatus
    model_key: str
    request_key: str | None = Field(default=None, description="journal key when run inside run_many")
    task_id: str | None = None
    run_id: str | None = None
    run_dir: str | None = None
    outputs: list[RunOutput] = Field(default_factory=list)
    output_urls: list[str] = Field(default_factory=list)
    credits_estimated: float | None = None
    credits_charged: float | None = Field(default=None, description="reconciled: provider figure, else estimate")
    parent_run_ids: list[str] = Field(default_factory=list)
    validation: ValidationResult | None = None
    preflight: PreflightResult | None = None
    prepared: PreparedRequest | None = None
    error: str | None = None
    error_type: str | None = None
    stages: list[StageOutcome] = Field(default_factory=list)
    resumed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def spent_nothing(self) -> bool:
        """True when the run stopped before createTask was sent."""
        return self.task_id is None and self.status != "submit_uncertain"

    @property
    def total_seconds(self) -> float:
        return round(sum(s.seconds for s in self.stages), 4)

    def stage(self, name: StageName) -> StageOutcome | None:
        return next((s for s in self.stages if s.name == name), None)


class PipelineOptions(BaseModel):
    """Knobs for :func:`run_pipeline`; defaults are what a careful user wants."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    preset_key: str | None = None
    preset_dirs: list[Path] | None = None
    enhance: Enhancer | None = None
    check_balance: bool = Field(default=True, description="read the live balance in preflight")
    # Finite and in range, checked at construction: NaN passes every `cost > limit` test (no gate at all), and a
    # bad wait_timeout found at wait time is found after the task was bought.
    available_credits: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="use this balance instead of reading it"
    )
    budget_credits: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="refuse a single run estimated above this"
    )
    allow_unknown_cost: bool = False
    rehost_urls: bool = False
    callback_url: str | None = None
    callback_driven: bool = False
    wait_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="seconds; None = settings")
    write_artifact: bool = True


class PipelineHooks(BaseModel):
    """Seams for run_many's journal: told just before and just after createTask."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    on_submitting: Callable[[float | None], Awaitable[None]] | None = None
    on_submitted: Callable[[str, float | None], Awaitable[None]] | None = None
    on_stage: Callable[[StageOutcome], None] | None = Field(
        default=None, description="called with status 'running' when a stage starts and again when it ends"
    )


class _Recorder:
    """Times stages and collects their outcomes."""

    def __init__(self, hooks: PipelineHooks | None) -> None:
        self.stages: list[StageOutcome] = []
        self._on_stage = hooks.on_stage if hooks else None

    def add(self, name: StageName, status: StageStatus, started: float, detail: str | None = None) -> None:
        outcome = StageOutcome(name=name, status=status, seconds=round(time.perf_counter() - started, 4), detail=detail)
        self.stages.append(outcome)
        if self._on_stage is not None:
            self._on_stage(outcome)

    @contextlib.asynccontextmanager
    async def stage(self, name: StageName) -> AsyncIterator[None]:
        started = time.perf_counter()
        if self._on_stage is not None:
            self._on_stage(StageOutcome(name=name, status="running", seconds=0.0))
        try:
            yield
        except asyncio.CancelledError:
            self.add(name, "cancelled", started)
            raise
        except BaseException as exc:
            self.add(name, "failed", started, f"{type(exc).__name__}: {exc}")
            raise
        self.add(name, "ok", started)


def parent_run_ids_of(raw: RawUserRequest) -> list[str]:
    """Run ids of earlier outputs used as media in ``raw`` (chaining lineage), in order, without repeats."""
    found = [m.run_id for m in (*raw.images, *raw.videos, *raw.audios) if isinstance(m, RunOutput) and m.run_id]
    return list(dict.fromkeys(found))


def _extension(url: str, fallback: str) -> str:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    return suffix if 1 < len(suffix) <= 6 else fallback


async def run_pipeline(
    request: RawUserRequest | NormalizedRequest,
    session: KieSession,
    *,
    options: PipelineOptions | None = None,
    budget: CreditBudget | None = None,
    hooks: PipelineHooks | None = None,
    resume_task_id: str | None = None,
    parent_run_ids: list[str] | None = None,
    request_key: str | None = None,
) -> RunResult:
    """Run one request end to end; returns a :class:`RunResult` (errors after submit are recorded, not raised).

    ``resume_task_id`` skips everything up to submit and waits on a task submitted earlier (journal resume).
    Cancellation propagates: in-flight uploads, polls and downloads stop and no partial files remain.
    """
    opts = options or PipelineOptions()
    rec = _Recorder(hooks)
    parents = list(parent_run_ids or [])
    base: dict[str, Any] = {"model_key": request.model_key, "request_key": request_key}

    def result(status: PipelineStatus, **fields: Any) -> RunResult:
        merged = {**base, **fields, "parent_run_ids": parents, "stages": rec.stages}
        return RunResult(status=status, **merged)

    # -- normalize, prompt, enhance, validate: pure work, no credits --------------------------------------
    async with rec.stage("normalize"):
        await preload_model_data()
        if isinstance(request, RawUserRequest):
            parents.extend(p for p in parent_run_ids_of(request) if p not in parents)
            normalized = await asyncio.to_thread(normalize_request, request)
        else:
            normalized = request
    base["model_key"] = normalized.model_key
    async with rec.stage("prompt"):
        context = await asyncio.to_thread(
            resolve_prompt_context, normalized, preset_key=opts.preset_key, preset_dirs=opts.preset_dirs
        )
    if opts.enhance is not None and normalized.raw_prompt:
        async with rec.stage("enhance"):
            enhanced = await opts.enhance(context)
            if enhanced and enhanced != normalized.raw_prompt:
                normalized = apply_enhanced_prompt(
                    normalized, enhanced, enhanced_prompt=enhanced, preset_key=context.preset_key
                )
    async with rec.stage("validate"):
        validation = await asyncio.to_thread(validate_request, normalized)
    base["validation"] = validation
    if not validation.is_submittable:
        rec.stages[-1] = rec.stages[-1].model_copy(update={"status": "blocked", "detail": validation.summary()})
        return result("blocked", error=f"{validation.state}: {validation.summary()}", error_type="validation")

    # -- preflight and budget: the gate in front of the money ---------------------------------------------
    reserved = 0.0
    if resume_task_id is None:
        async with rec.stage("preflight"):
            preflight = await run_preflight(
                validation,
                credit_source=session if opts.check_balance and opts.available_credits is None else None,
                available_credits=opts.available_credits,
                budget_credits=opts.budget_credits,
                allow_unknown_cost=opts.allow_unknown_cost,
                check_files=False,
            )
        base["preflight"] = preflight
        estimate = preflight.estimate.credits if preflight.estimate.has_numeric_estimate else None
        base["credits_estimated"] = estimate
        if not preflight.allowed:
            why = "; ".join(r.message for r in preflight.blocking_reasons)
            rec.stages[-1] = rec.stages[-1].model_copy(update={"status": "blocked", "detail": why})
            return result("blocked", error=why, error_type="preflight")
        if budget is not None:
            reserved = estimate or 0.0
            if not await budget.reserve(reserved):
                snap = budget.snapshot()
                why = f"estimated {reserved:g} credits would pass the batch budget (remaining {snap.remaining:g})"
                rec.stages[-1] = rec.stages[-1].model_copy(update={"status": "blocked", "detail": why})
                return result("over_budget", error=why, error_type="budget")
    else:
        estimate = None

    # -- prepare and submit --------------------------------------------------------------------------------
    task_id = resume_task_id
    prepared: PreparedRequest | None = None
    submitted_at = datetime.now(UTC)
    try:
        if task_id is None:
            async with rec.stage("prepare"):
                prepared = await prepare_request_for_submission(validation, session, rehost_urls=opts.rehost_urls)
            base["prepared"] = prepared
            async with rec.stage("submit"):
                if hooks and hooks.on_submitting:
                    await hooks.on_submitting(estimate)
                submitted_at = datetime.now(UTC)
                created = await submit_prepared_request(prepared, session, callback_url=opts.callback_url)
                task_id = created.task_id
                if hooks and hooks.on_submitted:
                    await hooks.on_submitted(task_id, estimate)
    except KieSubmissionUncertainError as exc:
        if budget is not None:
            await budget.settle(reserved, None)  # may have been charged: count it
        return result("submit_uncertain", error=str(exc), error_type=type(exc).__name__)
    except asyncio.CancelledError:
        if budget is not None and task_id is None:
            await budget.release(reserved)
        raise
    except KieError as exc:
        if budget is not None:
            await budget.release(reserved)
        return result("failed", error=str(exc), error_type=type(exc).__name__)
    base["task_id"] = task_id
    base["resumed"] = resume_task_id is not None

    # -- wait, download, artifact ---------------------------------------------------------------------------
    started_wait = time.perf_counter()
    polls_before = session.stats.requests.get("recordInfo", 0)
    try:
        async with rec.stage("wait"):
            record = await session.wait_for_task(
                task_id,
                timeout=opts.wait_timeout,
                raise_on_failure=False,
                callback_driven=opts.callback_driven,
            )
    except KieError as exc:
        if budget is not None:
            await budget.settle(reserved, None)
        return result("failed", error=str(exc), error_type=type(exc).__name__)
    charged = record.credits_consumed if record.credits_consumed is not None else estimate
    if budget is not None:
        await budget.settle(reserved, charged)
    base["credits_charged"] = charged
    base["output_urls"] = record.output_urls
    wall = time.perf_counter() - started_wait
    polls = session.stats.requests.get("recordInfo", 0) - polls_before
    failed = record.state is TaskState.FAIL
    root = opts.artifacts.resolved_root()
    # With an artifact the downloads are staged and moved into the run folder; without one they are the result.
    staging = (
        root / ".tmp" / "downloads" / f"{task_id}-{uuid.uuid4().hex[:6]}" if opts.write_artifact
        else root / "downloads" / task_id
    )
    downloaded: list[Path] = []
    try:
        if not failed and record.output_urls:
            async with rec.stage("download"):
                downloaded = await _download_all(session, record, staging, normalized.output_kind)
        outputs = [
            RunOutput(source=p, url=u, kind=_kind(normalized.output_kind))
            for p, u in zip(downloaded, record.output_urls, strict=False)
        ]
        if opts.write_artifact:
            async with rec.stage("artifact"):
                artifact = await create_run_artifact(
                    _artifact_request(
                        normalized,
                        validation,
                        prepared,
                        record,
                        downloaded,
                        parents,
                        submitted_at,
                        wall,
                        polls,
                        opts,
                        estimate,
                        charged,
                    ),
                    opts.artifacts,
                    secrets=[session.settings.api_key] if session.settings.api_key else [],
                )
            base["run_id"] = artifact.run_id
            base["run_dir"] = str(artifact.run_dir)
            stored = [artifact.run_dir / f.path for f in artifact.manifest.outputs if f.path]
            outputs = [
                o.model_copy(update={"source": s, "run_id": artifact.run_id})
                for o, s in zip(outputs, stored, strict=False)
            ]
    except KieError as exc:
        return result("failed", error=str(exc), error_type=type(exc).__name__)
    finally:
        if opts.write_artifact:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, staging, True))
    if failed:
        return result(
            "failed",
            outputs=outputs,
            error=f"task failed: {record.fail_code} {record.fail_msg}",
            error_type="KieTaskFailedError",
        )
    return result("succeeded", outputs=outputs)


def _kind(output_kind: str | None) -> Literal["image", "video", "audio"] | None:
    return output_kind if output_kind in ("image", "video", "audio") else None  # type: ignore[return-value]


async def _download_all(session: KieSession, record: TaskRecord, folder: Path, output_kind: str | None) -> list[Path]:
    fallback = ".mp4" if output_kind == "video" else ".png"
    targets = [folder / f"output_{i}{_extension(url, fallback)}" for i, url in enumerate(record.output_urls)]
    results = await asyncio.gather(*(session.download(u, t) for u, t in zip(record.output_urls, targets, strict=True)))
    return [Path(r.destination_path) for r in results]


def _artifact_request(
    normalized: NormalizedRequest,
    validation: ValidationResult,
    prepared: PreparedRequest | None,
    record: TaskRecord,
    downloaded: list[Path],
    parents: list[str],
    submitted_at: datetime,
    wall: float,
    polls: int,
    opts: PipelineOptions,
    estimate: float | None,
    charged: float | None,
) -> RunArtifactCreateRequest:
    hosted = {u.media_id: u.url for u in prepared.uploads} if prepared else {}
    inputs: list[ArtifactSource] = []
    for media in validation.normalized.media:
        role = media.role or "reference"
        if media.source_type == "local_path" and media.value:
            inputs.append(ArtifactSource(role=role, source_path=Path(media.value), url=hosted.get(media.id)))
        elif media.value:
            inputs.append(ArtifactSource(role=role, url=hosted.get(media.id, media.value)))
        elif media.id in hosted:
            inputs.append(ArtifactSource(role=role, url=hosted[media.id]))
    outputs = [
        ArtifactSource(role="output", source_path=p, url=u)
        for p, u in zip(downloaded, record.output_urls, strict=False)
    ]
    if not outputs and record.output_urls:
        outputs = [ArtifactSource(role="output", url=u) for u in record.output_urls]
    trace = ProviderTrace.from_task_record(
        record,
        submitted_at=submitted_at,
        wall_seconds=round(wall, 3),
        poll_count=polls,
        used_callback=opts.callback_driven,
        credits_estimated=estimate,
        credits_consumed=charged if record.credits_consumed is None else record.credits_consumed,
    )
    return RunArtifactCreateRequest(
        status=RunStatus.from_task_state(record.state),
        model_key=normalized.model_key,
        provider_model=normalized.provider_model,
        task_mode=normalized.task_mode,
        prompts=PromptRecord(
            raw=normalized.raw_prompt,
            enhanced=normalized.enhanced_prompt,
            final_used=normalized.final_prompt_used or normalized.raw_prompt,
            preset=normalized.prompt_preset,
        ),
        inputs=inputs,
        outputs=outputs,
        provider_trace=trace,
        parent_run_ids=parents,
        started_at=submitted_at,
        error=f"{record.fail_code}: {record.fail_msg}" if record.state is TaskState.FAIL else None,
    )
