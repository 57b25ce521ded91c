"""Collecting a bought task: wait, download, record. Every failure here is resumable on the task id.

Only the provider's own ``fail`` is final; a timeout, an outage, a success without usable outputs, a bad
download or a full disk leave the request ``incomplete``, and the next run collects the same task.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from kie_async.artifacts.exceptions import KieArtifactError
from kie_async.artifacts.layout import staging_name
from kie_async.artifacts.manifest import (
    ArtifactSource,
    PromptRecord,
    ProviderTrace,
    RunArtifact,
    RunArtifactCreateRequest,
    RunStatus,
)
from kie_async.artifacts.media import sha256_file
from kie_async.artifacts.query import load_run
from kie_async.artifacts.writer import create_run_artifact
from kie_async.catalogue.request_models import NormalizedRequest, ValidationResult
from kie_async.catalogue.specs import aload_registry, loaded_registry
from kie_async.client import BaseSession
from kie_async.core.errors import KieError, KieResponseShapeError
from kie_async.core.threads import run_file_io
from kie_async.ledger.budget import CreditBudget
from kie_async.ledger.request_state import RequestState, can_move
from kie_async.pipeline.prepared import PreparedRequest
from kie_async.pipeline.run_context import RunContext
from kie_async.pipeline.run_models import PipelineOptions, RunOutput, RunResult
from kie_async.wire.api_models import TaskRecord
from kie_async.wire.task_apis import TransportSpec

log = logging.getLogger("kie_async.pipeline.run")

_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]")


async def collect_task(
    run: RunContext,
    normalized: NormalizedRequest,
    validation: ValidationResult,
    prepared: PreparedRequest | None,
    task_id: str,
    *,
    reserved: float,
    estimate: float | None,
    budget: CreditBudget | None = None,
) -> RunResult:
    """Wait, download, record. From here on the task is paid for: every failure is resumable on ``task_id``.

    Any exception (not only a ``KieError``: a lying record's year-10000 timestamp, a lone surrogate that cannot
    be written, a bug) becomes an ``incomplete`` result that keeps the task id; only a cancel propagates.
    """
    run.base["task_id"] = task_id
    settled = False
    try:
        started_wait = time.perf_counter()
        polls_before = run.session.stats.requests.get("recordInfo", 0)
        async with run.rec.stage("wait"):
            record = await run.session.wait_for_task(
                task_id,
                timeout=run.opts.wait_timeout,
                raise_on_failure=False,
                callback_driven=run.opts.callback_driven,
                transport=await _transport_of(normalized.model_key),
                first_poll_after=_first_poll_after(run, normalized),
            )
        charged = record.credits_consumed if record.credits_consumed is not None else estimate
        if budget is not None:
            settled = True
            await budget.settle(reserved, charged)
        run.base["credits_charged"] = charged
        run.base["output_urls"] = record.output_urls
        trace = _TraceFacts(
            submitted_at=run.submitted_at,
            wall=time.perf_counter() - started_wait,
            polls=run.session.stats.requests.get("recordInfo", 0) - polls_before,
            estimate=estimate,
            charged=charged,
        )
        finished = _Finished(
            normalized=normalized, validation=validation, prepared=prepared, record=record, trace=trace
        )
        return await _finish(run, finished)
    except Exception as exc:
        if budget is not None and not settled:
            await budget.settle(reserved, None)  # may have been charged: count it
        if not isinstance(exc, KieError | OSError):
            log.warning(
                "task %s: %s after the purchase; kept as incomplete", task_id, type(exc).__name__, exc_info=True
            )
        return await _incomplete(run, exc)


async def _finish(run: RunContext, task: _Finished) -> RunResult:
    """The provider finished the task: record its failure, or deliver its outputs."""
    record, trace = task.record, task.trace
    if record.state.is_failure:
        return await _provider_failed(run, task)
    if not record.has_usable_result:
        why = "; ".join(record.result_problems) or f"state {record.state_description}"
        problem = KieResponseShapeError(
            f"task {record.task_id} reported success but gave no usable output ({why})",
            code=200,
            endpoint="recordInfo",
            task_id=record.task_id,
            hint="re-run to read the task again; if it stays empty, check the task in the Kie.ai dashboard",
        )
        return await _incomplete(run, problem)
    outputs, files = await _deliver(run, task)
    await run.ledger.move(
        RequestState.SUCCEEDED,
        task_id=record.task_id,
        run_id=run.base.get("run_id"),
        run_dir=run.base.get("run_dir"),
        outputs=[str(f.path) for f in files],
        output_urls=record.output_urls,
        output_sha256=[f.sha256 for f in files],
        output_bytes=[f.size for f in files],
        credits_estimated=trace.estimate,
        credits_charged=trace.charged,
    )
    return run.result("succeeded", outputs=outputs)


class _TraceFacts(BaseModel):
    submitted_at: datetime
    wall: float
    polls: int
    estimate: float | None
    charged: float | None


class _Finished(BaseModel):
    """A task the provider has finished, with what was asked of it: everything the run folder records."""

    normalized: NormalizedRequest
    validation: ValidationResult
    prepared: PreparedRequest | None
    record: TaskRecord
    trace: _TraceFacts


class _StoredOutput(BaseModel):
    path: Path
    sha256: str
    size: int


async def _incomplete(run: RunContext, exc: BaseException) -> RunResult:
    """Paid for but not finished here (outage, timeout, download, disk): resumable on the task id."""
    error = _describe(exc)
    if can_move(run.ledger.state, RequestState.INCOMPLETE):
        await run.ledger.move(
            RequestState.INCOMPLETE,
            task_id=run.base.get("task_id"),
            run_id=run.base.get("run_id"),
            error=error,
            error_type=type(exc).__name__,
        )
    return run.result(
        "incomplete",
        error=f"{error} (task {run.base.get('task_id')} is paid for: re-run to resume)",
        error_type=type(exc).__name__,
    )


async def _provider_failed(run: RunContext, task: _Finished) -> RunResult:
    """The provider said the task failed: final. The run folder still records what was asked."""
    record, trace = task.record, task.trace
    if run.opts.write_artifact:
        try:
            async with run.rec.stage("artifact"):
                await _write_artifact(run, task, [])
        except Exception as exc:  # the provider's "fail" is what the result says, whatever the folder did
            log.warning("task %s failed and its run folder could not be written: %s", record.task_id, exc)
    error = f"task failed: {record.fail_code} {record.fail_msg}"
    await run.ledger.move(
        RequestState.FAILED,
        task_id=record.task_id,
        run_id=run.base.get("run_id"),
        run_dir=run.base.get("run_dir"),
        credits_estimated=trace.estimate,
        credits_charged=trace.charged,
        error=error,
        error_type="KieTaskFailedError",
    )
    return run.result("failed", error=error, error_type="KieTaskFailedError")


async def _deliver(run: RunContext, task: _Finished) -> tuple[list[RunOutput], list[_StoredOutput]]:
    """Outputs on disk and (by default) in their run folder; an intact folder from an earlier attempt is kept."""
    normalized, record = task.normalized, task.record
    kind = _kind(normalized.output_kind)
    if run.opts.write_artifact and not run.submitted_here:  # a task bought just now has no earlier run folder
        existing = await _intact_run(run)
        if existing is not None:
            return existing
    root = run.opts.artifacts.resolved_root()
    staging = (
        root / ".tmp" / "downloads" / staging_name(folder_name(record.task_id))
        if run.opts.write_artifact
        else root / "downloads" / folder_name(record.task_id)
    )
    try:
        async with run.rec.stage("download"):
            downloaded = await _download_all(run.session, record, staging, normalized.output_kind)
        if not run.opts.write_artifact:
            urls = record.output_urls
            outputs = [RunOutput(source=f.path, url=u, kind=kind) for f, u in zip(downloaded, urls, strict=False)]
            return outputs, downloaded
        async with run.rec.stage("artifact"):
            artifact = await _write_artifact(run, task, downloaded)
    finally:
        if run.opts.write_artifact:
            await asyncio.shield(run_file_io(shutil.rmtree, staging, True))
    return _from_artifact(artifact, record, kind)


def _describe(exc: BaseException) -> str:
    """One line, whatever the exception holds (a lone surrogate in its text must not fail the journal line)."""
    text = str(exc) or type(exc).__name__
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _first_poll_after(run: RunContext, normalized: NormalizedRequest) -> float | None:
    """A task this run just bought is read first when it may be done; a resumed one is read at once."""
    if not run.submitted_here:
        return None
    typical: float | None = None
    registry = loaded_registry()  # in memory by now (preloaded): no folder lookups on the loop for each run
    with contextlib.suppress(KeyError, KieError):
        typical = registry.get(normalized.model_key).typical_generation_seconds if registry else None
    # Counted from now, right after createTask answered: ``submitted_at`` is taken before the request waits
    # for a rate-limit slot, which at the real limit is often longer than the generation itself.
    return run.session.first_poll_delay(normalized.provider_model, typical)


def folder_name(task_id: str) -> str:
    """A task id as one safe folder name under the output root.

    The id comes from the network (a garbage or hostile ``{"taskId": "../../x"}`` or an absolute path), from
    ``--resume-task`` or from a journal edited by hand; used as is, it put downloads outside the root. Kie.ai's
    hex ids pass unchanged; anything else is made one plain component, with a hash so two odd ids never meet.
    """
    safe = _UNSAFE_IN_NAME.sub("_", task_id).lstrip(".")[:96]
    if safe == task_id:
        return safe
    return f"{safe or 'task'}-{hashlib.sha256(task_id.encode()).hexdigest()[:12]}"


def _from_artifact(
    artifact: RunArtifact, record: TaskRecord, kind: Literal["image", "video", "audio"] | None
) -> tuple[list[RunOutput], list[_StoredOutput]]:
    files = _stored_outputs(artifact)
    outputs = [
        RunOutput(source=f.path, url=u, kind=kind, run_id=artifact.run_id)
        for f, u in zip(files, record.output_urls, strict=False)
    ]
    return outputs, files


def _stored_outputs(artifact: RunArtifact) -> list[_StoredOutput]:
    """The run folder's outputs as recorded in its manifest (path, sha256, size)."""
    return [
        _StoredOutput(path=artifact.run_dir / f.path, sha256=f.sha256 or "", size=f.bytes or 0)
        for f in artifact.manifest.outputs
        if f.path
    ]


async def _intact_run(run: RunContext) -> tuple[list[RunOutput], list[_StoredOutput]] | None:
    """The run folder an earlier attempt finished for this task, if it is complete and unchanged."""
    run_id = run.base.get("run_id")
    if not run_id:
        return None
    root = run.opts.artifacts.resolved_root()
    try:
        artifact = await load_run(root, run_id)
    except (KieArtifactError, OSError):
        return None
    manifest = artifact.manifest
    if manifest.status is not RunStatus.SUCCEEDED or not manifest.outputs:
        return None
    files = _stored_outputs(artifact)
    if not await asyncio.to_thread(
        outputs_intact, [f.path for f in files], [f.sha256 for f in files], [f.size for f in files]
    ):
        return None
    run.base["run_dir"] = str(artifact.run_dir)
    urls = [f.url for f in manifest.outputs if f.path]
    outputs = [
        RunOutput(source=f.path, url=u, kind=None, run_id=artifact.run_id) for f, u in zip(files, urls, strict=False)
    ]
    return outputs, files


def outputs_intact(paths: list[Path], sha256s: list[str], sizes: list[int]) -> bool:
    """Blocking: every recorded output still exists with its recorded size and sha256."""
    if not paths or len(paths) != len(sha256s) or len(paths) != len(sizes):
        return False
    for path, digest, size in zip(paths, sha256s, sizes, strict=True):
        try:
            if path.stat().st_size != size or sha256_file(path)[0] != digest:
                return False
        except OSError:
            return False
    return True


async def _write_artifact(run: RunContext, task: _Finished, downloaded: list[_StoredOutput]) -> RunArtifact:
    trace = task.trace
    request = _artifact_request(
        task.normalized,
        task.validation,
        task.prepared,
        task.record,
        downloaded,
        run.parents,
        trace.submitted_at,
        trace.wall,
        trace.polls,
        run.opts,
        trace.estimate,
        trace.charged,
    )
    if run.base.get("run_id"):
        request = request.model_copy(update={"run_id": run.base["run_id"]})
    if run.ledger.key:
        request = request.model_copy(update={"request_key": run.ledger.key})
    if (chat := run.base.get("prompt_chat")) is not None:  # the built-in enhancer's chat call (pipeline.enhance)
        prompts = request.prompts.model_copy(update={"enhanced_with": chat.model, "enhance_credits": chat.charged})
        request = request.model_copy(update={"prompts": prompts})
    key = run.session.settings.api_key
    artifact = await create_run_artifact(request, run.opts.artifacts, secrets=[key] if key else [], replace=True)
    run.base["run_id"] = artifact.run_id
    run.base["run_dir"] = str(artifact.run_dir)
    return artifact


async def _transport_of(model_key: str) -> TransportSpec | None:
    """The API a model's tasks are read through (its spec's ``transport``); ``None`` for the market or for a
    key no spec knows any more (a resumed task whose spec was removed is read as a market task)."""
    registry = await aload_registry()
    spec = registry.specs.get(model_key)
    return None if spec is None or spec.transport.is_market else spec.transport


def _kind(output_kind: str | None) -> Literal["image", "video", "audio"] | None:
    return output_kind if output_kind in ("image", "video", "audio") else None  # type: ignore[return-value]


async def _download_all(
    session: BaseSession, record: TaskRecord, folder: Path, output_kind: str | None
) -> list[_StoredOutput]:
    """Each output checked against the model's output kind and named ``output_{i}.{ext}`` from its content.

    The server's URL never names the file (a URL ending in ``.sh`` must not give ``output_0.sh``), and an
    error page or empty body served with 200 is retried as a download error instead of becoming the output.
    """
    expect = _kind(output_kind)
    results = await asyncio.gather(
        *(
            session.download(url, folder / f"output_{i}", expect_kind=expect, name_from_content=True)
            for i, url in enumerate(record.output_urls)
        )
    )
    return [_StoredOutput(path=Path(r.destination_path), sha256=r.sha256 or "", size=r.bytes_written) for r in results]


def _artifact_request(
    normalized: NormalizedRequest,
    validation: ValidationResult,
    prepared: PreparedRequest | None,
    record: TaskRecord,
    downloaded: list[_StoredOutput],
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
        # The digest taken while streaming is handed on: the run folder links the same file, so it is not read again.
        ArtifactSource(role="output", source_path=f.path, url=u, sha256=f.sha256 or None, bytes=f.size)
        for f, u in zip(downloaded, record.output_urls, strict=False)
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
        error=f"{record.fail_code}: {record.fail_msg}" if record.state.is_failure else None,
        tags=list(opts.tags),
        source_context=dict(opts.source_context),
        warnings=[f"{d.field}: {d.message}" for d in validation.warning_details],
    )
