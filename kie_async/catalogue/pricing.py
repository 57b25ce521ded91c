"""Pricing: dated price snapshots (YAML in ``pricing/``), cost estimates, and refreshing a snapshot.

Prices change and the provider's billing is not published as an API, so every estimate says which snapshot
it came from, and keeps two flags apart: ``has_numeric_estimate`` (we could compute a number) and
``is_known`` (that number is verified billing with no assumptions). A planning estimate from the public
pricing page is numeric but not known; gating code can decide how much to trust it.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping
from datetime import date
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kie_async.catalogue.normalize import condition_context, normalize_request
from kie_async.catalogue.request_models import NormalizedMedia, NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.catalogue.specs import Condition, ModelRegistry, all_hold, load_registry
from kie_async.catalogue.wire_parse import best_wire_parse
from kie_async.core.compiled_cache import content_key, read_index, write_index
from kie_async.core.data import data_dir
from kie_async.core.errors import KieConfigError
from kie_async.core.limits import number_problem

if TYPE_CHECKING:
    from ruamel.yaml import YAML

PriceUnit = Literal["per_image", "per_video", "per_second"]


class _Price(BaseModel):
    # No NaN/inf anywhere in price data: a NaN price makes every estimate NaN, and NaN passes every budget test.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class QuantityCap(_Price):
    when: list[Condition]
    max: float


class QuantitySpec(_Price):
    """Where the billed quantity comes from for per-second prices: an option, or a media item's length."""

    field: str | None = None
    media_slot: str | None = None
    max_when: list[QuantityCap] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> QuantitySpec:
        if (self.field is None) == (self.media_slot is None):
            raise ValueError("quantity needs exactly one of field or media_slot")
        return self


class PriceRule(_Price):
    when: list[Condition] = Field(default_factory=list)
    credits: float | None = Field(default=None, ge=0)
    usd: float | None = Field(default=None, ge=0)
    description: str | None = Field(default=None, description="pricing-API modelDescription this rule refreshes from")
    assumption: str | None = None
    billing_verified: bool | None = None

    @model_validator(mode="after")
    def _has_price(self) -> PriceRule:
        if self.credits is None and self.usd is None:
            raise ValueError("a price rule needs credits or usd")
        return self


class ModelPricing(_Price):
    unit: PriceUnit
    quantity: QuantitySpec | None = None
    rules: list[PriceRule]
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _quantity(self) -> ModelPricing:
        if self.unit == "per_second" and self.quantity is None:
            raise ValueError("per_second pricing needs a quantity")
        return self


class PricingSnapshot(_Price):
    """One dated set of prices with its source."""

    snapshot_id: str
    captured_on: date
    source: str
    source_kind: str
    credit_usd: float = Field(default=0.005, gt=0)
    billing_verified: bool = False
    notes: list[str] = Field(default_factory=list)
    models: dict[str, ModelPricing]
    unmatched_records: list[str] = Field(default_factory=list)
    carried_over: list[str] = Field(default_factory=list)
    unpriced: dict[str, str] = Field(
        default_factory=dict,
        description="catalogue keys deliberately without a price here, each with why (and what would price it)",
    )
    source_file: str | None = None

    @model_validator(mode="after")
    def _priced_or_unpriced(self) -> PricingSnapshot:
        both = sorted(set(self.models) & set(self.unpriced))
        if both:
            raise ValueError(f"keys both priced and listed as unpriced: {both}")
        blank = sorted(k for k, why in self.unpriced.items() if not why.strip())
        if blank:
            raise ValueError(f"unpriced keys need a why: {blank}")
        return self

    def rule_credits(self, rule: PriceRule) -> float:
        return rule.credits if rule.credits is not None else round((rule.usd or 0.0) / self.credit_usd, 4)

    def rule_usd(self, rule: PriceRule) -> float:
        return rule.usd if rule.usd is not None else round((rule.credits or 0.0) * self.credit_usd, 6)


class CostEstimate(BaseModel):
    """What a request should cost, and how sure we are."""

    model_config = ConfigDict(frozen=True)

    model_key: str
    task_mode: str | None = None
    snapshot_id: str | None = None
    snapshot_date: date | None = None
    source: str | None = None
    unit: PriceUnit | None = None
    quantity: float | None = None
    rate_credits: float | None = None
    credits: float | None = None
    usd: float | None = None
    has_numeric_estimate: bool = False
    is_known: bool = False
    matched_rule: str | None = None
    assumptions: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class PricingError(KieConfigError):
    """A pricing snapshot or pricing-API document is malformed."""

    hint = "fix the named pricing file, or pass a pricing-API JSON document"


def _yaml() -> YAML:
    from ruamel.yaml import YAML  # loaded with the first snapshot, not with the package

    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    return yaml


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _snapshot_data(path: Path) -> Any:
    """The file's YAML as plain data: from the compiled cache when these bytes were parsed before."""
    raw = path.read_bytes()
    key = content_key([(str(path), raw)], "pricing-snapshot")
    cached = read_index("pricing", key)
    if cached is not None:
        return cached.entry("data")
    from ruamel.yaml.error import MarkedYAMLError

    try:
        data = _plain(_yaml().load(raw.decode("utf-8")))
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else "?"
        raise PricingError(f"{path}:{line}: YAML syntax error: {exc.problem}") from None
    write_index("pricing", key, {"data": data}, {})
    return data


def load_snapshot_file(path: Path) -> PricingSnapshot:
    data = _snapshot_data(path)
    if not isinstance(data, dict):
        raise PricingError(f"{path}: a pricing snapshot must be a mapping")
    data["source_file"] = str(path)
    try:
        return PricingSnapshot.model_validate(data)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PricingError(f"{path}: invalid pricing snapshot: {details}") from None


PRICING_DIR_ENV = "KIE_PRICING_DIR"


@functools.lru_cache(maxsize=8)
def _snapshots_cached(folders: tuple[str, ...]) -> tuple[PricingSnapshot, ...]:
    files = sorted(p for folder in folders for p in Path(folder).glob("*.yaml"))
    snaps = [load_snapshot_file(p) for p in files]
    return tuple(sorted(snaps, key=lambda s: (s.captured_on, s.snapshot_id)))


def list_snapshots(pricing_dir: str | Path | None = None) -> list[PricingSnapshot]:
    """All snapshots, oldest first: ``pricing_dir``, or the bundled ``pricing`` folder plus the folders in
    ``$KIE_PRICING_DIR`` (``os.pathsep``-separated), so a refreshed snapshot outside the install is picked up."""
    if pricing_dir is not None:
        return list(_snapshots_cached((str(Path(pricing_dir).resolve()),)))
    extra = [str(Path(d).resolve()) for d in os.environ.get(PRICING_DIR_ENV, "").split(os.pathsep) if d]
    return list(_snapshots_cached((str(data_dir("pricing")), *extra)))


def latest_snapshot(pricing_dir: str | Path | None = None) -> PricingSnapshot:
    snaps = list_snapshots(pricing_dir)
    if not snaps:
        raise PricingError(f"no pricing snapshots in {pricing_dir or data_dir('pricing')}")
    return snaps[-1]


def clear_pricing_cache() -> None:
    _snapshots_cached.cache_clear()


def snapshots_cached() -> bool:
    """Whether any snapshot folder is parsed and in memory (a cheap check for async callers)."""
    return _snapshots_cached.cache_info().currsize > 0


# ---------------------------------------------------------------- estimating


def _quantity(pricing: ModelPricing, normalized: NormalizedRequest, notes: list[str]) -> float | None:
    spec = pricing.quantity
    if spec is None:
        return 1.0
    ctx = condition_context(
        normalized.options,
        prompt=normalized.prompt,
        callback_url=normalized.callback_url,
        task_mode=normalized.task_mode,
        filled_slots=normalized.filled_slots,
    )
    value: float | None
    if spec.field is not None:
        raw = normalized.options.get(spec.field)
        value = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
        if value is None:
            notes.append(f"{spec.field} is not set, so the billed length is unknown")
    else:
        items: list[NormalizedMedia] = [m for m in normalized.media if m.slot == spec.media_slot]
        lengths = [m.duration_seconds for m in items if m.duration_seconds is not None]
        value = float(sum(lengths)) if items and len(lengths) == len(items) else None
        if value is None:
            notes.append(
                f"billed per output second, which follows the {spec.media_slot} length; pass "
                f"MediaInput(duration_seconds=...) for a numeric estimate"
            )
    if value is not None:
        for cap in spec.max_when:
            if all_hold(cap.when, ctx) and value > cap.max:
                notes.append(f"output capped at {cap.max:g} s")
                value = cap.max
                break
    return value


def estimate_normalized(normalized: NormalizedRequest, snapshot: PricingSnapshot) -> CostEstimate:
    """Estimate from an already-normalized request and a given snapshot (pure)."""
    base: dict[str, Any] = {
        "model_key": normalized.model_key,
        "task_mode": normalized.task_mode,
        "snapshot_id": snapshot.snapshot_id,
        "snapshot_date": snapshot.captured_on,
        "source": snapshot.source,
    }
    pricing = snapshot.models.get(normalized.model_key)
    if pricing is None:
        return CostEstimate(**base, notes=[f"snapshot {snapshot.snapshot_id} has no prices for {normalized.model_key}"])
    notes = list(pricing.notes)
    ctx = condition_context(
        normalized.options,
        prompt=normalized.prompt,
        callback_url=normalized.callback_url,
        task_mode=normalized.task_mode,
        filled_slots=normalized.filled_slots,
    )
    rule = next((r for r in pricing.rules if all_hold(r.when, ctx)), None)
    if rule is None:
        return CostEstimate(**base, unit=pricing.unit, notes=[*notes, "no price rule matches these options"])
    rate = snapshot.rule_credits(rule)
    quantity = _quantity(pricing, normalized, notes)
    assumptions = [rule.assumption] if rule.assumption else []
    verified = rule.billing_verified if rule.billing_verified is not None else snapshot.billing_verified
    if quantity is None:
        return CostEstimate(
            **base,
            unit=pricing.unit,
            rate_credits=rate,
            matched_rule=rule.description,
            assumptions=assumptions,
            notes=notes,
        )
    credits = round(rate * quantity, 4)
    return CostEstimate(
        **base,
        unit=pricing.unit,
        quantity=quantity,
        rate_credits=rate,
        credits=credits,
        usd=round(credits * snapshot.credit_usd, 6),
        has_numeric_estimate=True,
        is_known=verified and not assumptions,
        matched_rule=rule.description,
        assumptions=assumptions,
        notes=notes,
    )


def estimate_request_cost(
    request: RawUserRequest | NormalizedRequest | ValidationResult,
    *,
    snapshot: PricingSnapshot | None = None,
    pricing_dir: str | Path | None = None,
    registry: ModelRegistry | None = None,
) -> CostEstimate:
    """Credits (and USD) a request should cost under the latest (or given) pricing snapshot."""
    if isinstance(request, ValidationResult):
        normalized = request.normalized
    elif isinstance(request, RawUserRequest):
        normalized = normalize_request(request, registry=registry)
    else:
        normalized = request
    snap = snapshot or latest_snapshot(pricing_dir)
    if not normalized.known_model:
        return CostEstimate(
            model_key=normalized.model_key,
            snapshot_id=snap.snapshot_id,
            notes=[f"unknown model {normalized.model_key!r}"],
        )
    return estimate_normalized(normalized, snap)


def estimate_wire_cost(model_id: str, input: dict[str, Any]) -> float | None:
    """Credits a createTask ``input`` for ``model_id`` costs under the latest snapshot; None if not computable."""
    parsed = best_wire_parse(model_id, input)
    if parsed is None:
        return None
    reg = load_registry()
    spec = reg.get(parsed.model_key)
    mode = spec.mode(parsed.task_mode)
    media: list[NormalizedMedia] = []
    if mode is not None:
        for slot_name, urls in parsed.slot_urls.items():
            slot = mode.slot(slot_name)
            if slot is None:
                continue
            media.extend(
                NormalizedMedia(
                    id=f"{slot.field}[{i}]",
                    kind=slot.kind,
                    role=slot.roles[0],
                    slot=slot_name,
                    source_type="url",
                    value=url,
                )
                for i, url in enumerate(urls)
            )
    normalized = NormalizedRequest(
        model_key=parsed.model_key,
        requested_model_key=parsed.model_key,
        provider_model=model_id,
        task_mode=parsed.task_mode,
        raw_prompt=parsed.prompt,
        final_prompt_used=parsed.prompt,
        options=parsed.effective_options,
        media=media,
    )
    return estimate_normalized(normalized, latest_snapshot()).credits


# ---------------------------------------------------------------- refreshing from the pricing API


class PricingRecord(BaseModel):
    """One row of the (undocumented) pricing API behind kie.ai/pricing."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    description: str = Field(alias="modelDescription")
    credit_price: str | float = Field(alias="creditPrice")
    credit_unit: str | None = Field(default=None, alias="creditUnit")
    usd_price: str | float | None = Field(default=None, alias="usdPrice")
    interface_type: str | None = Field(default=None, alias="interfaceType")
    provider: str | None = None


class RefreshReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    snapshot: PricingSnapshot
    updated: list[str]
    carried_over: list[str]
    unmatched_records: list[str]


def _price(record: PricingRecord, field: str, value: str | float) -> float:
    """A pricing-API price as a finite number >= 0, or a ``PricingError`` naming the record."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if number_problem(number, minimum=0.0) is not None:
        raise PricingError(
            f"pricing record {record.description!r}: {field} {value!r} is not a finite price >= 0",
            hint="the pricing-API document is damaged; fetch it again",
        )
    return number


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().casefold())


def parse_pricing_document(doc: Any) -> list[PricingRecord]:
    """Accept the API envelope ``{code, data: {records}}``, a bare ``{records}``, or a list of records."""
    records: Any = doc
    if isinstance(records, dict) and isinstance(records.get("data"), dict):
        records = records["data"]
    if isinstance(records, dict):
        records = records.get("records")
    if not isinstance(records, list):
        raise PricingError("pricing document has no records list (expected data.records[])")
    try:
        return [PricingRecord.model_validate(r) for r in records]
    except ValidationError as exc:
        raise PricingError(f"bad pricing record: {exc.errors()[0]['msg']}") from None


def refresh_snapshot(
    doc: Any,
    base: PricingSnapshot,
    *,
    captured_on: date | None = None,
    source: str = "kie.ai pricing API (client/v1/model-pricing/page)",
) -> RefreshReport:
    """Build a new dated snapshot: rules whose ``description`` matches a record take its prices."""
    records = parse_pricing_document(doc)
    by_desc = {_key(r.description): r for r in records}
    used: set[str] = set()
    updated: list[str] = []
    carried: list[str] = []
    models: dict[str, ModelPricing] = {}
    for key, pricing in base.models.items():
        rules = []
        for rule in pricing.rules:
            record = by_desc.get(_key(rule.description)) if rule.description else None
            if record is None:
                rules.append(rule)
                carried.append(f"{key}: {rule.description or rule.when}")
                continue
            used.add(_key(record.description))
            credits = _price(record, "creditPrice", record.credit_price)
            usd = _price(record, "usdPrice", record.usd_price) if record.usd_price not in (None, "") else None
            rules.append(rule.model_copy(update={"credits": credits, "usd": usd}))
            updated.append(f"{key}: {rule.description}")
        models[key] = pricing.model_copy(update={"rules": rules})
    when = captured_on or date.today()
    unmatched = [r.description for r in records if _key(r.description) not in used]
    snapshot = PricingSnapshot(
        snapshot_id=f"{when.isoformat()}_pricing_api",
        captured_on=when,
        source=source,
        source_kind="pricing_api",
        credit_usd=base.credit_usd,
        billing_verified=False,
        notes=[
            f"refreshed from the pricing API on top of {base.snapshot_id}; rules with no matching record keep "
            f"their old price (see carried_over)"
        ],
        models=models,
        unmatched_records=sorted(set(unmatched)),
        carried_over=carried,
        unpriced={k: why for k, why in base.unpriced.items() if k not in models},
    )
    return RefreshReport(snapshot=snapshot, updated=updated, carried_over=carried, unmatched_records=unmatched)


def dump_snapshot(snapshot: PricingSnapshot) -> str:
    data = snapshot.model_dump(mode="json", exclude_none=True, exclude={"source_file"}, by_alias=True)
    buffer = StringIO()
    _yaml().dump(data, buffer)
    return buffer.getvalue()


def write_snapshot(snapshot: PricingSnapshot, out_dir: str | Path) -> Path:
    """Write ``<snapshot_id>.yaml`` into ``out_dir`` (which must exist or be creatable); returns the path."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{snapshot.snapshot_id}.yaml"
    path.write_text(dump_snapshot(snapshot), encoding="utf-8")
    clear_pricing_cache()
    return path
