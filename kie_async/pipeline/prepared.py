"""What preparation produces: a validated request whose media are all hosted, and how each input got there.

Pure models, importing no session: run results, the purchase step and the public types carry them without
pulling in :mod:`.prepare` (which uploads through a session).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kie_async.catalogue.request_models import ValidationResult


class MediaUpload(BaseModel):
    """How one input reached Kie.ai's file host."""

    model_config = ConfigDict(frozen=True)

    media_id: str
    source: str = Field(description="local path, 'bytes', or the original URL")
    sha256: str | None = None
    bytes: int | None = None
    url: str
    action: Literal["uploaded", "reused", "rehosted", "passed_through"]


class PreparedRequest(BaseModel):
    """A validated request whose media are all hosted: ready for ``build_submission_payload``."""

    model_config = ConfigDict(frozen=True)

    validation: ValidationResult
    uploads: list[MediaUpload] = Field(default_factory=list)

    @property
    def uploaded_count(self) -> int:
        return sum(1 for u in self.uploads if u.action in ("uploaded", "rehosted"))
