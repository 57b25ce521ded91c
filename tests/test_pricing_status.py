"""``kie-async pricing status``: every catalogue key, priced or not, from which snapshot, how old (issue 22)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from kie_async.catalogue.pricing import latest_snapshot
from kie_async.catalogue.pricing_status import HOW_TO_PRICE, pricing_status, stale_unpriced, unmapped_keys
from kie_async.catalogue.specs import load_registry
from kie_async.interfaces.cli import main


def test_every_key_is_listed_priced_or_with_how_to_price() -> None:
    registry = load_registry()
    snapshot = latest_snapshot()
    rows = pricing_status(registry, snapshot, today=date(2026, 12, 7))
    assert [r.model_key for r in rows] == sorted(registry.specs)
    priced = [r for r in rows if r.priced]
    assert {r.model_key for r in priced} == set(snapshot.models) & set(registry.specs)
    for row in priced:
        assert row.snapshot_id == snapshot.snapshot_id and row.source_kind == snapshot.source_kind
        assert row.age_days == (date(2026, 12, 7) - snapshot.captured_on).days and row.rules >= 1
        assert row.how_to_price is None
    for row in rows:
        if not row.priced:
            assert row.how_to_price == HOW_TO_PRICE and row.snapshot_id is None and row.age_days is None


def test_cli_json_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pricing", "status", "--json", "--model", "nano-banana-2", "--model", "suno-music"]) == 0
    rows = {r["model_key"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["nano-banana-2"]["priced"] and not rows["suno-music"]["priced"]
    assert "pricing refresh" in rows["suno-music"]["how_to_price"]
    assert main(["pricing", "status", "--unpriced", "--model", "suno-music", "--model", "nano-banana-2"]) == 0
    out = capsys.readouterr().out
    assert "suno-music" in out and "nano-banana-2" not in out and "0 of 1 key(s) priced" in out


def test_every_catalogue_key_is_priced_or_says_why_not() -> None:
    """A new model key fails here until the newest snapshot prices it or lists it under ``unpriced`` with why."""
    registry = load_registry()
    snapshot = latest_snapshot()
    assert unmapped_keys(registry, snapshot) == [], "add a price or an `unpriced: {key: why}` entry"
    assert stale_unpriced(registry, snapshot) == []
    rows = pricing_status(registry, snapshot)
    assert all(r.why_unpriced for r in rows if not r.priced)
    assert all(r.why_unpriced is None for r in rows if r.priced)


def test_nano_banana_v1_is_priced_from_the_facts_file() -> None:
    from kie_async.catalogue.pricing import estimate_request_cost
    from kie_async.catalogue.request_models import RawUserRequest

    for key, images in (("google-nano-banana", []), ("google-nano-banana-edit", ["https://example.com/a.png"])):
        estimate = estimate_request_cost(RawUserRequest(model_key=key, prompt="a cat on a sofa", images=images))
        assert estimate.has_numeric_estimate and estimate.usd == 0.02 and estimate.credits == 4, key


def test_a_refresh_keeps_the_unpriced_entries_of_the_keys_it_did_not_price() -> None:
    from kie_async.catalogue.pricing import refresh_snapshot

    base = latest_snapshot()
    report = refresh_snapshot({"records": []}, base, captured_on=date(2026, 12, 7))
    assert report.snapshot.unpriced == base.unpriced and set(report.snapshot.models) == set(base.models)


def test_cli_lists_why_each_unpriced_key_has_no_price(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pricing", "status", "--unpriced", "--model", "veo-3.1", "--model", "nano-banana-2"]) == 0
    out = capsys.readouterr().out
    assert "veo-3.1: The Veo pages give only" in out and "nano-banana-2" not in out
