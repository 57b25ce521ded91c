"""``kie-async pricing status``: every catalogue key, priced or not, from which snapshot, how old (issue 22)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from kie_async.catalogue.pricing import latest_snapshot
from kie_async.catalogue.pricing_status import HOW_TO_PRICE, pricing_status
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
