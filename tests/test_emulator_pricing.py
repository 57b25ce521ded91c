"""The emulator's prices are its own: served like Kie.ai's pricing API, charged on createTask, refreshable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kie_async import KieSession
from kie_async.catalogue.pricing import (
    PricingSnapshot,
    estimate_wire_cost,
    latest_snapshot,
    load_snapshot_file,
    refresh_snapshot,
)
from kie_async.emulator import KieEmulator

CREATE = "/api/v1/jobs/createTask"


async def _post(emu: KieEmulator, path: str, body: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {emu.api_key}"}) as client,
        client.post(emu.base_url + path, json=body) as response,
    ):
        answer: dict[str, Any] = await response.json()
        return answer


@pytest.mark.parametrize(
    ("model", "params", "credits"),
    [
        ("nano-banana-2", {"prompt": "x"}, 8),  # the page's default resolution (1K) prices it
        ("nano-banana-pro", {"prompt": "x", "resolution": "4K"}, 24),
        ("kling-2.6/text-to-video", {"prompt": "x", "sound": True, "duration": "10", "aspect_ratio": "1:1"}, 220),
        (
            "kling-3.0/video",
            {"prompt": "x", "sound": False, "duration": "7", "mode": "pro", "aspect_ratio": "1:1"},
            7 * 18,
        ),
        ("bytedance/seedance-2-fast", {"prompt": "a dancer", "resolution": "480p", "duration": 6}, 6 * 15.5),
    ],
)
async def test_create_task_charges_the_served_price(
    emulator: KieEmulator, model: str, params: dict[str, Any], credits: float
) -> None:
    before = emulator.credits()
    answer = await _post(emulator, CREATE, {"model": model, "input": params})
    assert answer["code"] == 200, answer
    assert before - emulator.credits() == pytest.approx(credits)


async def test_an_sdk_estimate_bug_shows_as_estimate_not_charged(
    emulator: KieEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Break the SDK's price for nano-banana-2 2K: the emulator still charges its own price, so they differ."""
    import kie_async.catalogue.pricing as pricing

    good = latest_snapshot()
    rules = [
        r.model_copy(update={"credits": 99.0}) if r.description == "Google nano banana 2, 2K" else r
        for r in good.models["nano-banana-2"].rules
    ]
    broken = good.model_copy(
        update={
            "models": {**good.models, "nano-banana-2": good.models["nano-banana-2"].model_copy(update={"rules": rules})}
        }
    )
    params = {"prompt": "x", "resolution": "2K"}
    assert estimate_wire_cost("nano-banana-2", params) == 12  # healthy SDK and emulator agree...
    before = emulator.credits()
    await _post(emulator, CREATE, {"model": "nano-banana-2", "input": params})
    charged = before - emulator.credits()
    monkeypatch.setattr(pricing, "latest_snapshot", lambda *a, **k: broken)
    assert estimate_wire_cost("nano-banana-2", params) == 99  # ...a bug on the SDK side...
    assert charged == pytest.approx(12)  # ...is caught, because the emulator does not read the SDK's prices


async def test_pricing_api_pages_and_refuses_garbage(emulator: KieEmulator) -> None:
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(emulator.base_url + "/client/v1/model-pricing/count") as response,
    ):
        count = (await response.json())["data"]
    first = (await _post(emulator, "/client/v1/model-pricing/page", {"pageNum": 1, "pageSize": 10}))["data"]
    assert count["all"] == first["total"] and len(first["records"]) == 10 and first["pages"] == -(-count["all"] // 10)
    row = first["records"][0]
    assert {"modelDescription", "interfaceType", "creditPrice", "creditUnit", "usdPrice", "anchor"} <= set(row)
    assert isinstance(row["creditPrice"], str)  # a string, as the live API sends it
    for bad in (
        {"pageNum": 0, "pageSize": 10},
        {"pageNum": 1, "pageSize": 10**9},
        {"pageNum": "1", "pageSize": 5},
        {"pageNum": True, "pageSize": 5},
        {},
        [],
        "x",
    ):
        assert (await _post(emulator, "/client/v1/model-pricing/page", bad))["code"] == 400, bad


async def test_live_refresh_maps_rows_to_model_keys_offline(emulator: KieEmulator) -> None:
    async with KieSession(emulator.settings()) as kie:
        records = await kie.get_pricing_records(page_size=7)  # several pages
    assert len(records) == (await _count(emulator))
    base = latest_snapshot()
    report = refresh_snapshot({"records": records}, base)
    assert "nano-banana-2: Google nano banana 2, 4K" in report.updated
    assert any(key.startswith("kling-3.0-motion") for key in report.updated)
    # Rows the snapshot has no description for stay unmatched, and their rules keep the old price.
    assert any("seedance" in d.lower() for d in report.unmatched_records)
    assert any(c.startswith("seedance-2.0:") for c in report.carried_over)
    assert isinstance(report.snapshot, PricingSnapshot)


async def _count(emu: KieEmulator) -> int:
    async with aiohttp.ClientSession() as client, client.get(emu.base_url + "/client/v1/model-pricing/count") as r:
        total: int = (await r.json())["data"]["all"]
        return total


def test_cli_refresh_offline_writes_a_dated_snapshot(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kie_async",
            "pricing",
            "refresh",
            "--offline",
            "--out",
            str(tmp_path),
            "--date",
            "2026-12-06",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    snapshot = load_snapshot_file(tmp_path / "2026-12-06_pricing_api.yaml")
    assert snapshot.source_kind == "pricing_api" and "nano-banana-2" in snapshot.models
    report = json.loads(done.stdout)
    assert report["unmapped_keys"] == [] and "veo-3.1" in report["unpriced"]  # every key priced or explained
    assert snapshot.unpriced == latest_snapshot().unpriced


def test_cli_refresh_live_needs_the_opt_in(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")} | {"KIE_API_KEY": "not-a-real-key"}
    done = subprocess.run(
        [sys.executable, "-m", "kie_async", "pricing", "refresh", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode != 0 and "KIE_ALLOW_LIVE" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def _sold_models() -> list[tuple[str, dict[str, Any]]]:
    """Every model id the emulator sells, with an input its page shows: each market model of the bundled
    schemas, and each separate API's model as that API names it from a body (Veo's three, extend, 4K...)."""
    from kie_async.emulator.policy import load_provider_schemas
    from kie_async.emulator.transports import DIALECTS

    sold: dict[str, dict[str, Any]] = {}
    for bundle in load_provider_schemas().schemas:
        examples = [e for e in bundle.example_inputs if isinstance(e, dict)] or [{}]
        if bundle.endpoint == CREATE:
            for model in bundle.models:
                sold.setdefault(model, examples[0].get("input") or examples[0])
            continue
        for dialect in DIALECTS.values():
            if dialect.create_path == bundle.endpoint:
                bodies = [*examples, *({**examples[0], "model": m} for m in bundle.models)]
                for body in bodies:
                    sold.setdefault(dialect.catalogue_model(body), body)
    return sorted(sold.items())


def test_the_emulators_price_list_covers_every_model_it_sells() -> None:
    from kie_async.emulator.policy import price_table_cost

    sold = _sold_models()
    assert len(sold) > 120 and {"veo3", "veo3_fast", "veo3_lite", "veo3-extend", "veo3-4k"} <= dict(sold).keys()
    unpriced = [model for model, params in sold if price_table_cost(model, params) is None]
    assert unpriced == []


async def test_nano_banana_v1_is_charged_what_the_sdk_estimates(emulator: KieEmulator) -> None:
    for model in ("google/nano-banana", "google/nano-banana-edit"):
        params: dict[str, Any] = {"prompt": "a cat"}
        if model.endswith("edit"):
            params["image_urls"] = ["https://example.com/a.png"]
        before = emulator.credits()
        answer = await _post(emulator, CREATE, {"model": model, "input": params})
        assert answer["code"] == 200, answer
        assert before - emulator.credits() == pytest.approx(4) == estimate_wire_cost(model, params)


async def test_a_refresh_from_the_full_price_list_maps_every_key(emulator: KieEmulator) -> None:
    """Against a pricing API with a row for every model: every rule the snapshot can map (it knows the row's
    description) is refreshed, none is carried over blind, and every catalogue key ends priced or explained."""
    from kie_async.catalogue.pricing_status import unmapped_keys
    from kie_async.catalogue.specs import load_registry

    async with KieSession(emulator.settings()) as kie:
        records = await kie.get_pricing_records(page_size=50)
    assert len(records) == await _count(emulator)
    base = latest_snapshot()
    report = refresh_snapshot({"records": records}, base)
    described = [f"{k}: {r.description}" for k, p in base.models.items() for r in p.rules if r.description]
    assert sorted(report.updated) == sorted(described)
    assert all(not c.split(": ", 1)[1].startswith("Google") for c in report.carried_over)
    assert unmapped_keys(load_registry(), report.snapshot) == []
    # The rows nobody maps are the ones whose description no snapshot rule names (the emulator's own figures).
    assert all(
        d.endswith(("(emulator figure)", "(facts file price)")) or "eedance" in d for d in report.unmatched_records
    )
