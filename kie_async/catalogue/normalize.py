"""Normalization: turn a loose user request into a typed one, using only the model spec.

Aliases resolve to model keys, media are classified (local path, URL, asset, bytes) and placed into the
slots of a task mode, options are coerced ("5" -> 5) and defaults are filled, each with its reason.
Nothing here raises on bad input: problems are collected so validation can explain all of them at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from kie_async.catalogue.request_models import (
    DefaultedField,
    ImpossibleInput,
    MediaInput,
    MediaItem,
    MissingInput,
    NormalizationIssues,
    NormalizedMedia,
    NormalizedRequest,
    RawUserRequest,
    WarningDetail,
)
from kie_async.catalogue.specs import (
    TASK_MODE_NAMES,
    ConditionContext,
    FieldSpec,
    MediaKind,
    MediaSlot,
    ModelRegistry,
    ModelSpec,
    TaskModeSpec,
    all_hold,
    load_registry,
    suggest_fix,
)

_TASK_MODE_ALIASES = {
    "t2i": "text_to_image",
    "text2image": "text_to_image",
    "edit": "image_edit",
    "i2i": "image_edit",
    "image_to_image": "image_edit",
    "t2v": "text_to_video",
    "text2video": "text_to_video",
    "i2v": "image_to_video",
    "image2video": "image_to_video",
    "first_last": "first_last_frames",
    "first_last_frame": "first_last_frames",
    "first_and_last_frame": "first_last_frames",
    "reference": "multimodal_reference",
    "multimodal": "multimodal_reference",
    "reference_to_video": "multimodal_reference",
    "motion": "motion_control",
}
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_INT_RE = re.compile(r"^\s*[+-]?\d+(\.0*)?\s*s?\s*$")
_NUM_RE = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*$")


def canonical_task_mode(name: str) -> str:
    """Map what users type ("i2v", "image-to-video") to a task mode name; unknown names pass through."""
    cleaned = re.sub(r"[\s\-+]+", "_", name.strip().lower())
    return _TASK_MODE_ALIASES.get(cleaned, cleaned)


# ---------------------------------------------------------------- value coercion

CoercionError = tuple[str, str]
"""(path suffix such as '[0].duration', message)."""


def coerce_value(spec: FieldSpec, value: Any, *, strict_wire: bool = False) -> tuple[Any, list[CoercionError]]:
    """Coerce ``value`` to the field's type; with ``strict_wire`` accept only the exact JSON type sent on the wire.

    Returns the coerced value and the type errors found (empty when it fits).
    """
    if value is None:
        return None, []
    kind = spec.type
    if strict_wire and spec.wire == "string" and kind in ("integer", "number"):
        if not isinstance(value, str):
            return value, [("", f'must be a string on the wire (e.g. "{value}"), got {type(value).__name__}')]
        return coerce_value(spec, value, strict_wire=False)
    if kind == "integer":
        return _coerce_int(value, strict_wire)
    if kind == "number":
        return _coerce_number(value, strict_wire)
    if kind == "boolean":
        return _coerce_bool(value, strict_wire)
    if kind == "enum":
        return _coerce_enum(spec, value, strict_wire)
    if kind == "string":
        if isinstance(value, str):
            return value, []
        if not strict_wire and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value), []
        return value, [("", f"must be text, got {type(value).__name__}")]
    if kind == "list":
        return _coerce_list(spec, value, strict_wire)
    return _coerce_object(spec, value, strict_wire)


def _coerce_int(value: Any, strict: bool) -> tuple[Any, list[CoercionError]]:
    if isinstance(value, bool):
        return value, [("", "must be a whole number, got a boolean")]
    if isinstance(value, int):
        return value, []
    if not strict and isinstance(value, float) and value.is_integer():
        return int(value), []
    if not strict and isinstance(value, str) and _INT_RE.match(value):
        return int(float(value.strip().rstrip("s").strip())), []
    return value, [("", f"must be a whole number, got {value!r}")]


def _coerce_number(value: Any, strict: bool) -> tuple[Any, list[CoercionError]]:
    if isinstance(value, bool):
        return value, [("", "must be a number, got a boolean")]
    if isinstance(value, int | float):
        return value, []
    if not strict and isinstance(value, str) and _NUM_RE.match(value):
        return float(value), []
    return value, [("", f"must be a number, got {value!r}")]


def _coerce_bool(value: Any, strict: bool) -> tuple[Any, list[CoercionError]]:
    if isinstance(value, bool):
        return value, []
    if not strict and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE, []
    if not strict and isinstance(value, int) and value in (0, 1):
        return bool(value), []
    return value, [("", f"must be true or false, got {value!r}")]


def _coerce_enum(spec: FieldSpec, value: Any, strict: bool) -> tuple[Any, list[CoercionError]]:
    allowed = spec.allowed or []
    if value in allowed and not isinstance(value, bool):
        return value, []
    if isinstance(value, str) and spec.value_aliases:
        # Another documented spelling of an allowed value: accepted even on the strict wire path, because the
        # provider's own docs disagree on which one it takes (see the spec's provenance).
        folded = {k.lower(): v for k, v in spec.value_aliases.items()}
        if value.strip().lower() in folded:
            return folded[value.strip().lower()], []
    if not strict and isinstance(value, str | int | float) and not isinstance(value, bool):
        wanted = str(value).strip().lower()
        for option in allowed:
            if str(option).lower() == wanted:
                return option, []
    # A value of the right type but not in the list is a range problem, reported by validation.
    if isinstance(value, str) and all(isinstance(a, str) for a in allowed):
        return value, []
    return value, [("", f"must be one of {allowed}, got {value!r}")]


def _coerce_list(spec: FieldSpec, value: Any, strict: bool) -> tuple[Any, list[CoercionError]]:
    if isinstance(value, tuple) and not strict:
        value = list(value)
    if not isinstance(value, list):
        return value, [("", f"must be a list, got {type(value).__name__}")]
    assert spec.items is not None
    out: list[Any] = []
    errors: list[CoercionError] = []
    for index, item in enumerate(value):
        coerced, item_errors = coerce_value(spec.items, item, strict_wire=strict)
        out.append(coerced)
        errors.extend((f"[{index}]{path}", msg) for path, msg in item_errors)
    return out, errors


def _coerce_object(spec: FieldSpec, value: Any, strict: bool) -> tuple[Any, list[CoercionError]]:
    if not isinstance(value, dict):
        return value, [("", f"must be an object, got {type(value).__name__}")]
    assert spec.fields is not None
    out: dict[str, Any] = {}
    errors: list[CoercionError] = []
    for key, item in value.items():
        sub = spec.fields.get(str(key))
        if sub is None:
            errors.append((f".{key}", f"is not a known field (known: {', '.join(spec.fields)})"))
            continue
        coerced, item_errors = coerce_value(sub, item, strict_wire=strict)
        out[str(key)] = coerced
        errors.extend((f".{key}{path}", msg) for path, msg in item_errors)
    return out, errors


# ---------------------------------------------------------------- media


def _extension(name: str | None) -> str | None:
    if not name:
        return None
    suffix = PurePosixPath(name).suffix.lower().lstrip(".")
    return suffix or None


def classify_media(request: RawUserRequest) -> list[NormalizedMedia]:
    """Classify every media item (source type, kind, extension); slots are assigned later."""
    out: list[NormalizedMedia] = []
    groups: Sequence[tuple[str, MediaKind, list[MediaItem]]] = (
        ("images", "image", request.images),
        ("videos", "video", request.videos),
        ("audios", "audio", request.audios),
    )
    for list_name, list_kind, items in groups:
        for index, item in enumerate(items):
            out.append(_classify_one(f"{list_name}[{index}]", list_kind, item))
    return out


def _classify_one(media_id: str, list_kind: MediaKind, item: MediaItem) -> NormalizedMedia:
    hint = item if isinstance(item, MediaInput) else None
    source = hint.source if hint else item
    assert not isinstance(source, MediaInput)
    kind = hint.kind if hint and hint.kind else list_kind
    common: dict[str, Any] = {
        "id": media_id,
        "kind": kind,
        "role": hint.role if hint else None,
        "duration_seconds": hint.duration_seconds if hint else None,
    }
    filename = hint.filename if hint else None
    if isinstance(source, bytes):
        return NormalizedMedia(
            source_type="bytes", data=source, filename=filename, extension=_extension(filename), **common
        )
    if isinstance(source, Path):
        path = source.expanduser()
        return NormalizedMedia(
            source_type="local_path",
            value=str(path),
            filename=filename or path.name,
            extension=_extension(filename or path.name),
            **common,
        )
    text = source.strip()
    lowered = text.lower()
    if lowered.startswith(("http://", "https://")):
        url_path = urlparse(text).path
        return NormalizedMedia(
            source_type="url", value=text, filename=filename, extension=_extension(filename or url_path), **common
        )
    if "://" in lowered and not lowered.startswith("file://"):
        return NormalizedMedia(
            source_type="asset", value=text, filename=filename, extension=_extension(filename), **common
        )
    if lowered.startswith("file://"):
        # A file URL is another spelling of a local path (file pickers, browsers): it is read and sniffed like
        # one. On another host it cannot be read here; leaving it a URL gets it refused with the accepted schemes.
        parts = urlparse(text)
        if parts.netloc.lower() not in ("", "localhost"):
            return NormalizedMedia(
                source_type="asset", value=text, filename=filename, extension=_extension(filename), **common
            )
        text = unquote(parts.path)
    path = Path(text).expanduser()
    return NormalizedMedia(
        source_type="local_path",
        value=str(path),
        filename=filename or path.name,
        extension=_extension(filename or path.name),
        **common,
    )


@dataclass
class MediaPlan:
    """Media placed into one task mode's slots, with what did not fit."""

    spec: ModelSpec
    mode: TaskModeSpec | None
    media: list[NormalizedMedia]
    missing: list[MissingInput] = field(default_factory=list)
    impossible: list[ImpossibleInput] = field(default_factory=list)
    order: int = 0

    @property
    def score(self) -> tuple[int, int, int]:
        return (len(self.impossible), len(self.missing), self.order)


def plan_media(spec: ModelSpec, mode: TaskModeSpec, media: Sequence[NormalizedMedia], order: int = 0) -> MediaPlan:
    """Place media into ``mode``'s slots: labelled media by role first, then unlabelled ones in slot order."""
    counts = dict.fromkeys((s.name for s in mode.slots), 0)
    placed: dict[str, NormalizedMedia] = {}
    plan = MediaPlan(spec=spec, mode=mode, media=[], order=order)
    labelled = [m for m in media if m.role is not None]
    unlabelled = [m for m in media if m.role is None]
    for item in [*labelled, *unlabelled]:
        placed[item.id] = _place_item(spec, mode, media, item, counts, plan.impossible)
    plan.missing.extend(_slot_shortfalls(spec, mode, counts))
    _check_media_total(spec, mode, sum(counts.values()), plan)
    plan.media = [placed[m.id] for m in media]
    return plan


def _place_item(
    spec: ModelSpec,
    mode: TaskModeSpec,
    media: Sequence[NormalizedMedia],
    item: NormalizedMedia,
    counts: dict[str, int],
    impossible: list[ImpossibleInput],
) -> NormalizedMedia:
    """``item`` in the first free slot that takes it (counted in ``counts``), else as given, with why it did not fit."""
    fits = [
        s
        for s in mode.slots
        if s.kind == item.kind and (item.role in s.roles if item.role is not None else s.accepts_unroled)
    ]
    free = [s for s in fits if counts[s.name] < s.max]
    if free:
        slot = free[0]
        counts[slot.name] += 1
        role = item.role if item.role is not None else slot.roles[0]
        return item.model_copy(update={"slot": slot.name, "role": role})
    if fits:
        impossible.append(_slot_full(spec, mode, media, item, fits[0]))
    else:
        impossible.append(_not_taken(spec, mode, item))
    return item


def _slot_full(
    spec: ModelSpec, mode: TaskModeSpec, media: Sequence[NormalizedMedia], item: NormalizedMedia, slot: MediaSlot
) -> ImpossibleInput:
    """A slot that takes ``item`` but is full: the value shown is how many such media were given."""
    given = sum(1 for m in media if m.kind == item.kind and (m.role in slot.roles or m.role is None))
    return ImpossibleInput(
        field=slot.field,
        value=given,
        rule="max_items",
        message=f"{spec.key} ({mode.name}) takes at most {slot.max} {item.kind}(s) in {slot.field}; "
        f"{item.id} does not fit",
        fix=f"remove {item.kind}s until at most {slot.max} remain",
    )


def _not_taken(spec: ModelSpec, mode: TaskModeSpec, item: NormalizedMedia) -> ImpossibleInput:
    """No slot of the mode takes ``item``: its kind (naming the modes that do) or its role."""
    kinds_here = sorted({s.kind for s in mode.slots})
    if not any(s.kind == item.kind for s in mode.slots):
        message = f"{spec.key} ({mode.name}) takes no {item.kind} input"
        fix = (
            f"remove {item.id}"
            + (f"; this mode takes: {', '.join(kinds_here)}" if kinds_here else "")
            + _other_modes_hint(spec, mode, item.kind)
        )
        rule = "media_kind"
    else:
        roles = sorted({r for s in mode.slots if s.kind == item.kind for r in s.roles})
        message = (
            f"{item.id} has role {item.role!r}, which {spec.key} ({mode.name}) does not take for "
            f"{item.kind}s (roles here: {', '.join(roles)}); modes cannot be mixed"
        )
        fix = f"give {item.id} one of the roles {roles}, or remove it"
        rule = "media_role"
    return ImpossibleInput(field=item.id, value=item.role or item.kind, rule=rule, message=message, fix=fix)


def _slot_shortfalls(spec: ModelSpec, mode: TaskModeSpec, counts: dict[str, int]) -> list[MissingInput]:
    """Each slot holding fewer media than its minimum."""
    missing: list[MissingInput] = []
    for slot in mode.slots:
        if counts[slot.name] < slot.min:
            need = slot.min - counts[slot.name]
            missing.append(
                MissingInput(
                    field=slot.field,
                    value=counts[slot.name],
                    rule="min_items",
                    message=f"{spec.key} ({mode.name}) needs {slot.min} {slot.kind}(s) as {slot.name} in {slot.field}",
                    fix=f"add {need} {slot.kind}" + (f" with role {slot.roles[0]!r}" if slot.roles else ""),
                )
            )
    return missing


def _check_media_total(spec: ModelSpec, mode: TaskModeSpec, total: int, plan: MediaPlan) -> None:
    """The mode's bounds on all media together: too few is missing input, too many is impossible."""
    if total < mode.min_total_media:
        fields = "/".join(s.field for s in mode.slots)
        plan.missing.append(
            MissingInput(
                field=fields,
                value=total,
                rule="min_total_media",
                message=f"{spec.key} ({mode.name}) needs at least {mode.min_total_media} reference media item(s)",
                fix="add reference images, videos or audio",
            )
        )
    if mode.max_total_media is not None and total > mode.max_total_media:
        plan.impossible.append(
            ImpossibleInput(
                field="/".join(s.field for s in mode.slots),
                value=total,
                rule="max_total_media",
                message=f"{spec.key} ({mode.name}) takes at most {mode.max_total_media} media items in all",
                fix=f"remove {total - mode.max_total_media} item(s)",
            )
        )


def _other_modes_hint(spec: ModelSpec, mode: TaskModeSpec, kind: str) -> str:
    others = [m.name for m in spec.task_modes if m is not mode and any(s.kind == kind for s in m.slots)]
    return f" (or use task mode {', '.join(others)})" if others else ""


def choose_plan(
    candidates: Sequence[ModelSpec], media: Sequence[NormalizedMedia], requested_mode: str | None
) -> MediaPlan:
    """Pick the spec and task mode that fit the media best: fewest impossible, then fewest missing, then spec order."""
    best: MediaPlan | None = None
    wanted = canonical_task_mode(requested_mode) if requested_mode else None
    order = 0
    for spec in candidates:
        modes = [m for m in spec.task_modes if wanted is None or m.name == wanted]
        for mode in modes:
            plan = plan_media(spec, mode, media, order)
            order += 1
            if best is None or plan.score < best.score:
                best = plan
    if best is not None:
        return best
    spec = candidates[0]
    known = ", ".join(m.name for m in spec.task_modes)
    valid = wanted in TASK_MODE_NAMES
    plan = MediaPlan(spec=spec, mode=None, media=list(media))
    plan.impossible.append(
        ImpossibleInput(
            field="task_mode",
            value=requested_mode,
            rule="task_mode",
            message=(
                f"{spec.key} does not support task mode {wanted!r}"
                if valid
                else f"{requested_mode!r} is not a task mode"
            ),
            fix=f"use one of: {known} (or leave task_mode out to detect it from the media)",
        )
    )
    return plan


# ---------------------------------------------------------------- options and defaults


def _coerce_options(spec: ModelSpec, request: RawUserRequest) -> tuple[dict[str, Any], list[ImpossibleInput]]:
    explicit: dict[str, Any] = {}
    problems: list[ImpossibleInput] = []
    raw_items: list[tuple[str, Any]] = list(request.options.items())
    if request.multi_prompt is not None:
        raw_items.append(("multi_prompt", request.multi_prompt))
    for user_name, raw in raw_items:
        name = spec.option_name(user_name)
        if name is None:
            problems.append(
                ImpossibleInput(
                    field=user_name,
                    value=raw,
                    rule="unknown_option",
                    message=f"{spec.key} has no option {user_name!r}",
                    fix=suggest_fix(
                        user_name.replace("-", "_"),
                        [*spec.options, *(a for o in spec.options.values() for a in o.aliases)],
                        f"use one of: {', '.join(spec.options) or '(none)'}",
                    ),
                )
            )
            continue
        if name in explicit:
            problems.append(
                ImpossibleInput(
                    field=name,
                    value=raw,
                    rule="duplicate_option",
                    message=f"option {name!r} was given twice (as {user_name!r} and another name)",
                    fix=f"pass {name!r} once",
                )
            )
            continue
        if raw is None:
            continue
        value, errors = coerce_value(spec.options[name], raw)
        if errors:
            for path, msg in errors:
                problems.append(
                    ImpossibleInput(
                        field=f"{name}{path}",
                        value=raw,
                        rule="type",
                        message=f"{name}{path} {msg}",
                        fix=_type_fix(spec.options[name]),
                    )
                )
            continue
        explicit[name] = value
    return explicit, problems


def _type_fix(spec: FieldSpec) -> str:
    if spec.allowed:
        return f"use one of {spec.allowed}"
    if spec.type == "integer":
        bounds = _bounds(spec)
        return "pass a whole number" + (f" {bounds}" if bounds else "")
    if spec.type == "boolean":
        return "pass true or false"
    if spec.type == "list":
        return "pass a list"
    if spec.type == "object":
        return f"pass an object with fields {', '.join(spec.fields or {})}"
    return f"pass a {spec.type}"


def _bounds(spec: FieldSpec) -> str:
    if spec.min is not None and spec.max is not None:
        return f"from {spec.min:g} to {spec.max:g}"
    if spec.min is not None:
        return f"of at least {spec.min:g}"
    if spec.max is not None:
        return f"of at most {spec.max:g}"
    return ""


def condition_context(
    values: dict[str, Any],
    *,
    prompt: str | None,
    callback_url: str | None,
    task_mode: str | None,
    filled_slots: frozenset[str],
) -> ConditionContext:
    return ConditionContext(
        values={**values, "prompt": prompt, "callback_url": callback_url},
        task_mode=task_mode,
        filled_slots=filled_slots,
    )


def fill_defaults(
    spec: ModelSpec,
    explicit: dict[str, Any],
    *,
    prompt: str | None,
    callback_url: str | None,
    task_mode: str | None,
    filled_slots: frozenset[str],
) -> dict[str, tuple[Any, str]]:
    """Defaults for unset fields; conditional defaults may depend on each other, so iterate to a fixpoint."""
    defaults: dict[str, tuple[Any, str]] = {}
    for _ in range(len(spec.options) + 1):
        ctx = condition_context(
            {**explicit, **{k: v for k, (v, _) in defaults.items()}},
            prompt=prompt,
            callback_url=callback_url,
            task_mode=task_mode,
            filled_slots=filled_slots,
        )
        fresh: dict[str, tuple[Any, str]] = {}
        for name, opt in spec.options.items():
            if name in explicit:
                continue
            chosen: tuple[Any, str] | None = None
            for cond in opt.default_when:
                if all_hold(cond.when, ctx):
                    chosen = (cond.value, cond.reason)
                    break
            if chosen is None and opt.has_default and opt.send_default:
                why = (
                    "documented default"
                    if not opt.provenance or opt.provenance.status != "sdk_choice"
                    else "SDK default (the provider documents none)"
                )
                chosen = (opt.default, why + ("; sent explicitly" if opt.required else ""))
            if chosen is not None:
                fresh[name] = chosen
        if fresh == defaults:
            break
        defaults = fresh
    return defaults


# ---------------------------------------------------------------- entry point


_RESERVED_WIRE = frozenset({"model", "callBackUrl", "input"})


def _extra_options(
    spec: ModelSpec, request: RawUserRequest
) -> tuple[dict[str, Any], list[ImpossibleInput], list[WarningDetail]]:
    """``extra_options``: sent as written, never checked against the spec, always reported.

    Only what could not mean "a field Kie.ai added" is refused: a name the spec already knows (it belongs in
    ``options``, where it is checked), and a value JSON cannot carry (NaN, bytes, objects).
    """
    known = {
        spec.prompt.field,
        *spec.options,
        *(a for o in spec.options.values() for a in o.aliases),
        *(s.field for m in spec.task_modes for s in m.slots),
    }
    extras: dict[str, Any] = {}
    impossible: list[ImpossibleInput] = []
    warnings: list[WarningDetail] = []
    for name, value in request.extra_options.items():
        field = f"extra_options.{name}"
        if not name.strip() or name in _RESERVED_WIRE:
            impossible.append(
                ImpossibleInput(
                    field=field,
                    value=name,
                    rule="extra_option_name",
                    message=f"{name!r} cannot be an input field name",
                    fix="use the exact field name from Kie.ai's docs",
                )
            )
            continue
        if name in known or spec.option_name(name) is not None:
            impossible.append(
                ImpossibleInput(
                    field=field,
                    value=value,
                    rule="extra_option_known",
                    message=f"{name} is a field the {spec.key} spec knows",
                    fix=f"pass it in options (options={{{spec.option_name(name) or name!r}: ...}}), "
                    "where it is checked",
                )
            )
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            impossible.append(
                ImpossibleInput(
                    field=field,
                    value=repr(value)[:80],
                    rule="extra_option_value",
                    message=f"{name}: the value is not plain JSON",
                    fix="use strings, finite numbers, booleans, lists and objects",
                )
            )
            continue
        extras[name] = value
        warnings.append(
            WarningDetail(
                field=field,
                value=value,
                rule="extra_option",
                message=f"{name} is not in the {spec.key} spec: sent to Kie.ai verbatim, unchecked and unpriced",
                fix="check the provider's docs for it; once confirmed, add it to the model spec",
            )
        )
    return extras, impossible, warnings


def unencodable_text(value: Any, field: str) -> list[ImpossibleInput]:
    """Every string in ``value`` that cannot be sent as UTF-8 (a lone surrogate), named by field and position.

    Such text comes from a non-UTF-8 byte in argv or half an emoji cut by a JSON client. Sent, it is bought,
    and then nothing downstream can write it (run record, journal): refuse it before the wire instead.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")  # C speed on the hot path; the error says where the first bad character is
        except UnicodeEncodeError as exc:
            char = value[exc.start]
            return [
                ImpossibleInput(
                    field=field,
                    value=None,
                    rule="unencodable_text",  # the text itself cannot be written anywhere
                    message=f"{field} has a character at position {exc.start} that is not valid text "
                    f"(U+{ord(char):04X}: half of an emoji, or a byte that is not UTF-8)",
                    fix=f"retype or remove that character of {field}",
                )
            ]
        return []
    if isinstance(value, dict):
        return [issue for k, v in value.items() for issue in unencodable_text(v, f"{field}.{k}")]
    if isinstance(value, list | tuple):
        return [issue for i, v in enumerate(value) for issue in unencodable_text(v, f"{field}[{i}]")]
    return []


def _request_text_problems(request: RawUserRequest) -> list[ImpossibleInput]:
    fields = (
        "model_key",
        "task_mode",
        "prompt",
        "options",
        "callback_url",
        "multi_prompt",
        "prompt_preset",
        "extra_options",
    )
    return [issue for name in fields for issue in unencodable_text(getattr(request, name), name)]


def normalize_request(request: RawUserRequest, *, registry: ModelRegistry | None = None) -> NormalizedRequest:
    """Resolve, classify, coerce and fill defaults. Never raises on bad input; see ``issues``."""
    text_problems = _request_text_problems(request)
    reg = registry or load_registry()
    media = classify_media(request)
    candidates = reg.candidates(request.model_key)
    if not candidates:
        return _unknown_model(request, reg, media, text_problems)
    plan = choose_plan(candidates, media, request.task_mode)
    spec = plan.spec
    explicit, option_problems = _coerce_options(spec, request)
    extras, extra_problems, extra_warnings = _extra_options(spec, request)
    mode_name = plan.mode.name if plan.mode else None
    filled = frozenset(m.slot for m in plan.media if m.slot is not None)
    defaults = fill_defaults(
        spec,
        explicit,
        prompt=request.prompt,
        callback_url=request.callback_url,
        task_mode=mode_name,
        filled_slots=filled,
    )
    return NormalizedRequest(
        model_key=spec.key,
        requested_model_key=request.model_key,
        provider_model=plan.mode.provider_model if plan.mode else None,
        task_mode=mode_name,
        input_pattern=plan.mode.input_pattern if plan.mode else None,
        output_kind=spec.output_kind,
        raw_prompt=request.prompt,
        final_prompt_used=request.prompt,
        prompt_preset=request.prompt_preset,
        options=_merged_options(spec, explicit, defaults),
        extra_options=extras,
        explicit_options=list(explicit),
        defaulted=_defaulted_fields(defaults),
        media=plan.media,
        callback_url=request.callback_url,
        issues=NormalizationIssues(
            missing=plan.missing,
            impossible=[*text_problems, *plan.impossible, *option_problems, *extra_problems],
            warnings=extra_warnings,
        ),
    )


def _unknown_model(
    request: RawUserRequest,
    reg: ModelRegistry,
    media: list[NormalizedMedia],
    text_problems: list[ImpossibleInput],
) -> NormalizedRequest:
    """The request as far as it goes without a spec, its model key the one impossible input (with suggestions)."""
    issue = ImpossibleInput(
        field="model_key",
        value=request.model_key,
        rule="unknown_model",
        message=f"unknown model {request.model_key!r}",
        fix=suggest_fix(
            request.model_key,
            reg.suggest(request.model_key),
            "use a key from the catalogue: `kie-async models`, or load_registry().model_keys()",
        ),
    )
    return NormalizedRequest(
        model_key=request.model_key,
        requested_model_key=request.model_key,
        known_model=False,
        raw_prompt=request.prompt,
        final_prompt_used=request.prompt,
        media=media,
        callback_url=request.callback_url,
        prompt_preset=request.prompt_preset,
        issues=NormalizationIssues(impossible=[issue, *text_problems]),
    )


def _merged_options(spec: ModelSpec, explicit: dict[str, Any], defaults: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    """The given options, then the defaults, in spec order so payloads are stable."""
    options: dict[str, Any] = {}
    for name in spec.options:
        if name in explicit:
            options[name] = explicit[name]
        elif name in defaults:
            options[name] = defaults[name][0]
    return options


def _defaulted_fields(defaults: dict[str, tuple[Any, str]]) -> list[DefaultedField]:
    """Each default filled in, with the reason it applies."""
    return [
        DefaultedField(
            field=name,
            value=value,
            rule="default",
            message=f"{name} not given; using {value!r} ({why})",
            fix=f"pass {name}=... to choose another value",
        )
        for name, (value, why) in defaults.items()
    ]
