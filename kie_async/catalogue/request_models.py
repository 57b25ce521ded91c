"""Request models: what a user asks for, what the SDK makes of it, and what validation found.

``RawUserRequest`` keeps the seed toolkit's field names so wrapper code ports over unchanged. Media can be
a path, a URL, bytes, or a :class:`MediaInput` carrying a role; everything after normalization is typed,
so later steps (validate, price, build the payload, upload) never guess at shapes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from kie_async.catalogue.specs import MediaKind, MediaRole

ValidationState = Literal["ready", "ready_with_defaults", "ready_with_warning", "needs_input", "invalid"]
SUBMITTABLE_STATES: frozenset[str] = frozenset({"ready", "ready_with_defaults", "ready_with_warning"})
MediaSourceType = Literal["local_path", "url", "bytes", "asset"]
_PLACEHOLDER = re.compile(r"^<\d+ bytes( sha256=[0-9a-f]+)?>$")


class MediaInput(BaseModel):
    """One piece of input media with optional hints: its role, kind, and (if known) its length in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # a typo ("rol") must not silently drop the role

    source: str | Path | bytes = Field(repr=False)
    role: MediaRole | None = None
    kind: MediaKind | None = None
    filename: str | None = Field(default=None, description="name to upload bytes under; helps detect the format")
    duration_seconds: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="for length checks and per-second prices"
    )


MediaItem = str | Path | bytes | MediaInput


class RawUserRequest(BaseModel):
    """A request as a user or wrapper writes it; only its shape is checked yet.

    Unknown keys are refused: ``{"optons": {"resolution": "4K"}}`` silently ran at the default 1K.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_key: str
    task_mode: str | None = None
    prompt: str | None = None
    images: list[MediaItem] = Field(default_factory=list)
    videos: list[MediaItem] = Field(default_factory=list)
    audios: list[MediaItem] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = None
    multi_prompt: list[dict[str, Any]] | None = None
    prompt_preset: str | None = None
    extra_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fields Kie.ai takes that the spec does not know yet: sent verbatim, unchecked, with a warning",
    )


class NormalizedMedia(BaseModel):
    """A media item classified and placed: kind, where it comes from, its role and payload slot."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="stable handle such as 'images[0]', used to map uploads back")
    kind: MediaKind
    role: MediaRole | None = None
    slot: str | None = None
    source_type: MediaSourceType
    value: str | None = Field(default=None, description="path, URL or asset reference; None for bytes")
    data: bytes | None = Field(default=None, repr=False)
    filename: str | None = None
    extension: str | None = None
    duration_seconds: float | None = None

    @field_serializer("data")
    def _hide_bytes(self, data: bytes | None) -> str | None:
        """Dumps carry a digest, not the bytes: small logs, yet equal-length different files never look equal."""
        if data is None:
            return None
        return f"<{len(data)} bytes sha256={hashlib.sha256(data).hexdigest()[:16]}>"

    @field_validator("data", mode="before")
    @classmethod
    def _refuse_placeholder(cls, value: object) -> object:
        if isinstance(value, str) and _PLACEHOLDER.match(value):
            raise ValueError("media bytes were dumped as a placeholder; pass the real bytes again")
        return value

    @property
    def is_hosted(self) -> bool:
        return self.source_type in ("url", "asset")

    @property
    def size_bytes(self) -> int | None:
        return len(self.data) if self.data is not None else None


class ValidationDetail(BaseModel):
    """One finding, phrased so a person (or an agent) can act on it."""

    model_config = ConfigDict(frozen=True)

    field: str
    value: Any = None
    rule: str
    message: str
    fix: str


class MissingInput(ValidationDetail):
    """Something required is absent; the request can become valid by adding it."""


class DefaultedField(ValidationDetail):
    """A field the user left out that the SDK filled (and will send explicitly)."""


class WarningDetail(ValidationDetail):
    """Submittable, but something deserves attention (unconfirmed field, dropped option, deprecation...)."""


class ImpossibleInput(ValidationDetail):
    """The request cannot succeed as written: wrong type, out of range, too many media, contradictions."""


class NormalizationIssues(BaseModel):
    """Problems met while normalizing (unknown option, wrong type, media with no place); validate reports them."""

    model_config = ConfigDict(frozen=True)

    missing: list[MissingInput] = Field(default_factory=list)
    impossible: list[ImpossibleInput] = Field(default_factory=list)
    warnings: list[WarningDetail] = Field(default_factory=list)


class NormalizedRequest(BaseModel):
    """A request resolved against its spec: canonical key, task mode, typed options, classified media."""

    model_config = ConfigDict(frozen=True)

    model_key: str
    requested_model_key: str
    known_model: bool = True
    provider_model: str | None = None
    task_mode: str | None = None
    input_pattern: str | None = None
    output_kind: str | None = None
    raw_prompt: str | None = None
    enhanced_prompt: str | None = None
    final_prompt_used: str | None = None
    prompt_preset: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    extra_options: dict[str, Any] = Field(default_factory=dict, description="sent verbatim after the spec's fields")
    explicit_options: list[str] = Field(default_factory=list)
    defaulted: list[DefaultedField] = Field(default_factory=list)
    media: list[NormalizedMedia] = Field(default_factory=list)
    callback_url: str | None = None
    issues: NormalizationIssues = Field(
        default_factory=lambda: NormalizationIssues(), description="problems met while normalizing"
    )

    @property
    def prompt(self) -> str | None:
        """The prompt that will be sent: the final one if set, else the raw one."""
        return self.final_prompt_used if self.final_prompt_used is not None else self.raw_prompt

    @property
    def filled_slots(self) -> frozenset[str]:
        return frozenset(m.slot for m in self.media if m.slot is not None)


class ValidationResult(BaseModel):
    """The verdict on a request, with everything needed to fix it."""

    model_config = ConfigDict(frozen=True)

    state: ValidationState
    model_key: str
    task_mode: str | None = None
    provider_model: str | None = None
    missing_inputs: list[MissingInput] = Field(default_factory=list)
    defaulted_fields: list[DefaultedField] = Field(default_factory=list)
    warning_details: list[WarningDetail] = Field(default_factory=list)
    impossible_inputs: list[ImpossibleInput] = Field(default_factory=list)
    dropped_fields: list[str] = Field(default_factory=list)
    normalized: NormalizedRequest

    @property
    def is_submittable(self) -> bool:
        return self.state in SUBMITTABLE_STATES

    def all_details(self) -> list[ValidationDetail]:
        return [*self.impossible_inputs, *self.missing_inputs, *self.warning_details, *self.defaulted_fields]

    def summary(self) -> str:
        """One line per blocking problem, for logs and error messages."""
        lines = [f"{d.field}: {d.message} (fix: {d.fix})" for d in (*self.impossible_inputs, *self.missing_inputs)]
        return "; ".join(lines) if lines else self.state
