"""Pydantic models of what goes over the wire to and from Kie.ai.

They are tolerant where the provider is inconsistent (see ``shared/kie-api-facts.md``): ``msg`` or
``message``; ``param`` whose ``input`` may itself be a JSON string; ``resultJson`` that is ``""`` until
the task is done; ``failCode``/``failMsg`` that are ``null`` or ``""``; upload responses in the current
(``downloadUrl``) or the older (``fileUrl``) shape.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

JSONValue = Any
"""A JSON value as decoded by ``json.loads`` (kept as ``Any``: model inputs differ per model spec)."""


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class Envelope(_Wire):
    """The ``{code, msg, data}`` wrapper around every Kie.ai response."""

    code: int
    msg: str = Field(default="", validation_alias=AliasChoices("msg", "message"))
    data: JSONValue = None
    success: bool | None = None


class TaskState(StrEnum):
    WAITING = "waiting"
    QUEUING = "queuing"
    GENERATING = "generating"
    SUCCESS = "success"
    FAIL = "fail"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskState.SUCCESS, TaskState.FAIL)


class CreditBalance(_Wire):
    """Remaining credits; the live API returns a float (``60.62``), the docs an int."""

    credits: float

    @property
    def usd(self) -> float:
        """Credits at the published rate of $0.005 per credit."""
        return round(self.credits * 0.005, 4)


class CreateTaskPayload(_Wire):
    """The body of ``POST /api/v1/jobs/createTask``."""

    model: str
    input: dict[str, JSONValue]
    callback_url: str | None = Field(
        default=None, serialization_alias="callBackUrl", validation_alias=AliasChoices("callBackUrl", "callback_url")
    )

    def to_wire(self) -> dict[str, JSONValue]:
        return self.model_dump(by_alias=True, exclude_none=True)


class TaskCreated(_Wire):
    task_id: str = Field(validation_alias=AliasChoices("taskId", "task_id"))
    record_id: str | None = Field(default=None, validation_alias=AliasChoices("recordId", "record_id"))


class TaskResult(_Wire):
    """Parsed ``resultJson``."""

    result_urls: list[str] = Field(default_factory=list, validation_alias=AliasChoices("resultUrls", "result_urls"))
    first_frame_urls: list[str] = Field(default_factory=list, validation_alias=AliasChoices("firstFrameUrl"))
    last_frame_urls: list[str] = Field(default_factory=list, validation_alias=AliasChoices("lastFrameUrl"))
    result_object: dict[str, JSONValue] | None = Field(default=None, validation_alias=AliasChoices("resultObject"))

    @field_validator("result_urls", "first_frame_urls", "last_frame_urls", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value else []
        return value


def _decode_json_string(value: object) -> object:
    """Decode a JSON string (possibly nested once more, as live ``param.input`` is); leave others."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _ms_to_datetime(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=UTC) if value else None


class TaskRecord(_Wire):
    """``GET /api/v1/jobs/recordInfo`` data: the state of one task."""

    task_id: str = Field(validation_alias=AliasChoices("taskId", "task_id"))
    model: str | None = None
    state: TaskState
    param: str | None = None
    result_json: str | None = Field(default=None, validation_alias=AliasChoices("resultJson", "result_json"))
    fail_code: str | None = Field(default=None, validation_alias=AliasChoices("failCode", "fail_code"))
    fail_msg: str | None = Field(default=None, validation_alias=AliasChoices("failMsg", "fail_msg"))
    cost_time: int | None = Field(default=None, validation_alias=AliasChoices("costTime", "cost_time"))
    create_time: int | None = Field(default=None, validation_alias=AliasChoices("createTime", "create_time"))
    update_time: int | None = Field(default=None, validation_alias=AliasChoices("updateTime", "update_time"))
    complete_time: int | None = Field(default=None, validation_alias=AliasChoices("completeTime", "complete_time"))
    progress: int | None = None
    credits_consumed: float | None = Field(
        default=None, validation_alias=AliasChoices("creditsConsumed", "credits_consumed")
    )

    @field_validator("fail_code", "fail_msg", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if value is None or value == "":
            return None
        return str(value)

    @field_validator("state", mode="before")
    @classmethod
    def _lower_state(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def result(self) -> TaskResult:
        """``resultJson`` parsed; empty until the task succeeds."""
        decoded = _decode_json_string(self.result_json or "")
        if isinstance(decoded, dict):
            return TaskResult.model_validate(decoded)
        return TaskResult()

    @property
    def output_urls(self) -> list[str]:
        return self.result.result_urls

    @property
    def request_param(self) -> dict[str, JSONValue]:
        """``param`` decoded, with a double-encoded ``input`` decoded too."""
        decoded = _decode_json_string(self.param or "")
        if not isinstance(decoded, dict):
            return {}
        inner = decoded.get("input")
        decoded["input"] = _decode_json_string(inner) if inner is not None else None
        return decoded

    @property
    def created_at(self) -> datetime | None:
        return _ms_to_datetime(self.create_time)

    @property
    def completed_at(self) -> datetime | None:
        return _ms_to_datetime(self.complete_time)


class UploadedFile(_Wire):
    """A file hosted on Kie.ai's upload host; ``download_url`` is what model inputs take."""

    download_url: str = Field(validation_alias=AliasChoices("downloadUrl", "fileUrl", "download_url"))
    file_name: str | None = Field(default=None, validation_alias=AliasChoices("fileName", "file_name"))
    file_path: str | None = Field(default=None, validation_alias=AliasChoices("filePath", "file_path"))
    file_size: int | None = Field(default=None, validation_alias=AliasChoices("fileSize", "file_size"))
    mime_type: str | None = Field(default=None, validation_alias=AliasChoices("mimeType", "mime_type"))
    uploaded_at: str | None = Field(default=None, validation_alias=AliasChoices("uploadedAt", "uploadTime"))


class DownloadResult(_Wire):
    url: str
    destination_path: str
    bytes_written: int
    content_type: str | None = None
    format: str | None = None
    """What the content is, from its magic bytes (``png``, ``jpeg``, ``mp4``...); None when no known format."""
    extension: str | None = None
    """The file extension for ``format`` without the dot (``jpg`` for JPEG); never taken from the URL."""
    sha256: str | None = None
    """Hex digest of the bytes written, computed while streaming."""


class CallbackEvent(_Wire):
    """A parsed callback POST; the market callback body shape is UNCONFIRMED, so several are accepted."""

    task_id: str
    code: int | None = None
    state: TaskState | None = None
    record: TaskRecord | None = None

    @classmethod
    def from_body(cls, body: dict[str, JSONValue]) -> CallbackEvent:
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        assert isinstance(data, dict)
        task_id = body.get("taskId") or data.get("taskId") or data.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("callback body has no taskId (looked at taskId, data.taskId, data.task_id)")
        record: TaskRecord | None = None
        if "state" in data:
            record = TaskRecord.model_validate({**data, "taskId": task_id})
        code = body.get("code")
        return cls(
            task_id=task_id,
            code=code if isinstance(code, int) else None,
            state=record.state if record else None,
            record=record,
        )
