"""Does a committed model spec still say what its provider page says?

A spec's *facts* (field types, wire types, enums, defaults, ranges, required fields, media fields with their
counts, formats and sizes, provider model ids, output kind, prompt limits) are flattened into ``path -> value``
pairs, for the committed spec and for a fresh import of its page (:mod:`kie_async.catalogue.spec_import`). Any pair that
differs is drift, unless the committed spec lists the path (or a parent of it) under ``overrides`` with a why.

Facts are compared by meaning, not by spelling: a contiguous integer range and the same values listed as an
enum are equal, and a hand-written spec may split one page into several task modes (the media facts are the
union over modes). Hand additions the page cannot state (aliases, rules, presets, notes) are not facts here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from kie_async.catalogue.spec_import import import_page
from kie_async.catalogue.specs import FieldSpec, ModelSpec
from kie_async.core.provider_pages import read_page

_RANGE_AS_SET = 64
"""An integer range this small compares as the set of its values (``min: 3, max: 15`` == ``allowed: [3..15]``)."""


class Drift(BaseModel):
    """One fact where a committed spec and its page disagree."""

    model_config = ConfigDict(frozen=True)

    path: str
    committed: Any
    page: Any

    def __str__(self) -> str:
        return f"{self.path}: spec says {self.committed!r}, page says {self.page!r}"


def _num(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return float(value)


def _field_facts(prefix: str, spec: FieldSpec, out: dict[str, Any]) -> None:
    out[f"{prefix}.type"] = spec.type
    out[f"{prefix}.wire"] = spec.wire
    out[f"{prefix}.required"] = spec.required
    if spec.default is not None:
        out[f"{prefix}.default"] = _num(spec.default)
    allowed = spec.allowed
    low, high = spec.min, spec.max
    if (
        allowed is None
        and spec.type == "integer"
        and low is not None
        and high is not None
        and high - low <= _RANGE_AS_SET
    ):
        allowed = list(range(int(low), int(high) + 1))
    if allowed is not None:
        out[f"{prefix}.allowed"] = sorted({str(_num(v)) for v in allowed})
    else:
        if low is not None:
            out[f"{prefix}.min"] = float(low)
        if high is not None:
            out[f"{prefix}.max"] = float(high)
    for name in ("min_chars", "max_chars", "min_items", "max_items"):
        value = getattr(spec, name)
        if value is not None:
            out[f"{prefix}.{name}"] = value
    if spec.items is not None:
        _field_facts(f"{prefix}.items", spec.items, out)
    for sub_name, sub in (spec.fields or {}).items():
        _field_facts(f"{prefix}.fields.{sub_name}", sub, out)


def spec_facts(spec: ModelSpec) -> dict[str, Any]:
    """The page-derivable facts of ``spec`` as ``path -> value``."""
    out: dict[str, Any] = {
        "output_kind": spec.output_kind,
        "provider_models": sorted(spec.provider_models),
        "prompt.accepted": spec.prompt.accepted,
    }
    if spec.prompt.accepted:
        out["prompt.field"] = spec.prompt.field
        out["prompt.required"] = spec.prompt.required
        for name in ("min_chars", "max_chars"):
            value = getattr(spec.prompt, name)
            if value is not None:
                out[f"prompt.{name}"] = value
    for name, opt in spec.options.items():
        _field_facts(f"options.{name}", opt, out)
    fields: dict[str, list[tuple[int, int]]] = {}
    for mode in spec.task_modes:
        per_mode: dict[str, tuple[int, int]] = {}
        for slot in mode.slots:
            low, high = per_mode.get(slot.field, (0, 0))
            per_mode[slot.field] = (low + slot.min, high + slot.max)
        for field, pair in per_mode.items():
            fields.setdefault(field, []).append(pair)
    for field, counts in fields.items():
        slots = [s for m in spec.task_modes for s in m.slots if s.field == field]
        prefix = f"media.{field}"
        out[f"{prefix}.kind"] = sorted({s.kind for s in slots})
        out[f"{prefix}.shape"] = slots[0].shape
        out[f"{prefix}.required"] = len(counts) == len(spec.task_modes) and all(low >= 1 for low, _ in counts)
        out[f"{prefix}.max"] = max(high for _, high in counts)
        formats = sorted({f for s in slots for f in s.formats})
        if formats:
            out[f"{prefix}.formats"] = formats
        sizes = [s.max_mb for s in slots if s.max_mb is not None]
        if sizes:
            out[f"{prefix}.max_mb"] = float(max(sizes))
    return out


def _overridden(path: str, overrides: set[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in overrides for i in range(1, len(parts) + 1))


def compare(committed: ModelSpec, imported: ModelSpec) -> list[Drift]:
    """Facts that differ between ``committed`` and a fresh import, minus the committed spec's overrides."""
    mine, theirs = spec_facts(committed), spec_facts(imported)
    overrides = {o.path for o in committed.overrides}
    drifts = [
        Drift(path=path, committed=mine.get(path), page=theirs.get(path))
        for path in sorted(set(mine) | set(theirs))
        if mine.get(path) != theirs.get(path) and not _overridden(path, overrides)
    ]
    return drifts


def unused_overrides(committed: ModelSpec, imported: ModelSpec) -> list[str]:
    """Override paths that no longer cover any difference (stale excuses hide future drift)."""
    mine, theirs = spec_facts(committed), spec_facts(imported)
    differing = [p for p in set(mine) | set(theirs) if mine.get(p) != theirs.get(p)]
    return [o.path for o in committed.overrides if not any(_overridden(p, {o.path}) for p in differing)]


def reimport(spec: ModelSpec, docs_root: Path) -> ModelSpec:
    """Import ``spec``'s source page again, with the committed key and family, as a checked ModelSpec."""
    if spec.source_page is None:
        raise ValueError(f"{spec.key}: has no source_page to re-import")
    page = read_page(docs_root / spec.source_page.page, docs_root=docs_root)
    imported = import_page(page, family=spec.family, key=spec.key)
    return ModelSpec.model_validate(imported.data)


def check_spec(spec: ModelSpec, docs_root: Path) -> list[Drift]:
    """Drift between ``spec`` and its page (empty when they agree or every difference is an override)."""
    return compare(spec, reimport(spec, docs_root))


class PageExample(BaseModel):
    """One of a page's own example requests, with the spec's recorded corrections applied."""

    model_config = ConfigDict(frozen=True)

    model: str | None
    input: dict[str, Any]
    corrected: list[str]
    """Fields the spec's ``example_corrections`` changed (a correction that changes nothing is stale)."""


def page_examples(spec: ModelSpec, docs_root: Path) -> tuple[list[PageExample], list[str]]:
    """The page's example requests for ``spec``, corrected; plus the corrections that matched nothing.

    A correction on field ``*`` with ``remove`` declares the page's example unusable (empty or not JSON):
    such examples are skipped, and the correction is stale if the page has a usable one.
    """
    if spec.source_page is None:
        return [], []
    page = read_page(docs_root / spec.source_page.page, docs_root=docs_root)
    op = page.operation(spec.source_page.operation)
    raw = list(op.request_examples) if op is not None else []
    skip_all = any(c.field == "*" and c.remove for c in spec.example_corrections)
    used: set[int] = set()
    examples: list[PageExample] = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("input"), dict):
            if skip_all:
                used.update(i for i, c in enumerate(spec.example_corrections) if c.field == "*")
            continue
        body = {str(k).strip(): v for k, v in entry["input"].items()}
        changed: list[str] = []
        for index, fix in enumerate(spec.example_corrections):
            if fix.field == "*":
                continue
            if fix.remove:
                if fix.field in body:
                    body.pop(fix.field)
                    changed.append(fix.field)
                    used.add(index)
            elif body.get(fix.field) != fix.value:
                body[fix.field] = fix.value
                changed.append(fix.field)
                used.add(index)
        model = entry.get("model")
        examples.append(PageExample(model=model if isinstance(model, str) else None, input=body, corrected=changed))
    stale = [c.field for i, c in enumerate(spec.example_corrections) if i not in used]
    return examples, stale
