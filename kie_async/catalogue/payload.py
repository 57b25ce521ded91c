"""Submission payloads: turn a validated request into the exact ``createTask`` body, and check such bodies.

The payload is built from the spec alone: each option is written under its field name in its wire type
(Kling durations as strings, Seedance's as an integer), each media slot under its field (a list, or one URL
for scalar fields such as Seedance frames), and every required or defaulted field is sent explicitly
because the live service does not always apply documented defaults. Media must already be hosted URLs:
the SDK uploads first, so :func:`media_needing_upload` and :func:`with_hosted_media` are the hooks for that.

:func:`check_wire_payload` reads a body the way the provider would, for tests (a test may plug it into the local
emulator as its ``input_checker``; the emulator itself never imports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kie_async.catalogue.request_models import NormalizedMedia, NormalizedRequest, ValidationResult
from kie_async.catalogue.specs import (
    FieldSpec,
    ModelRegistry,
    load_registry,
)
from kie_async.catalogue.validate import validate_request
from kie_async.catalogue.wire_parse import best_wire_parse
from kie_async.core.errors import KieError
from kie_async.wire.api_models import CreateTaskPayload


class RequestNotReadyError(KieError):
    """The request is not in a submittable state; the message lists what blocks it."""

    hint = "run validate_request() and fix the listed fields"


class MediaNotUploadedError(KieError):
    """Some media are still local files or bytes; Kie.ai only takes hosted URLs."""

    hint = "upload them first (KieSession.upload_file) and apply with_hosted_media()"


def media_needing_upload(normalized: NormalizedRequest) -> list[NormalizedMedia]:
    """Media that are local paths or in-memory bytes, in request order (what the pipeline must upload)."""
    return [m for m in normalized.media if not m.is_hosted]


def with_hosted_media(normalized: NormalizedRequest, mapping: Mapping[str, str]) -> NormalizedRequest:
    """Return a copy where each media item whose id is in ``mapping`` now points at the hosted URL.

    Keys are media ids (``"images[0]"``) as in :func:`media_needing_upload`; unknown ids are an error so a
    typo cannot silently leave a local path in the payload.
    """
    known = {m.id for m in normalized.media}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise KeyError(f"no media with id(s) {unknown}; known: {sorted(known)}")
    media = []
    for item in normalized.media:
        url = mapping.get(item.id)
        if url is None:
            media.append(item)
            continue
        media.append(item.model_copy(update={"source_type": "url", "value": url, "data": None}))
    return normalized.model_copy(update={"media": media})


def to_wire(spec: FieldSpec, value: Any) -> Any:
    """Convert a normalized value to its wire form (numbers-as-strings where the provider wants strings)."""
    if value is None:
        return None
    if spec.wire == "string" and spec.type in ("integer", "number"):
        return str(value)
    if spec.type == "list" and spec.items is not None and isinstance(value, list):
        return [to_wire(spec.items, v) for v in value]
    if spec.type == "object" and spec.fields and isinstance(value, dict):
        return {k: to_wire(spec.fields[k], v) if k in spec.fields else v for k, v in value.items()}
    return value


def build_submission_payload(
    request: ValidationResult | NormalizedRequest,
    *,
    callback_url: str | None = None,
    registry: ModelRegistry | None = None,
) -> CreateTaskPayload:
    """Build the ``createTask`` body for a submittable request whose media are all hosted.

    The prompt sent is ``final_prompt_used`` (the enhanced prompt once applied), falling back to the raw one.
    Raises :class:`RequestNotReadyError` or :class:`MediaNotUploadedError` rather than send a doomed task.
    """
    reg = registry or load_registry()
    result = (
        request if isinstance(request, ValidationResult) else validate_request(request, registry=reg, check_files=False)
    )
    if not result.is_submittable:
        raise RequestNotReadyError(f"{result.model_key} is {result.state}: {result.summary()}")
    normalized = result.normalized
    pending = media_needing_upload(normalized)
    if pending:
        ids = ", ".join(m.id for m in pending)
        raise MediaNotUploadedError(f"media not uploaded yet: {ids}")
    spec = reg.get(normalized.model_key)
    mode = spec.mode(normalized.task_mode or "")
    if mode is None or normalized.provider_model is None:
        raise RequestNotReadyError(f"{spec.key}: no task mode resolved")
    body: dict[str, Any] = {}
    prompt = normalized.prompt
    if spec.prompt.accepted and prompt is not None and prompt.strip():
        body[spec.prompt.field] = prompt
    for slot in mode.slots:
        urls = [m.value for m in normalized.media if m.slot == slot.name and m.value]
        if not urls:
            continue
        if slot.shape == "scalar":
            body[slot.field] = urls[0]
        else:
            existing = body.setdefault(slot.field, [])
            existing.extend(urls)
    for name, opt in spec.options.items():
        value = normalized.options.get(name)
        if value is None or name in result.dropped_fields:
            continue
        body[name] = to_wire(opt, value)
    body.update(normalized.extra_options)  # the caller's escape hatch: verbatim, after everything we know
    callback = callback_url or normalized.callback_url
    return CreateTaskPayload(
        model=normalized.provider_model,
        input=body,
        callback_url=callback,
        transport=None if spec.transport.is_market else spec.transport,
        progress_callback_url=callback if spec.progress_callback_field else None,
        progress_field=spec.progress_callback_field,
    )


# ---------------------------------------------------------------- reading a wire body back


def check_wire_payload(model_id: str, input: dict[str, Any]) -> list[str]:
    """Problems the provider would find in a createTask ``input`` for ``model_id``; empty means accepted."""
    if not isinstance(input, dict):
        return ["input: must be a JSON object"]
    parsed = best_wire_parse(model_id, input)
    if parsed is None:
        return [f"model: {model_id!r} is not a supported model"]
    return list(parsed.problems)
