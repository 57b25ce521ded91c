"""The run manifest (``run.json``) and the request that creates it.

A run folder must stay meaningful long after the provider has deleted its files (Kie.ai keeps them 14 days),
so the manifest records everything needed to understand, reproduce and chain a run: what was asked (prompts,
model, request input), what came back (files with hashes and media info), what it cost (provider trace) and
where it came from (parent run ids). Paths are stored relative to the run folder so a whole artifacts root can
be moved or synced elsewhere without rewriting manifests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kie_async._version import __version__
from kie_async.wire.api_models import TaskRecord, TaskState

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILENAME = "run.json"
PROMPT_FILENAME = "prompt.txt"
NOTES_FILENAME = "notes.md"
NOTES_EXCERPT_CHARS = 240

JSONValue = Any
"""A JSON value; model inputs differ per model spec, so the recorded request input stays open."""


_TAG = re.compile(r"^[^\s,][^,\n\r]{0,63}$")


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags trimmed, de-duplicated in order; a tag is 1-64 printable characters without commas or newlines.

    Commas are refused because ``--tag a,b`` style lists and the CLI's filters split on them.
    """
    seen: dict[str, None] = {}
    for tag in tags:
        text = str(tag).strip()
        if not _TAG.match(text) or not text.isprintable():
            raise ValueError(f"tag {tag!r} is not usable: 1-64 printable characters, no commas or newlines")
        seen.setdefault(text, None)
    return list(seen)


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"
    CANCELLED = "cancelled"

    @classmethod
    def from_task_state(cls, state: TaskState) -> RunStatus:
        """Terminal provider state → run status (a non-terminal state means the wait was abandoned)."""
        if state is TaskState.SUCCESS:
            return cls.SUCCEEDED
        return cls.FAILED if state.is_failure else cls.CANCELLED  # provider-canceled counts as failed


class ArtifactKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    OTHER = "other"


class StoredAs(StrEnum):
    """How a file reached the run folder; ``reference`` means only its URL is known (nothing on disk)."""

    COPY = "copy"
    HARDLINK = "hardlink"
    REFERENCE = "reference"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _utc(value: datetime) -> datetime:
    # Naive datetimes are ambiguous across machines; treat them as UTC rather than local time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class MediaInfo(_Model):
    """What a viewer or the next pipeline stage needs to know without opening the file."""

    mime_type: str | None = None
    format: str | None = Field(default=None, description="container/codec family, e.g. png, jpeg, webp, mp4")
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None
    has_alpha: bool | None = None


class PromptRecord(_Model):
    """The three prompt stages: what the user typed, what an enhancer proposed, what was actually sent."""

    raw: str | None = None
    enhanced: str | None = None
    final_used: str | None = None
    preset: str | None = None
    enhanced_with: str | None = Field(default=None, description="the Kie chat model that wrote `enhanced`")
    enhance_credits: float | None = Field(default=None, description="what that chat call cost (credits)")


class ProviderTrace(_Model):
    """Provider-side facts about the task: ids, timings and credits, as reported or measured."""

    task_id: str | None = None
    record_id: str | None = None
    provider_state: str | None = None
    fail_code: str | None = None
    fail_msg: str | None = None
    submitted_at: datetime | None = None
    provider_created_at: datetime | None = None
    provider_completed_at: datetime | None = None
    cost_time: int | None = Field(default=None, description="costTime exactly as Kie.ai sent it (unit uncertain)")
    wall_seconds: float | None = Field(default=None, description="submit → terminal state, measured locally")
    poll_count: int | None = None
    used_callback: bool | None = None
    credits_estimated: float | None = None
    credits_consumed: float | None = None
    credits_before: float | None = None
    credits_after: float | None = None
    request_input: dict[str, JSONValue] | None = Field(
        default=None, description="the model input as submitted; secret-looking keys are redacted on write"
    )

    @field_validator("submitted_at", "provider_created_at", "provider_completed_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value) if value is not None else None

    @classmethod
    def from_task_record(cls, record: TaskRecord, **measured: Any) -> ProviderTrace:
        """Provider facts from a terminal ``TaskRecord``; pass locally measured fields (wall_seconds, credits_*...).

        The submitted ``input`` is taken from the record's ``param`` unless ``request_input`` is given.
        """
        request_input = record.request_param.get("input")
        values: dict[str, Any] = {
            "task_id": record.task_id,
            "provider_state": record.state.value,
            "fail_code": record.fail_code,
            "fail_msg": record.fail_msg,
            "cost_time": record.cost_time,
            "provider_created_at": record.created_at,
            "provider_completed_at": record.completed_at,
            "credits_consumed": record.credits_consumed,
            "request_input": request_input if isinstance(request_input, dict) else None,
        }
        values.update(measured)
        return cls.model_validate(values)


class ArtifactSource(_Model):
    """One input or output handed to :func:`create_run_artifact`: a local file, a URL, or both.

    The pipeline passes downloaded outputs as ``source_path`` (with the provider URL in ``url`` for the
    record) and uploaded inputs as the local original plus the hosted URL. ``poster_path`` is a cover image
    already on disk (e.g. downloaded from the provider's cover URL) used as the poster of a video output.
    """

    role: str = Field(min_length=1, max_length=64, description="e.g. output, reference, first_frame, last_frame")
    kind: ArtifactKind | None = Field(default=None, description="inferred from the file when omitted")
    source_path: Path | None = None
    url: str | None = None
    poster_path: Path | None = None
    label: str | None = None
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="the sha256 of source_path the caller already took (a download it just verified); used only "
        "when the file is stored as a hard link of the same size, so the run folder does not read it again",
    )
    bytes: int | None = Field(default=None, ge=0, description="the size that sha256 was taken of")

    @model_validator(mode="after")
    def _needs_path_or_url(self) -> ArtifactSource:
        if self.source_path is None and not self.url:
            raise ValueError("an ArtifactSource needs source_path, url, or both")
        return self


class DerivativeRecord(_Model):
    """A resized rendition; ``source`` says where the pixels came from (a video may have no frames we can read)."""

    name: Literal["web", "thumb", "poster"]
    path: str
    format: str
    width: int
    height: int
    bytes: int
    source: Literal["image", "provider_cover", "video_frame"] = "image"
    reused: bool = Field(
        default=False,
        description="the original already fitted this size in a web format: the record names the original (or a "
        "copy of it) instead of a re-encode, which would only have cost time and quality",
    )


class ArtifactFile(_Model):
    """An input or output as stored in the run folder."""

    role: str
    kind: ArtifactKind
    path: str | None = Field(default=None, description="relative to the run folder; None when only a URL is known")
    url: str | None = None
    original_name: str | None = None
    stored_as: StoredAs
    sha256: str | None = None
    bytes: int | None = None
    media: MediaInfo | None = None
    cover_path: str | None = Field(default=None, description="provider cover image kept next to a video output")
    derivatives: list[DerivativeRecord] = Field(default_factory=list)
    label: str | None = None

    def derivative(self, name: str) -> DerivativeRecord | None:
        return next((d for d in self.derivatives if d.name == name), None)


class RunArtifactCreateRequest(_Model):
    """Everything the caller knows about a finished (or failed) run; see :func:`create_run_artifact`."""

    status: RunStatus
    model_key: str = Field(min_length=1)
    provider_model: str | None = None
    task_mode: str | None = None
    prompts: PromptRecord = Field(default_factory=PromptRecord)
    inputs: list[ArtifactSource] = Field(default_factory=list)
    outputs: list[ArtifactSource] = Field(default_factory=list)
    provider_trace: ProviderTrace | None = None
    parent_run_ids: list[str] = Field(default_factory=list)
    run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    request_key: str | None = Field(
        default=None, description="the request's key in the purchase ledger (or a batch's journal)"
    )
    started_at: datetime | None = None
    error: str | None = None
    tags: list[str] = Field(default_factory=list)
    source_context: dict[str, Any] = Field(
        default_factory=dict, description="the caller's own context (web request id, user, ticket): kept verbatim"
    )
    warnings: list[str] = Field(default_factory=list, description="what the run did that deserves a look later")

    @field_validator("tags")
    @classmethod
    def _clean_tags(cls, value: list[str]) -> list[str]:
        return clean_tags(value)

    @field_validator("started_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value) if value is not None else None


class RunManifest(_Model):
    """The content of ``run.json``."""

    schema_version: int = MANIFEST_SCHEMA_VERSION
    run_id: str
    status: RunStatus
    created_at: datetime = Field(description="when the run started (the request's started_at, else write time)")
    recorded_at: datetime = Field(description="when the artifact was written; the index is ordered by it")
    updated_at: datetime | None = Field(default=None, description="when derivatives were last remade")
    model_key: str
    provider_model: str | None = None
    task_mode: str | None = None
    prompts: PromptRecord = Field(default_factory=PromptRecord)
    inputs: list[ArtifactFile] = Field(default_factory=list)
    outputs: list[ArtifactFile] = Field(default_factory=list)
    provider_trace: ProviderTrace | None = None
    parent_run_ids: list[str] = Field(default_factory=list)
    request_key: str | None = Field(
        default=None, description="the request's key in the purchase ledger (or a batch's journal): what bought it"
    )
    error: str | None = None
    tags: list[str] = Field(default_factory=list)
    source_context: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    notes_updated_at: datetime | None = Field(default=None, description="when notes.md was last written")
    notes_excerpt: str | None = Field(default=None, description="the start of notes.md, for the index")
    sdk_version: str = __version__

    @field_validator("created_at", "recorded_at", "updated_at", "notes_updated_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value) if value is not None else None

    def primary_output(self) -> ArtifactFile | None:
        return self.outputs[0] if self.outputs else None


class RunArtifact(_Model):
    """What :func:`create_run_artifact` returns: where the run landed and what was written."""

    run_id: str
    run_dir: Path
    manifest_path: Path
    manifest: RunManifest
    indexed: bool = Field(description="False when the index append failed; rebuild_artifact_index repairs that")

    def path_of(self, file: ArtifactFile | DerivativeRecord) -> Path | None:
        """Absolute path of a stored file or derivative."""
        return self.run_dir / file.path if file.path else None
