"""Which model keys have a price, from which source, and how old it is (``kie-async pricing status``).

Estimates read the newest pricing snapshot only, so that is the snapshot this reports on: a key missing from it
estimates as *unknown*, and the preflight blocks it whenever a balance or budget is checked (unless
``allow_unknown_cost``). Each unpriced key says how to get a price.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict

from kie_async.catalogue.pricing import PricingSnapshot
from kie_async.catalogue.specs import ModelRegistry

HOW_TO_PRICE = (
    "run `kie-async pricing refresh` (Kie.ai's pricing API; --from FILE for a saved response), or add "
    "the key to a snapshot in a folder listed in $KIE_PRICING_DIR (docs/model-onboarding.md, step 4); "
    "until then estimates say unknown and the preflight needs allow_unknown_cost"
)


class PriceStatus(BaseModel):
    """One model key's price, as the estimator will see it."""

    model_config = ConfigDict(frozen=True)

    model_key: str
    priced: bool
    snapshot_id: str | None = None
    source_kind: str | None = None
    source: str | None = None
    captured_on: date | None = None
    age_days: int | None = None
    billing_verified: bool = False
    rules: int = 0
    how_to_price: str | None = None
    why_unpriced: str | None = None
    """Why the snapshot has no price for the key (its ``unpriced`` entry); ``None`` for a key nobody explained."""


def pricing_status(
    registry: ModelRegistry, snapshot: PricingSnapshot, *, today: date | None = None
) -> list[PriceStatus]:
    """Every catalogue key, in key order, priced or not by ``snapshot`` (the newest one)."""
    today = today or date.today()
    out: list[PriceStatus] = []
    for key in sorted(registry.specs):
        pricing = snapshot.models.get(key)
        if pricing is None:
            why = snapshot.unpriced.get(key)
            out.append(PriceStatus(model_key=key, priced=False, how_to_price=HOW_TO_PRICE, why_unpriced=why))
            continue
        verified = snapshot.billing_verified or (bool(pricing.rules) and all(r.billing_verified for r in pricing.rules))
        out.append(
            PriceStatus(
                model_key=key,
                priced=True,
                snapshot_id=snapshot.snapshot_id,
                source_kind=snapshot.source_kind,
                source=snapshot.source,
                captured_on=snapshot.captured_on,
                age_days=(today - snapshot.captured_on).days,
                billing_verified=verified,
                rules=len(pricing.rules),
            )
        )
    return out


def unmapped_keys(registry: ModelRegistry, snapshot: PricingSnapshot) -> list[str]:
    """Catalogue keys the snapshot neither prices nor explains (a new model nobody looked up yet)."""
    return sorted(k for k in registry.specs if k not in snapshot.models and k not in snapshot.unpriced)


def stale_unpriced(registry: ModelRegistry, snapshot: PricingSnapshot) -> list[str]:
    """``unpriced`` entries naming a key the catalogue no longer has."""
    return sorted(k for k in snapshot.unpriced if k not in registry.specs)
