"""Validation: decide whether a normalized request can be submitted, and explain every reason it cannot.

The verdict is one of five states (``ready``, ``ready_with_defaults``, ``ready_with_warning``,
``needs_input``, ``invalid``) plus structured details that each name the field, the value, the rule and
the fix. It is pure apart from reading local media files' first bytes and headers (``stat``, magic numbers, a lazy
pyvips header read), so it is cheap enough to run again after prompt enhancement; in async code call it from a
worker thread.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from kie_async.catalogue.arguments import check_request_arg
from kie_async.catalogue.normalize import condition_context, normalize_request
from kie_async.catalogue.request_models import (
    DefaultedField,
    ImpossibleInput,
    MissingInput,
    NormalizedMedia,
    NormalizedRequest,
    RawUserRequest,
    ValidationResult,
    ValidationState,
    WarningDetail,
)
from kie_async.catalogue.spec_limits import (
    conditional_problems,
    field_extra_problems,
    pixel_problems,
    slot_count_problems,
    slot_size_problems,
)
from kie_async.catalogue.specs import (
    ConditionContext,
    FieldSpec,
    MediaSlot,
    ModelRegistry,
    ModelSpec,
    RuleSpec,
    TaskModeSpec,
    all_hold,
    load_registry,
    suggest_fix,
)
from kie_async.core.image_header import image_size, video_size
from kie_async.core.media_sniff import SniffedMedia, check_media, header_problem, input_fix, sniff_head

_MB = 1024 * 1024
_SAME_FORMAT = {"jpeg": "jpg", "tif": "tiff", "webm": "mkv"}


def sniff_format(header: bytes) -> str | None:
    """Guess a media format from a file's first bytes (magic numbers); None when unsure.

    The name can lie (a renamed file, bytes with no name); the header tells the kind the provider will see.
    Formats are named like file extensions (``jpg``, ``mkv`` for any Matroska/WebM) so they compare with
    the spec's ``formats`` lists.
    """
    found = sniff_head(header)
    return _same(found.extension) if found.extension is not None else None


def _same(fmt: str) -> str:
    return _SAME_FORMAT.get(fmt, fmt)


def check_field_value(spec: FieldSpec, value: Any, path: str) -> list[ImpossibleInput]:
    """Range/length/allowed-value problems of an already type-coerced value (recursing into lists and objects)."""
    problems: list[ImpossibleInput] = []

    def bad(rule: str, message: str, fix: str, shown: Any = value, where: str = path) -> None:
        problems.append(ImpossibleInput(field=where, value=shown, rule=rule, message=message, fix=fix))

    if spec.allowed is not None and value not in spec.allowed:
        bad(
            "allowed",
            f"{path}={value!r} is not allowed",
            suggest_fix(value, spec.allowed, f"use one of {spec.allowed}"),
        )
        return problems
    if spec.type in ("integer", "number") and isinstance(value, int | float) and not isinstance(value, bool):
        if spec.min is not None and value < spec.min:
            bad("min", f"{path}={value!r} is below the minimum {spec.min:g}", f"use a value from {_range(spec)}")
        if spec.max is not None and value > spec.max:
            bad("max", f"{path}={value!r} is above the maximum {spec.max:g}", f"use a value from {_range(spec)}")
    if spec.type == "string" and isinstance(value, str):
        _check_chars(spec, value, path, bad)
    if spec.type == "list" and isinstance(value, list):
        if spec.min_items is not None and len(value) < spec.min_items:
            bad(
                "min_items",
                f"{path} has {len(value)} item(s); at least {spec.min_items} needed",
                f"add items up to {spec.min_items}",
                len(value),
            )
        if spec.max_items is not None and len(value) > spec.max_items:
            bad(
                "max_items",
                f"{path} has {len(value)} item(s); at most {spec.max_items} allowed",
                f"remove {len(value) - spec.max_items} item(s)",
                len(value),
            )
        if spec.items is not None:
            for index, item in enumerate(value):
                problems.extend(check_field_value(spec.items, item, f"{path}[{index}]"))
    if spec.type == "object" and isinstance(value, dict) and spec.fields:
        for name, sub in spec.fields.items():
            sub_path = f"{path}.{name}"
            if value.get(name) is None:
                if sub.required:
                    bad("required", f"{sub_path} is required", f"add {name} to each item of {path}", None, sub_path)
                continue
            problems.extend(check_field_value(sub, value[name], sub_path))
    problems.extend(field_extra_problems(spec, value, path))
    return problems


def _check_chars(spec: FieldSpec, value: str, path: str, bad: Any) -> None:
    if spec.min_chars is not None and len(value) < spec.min_chars:
        bad(
            "min_chars",
            f"{path} has {len(value)} characters; at least {spec.min_chars} needed",
            f"write at least {spec.min_chars} characters",
            len(value),
        )
    if spec.max_chars is not None and len(value) > spec.max_chars:
        bad(
            "max_chars",
            f"{path} has {len(value)} characters; at most {spec.max_chars} allowed",
            f"shorten it by {len(value) - spec.max_chars} characters",
            len(value),
        )


def _range(spec: FieldSpec) -> str:
    low = "-inf" if spec.min is None else f"{spec.min:g}"
    high = "+inf" if spec.max is None else f"{spec.max:g}"
    return f"{low} to {high}"


def _check_prompt(
    spec: ModelSpec,
    normalized: NormalizedRequest,
    ctx_values: dict[str, Any],
    missing: list[MissingInput],
    impossible: list[ImpossibleInput],
) -> None:
    rules = spec.prompt
    prompt = normalized.prompt
    ctx = condition_context(
        ctx_values,
        prompt=prompt,
        callback_url=normalized.callback_url,
        task_mode=normalized.task_mode,
        filled_slots=normalized.filled_slots,
    )
    needed = rules.required and not (rules.required_unless and all_hold(rules.required_unless, ctx))
    if not rules.accepted:
        if prompt is not None and prompt.strip():
            impossible.append(
                ImpossibleInput(
                    field=rules.field,
                    value=len(prompt),
                    rule="no_prompt",
                    message=f"{spec.key} takes no prompt; a prompt would be ignored or refused by the provider",
                    fix="leave the prompt out",
                )
            )
        return
    if prompt is None or not prompt.strip():
        if needed:
            missing.append(
                MissingInput(
                    field=rules.field,
                    value=prompt,
                    rule="required",
                    message=f"{spec.key} needs a prompt",
                    fix="pass prompt='...'",
                )
            )
        return
    if rules.min_chars is not None and len(prompt) < rules.min_chars:
        impossible.append(
            ImpossibleInput(
                field=rules.field,
                value=len(prompt),
                rule="min_chars",
                message=f"prompt has {len(prompt)} characters; {spec.key} needs at least {rules.min_chars}",
                fix=f"write at least {rules.min_chars} characters",
            )
        )
    if rules.max_chars is not None and len(prompt) > rules.max_chars:
        impossible.append(
            ImpossibleInput(
                field=rules.field,
                value=len(prompt),
                rule="max_chars",
                message=f"prompt has {len(prompt)} characters; {spec.key} allows at most {rules.max_chars}",
                fix=f"shorten the prompt by {len(prompt) - rules.max_chars} characters",
            )
        )


def check_media_item(
    item: NormalizedMedia, slot: MediaSlot, *, check_files: bool = True
) -> tuple[list[ImpossibleInput], list[WarningDetail]]:
    """Source, format, size and length checks for one placed media item."""
    impossible: list[ImpossibleInput] = _reference_problems(item, slot)
    warnings: list[WarningDetail] = []
    size: int | None = item.size_bytes
    content: Path | bytes | None = item.data
    if item.source_type == "local_path" and check_files:
        size, problem = _local_file_size(item)
        if problem is not None:
            impossible.append(problem)
            return impossible, warnings
        content = Path(item.value or "")
    sniffed: SniffedMedia | None = None
    if content is not None:
        sniffed, problem = _sniff_content(item, slot, content)
        if problem is not None:
            impossible.append(problem)
            return impossible, warnings
    fmt = _same(sniffed.extension) if sniffed is not None and sniffed.extension else item.extension
    _check_format(item, slot, fmt, sniffed, impossible, warnings)
    impossible.extend(_size_problems(item, slot, size))
    impossible.extend(_duration_problems(item, slot))
    if content is not None and sniffed is not None and not impossible:
        impossible.extend(_header_problems(item, slot, content, sniffed))
    return impossible, warnings


def _problem(item: NormalizedMedia, rule: str, message: str, fix: str, value: Any) -> ImpossibleInput:
    """One problem with ``item``, named by its id."""
    return ImpossibleInput(field=item.id, value=value, rule=rule, message=message, fix=fix)


def _reference_problems(item: NormalizedMedia, slot: MediaSlot) -> list[ImpossibleInput]:
    """A URL or asset reference that starts with none of the slot's ``url_prefixes``."""
    if item.source_type not in ("url", "asset"):
        return []
    value = item.value or ""
    if value.lower().startswith(tuple(p.lower() for p in slot.url_prefixes)):
        return []
    return [
        _problem(
            item,
            "url_scheme",
            f"{item.id} ({value}) is not a reference {slot.field} accepts",
            f"use a URL starting with one of {slot.url_prefixes}",
            value,
        )
    ]


def _local_file_size(item: NormalizedMedia) -> tuple[int | None, ImpossibleInput | None]:
    """A local file's size, or why it cannot be read (no such path, or not a regular file)."""
    path = Path(item.value or "")
    try:
        stat = path.stat()
    except OSError:
        return None, _problem(item, "file_exists", f"{item.id}: no such file {path}", "check the path", str(path))
    if not path.is_file():
        return None, _problem(
            item, "file_exists", f"{item.id}: {path} is not a regular file", "pass a file, not a folder", str(path)
        )
    return stat.st_size, None


def _sniff_content(
    item: NormalizedMedia, slot: MediaSlot, content: Path | bytes
) -> tuple[SniffedMedia | None, ImpossibleInput | None]:
    """What the bytes are, and why the slot cannot take them (the content decides, not the name)."""
    # A text file called .png must not be uploaded and paid for.
    check = check_media(content, slot.kind, decode=False)
    sniffed = check.sniffed
    if check.problem is not None and check.problem.rule == "media_kind" and sniffed is not None:
        found = _same(sniffed.extension or "")
        return sniffed, _problem(
            item,
            "media_kind",
            f"{item.id} contains {sniffed.kind} data ({found}), but {slot.field} takes {slot.kind}s",
            f"pass it as a {sniffed.kind} or pick the right file",
            found,
        )
    if check.problem is not None:
        return sniffed, _problem(
            item,
            check.problem.rule,
            f"{media_subject(item)} {check.problem.message}",
            input_fix(check.problem.rule, slot.kind, slot.formats),
            _shown(item),
        )
    return sniffed, None


def _check_format(
    item: NormalizedMedia,
    slot: MediaSlot,
    fmt: str | None,
    sniffed: SniffedMedia | None,
    impossible: list[ImpossibleInput],
    warnings: list[WarningDetail],
) -> None:
    """The format against the slot's list: a wrong one is impossible, an unknown one a warning (not for assets)."""
    if not slot.formats:
        return
    accepted = {_same(f) for f in slot.formats}
    if fmt is None:
        if item.source_type != "asset":
            warnings.append(
                WarningDetail(
                    field=item.id,
                    value=item.value or item.filename,
                    rule="format_unknown",
                    message=f"{item.id}: file type cannot be told from the name; {slot.field} takes "
                    f"{', '.join(slot.formats)}",
                    fix="use a name with a file extension (or pass MediaInput(filename=...))",
                )
            )
    elif _same(fmt) not in accepted:
        seen = "contains" if sniffed else "is"
        impossible.append(
            _problem(
                item,
                "format",
                f"{item.id} {seen} .{fmt}; {slot.field} takes {', '.join(slot.formats)}",
                f"convert it to one of {', '.join(slot.formats)}",
                fmt,
            )
        )


def _size_problems(item: NormalizedMedia, slot: MediaSlot, size: int | None) -> list[ImpossibleInput]:
    """The file size against the slot's ``max_mb``."""
    if size is not None and slot.max_mb is not None and size > slot.max_mb * _MB:
        return [
            _problem(
                item,
                "max_mb",
                f"{item.id} is {size / _MB:.1f} MB; {slot.field} allows {slot.max_mb:g} MB",
                f"compress or resize it below {slot.max_mb:g} MB",
                size,
            )
        ]
    return []


def _duration_problems(item: NormalizedMedia, slot: MediaSlot) -> list[ImpossibleInput]:
    """A clip's length against the slot's bounds in seconds."""
    if item.duration_seconds is None or slot.duration_seconds is None:
        return []
    limits = slot.duration_seconds
    out: list[ImpossibleInput] = []
    if limits.min is not None and item.duration_seconds < limits.min:
        out.append(
            _problem(
                item,
                "min_seconds",
                f"{item.id} lasts {item.duration_seconds:g} s; {slot.field} needs at least {limits.min:g} s",
                f"use a clip of at least {limits.min:g} s",
                item.duration_seconds,
            )
        )
    if limits.max is not None and item.duration_seconds > limits.max:
        out.append(
            _problem(
                item,
                "max_seconds",
                f"{item.id} lasts {item.duration_seconds:g} s; {slot.field} allows at most {limits.max:g} s",
                f"trim it to {limits.max:g} s",
                item.duration_seconds,
            )
        )
    return out


def _header_problems(
    item: NormalizedMedia, slot: MediaSlot, content: Path | bytes, sniffed: SniffedMedia
) -> list[ImpossibleInput]:
    """The dearest checks, so run last: a header read catches magic-byte look-alikes, then the pixel bounds."""
    # A header read (pyvips for images); the pixel bounds come from the header only (an image's, or a video's track
    # header), before any upload.
    trouble = header_problem(content, sniffed)
    if trouble is not None:
        return [
            _problem(
                item,
                "media_corrupt",
                f"{media_subject(item)} looks like {sniffed.looks_like} but {trouble}",
                input_fix("media_corrupt", slot.kind, slot.formats),
                _shown(item),
            )
        ]
    if slot.pixels is None:
        return []
    size_px = image_size(content) if sniffed.kind == "image" else video_size(content)
    return pixel_problems(item.id, slot, size_px) if size_px is not None else []


def media_subject(item: NormalizedMedia) -> str:
    """How a message names a media input: its id and where it comes from ("images[0]: /tmp/x.png")."""
    if item.source_type == "bytes":
        name = f", {item.filename}" if item.filename else ""
        return f"{item.id} ({len(item.data or b'')} bytes in memory{name})"
    return f"{item.id}: {item.value}"


def _shown(item: NormalizedMedia) -> str:
    return f"<{len(item.data or b'')} bytes>" if item.source_type == "bytes" else str(item.value)


def _check_total_seconds(spec: ModelSpec, mode: TaskModeSpec, media: list[NormalizedMedia]) -> list[ImpossibleInput]:
    totals: dict[str, float] = defaultdict(float)
    for item in media:
        if item.slot is not None and item.duration_seconds is not None:
            totals[item.kind] += item.duration_seconds
    out = []
    for kind, limit in mode.max_total_seconds.items():
        if totals.get(kind, 0.0) > limit:
            fields = "/".join(s.field for s in mode.slots if s.kind == kind)
            out.append(
                ImpossibleInput(
                    field=fields,
                    value=totals[kind],
                    rule="max_total_seconds",
                    message=f"{spec.key}: all {kind} references together last {totals[kind]:g} s; at most {limit:g} s",
                    fix=f"trim or drop {kind} clips to {limit:g} s in total",
                )
            )
    return out


def _context(normalized: NormalizedRequest) -> ConditionContext:
    return condition_context(
        normalized.options,
        prompt=normalized.prompt,
        callback_url=normalized.callback_url,
        task_mode=normalized.task_mode,
        filled_slots=normalized.filled_slots,
    )


def _mode_limit_problems(
    spec: ModelSpec, mode: TaskModeSpec, normalized: NormalizedRequest, *, check_files: bool
) -> list[ImpossibleInput]:
    """Conditional slot counts, counts across slots and each slot's total size."""
    counts: dict[str, int] = defaultdict(int)
    for item in normalized.media:
        if item.slot is not None:
            counts[item.slot] += 1
    sized = [m for m in normalized.media if check_files or m.source_type != "local_path"]
    return [*slot_count_problems(spec, mode, counts, _context(normalized)), *slot_size_problems(mode, sized)]


def fired_rules(spec: ModelSpec, normalized: NormalizedRequest) -> list[RuleSpec]:
    """The spec rules whose conditions hold for this request."""
    ctx = _context(normalized)
    return [rule for rule in spec.rules if all_hold(rule.when, ctx)]


def _state(
    missing: list[MissingInput],
    impossible: list[ImpossibleInput],
    warnings: list[WarningDetail],
    defaulted: list[DefaultedField],
) -> ValidationState:
    if impossible:
        return "invalid"
    if missing:
        return "needs_input"
    if warnings:
        return "ready_with_warning"
    if defaulted:
        return "ready_with_defaults"
    return "ready"


def validate_request(
    request: NormalizedRequest | RawUserRequest,
    *,
    registry: ModelRegistry | None = None,
    check_files: bool = True,
) -> ValidationResult:
    """Validate a request (normalizing it first if needed); ``check_files=False`` skips all file-system access."""
    check_request_arg(request, call="validate_request")  # a dict: one typed line, not an AttributeError
    reg = registry or load_registry()
    normalized = request if isinstance(request, NormalizedRequest) else normalize_request(request, registry=reg)
    missing = list(normalized.issues.missing)
    impossible = list(normalized.issues.impossible)
    warnings = list(normalized.issues.warnings)
    if not normalized.known_model:
        return ValidationResult(
            state="invalid",
            model_key=normalized.model_key,
            impossible_inputs=impossible,
            missing_inputs=missing,
            normalized=normalized,
        )
    spec = reg.get(normalized.model_key)
    mode = spec.mode(normalized.task_mode) if normalized.task_mode else None
    _check_prompt(spec, normalized, normalized.options, missing, impossible)
    _check_options(spec, normalized, missing, impossible, warnings)
    if mode is not None:
        _check_mode_media(spec, mode, normalized, impossible, warnings, check_files=check_files)
    impossible.extend(conditional_problems(spec, _context(normalized), normalized.prompt, normalized.options))
    dropped = _apply_rules(spec, normalized, missing, impossible, warnings)
    _check_callback(normalized.callback_url, impossible, warnings)
    defaulted = list(normalized.defaulted)
    return ValidationResult(
        state=_state(missing, impossible, warnings, defaulted),
        model_key=spec.key,
        task_mode=normalized.task_mode,
        provider_model=normalized.provider_model,
        missing_inputs=missing,
        defaulted_fields=defaulted,
        warning_details=warnings,
        impossible_inputs=impossible,
        dropped_fields=dropped,
        normalized=normalized,
    )


def _check_options(
    spec: ModelSpec,
    normalized: NormalizedRequest,
    missing: list[MissingInput],
    impossible: list[ImpossibleInput],
    warnings: list[WarningDetail],
) -> None:
    """Each spec option: required ones present, values within the spec, warnings for ones the caller chose."""
    for name, opt in spec.options.items():
        value = normalized.options.get(name)
        if value is None:
            if opt.required:
                missing.append(
                    MissingInput(
                        field=name,
                        value=None,
                        rule="required",
                        message=f"{spec.key} needs {name}",
                        fix=f"pass {name}=...",
                    )
                )
            continue
        impossible.extend(check_field_value(opt, value, name))
        if name in normalized.explicit_options:
            warnings.extend(_option_warnings(name, opt, value))


def _option_warnings(name: str, opt: FieldSpec, value: Any) -> list[WarningDetail]:
    """A chosen option the provider deprecates or not every doc source confirms (a default is not warned about)."""
    out: list[WarningDetail] = []
    if opt.deprecated:
        out.append(
            WarningDetail(
                field=name,
                value=value,
                rule="deprecated",
                message=f"{name} is deprecated by the provider",
                fix=f"drop {name}; it may stop working without notice",
            )
        )
    if opt.unconfirmed:
        out.append(
            WarningDetail(
                field=name,
                value=value,
                rule="unconfirmed_field",
                message=f"{name} is not confirmed by every doc source ({opt.verification_note or 'see spec'})",
                fix=f"drop {name} if the provider rejects the task",
            )
        )
    return out


def _check_mode_media(
    spec: ModelSpec,
    mode: TaskModeSpec,
    normalized: NormalizedRequest,
    impossible: list[ImpossibleInput],
    warnings: list[WarningDetail],
    *,
    check_files: bool,
) -> None:
    """Each placed media item against its slot, then the mode's limits across items."""
    for item in normalized.media:
        slot = mode.slot(item.slot) if item.slot else None
        if slot is None:
            continue
        bad, warn = check_media_item(item, slot, check_files=check_files)
        impossible.extend(bad)
        warnings.extend(warn)
    impossible.extend(_check_total_seconds(spec, mode, normalized.media))
    impossible.extend(_mode_limit_problems(spec, mode, normalized, check_files=check_files))


def _apply_rules(
    spec: ModelSpec,
    normalized: NormalizedRequest,
    missing: list[MissingInput],
    impossible: list[ImpossibleInput],
    warnings: list[WarningDetail],
) -> list[str]:
    """File each fired spec rule under its severity; the fields they drop, in order, each once."""
    dropped: list[str] = []
    for rule in fired_rules(spec, normalized):
        detail = {
            "field": rule.field,
            "value": _rule_value(normalized, rule.field),
            "rule": rule.id,
            "message": rule.message,
            "fix": rule.fix,
        }
        if rule.severity == "invalid":
            impossible.append(ImpossibleInput(**detail))
        elif rule.severity == "needs_input":
            missing.append(MissingInput(**detail))
        else:
            warnings.append(WarningDetail(**detail))
        dropped.extend(d for d in rule.drop if d not in dropped)
    return dropped


def _rule_value(normalized: NormalizedRequest, name: str) -> Any:
    if name == "callback_url":
        return normalized.callback_url
    if name == "prompt":
        return normalized.prompt
    return normalized.options.get(name)


def _check_callback(url: str | None, impossible: list[ImpossibleInput], warnings: list[WarningDetail]) -> None:
    if url is None:
        return
    lowered = url.lower()
    if not lowered.startswith(("http://", "https://")):
        impossible.append(
            ImpossibleInput(
                field="callback_url",
                value=url,
                rule="url_scheme",
                message="callback_url must be an http(s) URL",
                fix="pass a public https:// URL or leave it out",
            )
        )
    elif lowered.startswith("http://"):
        warnings.append(
            WarningDetail(
                field="callback_url",
                value=url,
                rule="plain_http",
                message="callback_url uses plain http; results travel unencrypted",
                fix="use an https:// callback URL",
            )
        )
