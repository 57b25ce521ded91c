"""Pydantic models of what goes over the wire to and from Kie.ai.

They are tolerant where the provider is inconsistent (see ``shared/kie-api-facts.md``): ``msg`` or
``message``; ``param`` whose ``input`` may itself be a JSON string; ``resultJson`` that is ``""`` until
the task is done; ``failCode``/``failMsg`` that are ``null`` or ``""``; upload responses in the current
(``downloadUrl``) or the older (``fileUrl``) shape.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from kie_async.wire.task_apis import TransportSpec, market_transport

JSONValue = Any
"""A JSON value as decoded by ``json.loads`` (kept as ``Any``: model inputs differ per model spec)."""


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


_MAX_CODE_DIGITS = 6


class Envelope(_Wire):
    """The ``{code, msg, data}`` wrapper around every Kie.ai response.

    ``code`` may arrive as a digit string (``"200"``); that is read as the number. Anything else that is not
    an integer is refused, because the code decides whether the call worked.
    """

    code: int
    msg: str = Field(default="", validation_alias=AliasChoices("msg", "message"))
    data: JSONValue = None
    success: bool | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _numeric_code(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"envelope code {value!r} is not a number")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            if text.isascii() and text.isdigit() and len(text) <= _MAX_CODE_DIGITS:
                return int(text)
        raise ValueError(f"envelope code {value!r} is not a number")

    @field_validator("msg", mode="before")
    @classmethod
    def _text_msg(cls, value: object) -> object:
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, default=str)[:500]

    @field_validator("success", mode="before")
    @classmethod
    def _loose_success(cls, value: object) -> object:
        return value if isinstance(value, bool) else None


class TaskState(StrEnum):
    """A task's state as the SDK reads it.

    The documented states are ``waiting``, ``queuing``, ``generating``, ``success`` and ``fail``.
    ``CANCELED`` (``canceled``/``cancelled``) is not documented (UNCONFIRMED); it is terminal and counts as a
    failure by the provider. ``UNKNOWN`` stands for a missing, null or unrecognised state: it is not
    terminal, so a waiter keeps polling (``TaskRecord.raw_state`` keeps what the server sent).
    """

    WAITING = "waiting"
    QUEUING = "queuing"
    GENERATING = "generating"
    SUCCESS = "success"
    FAIL = "fail"
    CANCELED = "canceled"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskState.SUCCESS, TaskState.FAIL, TaskState.CANCELED)

    @property
    def is_failure(self) -> bool:
        """The provider says the task will not produce outputs (``fail`` or ``canceled``)."""
        return self in (TaskState.FAIL, TaskState.CANCELED)


_STATE_ALIASES: dict[str, TaskState] = {
    **{state.value: state for state in TaskState if state is not TaskState.UNKNOWN},
    "cancelled": TaskState.CANCELED,
    # Spellings of the Runway endpoints' states; harmless here, since both are non-terminal.
    "wait": TaskState.WAITING,
    "queueing": TaskState.QUEUING,
}


class CreditBalance(_Wire):
    """Remaining credits; the live API returns a float (``60.62``), the docs an int."""

    credits: float

    @property
    def usd(self) -> float:
        """Credits at the published rate of $0.005 per credit."""
        return round(self.credits * 0.005, 4)


class CreateTaskPayload(_Wire):
    """A task to buy: the provider model, its input fields, the callback URL, and the API that sells it.

    ``transport`` (from the model spec) decides the body layout and the path; ``None`` is the market
    ``createTask`` (``{model, callBackUrl?, input: {...}}``).
    """

    model: str
    input: dict[str, JSONValue]
    callback_url: str | None = Field(
        default=None, serialization_alias="callBackUrl", validation_alias=AliasChoices("callBackUrl", "callback_url")
    )
    transport: TransportSpec | None = Field(default=None, exclude=True, repr=False)
    progress_callback_url: str | None = Field(default=None, exclude=True)
    progress_field: str | None = Field(
        default=None, exclude=True, description="the top-level body field progress_callback_url goes in"
    )

    @property
    def api(self) -> TransportSpec:
        return self.transport or market_transport()

    def to_wire(self) -> dict[str, JSONValue]:
        body = self.api.create.body(self.model, self.input, self.callback_url)
        if self.progress_field and self.progress_callback_url:
            body[self.progress_field] = self.progress_callback_url
        return body


def _id_text(value: object) -> object:
    """Ids are strings; a bare integer id is still readable, so it is kept as its decimal text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class TaskCreated(_Wire):
    task_id: str = Field(min_length=1, validation_alias=AliasChoices("taskId", "task_id"))
    record_id: str | None = Field(default=None, validation_alias=AliasChoices("recordId", "record_id"))

    @field_validator("task_id", mode="before")
    @classmethod
    def _task_id_text(cls, value: object) -> object:
        return _id_text(value)

    @field_validator("record_id", mode="before")
    @classmethod
    def _record_id_text(cls, value: object) -> object:
        value = _id_text(value)
        return value if isinstance(value, str) and value else None


def _is_output_url(value: object) -> bool:
    if not isinstance(value, str) or not value or value.strip() != value:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


_URL_LISTS = {"result_urls": "resultUrls", "first_frame_urls": "firstFrameUrl", "last_frame_urls": "lastFrameUrl"}


class TaskResult(_Wire):
    """Parsed ``resultJson``.

    URL entries that are not non-empty http(s) strings (``null``, numbers, other schemes) are dropped, and
    each drop is described in ``problems``, so one bad entry neither crashes the read nor hides the others.
    """

    result_urls: list[str] = Field(default_factory=list, validation_alias=AliasChoices("resultUrls", "result_urls"))
    first_frame_urls: list[str] = Field(default_factory=list, validation_alias=AliasChoices("firstFrameUrl"))
    last_frame_urls: list[str] = Field(default_factory=list, validation_alias=AliasChoices("lastFrameUrl"))
    result_object: dict[str, JSONValue] | None = Field(default=None, validation_alias=AliasChoices("resultObject"))
    problems: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        cleaned = dict(data)
        problems: list[str] = []
        for field, wire in _URL_LISTS.items():
            key = next((k for k in (wire, field) if k in cleaned), None)
            if key is None:
                continue
            value = cleaned.pop(key)
            if value is None:
                cleaned[field] = []
                continue
            entries = value if isinstance(value, list) else [value]
            if not isinstance(value, list | str):
                problems.append(f"{wire} is {type(value).__name__}, not a list of URLs: {value!r:.80}")
                entries = []
            kept = [entry for entry in entries if _is_output_url(entry)]
            problems.extend(
                f"{wire}[{n}] dropped: {entry!r:.80} is not an http(s) URL"
                for n, entry in enumerate(entries)
                if not _is_output_url(entry) and not (isinstance(value, str) and entry == "")
            )
            cleaned[field] = kept
        obj = cleaned.get("resultObject")
        if obj is not None and not isinstance(obj, dict):
            problems.append(f"resultObject is {type(obj).__name__}, not an object; ignored")
            cleaned["resultObject"] = None
        cleaned["problems"] = problems
        return cleaned


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


_INT_FIELDS = {
    "cost_time": "costTime",
    "create_time": "createTime",
    "update_time": "updateTime",
    "complete_time": "completeTime",
    "progress": "progress",
}
_TEXT_FIELDS = {"model": "model", "param": "param"}


def _lenient_number(value: object, *, integer: bool) -> tuple[int | float | None, bool]:
    """``(number, readable)``: numbers and numeric strings pass; anything else is unreadable (``None``)."""
    if value is None:
        return None, True
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None, True
        try:
            value = int(text) if integer and text.isascii() and text.isdigit() else float(text)
        except ValueError:
            return None, False
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, False
    if isinstance(value, float) and not math.isfinite(value):
        return None, False
    if integer and isinstance(value, float):
        return (int(value), True) if value.is_integer() else (None, False)
    return value, True


_TIME_FIELDS = frozenset({"create_time", "update_time", "complete_time"})


def _date_text_ms(value: object) -> int | None:
    """A time sent as date text (``"2025-06-06 10:30:00"``, as the Veo, Aleph and Flux detail pages show it)
    in epoch milliseconds; ``None`` for anything else. Text without a zone is read as UTC (the pages name
    none): a task's duration, one time minus another, is right either way."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _take(data: dict[str, Any], field: str, wire: str) -> tuple[str | None, object]:
    for key in (wire, field):
        if key in data:
            return key, data[key]
    return None, None


@functools.lru_cache(maxsize=512)
def _parse_result_json(raw: str) -> tuple[TaskResult, str | None]:
    """``resultJson`` read into a result (frozen, so safe to share) and the problem reading it, if any.

    Cached by the text: a finished task's result is asked for 5-6 times (problems, usable, URLs, manifest),
    and every record of a poll that carries the same text shares one parse.
    """
    text = raw.strip()
    if not text:
        return TaskResult(), None
    try:
        decoded = json.loads(text)
    except ValueError:
        return TaskResult(), f"resultJson is not valid JSON: {text[:80]!r}"
    if isinstance(decoded, str):  # encoded once more
        decoded = _decode_json_string(decoded)
    if not isinstance(decoded, dict):
        return TaskResult(), f"resultJson is not a JSON object: {text[:80]!r}"
    return TaskResult.model_validate(decoded), None


class TaskRecord(_Wire):
    """``GET /api/v1/jobs/recordInfo`` data: the state of one task.

    Reading is tolerant so a task id is never lost to an odd answer: the state is normalised (see
    :class:`TaskState`; ``raw_state`` keeps what was sent), and metadata that cannot be read (a ``progress``
    of ``"45%"``) becomes ``None`` with a note in ``shape_problems``. Result problems (unparsable
    ``resultJson``, dropped URL entries, a success without outputs) are in ``result_problems``, and
    ``has_usable_result`` says whether there is anything to download.
    """

    task_id: str = Field(min_length=1, validation_alias=AliasChoices("taskId", "task_id"))
    model: str | None = None
    state: TaskState = TaskState.UNKNOWN
    raw_state: str | None = None
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
    shape_problems: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _tolerate(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        cleaned: dict[str, Any] = dict(data)
        problems: list[str] = list(cleaned.get("shape_problems") or [])
        key, task_id = _take(cleaned, "task_id", "taskId")
        if key is not None:
            cleaned[key] = _id_text(task_id)
        raw: object = cleaned.get("state")
        if isinstance(raw, TaskState):
            state: TaskState | None = raw
            raw_text: str | None = raw.value
        else:
            raw_text = None if raw is None else (raw if isinstance(raw, str) else json.dumps(raw, default=str))
            state = _STATE_ALIASES.get(raw.strip().lower()) if isinstance(raw, str) else None
        if state is None:
            state = TaskState.UNKNOWN
            problems.append(f"state {raw_text!r} is not a known task state; treated as still running")
        cleaned["state"] = state
        cleaned.setdefault("raw_state", raw_text)
        for field, wire in {**_INT_FIELDS, "credits_consumed": "creditsConsumed"}.items():
            key, value = _take(cleaned, field, wire)
            if key is None:
                continue
            number, ok = _lenient_number(value, integer=field != "credits_consumed")
            if not ok and field in _TIME_FIELDS:
                number = _date_text_ms(value)
                ok = number is not None
            if not ok:
                problems.append(f"{wire} {value!r:.80} is not a number; ignored")
            cleaned[key] = number
        for field, wire in _TEXT_FIELDS.items():
            key, value = _take(cleaned, field, wire)
            if key is None or value is None or isinstance(value, str):
                continue
            if field == "param" and isinstance(value, dict | list):
                cleaned[key] = json.dumps(value)
            else:
                problems.append(f"{wire} {value!r:.80} is not text; ignored")
                cleaned[key] = None
        key, result = _take(cleaned, "result_json", "resultJson")
        if key is not None and result is not None and not isinstance(result, str):
            cleaned[key] = json.dumps(result) if isinstance(result, dict | list) else str(result)
        cleaned["shape_problems"] = list(dict.fromkeys(problems))
        return cleaned

    @field_validator("fail_code", "fail_msg", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if value is None or value == "":
            return None
        return value if isinstance(value, str) else json.dumps(value, default=str)

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def _parsed_result(self) -> tuple[TaskResult, str | None]:
        return _parse_result_json(self.result_json or "")

    @property
    def result(self) -> TaskResult:
        """``resultJson`` parsed; empty until the task succeeds, and empty when it cannot be read."""
        return self._parsed_result()[0].model_copy(deep=True)  # the parse is shared by text: hand out a copy

    @property
    def result_problems(self) -> list[str]:
        """Why the result falls short of what its state promises; empty when nothing is wrong.

        Only a ``success`` can have result problems: other states promise no outputs.
        """
        if self.state is not TaskState.SUCCESS:
            return []
        parsed, problem = self._parsed_result()
        problems = [problem] if problem else []
        problems.extend(parsed.problems)
        if problem is None and not parsed.result_urls:
            problems.append("state is success but resultJson has no output URL")
        return problems

    @property
    def has_usable_result(self) -> bool:
        """``success`` with at least one output URL to download: the only state that counts as succeeded."""
        return self.state is TaskState.SUCCESS and bool(self.output_urls)

    @property
    def output_urls(self) -> list[str]:
        return list(self._parsed_result()[0].result_urls)  # a copy: the parse is shared (cached by text)

    @property
    def state_description(self) -> str:
        """The state for messages: the known name, or the raw value the server sent."""
        if self.state is TaskState.UNKNOWN:
            return f"in unrecognised state {self.raw_state!r}"
        return self.state.value

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
    """A callback that passed :func:`kie_async.wire.callbacks.verify_callback`: what can be relied on, and what not.

    Kie.ai signs only the task id and the timestamp, so those (and ``verified``) are the facts. The body is
    kept as ``unverified_body``: anyone who captured one signed callback could have rewritten it (a ``fail``
    state, foreign result URLs). Read the task's real state with ``KieSession.get_task(event.task_id)``;
    the receiver already wakes waiters, which re-read ``recordInfo``. ``request_token`` is the
    ``kie_request`` query parameter of the URL the callback was posted to; the URL is not signed either, so
    confirm the token against ``TaskRecord.request_param["callBackUrl"]`` before relying on it.
    """

    task_id: str
    timestamp: int | None = None
    verified: bool = False
    request_token: str | None = None
    unverified_body: dict[str, JSONValue] = Field(default_factory=dict, repr=False)
