"""Pricing: estimates per model from the bundled snapshot, known vs numeric, wire estimates, and refresh."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from kie_async.catalogue.pricing import (
    PricingError,
    clear_pricing_cache,
    estimate_request_cost,
    estimate_wire_cost,
    latest_snapshot,
    list_snapshots,
    load_snapshot_file,
    parse_pricing_document,
    refresh_snapshot,
    write_snapshot,
)
from kie_async.catalogue.request_models import MediaInput, RawUserRequest
from kie_async.catalogue.specs import load_registry
from kie_async.core.data import data_dir

FIXTURE = Path(__file__).parent / "data" / "pricing_api_fixture.json"
IMG = "https://cdn.test/a.png"
VID = "https://cdn.test/v.mp4"


@pytest.mark.parametrize(
    ("model", "options", "media", "credits"),
    [
        ("nano-banana-2", {}, {}, 8),
        ("nano-banana-2", {"resolution": "2K"}, {}, 12),
        ("nano-banana-2", {"resolution": "4K"}, {"images": [IMG]}, 18),
        ("nano-banana-pro", {"resolution": "2K"}, {}, 18),
        ("nano-banana-pro", {"resolution": "4K"}, {}, 24),
        ("kling-2.6-t2v", {}, {}, 55),
        ("kling-2.6-t2v", {"sound": True}, {}, 110),
        ("kling-2.6-t2v", {"duration": 10}, {}, 110),
        ("kling-2.6-i2v", {"duration": "10", "sound": True}, {"images": [IMG]}, 220),
        ("kling-3.0-t2v", {"mode": "std", "duration": 10}, {}, 140),
        ("kling-3.0-t2v", {"mode": "std", "sound": True, "duration": 5}, {}, 100),
        ("kling-3.0-t2v", {}, {}, 90),
        ("kling-3.0-i2v", {"sound": True, "duration": 4}, {"images": [IMG]}, 108),
        ("kling-3.0-t2v", {"mode": "4K", "duration": 3}, {}, 201),
        ("seedance-2.0", {"resolution": "480p"}, {}, 95),
        ("seedance-2.0", {"resolution": "1080p", "duration": 10}, {}, 1020),
        ("seedance-2.0", {"resolution": "720p"}, {"videos": [VID]}, 125),
        ("seedance-2.0-fast", {"resolution": "720p"}, {}, 165),
        ("seedance-2.0-fast", {"resolution": "480p"}, {"videos": [VID]}, 45),
        ("seedance-2.0-mini", {"resolution": "480p", "duration": 4}, {}, 38),
        ("seedance-2.0-mini", {"resolution": "720p"}, {"videos": [VID]}, 62.5),
    ],
)
def test_estimates_follow_the_published_prices(
    model: str, options: dict[str, Any], media: dict[str, Any], credits: float
) -> None:
    estimate = estimate_request_cost(RawUserRequest(model_key=model, prompt="abc", options=options, **media))
    assert estimate.has_numeric_estimate
    assert estimate.credits == pytest.approx(credits)
    assert estimate.usd == pytest.approx(credits * 0.005)
    assert estimate.snapshot_id == "2026-06-30_published_pricing"


def test_every_price_belongs_to_a_model_and_the_original_models_are_priced() -> None:
    """Catalogue models without a published price stay unknown (tests/test_catalogue.py checks the gate)."""
    snapshot = latest_snapshot(data_dir("pricing"))
    assert set(snapshot.models) <= set(load_registry().model_keys())
    assert {
        "nano-banana-2",
        "nano-banana-pro",
        "kling-2.6-t2v",
        "kling-2.6-i2v",
        "kling-2.6-motion",
        "kling-3.0-t2v",
        "kling-3.0-i2v",
        "kling-3.0-motion",
        "seedance-2.0",
        "seedance-2.0-fast",
        "seedance-2.0-mini",
    } <= set(snapshot.models)


# Separate-API models (Veo, Runway, Suno, 4o Image, Flux Kontext): no published price in our sources yet.
UNPRICED = {
    "veo-3.1",
    "veo-3.1-fast",
    "runway-gen",
    "runway-aleph",
    "suno-music",
    "gpt4o-image",
    "flux-kontext-pro",
    "flux-kontext-max",
}


@pytest.mark.parametrize("key", sorted(UNPRICED))
def test_unpriced_models_say_unknown(key: str) -> None:
    estimate = estimate_request_cost(RawUserRequest(model_key=key, prompt="x"))
    assert not estimate.has_numeric_estimate and not estimate.is_known


def test_numeric_is_not_known_for_published_page_prices() -> None:
    estimate = estimate_request_cost(RawUserRequest(model_key="nano-banana-2", prompt="x"))
    assert estimate.has_numeric_estimate and not estimate.is_known


def test_known_requires_verified_billing_and_no_assumptions(tmp_path: Path) -> None:
    base = latest_snapshot(data_dir("pricing"))
    verified = base.model_copy(update={"billing_verified": True})
    plain = estimate_request_cost(RawUserRequest(model_key="nano-banana-2", prompt="x"), snapshot=verified)
    assert plain.is_known
    with_video = estimate_request_cost(
        RawUserRequest(model_key="seedance-2.0", prompt="abc", videos=[VID]), snapshot=verified
    )
    assert with_video.has_numeric_estimate and not with_video.is_known
    assert with_video.assumptions == ["billed on output seconds only"]


def test_motion_control_needs_the_driver_length() -> None:
    unknown = estimate_request_cost(RawUserRequest(model_key="kling-2.6-motion", images=[IMG], videos=[VID]))
    assert not unknown.has_numeric_estimate and unknown.credits is None
    assert unknown.rate_credits == 11
    assert any("duration_seconds" in n for n in unknown.notes)
    known = estimate_request_cost(
        RawUserRequest(
            model_key="kling-3.0-motion",
            images=[IMG],
            videos=[MediaInput(source=VID, duration_seconds=12)],
            options={"mode": "pro"},
        )
    )
    assert known.credits == 27 * 12


def test_motion_control_output_cap_by_orientation() -> None:
    estimate = estimate_request_cost(
        RawUserRequest(
            model_key="kling-2.6-motion",
            images=[IMG],
            videos=[MediaInput(source=VID, duration_seconds=25)],
            options={"character_orientation": "image", "mode": "1080p"},
        )
    )
    assert estimate.quantity == 10 and estimate.credits == 180
    assert "output capped at 10 s" in estimate.notes


def test_no_rule_match_is_not_numeric() -> None:
    estimate = estimate_request_cost(
        RawUserRequest(model_key="nano-banana-2", prompt="x", options={"resolution": "8K"})
    )
    assert not estimate.has_numeric_estimate
    assert "no price rule" in estimate.notes[-1]


def test_unknown_model_estimate() -> None:
    estimate = estimate_request_cost(RawUserRequest(model_key="nope", prompt="x"))
    assert not estimate.has_numeric_estimate


@pytest.mark.parametrize(
    ("model_id", "body", "credits"),
    [
        (
            "kling-3.0/video",
            {"prompt": "p", "sound": True, "duration": "10", "mode": "pro", "aspect_ratio": "16:9"},
            270,
        ),
        ("kling-3.0/video", {"prompt": "p", "image_urls": [IMG], "sound": False, "duration": "5", "mode": "std"}, 70),
        (
            "bytedance/seedance-2",
            {"prompt": "abc", "resolution": "480p", "duration": 10, "reference_video_urls": [VID]},
            114,
        ),
        ("nano-banana-pro", {"prompt": "p", "resolution": "4K"}, 24),
        ("kling-2.6/text-to-video", {"prompt": "p", "sound": True, "duration": "10", "aspect_ratio": "1:1"}, 220),
    ],
)
def test_wire_cost(model_id: str, body: dict[str, Any], credits: float) -> None:
    assert estimate_wire_cost(model_id, body) == pytest.approx(credits)


def test_wire_cost_unknown_model_or_length() -> None:
    assert estimate_wire_cost("midjourney/v7", {"prompt": "p"}) is None
    assert (
        estimate_wire_cost(
            "kling-2.6/motion-control",
            {"input_urls": [IMG], "video_urls": [VID], "mode": "720p", "character_orientation": "video"},
        )
        is None
    )


def test_refresh_builds_a_dated_snapshot(tmp_path: Path) -> None:
    base = latest_snapshot(data_dir("pricing"))
    doc = json.loads(FIXTURE.read_text())
    report = refresh_snapshot(doc, base, captured_on=date(2026, 11, 28))
    snap = report.snapshot
    assert snap.snapshot_id == "2026-11-28_pricing_api"
    assert snap.source_kind == "pricing_api"
    assert report.unmatched_records == ["Suno v5, music"]
    assert len(report.updated) == 6  # 2 Kling 3.0 records each update the t2v and the i2v rule
    rule = next(r for r in snap.models["kling-3.0-t2v"].rules if r.description == "Kling 3.0, video, with audio-1080P")
    assert (rule.credits, rule.usd) == (30.0, 0.15)
    nb = next(r for r in snap.models["nano-banana-2"].rules if r.description == "Google nano banana 2, 4K")
    assert nb.credits == 20.0  # whitespace in the record's description is normalized
    assert any("seedance-2.0" in c for c in report.carried_over)
    path = write_snapshot(snap, tmp_path)
    assert path.name == "2026-11-28_pricing_api.yaml"
    assert load_snapshot_file(path).models == snap.models
    # The new snapshot is now the latest in that folder and drives estimates.
    shutil.copy(base.source_file or "", tmp_path / "base.yaml")
    clear_pricing_cache()
    assert latest_snapshot(tmp_path).snapshot_id == snap.snapshot_id
    assert [s.snapshot_id for s in list_snapshots(tmp_path)] == [base.snapshot_id, snap.snapshot_id]
    estimate = estimate_request_cost(
        RawUserRequest(model_key="kling-3.0-t2v", prompt="p", options={"sound": True, "duration": 10}),
        pricing_dir=tmp_path,
    )
    assert estimate.credits == 300


@pytest.mark.parametrize("doc", [{"code": 200, "data": {}}, {"records": "x"}, [{"creditPrice": "1"}], "text"])
def test_malformed_pricing_documents(doc: Any) -> None:
    with pytest.raises(PricingError):
        parse_pricing_document(doc)


def test_bare_record_list_is_accepted() -> None:
    records = parse_pricing_document([{"modelDescription": "a", "creditPrice": "3"}])
    assert records[0].description == "a" and records[0].credit_price == "3"


def test_bad_snapshot_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "snapshot_id: x\ncaptured_on: 2026-01-01\nsource: s\nsource_kind: k\nmodels:\n"
        "  m: {unit: per_second, rules: [{credits: 1}]}\n"
    )
    with pytest.raises(PricingError, match=r"bad\.yaml.*quantity"):
        load_snapshot_file(path)


def test_wire_cost_applies_documented_defaults_like_the_provider() -> None:
    assert estimate_wire_cost("nano-banana-2", {"prompt": "p"}) == 8  # resolution defaults to 1K
    assert estimate_wire_cost("bytedance/seedance-2", {"prompt": "abc"}) == pytest.approx(205)  # 720p, 5 s
