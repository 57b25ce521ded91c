"""The emulator's bundled provider schemas: true to their pages, complete, and used the way Kie.ai answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.emulator.page_rules import PAGE_RULES
from kie_async.emulator.provider_schemas import BUNDLE_DIR, load_provider_schemas
from kie_async.emulator.schema_extract import extract_all

CREATE = "/api/v1/jobs/createTask"


def test_bundled_schemas_match_their_pages(kie_docs: Path) -> None:
    wanted = {name: bundle.to_json() for name, bundle in extract_all(kie_docs).items()}
    present = {p.relative_to(BUNDLE_DIR).as_posix(): p.read_text(encoding="utf-8") for p in BUNDLE_DIR.rglob("*.json")}
    drifted = sorted(n for n in wanted if present.get(n) != wanted[n])
    stale = sorted(set(present) - set(wanted))
    assert not drifted and not stale, (
        f"regenerate with `python scripts/extract_provider_schemas.py`: differs {drifted}, no page {stale}"
    )


def test_every_market_media_page_is_bundled_with_provenance(kie_docs: Path) -> None:
    from kie_async.core.provider_pages import iter_pages

    pages = [p for p in iter_pages(kie_docs, under="market") if p.operation(CREATE)]
    bundle = load_provider_schemas()
    sources = {s.page["source"] for s in bundle.schemas}
    assert {p.source for p in pages} <= sources and len(pages) > 100
    for schema in bundle.schemas:
        assert schema.page["url"] and schema.page["url"].startswith("https://docs.kie.ai/")
        assert schema.page["sha256"] and len(schema.page["sha256"]) == 64 and schema.page["captured"]
    chat = [p.source for p in iter_pages(kie_docs, under="market/chat")]
    assert chat and not sources & set(chat)  # chat/LLM pages are OpenAI-style endpoints, not createTask
    for path in (
        "/api/v1/veo/generate",
        "/api/v1/runway/generate",
        "/api/v1/generate",
        "/api/v1/gpt4o-image/generate",
        "/api/v1/flux/kontext/generate",
    ):
        assert bundle.for_endpoint(path) is not None, path


def test_bundled_files_are_plain_facts() -> None:
    """No prose (descriptions, examples) and no vendor keys inside the schemas; every file is valid JSON Schema."""
    from jsonschema import Draft202012Validator

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = set(node) - ({"properties"} if "properties" in node else set())
            for key, value in node.items():
                found |= keys(value) if key != "properties" else set().union(*(keys(v) for v in value.values()))
            return found
        if isinstance(node, list):
            return set().union(*(keys(v) for v in node)) if node else set()
        return set()

    for path in BUNDLE_DIR.rglob("*.json"):
        raw = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(raw["schema"])
        found = keys(raw["schema"])
        assert not {"description", "examples", "example", "title"} & found, path
        assert not any(k.startswith("x-") for k in found), path


def test_every_page_rule_names_a_bundled_page_and_model() -> None:
    bundle = load_provider_schemas()
    sources = {s.page["source"] for s in bundle.schemas}
    for rule in PAGE_RULES:
        assert rule.page in sources, rule.name
        assert all(bundle.for_model(m) is not None for m in rule.models), rule.name
        assert all(bundle.for_endpoint(p) is not None for p in rule.endpoints), rule.name
        assert bool(rule.models) != bool(rule.endpoints), rule.name  # judges inputs or whole bodies, not both


async def _create(emu: KieEmulator, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {emu.api_key}"}) as client,
        client.post(emu.base_url + CREATE, json=body) as response,
    ):
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def test_schema_violations_are_422_with_every_reason(emulator: KieEmulator) -> None:
    body = {"model": "nano-banana-2", "input": {"resolution": "8K", "aspect_ratio": 3}}
    answer = await _create(emulator, body)
    assert answer["code"] == 422 and answer["data"] is None
    assert "'prompt' is a required property" in answer["msg"]
    assert "input.resolution: '8K' is not one of" in answer["msg"] and "input.aspect_ratio" in answer["msg"]
    assert emulator.stats.create_rejected == 1 and emulator.stats.tasks_created == 0


async def test_page_rules_refuse_what_the_page_forbids_in_words(emulator: KieEmulator) -> None:
    mixed = {
        "model": "bytedance/seedance-2",
        "input": {
            "prompt": "a dancer",
            "first_frame_url": "https://example.com/a.png",
            "reference_image_urls": ["https://example.com/b.png"],
        },
    }
    answer = await _create(emulator, mixed)
    assert answer["code"] == 422 and "[seedance-scenarios-exclusive]" in answer["msg"]
    multi = {
        "model": "kling-3.0/video",
        "input": {"sound": True, "duration": "5", "mode": "std", "multi_shots": True, "aspect_ratio": "16:9"},
    }
    answer = await _create(emulator, multi)
    assert answer["code"] == 422 and "[kling30-multi-prompt-with-multi-shots]" in answer["msg"]
    # What the page allows (and our SDK spec refuses) passes: the emulator does not share the SDK's beliefs.
    page_example = {
        "model": "kling-3.0/motion-control",
        "input": {
            "input_urls": ["https://example.com/a.png"],
            "video_urls": ["https://example.com/v.mp4"],
            "mode": "720p",
        },
    }
    assert (await _create(emulator, page_example))["code"] == 200


async def test_unknown_model_ids_are_refused_and_cost_nothing(emulator: KieEmulator) -> None:
    before = emulator.credits()
    for model in ("slow/model", "nano-banana-3", "NANO-BANANA-2", "kling-3.0-i2v"):  # SDK keys are not wire ids
        answer = await _create(emulator, {"model": model, "input": {"prompt": "x"}})
        assert answer["code"] == 422 and "is not a model this service offers" in answer["msg"], model
    assert emulator.credits() == before and emulator.stats.tasks_created == 0


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(accept_unknown_models=True, unknown_model_cost=7)])
async def test_flat_cost_mode_is_an_explicit_test_setting(emulator: KieEmulator) -> None:
    answer = await _create(emulator, {"model": "any/model", "input": {}})
    assert answer["code"] == 200
    assert emulator.credits() == pytest.approx(5000 - 7)
    assert (await _create(emulator, {"model": "any/model", "input": "nope"}))["code"] == 422


async def test_hostile_inputs_get_a_bounded_422_not_a_crash(emulator: KieEmulator) -> None:
    many = {"model": "nano-banana-2", "input": {"prompt": "x", "image_input": [{"bad": i} for i in range(5000)]}}
    answer = await _create(emulator, many)
    assert answer["code"] == 422 and "more" in answer["msg"] and len(answer["msg"]) < 10_000
    for params in (
        {"prompt": None},
        {"prompt": ["x"]},
        {"prompt": "x", "resolution": None},
        {"prompt": "x" * 20_001},
        {"prompt": "a", "duration": float("inf")},
    ):
        body = {"model": "bytedance/seedance-2", "input": params}
        assert (await _create(emulator, body))["code"] == 422, params
    nested: dict[str, Any] = {}
    for _ in range(200):
        nested = {"deeper": nested}
    deep = {"model": "nano-banana-2", "input": {"prompt": "x", "extra": nested}}
    assert (await _create(emulator, deep))["code"] == 200  # unknown fields pass, as the schemas allow them


# Page examples that break their own page: the emulator follows the page's rules and schema, not the example.
_SELF_CONTRADICTING_EXAMPLES = {
    "bytedance/seedance-2": "mixes frames and references, which the page calls mutually exclusive",
    "bytedance/seedance-2-fast": "mixes frames and references, which the page calls mutually exclusive",
    "bytedance/seedance-2-mini": "derived from the Fast page, whose example mixes frames and references",
    "grok-imagine/extend": "sends extend_at as a number; the page's schema says string",
    "grok-imagine/image-to-video": "sends task_id with image_urls, which the page says not to use together",
    "grok-imagine/text-to-video": "sends duration as a string; the page's schema says number",
}


def test_each_pages_own_example_passes_its_schema_unless_the_page_contradicts_itself() -> None:
    from kie_async.emulator.policy import schema_input_checker

    refused = {
        model
        for model, schema in load_provider_schemas().by_model.items()
        for example in schema.example_inputs
        if schema_input_checker(model, example)
    }
    assert refused == set(_SELF_CONTRADICTING_EXAMPLES)
