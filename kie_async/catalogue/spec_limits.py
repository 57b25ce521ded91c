"""The limits a page states beyond a field's own type and range, checked before anything is uploaded or bought.

A spec can say more than "at most N characters": a limit that holds only in some modes (Suno's prompt is 500
characters in non-custom mode, 3000 with V4), a step (``multiple_of``) or a number of decimal places, the text
of all a list's items together, counts across several slots (images plus videos), the total size of a slot's
files, and an input image's pixel size and aspect ratio (read from its header, for local files and bytes).
The validator and the wire check both ask this module, so the SDK and its reading of a wire body agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kie_async.catalogue.request_models import ImpossibleInput, NormalizedMedia
from kie_async.catalogue.specs import (
    ConditionContext,
    FieldSpec,
    LimitWhen,
    MediaSlot,
    ModelSpec,
    PixelLimits,
    TaskModeSpec,
    all_hold,
)

_MB = 1024 * 1024


def _holding(limits: Iterable[LimitWhen], ctx: ConditionContext) -> list[LimitWhen]:
    return [limit for limit in limits if all_hold(limit.when, ctx)]


def _tightest(limits: Sequence[LimitWhen], name: str, *, low: bool) -> tuple[float | None, str | None]:
    found = [(getattr(limit, name), limit.reason) for limit in limits if getattr(limit, name) is not None]
    if not found:
        return None, None
    value, reason = (max if low else min)(found, key=lambda pair: pair[0])
    return value, reason


def _bad(field: str, value: Any, rule: str, message: str, fix: str) -> ImpossibleInput:
    return ImpossibleInput(field=field, value=value, rule=rule, message=message, fix=fix)


def text_limit_problems(field: str, text: str, limits: Sequence[LimitWhen]) -> list[ImpossibleInput]:
    """Lengths from the holding conditional limits of a text field (the prompt or a string option)."""
    out: list[ImpossibleInput] = []
    high, why = _tightest(limits, "max_chars", low=False)
    if high is not None and len(text) > high:
        out.append(
            _bad(
                field,
                len(text),
                "max_chars",
                f"{field} has {len(text)} characters; at most {high:g} here ({why})",
                f"shorten it by {len(text) - int(high)} characters",
            )
        )
    low, why = _tightest(limits, "min_chars", low=True)
    if low is not None and len(text) < low:
        out.append(
            _bad(
                field,
                len(text),
                "min_chars",
                f"{field} has {len(text)} characters; at least {low:g} here ({why})",
                f"write at least {low:g} characters",
            )
        )
    return out


def _value_limit_problems(field: str, value: Any, limits: Sequence[LimitWhen]) -> list[ImpossibleInput]:
    out: list[ImpossibleInput] = []
    if isinstance(value, str):
        out.extend(text_limit_problems(field, value, limits))
    if isinstance(value, int | float) and not isinstance(value, bool):
        high, why = _tightest(limits, "max", low=False)
        if high is not None and value > high:
            out.append(
                _bad(field, value, "max", f"{field}={value!r} is above {high:g} here ({why})", f"use at most {high:g}")
            )
        low, why = _tightest(limits, "min", low=True)
        if low is not None and value < low:
            out.append(
                _bad(field, value, "min", f"{field}={value!r} is below {low:g} here ({why})", f"use at least {low:g}")
            )
    if isinstance(value, list):
        high, why = _tightest(limits, "max_items", low=False)
        if high is not None and len(value) > high:
            out.append(
                _bad(
                    field,
                    len(value),
                    "max_items",
                    f"{field} has {len(value)} item(s); at most {high:g} here ({why})",
                    f"remove {len(value) - int(high)} item(s)",
                )
            )
        low, why = _tightest(limits, "min_items", low=True)
        if low is not None and len(value) < low:
            out.append(
                _bad(
                    field,
                    len(value),
                    "min_items",
                    f"{field} has {len(value)} item(s); at least {low:g} here ({why})",
                    f"add items up to {low:g}",
                )
            )
    return out


def conditional_problems(
    spec: ModelSpec, ctx: ConditionContext, prompt: str | None, options: Mapping[str, Any]
) -> list[ImpossibleInput]:
    """The prompt's and the options' conditional limits that hold for this request and are broken."""
    out: list[ImpossibleInput] = []
    if prompt is not None and prompt.strip() and spec.prompt.limits_when:
        out.extend(text_limit_problems(spec.prompt.field, prompt, _holding(spec.prompt.limits_when, ctx)))
    for name, opt in spec.options.items():
        value = options.get(name)
        if value is not None and opt.limits_when:
            out.extend(_value_limit_problems(name, value, _holding(opt.limits_when, ctx)))
    return out


def field_extra_problems(spec: FieldSpec, value: Any, path: str) -> list[ImpossibleInput]:
    """Step, decimal places and combined text length of one (already typed) value."""
    out: list[ImpossibleInput] = []
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        if spec.multiple_of is not None:
            ratio = value / spec.multiple_of
            if abs(ratio - round(ratio)) > 1e-9:
                below = math.floor(ratio) * spec.multiple_of
                out.append(
                    _bad(
                        path,
                        value,
                        "multiple_of",
                        f"{path}={value!r} is not a multiple of {spec.multiple_of:g}",
                        f"use a step of {spec.multiple_of:g} (e.g. {below:g} or {below + spec.multiple_of:g})",
                    )
                )
        if spec.decimals is not None and round(value, spec.decimals) != value:
            out.append(
                _bad(
                    path,
                    value,
                    "decimals",
                    f"{path}={value!r} has more than {spec.decimals} decimal place(s)",
                    f"round it to {spec.decimals} decimal place(s)",
                )
            )
    if spec.max_total_chars is not None and isinstance(value, list):
        total = sum(len(text) for text in _texts(spec, value))
        if total > spec.max_total_chars:
            out.append(
                _bad(
                    path,
                    total,
                    "max_total_chars",
                    f"{path} has {total} characters in all its items; at most {spec.max_total_chars} together",
                    f"shorten the items by {total - spec.max_total_chars} characters in all",
                )
            )
    return out


def _texts(spec: FieldSpec | None, value: Any) -> Iterable[str]:
    """The free text in ``value``: string fields, not enum choices such as a voice id."""
    if spec is None:
        return
    if isinstance(value, str) and spec.type == "string":
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(spec.items, item)
    elif isinstance(value, dict) and spec.fields:
        for name, item in value.items():
            yield from _texts(spec.fields.get(name), item)


def slot_count_problems(
    spec: ModelSpec, mode: TaskModeSpec, counts: Mapping[str, int], ctx: ConditionContext
) -> list[ImpossibleInput]:
    """Conditional slot counts and counts across slots (``slot_totals``), from the number of files per slot."""
    out: list[ImpossibleInput] = []
    for slot in mode.slots:
        holding = _holding(slot.limits_when, ctx)
        if not holding:
            continue
        given = counts.get(slot.name, 0)
        high, why = _tightest(holding, "max_items", low=False)
        if high is not None and given > high:
            out.append(
                _bad(
                    slot.field,
                    given,
                    "max_items",
                    f"{spec.key} ({mode.name}) takes at most {high:g} "
                    f"{slot.kind}(s) in {slot.field} here ({why}); got {given}",
                    f"remove {given - int(high)} {slot.kind}(s)",
                )
            )
        low, why = _tightest(holding, "min_items", low=True)
        if low is not None and given < low:
            out.append(
                _bad(
                    slot.field,
                    given,
                    "min_items",
                    f"{spec.key} ({mode.name}) needs at least {low:g} "
                    f"{slot.kind}(s) in {slot.field} here ({why}); got {given}",
                    f"add {int(low) - given} {slot.kind}(s)",
                )
            )
    for total in mode.slot_totals:
        given = sum(counts.get(name, 0) for name in total.slots)
        fields = "/".join(s.field for s in mode.slots if s.name in total.slots)
        if total.max is not None and given > total.max:
            out.append(
                _bad(
                    fields,
                    given,
                    "slot_total",
                    f"{spec.key} ({mode.name}): {fields} hold {given} files "
                    f"together; at most {total.max} ({total.reason})",
                    f"remove {given - total.max} of them",
                )
            )
        if given < total.min:
            out.append(
                _bad(
                    fields,
                    given,
                    "slot_total",
                    f"{spec.key} ({mode.name}): {fields} hold {given} files "
                    f"together; at least {total.min} ({total.reason})",
                    f"add {total.min - given}",
                )
            )
    return out


def media_size(item: NormalizedMedia) -> int | None:
    """The size of a local file or in-memory bytes; ``None`` for a hosted URL (not fetched here)."""
    if item.size_bytes is not None:
        return item.size_bytes
    if item.data is not None:
        return len(item.data)
    if item.source_type == "local_path" and item.value:
        try:
            return Path(item.value).stat().st_size
        except OSError:
            return None
    return None


def slot_size_problems(mode: TaskModeSpec, media: Sequence[NormalizedMedia]) -> list[ImpossibleInput]:
    """``max_total_mb``: every slot's known file sizes together (hosted URLs are not fetched, so not counted)."""
    out: list[ImpossibleInput] = []
    for slot in mode.slots:
        if slot.max_total_mb is None:
            continue
        sizes = [size for m in media if m.slot == slot.name and (size := media_size(m)) is not None]
        total = sum(sizes)
        if total > slot.max_total_mb * _MB:
            out.append(
                _bad(
                    slot.field,
                    total,
                    "max_total_mb",
                    f"{slot.field}: the files together are "
                    f"{total / _MB:.1f} MB; at most {slot.max_total_mb:g} MB in all",
                    f"compress or drop files to stay under {slot.max_total_mb:g} MB together",
                )
            )
    return out


def pixel_problems(item_id: str, slot: MediaSlot, size: tuple[int, int]) -> list[ImpossibleInput]:
    """An image's width and height against the slot's :class:`PixelLimits`."""
    limits: PixelLimits | None = slot.pixels
    if limits is None:
        return []
    width, height = size
    shown = f"{width}x{height}"
    out: list[ImpossibleInput] = []

    def check(value: float, low: float | None, high: float | None, what: str) -> None:
        if low is not None and value < low:
            out.append(
                _bad(
                    item_id,
                    shown,
                    "pixels",
                    f"{item_id} is {shown}: its {what} is {value:g}, below {low:g} for {slot.field}",
                    f"resize it so its {what} is at least {low:g}",
                )
            )
        if high is not None and value > high:
            out.append(
                _bad(
                    item_id,
                    shown,
                    "pixels",
                    f"{item_id} is {shown}: its {what} is {value:g}, above {high:g} for {slot.field}",
                    f"resize it so its {what} is at most {high:g}",
                )
            )

    check(width, limits.min_width, limits.max_width, "width")
    check(height, limits.min_height, limits.max_height, "height")
    check(min(width, height), limits.min_side, None, "shorter side")
    check(max(width, height), None, limits.max_side, "longer side")
    check(width * height, limits.min_pixels, limits.max_pixels, "pixel count")
    if limits.aspect_ratio is not None and height > 0:
        ratio = width / height
        low, high = limits.aspect_ratio.min, limits.aspect_ratio.max
        if (low is not None and ratio < low - 1e-9) or (high is not None and ratio > high + 1e-9):
            span = f"{low if low is not None else 0:g} to {high if high is not None else math.inf:g}"
            out.append(
                _bad(
                    item_id,
                    shown,
                    "aspect_ratio",
                    f"{item_id} is {shown} (width/height {ratio:.3f}); {slot.field} takes {span}",
                    "crop it to an accepted aspect ratio",
                )
            )
    return out


def as_wire_problems(problems: Iterable[ImpossibleInput]) -> list[str]:
    """The wire check's spelling of these problems (``field: message``)."""
    return [f"{p.field}: {p.message}" for p in problems]


def spec_limit_problems(
    spec: ModelSpec,
    mode: TaskModeSpec,
    ctx: ConditionContext,
    prompt: str | None,
    options: Mapping[str, Any],
    slot_urls: Mapping[str, Sequence[str]],
) -> list[str]:
    """For the wire check: the conditional limits and slot counts a body breaks (``field: message``)."""
    counts = {name: len(urls) for name, urls in slot_urls.items()}
    return as_wire_problems(
        [*conditional_problems(spec, ctx, prompt, options), *slot_count_problems(spec, mode, counts, ctx)]
    )
