"""The separate APIs' own shapes, as their docs pages show them: status answers and callback bodies.

Each dialect is written from the provider's pages (``shared/kie-docs/<api>/``), not from the SDK's model
specs, so a wrong ``transport:`` section in a spec shows up as a failing test instead of agreeing with
itself. A task's timeline is the market's (waiting → queuing → generating → success | fail); each dialect
only says how that timeline is spelled on its API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kie_async.emulator.state import EmulatedTask
from kie_async.wire.api_models import TaskState

_COMPACT = (",", ":")


@dataclass(frozen=True)
class View:
    """One task at one moment, with what every dialect needs to spell it."""

    task: EmulatedTask
    state: TaskState
    urls: list[str]

    @property
    def done(self) -> bool:
        return self.state.is_terminal

    @property
    def ok(self) -> bool:
        return self.state is TaskState.SUCCESS

    @property
    def failed(self) -> bool:
        return self.state is TaskState.FAIL

    @property
    def error_code(self) -> int | str | None:
        if not self.failed or self.task.failure is None:
            return None
        code = self.task.failure.code
        return int(code) if code.isdigit() else code

    @property
    def error_message(self) -> str:
        return self.task.failure.msg if self.failed and self.task.failure else ""

    @property
    def complete_ms(self) -> int | None:
        return self.task.create_time_ms + round(self.task.duration * 1000) if self.done else None

    def param_json(self) -> str:
        return json.dumps(self.task.body, separators=_COMPACT, ensure_ascii=False)


ShapeFn = Callable[[View], dict[str, Any]]


@dataclass(frozen=True)
class Dialect:
    """One separate API: its paths, what it sells, and how it spells a task."""

    name: str
    create_path: str
    status_path: str
    output_kind: Literal["image", "video", "audio"]
    record: ShapeFn
    callback: ShapeFn
    catalogue_model: Callable[[dict[str, Any]], str]
    """The model id the emulator prices and checks a body as (the SDK spec's ``provider_model``)."""
    model_field: str | None = None
    required: tuple[str, ...] = ()
    outputs: int = 1
    render_params: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda body: {})
    unknown_task_msg: str = "recordInfo is null"
    """The 422 message for a task id the API does not know: the market's unless the API's page names its own."""
    stages: tuple[tuple[str, float], ...] = ()
    """Intermediate callbacks before the final one: ``(callbackType, fraction of the task's duration)``
    (Suno's ``text`` and ``first``); each is sent by :func:`stage_callback`."""
    outputs_field: str | None = None
    """The body field saying how many outputs a task makes (4o Image's ``nVariants``), when the API has one."""
    source_task_field: str | None = None
    """The body field naming the earlier task this one works on (Veo's extend): it must be the caller's own,
    sold on an API read at the same status path, and finished successfully."""


def _flag(view: View, failed: int = 2) -> int:
    return 1 if view.ok else failed if view.failed else 0


# ---------------------------------------------------------------- Veo 3.1 (veo3-api/)


VEO_UNKNOWN_TASK = "record is null"
"""Veo's record-info answer (422) for a task it does not know, as its details page lists it."""


def _date_text(ms: int | None) -> str | None:
    """A time spelled as the Veo details page's example spells it (``2025-06-06 10:30:00``; UTC here)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _veo_record(view: View) -> dict[str, Any]:
    response = None
    if view.ok:
        response = {
            "taskId": view.task.task_id,
            "resultUrls": view.urls,
            "originUrls": [],
            "fullResultUrls": view.urls,
            "resolution": "1080p",
        }
    return {
        "taskId": view.task.task_id,
        "paramJson": view.param_json(),
        "completeTime": _date_text(view.complete_ms),
        "response": response,
        "successFlag": _flag(view),
        "errorCode": view.error_code,
        "errorMessage": view.error_message,
        "createTime": _date_text(view.task.create_time_ms),
        "fallbackFlag": False,
    }


def _veo_callback(view: View) -> dict[str, Any]:
    if view.ok:
        return {
            "code": 200,
            "msg": "Veo3.1 video generated successfully.",
            "data": {
                "taskId": view.task.task_id,
                "promptJson": view.param_json(),
                "info": {"resultUrls": view.urls, "originUrls": [], "resolution": "1080p"},
                "fallbackFlag": False,
            },
        }
    return {
        "code": view.error_code or 501,
        "msg": view.error_message or "generation failed",
        "data": {"taskId": view.task.task_id, "fallbackFlag": False},
    }


def _veo_4k_callback(view: View) -> dict[str, Any]:
    """The 4K callback page's shapes: 200 with ``info.resultUrls``/``imageUrls``, or 500 with the task id only."""
    if view.ok:
        posters = [url.rsplit(".", 1)[0] + ".jpg" for url in view.urls]
        return {
            "code": 200,
            "msg": "4K Video generated successfully.",
            "data": {"taskId": view.task.task_id, "info": {"resultUrls": view.urls, "imageUrls": posters}},
        }
    return {
        "code": 500,
        "msg": view.error_message or "The 4K version of this video is unavailable. Please try a different video.",
        "data": {"taskId": view.task.task_id},
    }


# ---------------------------------------------------------------- Runway (runway-api/generate-ai-video)

_RUNWAY_STATES = {
    TaskState.WAITING: "wait",
    TaskState.QUEUING: "queueing",
    TaskState.GENERATING: "generating",
    TaskState.SUCCESS: "success",
    TaskState.FAIL: "fail",
}


def _runway_record(view: View) -> dict[str, Any]:
    body = view.task.body
    video = None
    if view.ok:
        video = {
            "videoId": f"v-{view.task.task_id[:12]}",
            "taskId": view.task.task_id,
            "videoUrl": view.urls[0],
            "imageUrl": "",
        }
    return {
        "taskId": view.task.task_id,
        "parentTaskId": "",
        # The page's generateParam holds prompt, imageUrl and expandPrompt only: no callBackUrl.
        "generateParam": {"prompt": body.get("prompt"), "imageUrl": body.get("imageUrl", ""), "expandPrompt": False},
        "state": _RUNWAY_STATES[view.state],
        "generateTime": "",
        "videoInfo": video,
        "failCode": view.error_code,
        "failMsg": view.error_message,
        "expireFlag": 0,
    }


def _runway_callback(view: View) -> dict[str, Any]:
    ok = view.ok
    return {
        "code": 200 if ok else view.error_code or 400,
        "msg": "All generated successfully." if ok else view.error_message or "generation failed",
        "data": {
            "task_id": view.task.task_id,
            "video_id": f"v-{view.task.task_id[:12]}" if ok else "",
            "video_url": view.urls[0] if ok else "",
            "image_url": "",
        },
    }


# ---------------------------------------------------------------- Runway Aleph (runway-api/generate-aleph-video)


def _aleph_record(view: View) -> dict[str, Any]:
    response = {"taskId": view.task.task_id, "resultVideoUrl": view.urls[0], "resultImageUrl": ""} if view.ok else None
    return {
        "taskId": view.task.task_id,
        "paramJson": view.param_json(),
        "response": response,
        "completeTime": view.complete_ms,
        "createTime": view.task.create_time_ms,
        "successFlag": _flag(view),
        "errorCode": view.error_code or 0,
        "errorMessage": view.error_message,
    }


def _aleph_callback(view: View) -> dict[str, Any]:
    # The page's callback names the task at the top level, beside code/msg/data.
    if view.ok:
        return {
            "code": 200,
            "msg": "success",
            "taskId": view.task.task_id,
            "data": {"result_video_url": view.urls[0], "result_image_url": ""},
        }
    return {
        "code": view.error_code or 501,
        "msg": view.error_message or "generation failed",
        "taskId": view.task.task_id,
        "data": None,
    }


# ---------------------------------------------------------------- Suno (suno-api/generate-music)

_SUNO_STATES = {
    TaskState.WAITING: "PENDING",
    TaskState.QUEUING: "TEXT_SUCCESS",
    TaskState.GENERATING: "FIRST_SUCCESS",
    TaskState.SUCCESS: "SUCCESS",
    TaskState.FAIL: "GENERATE_AUDIO_FAILED",
}


def _suno_tracks(view: View, *, snake: bool) -> list[dict[str, Any]]:
    # FIRST_SUCCESS already lists the first track: a client that stops there has only half the music.
    ready = view.urls if view.ok else view.urls[:1] if view.state is TaskState.GENERATING else []
    body = view.task.body
    tracks = []
    for n, url in enumerate(ready):
        track = {
            "id": f"{view.task.task_id[:8]}-{n}",
            "audioUrl": url,
            "streamAudioUrl": url,
            "imageUrl": "",
            "prompt": body.get("prompt"),
            "modelName": "chirp-v4",
            "title": body.get("title", ""),
            "tags": body.get("style", ""),
            "createTime": view.task.create_time_ms,
            "duration": 0.5,
        }
        if snake:
            track = {
                "id": track["id"],
                "audio_url": url,
                "stream_audio_url": url,
                "image_url": "",
                "prompt": track["prompt"],
                "model_name": "chirp-v4",
                "title": track["title"],
                "tags": track["tags"],
                "createTime": track["createTime"],
                "duration": 0.5,
            }
        tracks.append(track)
    return tracks


def _suno_record(view: View) -> dict[str, Any]:
    return {
        "taskId": view.task.task_id,
        "parentMusicId": "",
        "param": view.param_json(),
        "response": {"taskId": view.task.task_id, "sunoData": _suno_tracks(view, snake=False)},
        "status": _SUNO_STATES[view.state],
        "type": "chirp-v4",
        "operationType": "generate",
        "errorCode": view.error_code,
        "errorMessage": view.error_message or None,
    }


def _suno_callback(view: View) -> dict[str, Any]:
    if view.ok:
        return {
            "code": 200,
            "msg": "All generated successfully.",
            "data": {"callbackType": "complete", "task_id": view.task.task_id, "data": _suno_tracks(view, snake=True)},
        }
    return {
        "code": view.error_code or 501,
        "msg": view.error_message or "Audio generation failed",
        "data": {"callbackType": "error", "task_id": view.task.task_id, "data": None},
    }


_SUNO_STAGE_MSG = {"text": "Text generation completed.", "first": "First track generated successfully."}


def stage_callback(view: View, stage: str) -> dict[str, Any]:
    """Suno's intermediate callback (generate-music-callbacks: ``text``, then ``first``): code 200, the stage in
    ``data.callbackType``; ``first`` already lists the first track, ``text`` none."""
    tracks = _suno_tracks(view, snake=True) if stage == "first" else []
    return {
        "code": 200,
        "msg": _SUNO_STAGE_MSG.get(stage, stage),
        "data": {"callbackType": stage, "task_id": view.task.task_id, "data": tracks},
    }


# ---------------------------------------------------------------- 4o Image (4o-image-api/)

_GPT4O_STATUS = {TaskState.SUCCESS: "SUCCESS", TaskState.FAIL: "GENERATE_FAILED"}


def _gpt4o_record(view: View) -> dict[str, Any]:
    progress = 1.0 if view.done else min(0.99, view.task.elapsed() / max(view.task.duration, 1e-6))
    return {
        "taskId": view.task.task_id,
        "paramJson": view.param_json(),
        "completeTime": view.complete_ms,
        "response": {"resultUrls": view.urls} if view.ok else None,
        "successFlag": _flag(view),
        "status": _GPT4O_STATUS.get(view.state, "GENERATING"),
        "errorCode": view.error_code,
        "errorMessage": view.error_message,
        "createTime": view.task.create_time_ms,
        "progress": f"{progress:.2f}",
    }


def _gpt4o_callback(view: View) -> dict[str, Any]:
    if view.ok:
        return {
            "code": 200,
            "msg": "success",
            "data": {"taskId": view.task.task_id, "info": {"result_urls": view.urls}},
        }
    return {
        "code": view.error_code or 400,
        "msg": view.error_message or "generation failed",
        "data": {"taskId": view.task.task_id, "info": None},
    }


# ---------------------------------------------------------------- Flux Kontext (flux-kontext-api/)


def _flux_record(view: View) -> dict[str, Any]:
    response = {"originImageUrl": view.urls[0], "resultImageUrl": view.urls[0]} if view.ok else None
    return {
        "taskId": view.task.task_id,
        "paramJson": view.param_json(),
        "completeTime": view.complete_ms,
        "response": response,
        "successFlag": _flag(view, failed=3),
        "errorCode": view.error_code,
        "errorMessage": view.error_message,
        "createTime": view.task.create_time_ms,
    }


def _flux_callback(view: View) -> dict[str, Any]:
    url = view.urls[0] if view.ok else ""
    return {
        "code": 200 if view.ok else view.error_code or 501,
        "msg": "BFL image generated successfully." if view.ok else view.error_message or "generation failed",
        "data": {"taskId": view.task.task_id, "info": {"originImageUrl": url, "resultImageUrl": url}},
    }


def _image_params(ratio_field: str, format_field: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def params(body: dict[str, Any]) -> dict[str, Any]:
        out = {"aspect_ratio": body.get(ratio_field, "1:1")}
        if format_field is not None:
            out["output_format"] = body.get(format_field, "jpeg")
        return out

    return params


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect(
            "veo3",
            "/api/v1/veo/generate",
            "/api/v1/veo/record-info",
            "video",
            _veo_record,
            _veo_callback,
            catalogue_model=lambda body: str(body.get("model") or "veo3_fast"),
            model_field="model",
            required=("prompt",),
            unknown_task_msg=VEO_UNKNOWN_TASK,
        ),
        Dialect(
            "veo3-extend",
            "/api/v1/veo/extend",
            "/api/v1/veo/record-info",
            "video",
            _veo_record,
            _veo_callback,
            catalogue_model=lambda body: "veo3-extend",
            required=("taskId", "prompt"),
            unknown_task_msg=VEO_UNKNOWN_TASK,
            source_task_field="taskId",
        ),
        Dialect(
            "veo3_4k",  # a route name's parts must be identifiers ("4k" is not)
            "/api/v1/veo/get-4k-video",
            "/api/v1/veo/record-info",
            "video",
            _veo_record,
            _veo_4k_callback,
            catalogue_model=lambda body: "veo3-4k",
            required=("taskId",),
            unknown_task_msg=VEO_UNKNOWN_TASK,
            source_task_field="taskId",
        ),
        Dialect(
            "runway",
            "/api/v1/runway/generate",
            "/api/v1/runway/record-detail",
            "video",
            _runway_record,
            _runway_callback,
            catalogue_model=lambda body: "runway",
            required=("prompt", "duration", "quality"),
        ),
        Dialect(
            "runway-extend",
            "/api/v1/runway/extend",
            "/api/v1/runway/record-detail",
            "video",
            _runway_record,
            _runway_callback,
            catalogue_model=lambda body: "runway-extend",
            required=("taskId", "prompt", "quality"),
            source_task_field="taskId",
        ),
        Dialect(
            "aleph",
            "/api/v1/aleph/generate",
            "/api/v1/aleph/record-info",
            "video",
            _aleph_record,
            _aleph_callback,
            catalogue_model=lambda body: "runway-aleph",
            required=("prompt", "videoUrl"),
        ),
        Dialect(
            "suno",
            "/api/v1/generate",
            "/api/v1/generate/record-info",
            "audio",
            _suno_record,
            _suno_callback,
            catalogue_model=lambda body: "suno-music",
            # The schema lists prompt as required; its description exempts custom-mode instrumentals.
            required=("customMode", "instrumental", "model", "callBackUrl"),
            outputs=2,
            stages=(("text", 0.3), ("first", 0.7)),
        ),
        Dialect(
            "gpt4o-image",
            "/api/v1/gpt4o-image/generate",
            "/api/v1/gpt4o-image/record-info",
            "image",
            _gpt4o_record,
            _gpt4o_callback,
            catalogue_model=lambda body: "gpt4o-image",
            required=("size",),
            outputs_field="nVariants",  # the quickstart's 1, 2 or 4
            render_params=lambda body: {"aspect_ratio": body.get("size", "1:1"), "output_format": "png"},
        ),
        Dialect(
            "flux-kontext",
            "/api/v1/flux/kontext/generate",
            "/api/v1/flux/kontext/record-info",
            "image",
            _flux_record,
            _flux_callback,
            catalogue_model=lambda body: str(body.get("model") or "flux-kontext-pro"),
            model_field="model",
            required=("prompt",),
            render_params=_image_params("aspectRatio", "outputFormat"),
        ),
    )
}


def view_of(task: EmulatedTask, urls: list[str], now: float | None = None) -> View:
    return View(task=task, state=task.state_at(time.monotonic() if now is None else now), urls=urls)
