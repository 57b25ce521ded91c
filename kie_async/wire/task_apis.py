"""Task APIs ("transports"): how one Kie.ai API is spoken (create path, status path, state words, results).

Not to be confused with :mod:`kie_async.wire.transport`, which is about the HTTP pool and proxies; this module is
about which of Kie.ai's APIs a model's tasks are bought and read through.

Most models go through the market jobs API (``createTask`` + ``recordInfo``), but Veo 3.1, Runway, Aleph,
Suno, 4o Image and Flux Kontext each have their own endpoints, body layout, state vocabulary (``successFlag``
integers, ``PENDING``/``FIRST_SUCCESS``, ``wait``/``queueing``...) and result fields. Those differences are
data: a model spec's ``transport:`` section (see ``model_specs/README.md``), read into :class:`TransportSpec`.
The session sends and reads through it; the wait loop, the pipeline and ``run_many`` never learn which API
they talk to, because every status answer is translated here into the market's ``recordInfo`` shape, which
:class:`kie_async.wire.api_models.TaskRecord` already reads tolerantly.

This module imports nothing from the rest of the SDK, so specs and wire models can both depend on it.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

StateName = Literal["waiting", "queuing", "generating", "success", "fail", "canceled"]
"""The SDK's task states (``kie_async.wire.api_models.TaskState`` values a provider word may map to)."""

Path = str | list[str]
"""A dotted path into a JSON object (``response.resultUrls``), or alternatives tried in order.

``*`` takes every element of a list (``response.sunoData.*.audioUrl``); a value that is a JSON-encoded
string is decoded on the way down, since several status answers nest JSON inside strings.
"""
UNKNOWN_TASK_MSG = "recordInfo is null"
"""The market's answer (422) for a task id it does not know; a separate API may spell it its own way."""


_MISSING = object()


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_api_path(value: str) -> bool:
    """A path on the API host: absolute, not ``//host`` (which a URL join would read as another host)."""
    return (
        value.startswith("/")
        and not value.startswith("//")
        and value.isascii()
        and value.isprintable()
        and not any(c in value for c in "?# \\")
    )


def _alternatives(path: Path | None) -> list[str]:
    if path is None:
        return []
    return [path] if isinstance(path, str) else list(path)


def _step(value: Any, key: str) -> list[Any]:
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if key == "*":
        return list(value) if isinstance(value, list) else []
    if isinstance(value, dict) and key in value:
        return [value[key]]
    return []


def _walk(data: Any, path: str) -> list[Any]:
    found = [data]
    for key in path.split("."):
        found = [hit for value in found for hit in _step(value, key)]
    return found


def pick(data: Any, path: Path | None) -> Any:
    """The first value found along ``path`` (or its first alternative that exists); ``None`` if none does."""
    for alternative in _alternatives(path):
        if "." not in alternative and alternative != "*" and isinstance(data, dict):
            if alternative in data:  # the common case, one key: every status read does a dozen of these
                return data[alternative]
            continue
        hits = _walk(data, alternative)
        if hits:
            return hits[0] if "*" not in alternative.split(".") else hits
    return None


def pick_all(data: Any, paths: list[str]) -> list[Any]:
    """Every value found along every path, flattened one level (a list found is read as its items)."""
    values: list[Any] = []
    for path in paths:
        for hit in _walk(data, path):
            values.extend(hit if isinstance(hit, list) else [hit])
    return values


class CreateSpec(_Part):
    """How a task is bought: the path, and how the body is laid out.

    ``input_field`` set (the market's ``input``): the model's fields are nested under it. Unset: they are
    sent at the top level next to the model and callback fields (every separate API).
    """

    path: str
    model_field: str | None = Field(default="model", description="where the provider model id goes; null: not sent")
    input_field: str | None = Field(default="input", description="null: the input fields are the body itself")
    callback_field: str = "callBackUrl"
    task_id: Path = Field(default_factory=lambda: ["taskId", "task_id"], description="in the answer's data")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not _is_api_path(value):
            raise ValueError(f"create path {value!r} must be an absolute path without a query")
        return value

    def body(self, model: str, fields: dict[str, Any], callback_url: str | None) -> dict[str, Any]:
        """The JSON body for ``model`` with the model's ``fields`` and an optional callback URL."""
        reserved = {f for f in (self.model_field, self.callback_field) if f}
        if self.input_field is not None:
            body: dict[str, Any] = {self.input_field: dict(fields)}
        else:
            clash = sorted(reserved & set(fields))
            if clash:
                raise ValueError(f"input field(s) {clash} collide with the transport's own body fields")
            body = dict(fields)
        if self.model_field is not None:
            body[self.model_field] = model
        if callback_url is not None:
            body[self.callback_field] = callback_url
        return body

    def split(self, body: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``(model, fields, callback)`` from a body this spec laid out (the emulator's reading of it)."""
        model = body.get(self.model_field) if self.model_field else None
        callback = body.get(self.callback_field)
        if self.input_field is not None:
            return model, body.get(self.input_field), callback
        fields = {k: v for k, v in body.items() if k not in (self.model_field, self.callback_field)}
        return model, fields, callback


class StateSpec(_Part):
    """Where the state is and what its words mean.

    ``fields`` are tried in order (4o Image sends both ``status`` and ``successFlag``). ``values`` maps the
    provider's word (numbers as their text: ``"1"``) to an SDK state; an unmapped word is handed on as it
    is, so the SDK's own vocabulary still applies and anything else reads as an unknown, non-terminal state.
    """

    fields: list[str] = Field(default_factory=lambda: ["state"], min_length=1)
    values: dict[str, StateName] = Field(default_factory=dict)

    @field_validator("values", mode="before")
    @classmethod
    def _text_keys(cls, value: object) -> object:
        if isinstance(value, dict):
            return {(json.dumps(k) if isinstance(k, bool) else str(k)).lower(): v for k, v in value.items()}
        return value

    def read(self, data: dict[str, Any]) -> tuple[Any, str | None]:
        """``(state for TaskRecord, raw text)``: the mapped SDK state, or the raw value when unmapped."""
        for field in self.fields:
            raw = pick(data, field)
            if raw is None:
                continue
            text = raw if isinstance(raw, str) else json.dumps(raw)
            mapped = self.values.get(text.strip().lower())
            return (mapped if mapped is not None else raw), text
        return None, None


class StatusSpec(_Part):
    """How a task is read back: the path, the query parameter, and where each fact is in the answer's data.

    Every path is relative to the envelope's ``data``. ``result_json`` passes a market ``resultJson`` through
    unchanged; ``result_urls`` collects URLs from the places a separate API puts them.
    """

    path: str
    task_id_param: str = "taskId"
    task_id: Path = Field(default_factory=lambda: ["taskId", "task_id"])
    state: StateSpec = Field(default_factory=StateSpec)
    result_json: Path | None = None
    result_urls: list[str] = Field(default_factory=list)
    fail_code: Path | None = None
    fail_msg: Path | None = None
    param: Path | None = None
    model: Path | None = None
    create_time: Path | None = None
    update_time: Path | None = None
    complete_time: Path | None = None
    cost_time: Path | None = None
    progress: Path | None = None
    credits_consumed: Path | None = None
    unknown_task: list[str] = Field(
        default_factory=lambda: [UNKNOWN_TASK_MSG],
        min_length=1,
        description="the messages (422) with which the status endpoint answers a task id it does not know",
    )

    def says_unknown(self, message: str) -> bool:
        """Whether a 422's message is this endpoint's way of saying it does not know the task (yet)."""
        text = message.strip().lower()
        return any(text == known.strip().lower() for known in self.unknown_task)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not _is_api_path(value):
            raise ValueError(f"status path {value!r} must be an absolute path without a query")
        return value

    @model_validator(mode="after")
    def _one_result_source(self) -> StatusSpec:
        if self.result_json is not None and self.result_urls:
            raise ValueError("give result_json (market passthrough) or result_urls, not both")
        if self.result_json is None and not self.result_urls:
            raise ValueError("a status spec needs result_json or result_urls")
        return self

    def record_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """The answer's ``data`` in the market ``recordInfo`` shape that ``TaskRecord`` reads."""
        out: dict[str, Any] = {}
        task_id = pick(data, self.task_id)
        if task_id is not None:
            out["taskId"] = task_id
        state, raw = self.state.read(data)
        if state is not None:
            out["state"] = state
            out["raw_state"] = raw
        if self.result_json is not None:
            result = pick(data, self.result_json)
            if result is not None:
                out["resultJson"] = result
        else:
            urls = pick_all(data, self.result_urls)
            if urls:
                out["resultJson"] = json.dumps({"resultUrls": urls})
        for wire, path in (
            ("failCode", self.fail_code),
            ("failMsg", self.fail_msg),
            ("param", self.param),
            ("model", self.model),
            ("createTime", self.create_time),
            ("updateTime", self.update_time),
            ("completeTime", self.complete_time),
            ("costTime", self.cost_time),
            ("progress", self.progress),
            ("creditsConsumed", self.credits_consumed),
        ):
            value = pick(data, path)
            if value is not None:
                out[wire] = value
        return out


class CallbackSpec(_Part):
    """What the API POSTs to ``callBackUrl``: where the task id and the results are (documentation and the
    emulator's check; the SDK itself trusts only the signed task id and re-reads the status)."""

    task_id: Path = Field(default_factory=lambda: ["data.taskId", "data.task_id", "taskId"])
    result_urls: list[str] = Field(default_factory=list)
    callback_types: list[str] = Field(
        default_factory=list, description="values of a callbackType field, for APIs that call back more than once"
    )
    note: str | None = None


class DownloadURLSpec(_Part):
    """An API's own download-url endpoint (4o Image's): a direct link for one of a task's files, asked with the
    task id; without one the common ``/api/v1/common/download-url`` (the URL alone) is used."""

    path: str
    task_id_field: str = "taskId"
    url_field: str = "url"

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not _is_api_path(value):
            raise ValueError(f"download-url path {value!r} must be an absolute path without a query")
        return value

    def body(self, task_id: str, url: str) -> dict[str, str]:
        return {self.task_id_field: task_id, self.url_field: url}


class UpgradeSpec(_Part):
    """A file made from a finished task's output on request, answered as a URL rather than as a new task
    (Veo's 1080P: ``GET /api/v1/veo/get-1080p-video?taskId=&index=``). Not ready yet, the endpoint answers
    a non-200 code and is asked again after ``retry_seconds``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    method: Literal["GET", "POST"] = "GET"
    path: str
    task_id_field: str = "taskId"
    index_field: str | None = "index"
    result_url: Path = "resultUrl"
    retry_seconds: float = Field(default=20.0, gt=0)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not _is_api_path(value):
            raise ValueError(f"upgrade path {value!r} must be an absolute path without a query")
        return value

    def request(self, task_id: str, index: int) -> dict[str, str | int]:
        """The query (GET) or body (POST) asking for ``task_id``'s output number ``index``."""
        asked: dict[str, str | int] = {self.task_id_field: task_id}
        if self.index_field is not None:
            asked[self.index_field] = index
        return asked


class TransportSpec(_Part):
    """One API as the SDK speaks it (a model spec's ``transport:`` section; the market's when absent)."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    create: CreateSpec
    status: StatusSpec
    callback: CallbackSpec = Field(default_factory=CallbackSpec)
    download_url: DownloadURLSpec | None = None
    upgrades: list[UpgradeSpec] = Field(default_factory=list)
    description: str | None = None

    def upgrade(self, name: str) -> UpgradeSpec | None:
        return next((u for u in self.upgrades if u.name.lower() == name.lower()), None)

    @property
    def is_market(self) -> bool:
        return self.name == MARKET_NAME

    def record_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """A status answer's ``data`` in ``recordInfo`` shape (the market's own data is already in it)."""
        return self.status.record_data(data)


MARKET_NAME = "market"


@functools.cache
def market_transport() -> TransportSpec:
    """The market jobs API (``createTask`` + ``recordInfo``), expressed like every other transport."""
    return TransportSpec(
        name=MARKET_NAME,
        description="Kie.ai market jobs API: one createTask and one recordInfo for every market model",
        create=CreateSpec(path="/api/v1/jobs/createTask", model_field="model", input_field="input"),
        status=StatusSpec(
            path="/api/v1/jobs/recordInfo",
            task_id=["taskId", "task_id"],
            state=StateSpec(fields=["state"]),
            result_json=["resultJson", "result_json"],
            fail_code=["failCode", "fail_code"],
            fail_msg=["failMsg", "fail_msg"],
            param=["param"],
            model=["model"],
            create_time=["createTime", "create_time"],
            update_time=["updateTime", "update_time"],
            complete_time=["completeTime", "complete_time"],
            cost_time=["costTime", "cost_time"],
            progress=["progress"],
            credits_consumed=["creditsConsumed", "credits_consumed"],
        ),
    )
