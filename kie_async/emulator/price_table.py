"""What the emulator charges: its own price list (``pricing_catalogue.json``), never the SDK's estimate code.

The list has two parts. ``records`` are rows in the shape of Kie.ai's pricing API (the one behind
kie.ai/pricing), which the emulator serves so a pricing refresh can be tested offline. ``billing`` says which
row a createTask pays: a model id, the input values it applies to (the page's defaults filled in), and for
per-second rows where the seconds come from. Keeping this apart from ``pricing/`` means an estimate bug in the
SDK shows up in tests as estimate != charged.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CATALOGUE_FILE = Path(__file__).resolve().parent / "pricing_catalogue.json"


class Seconds(BaseModel):
    """Where a per-second row's quantity comes from: an input field, or a fixed assumption."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str | None = None
    assumed: float | None = Field(default=None, gt=0)


class BillingEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    record: str
    when: dict[str, Any] = Field(default_factory=dict)
    """field -> value (or list of values) the effective input must have."""
    filled: list[str] = Field(default_factory=list)
    empty: list[str] = Field(default_factory=list)
    seconds: Seconds | None = None


class PriceCatalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str
    credit_usd: float
    records: list[dict[str, Any]]
    billing: list[BillingEntry]

    def record(self, description: str) -> dict[str, Any]:
        return next(r for r in self.records if r["modelDescription"] == description)

    def count(self) -> dict[str, int]:
        """The ``/client/v1/model-pricing/count`` payload."""
        kinds = [str(r.get("interfaceType") or "") for r in self.records]
        return {
            "all": len(kinds),
            "image": kinds.count("image"),
            "video": kinds.count("video"),
            "music": kinds.count("music"),
            "chat": kinds.count("chat"),
        }

    def page(self, page_num: int, page_size: int) -> dict[str, Any]:
        """The ``/client/v1/model-pricing/page`` payload (MyBatis-Plus style paging, as the real API)."""
        total = len(self.records)
        start = (page_num - 1) * page_size
        return {
            "records": self.records[start : start + page_size],
            "total": total,
            "size": page_size,
            "current": page_num,
            "pages": max(1, math.ceil(total / page_size)),
            "orders": [],
            "searchCount": True,
        }


def _same(expected: Any, actual: Any) -> bool:
    options = expected if isinstance(expected, list) else [expected]
    return any(type(option) is type(actual) and option == actual for option in options)


def _filled(params: dict[str, Any], field: str) -> bool:
    return params.get(field) not in (None, "", [])


@functools.lru_cache(maxsize=1)
def load_price_catalogue() -> PriceCatalogue:
    """Read the bundled list once (blocking: ``KieEmulator.start`` calls it from a thread)."""
    return PriceCatalogue.model_validate(json.loads(CATALOGUE_FILE.read_text(encoding="utf-8")))


def charge_for(model_id: str, params: dict[str, Any], defaults: dict[str, Any]) -> float | None:
    """Credits a createTask costs under the emulator's list; ``None`` when no billing entry matches."""
    catalogue = load_price_catalogue()
    effective = {**defaults, **params}
    for entry in catalogue.billing:
        if entry.model != model_id:
            continue
        if not all(_same(value, effective.get(field)) for field, value in entry.when.items()):
            continue
        if not all(_filled(effective, f) for f in entry.filled) or any(_filled(effective, f) for f in entry.empty):
            continue
        rate = float(catalogue.record(entry.record)["creditPrice"])
        if entry.seconds is None:
            return rate
        if entry.seconds.field is not None:
            raw = effective.get(entry.seconds.field)
            try:
                seconds = float(raw) if not isinstance(raw, bool) and raw is not None else math.nan
            except (TypeError, ValueError):
                seconds = math.nan
        else:
            seconds = float(entry.seconds.assumed or 0.0)
        if not math.isfinite(seconds) or seconds <= 0:
            return None
        return round(rate * seconds, 4)
    return None
