"""The whole catalogue: every model key runs offline, each page's own example passes the wire check, the docs
page is current, and `kie-async models` / `models show` describe every model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactSettings
from kie_async.artifacts.settings import ArtifactDerivativeSettings
from kie_async.catalogue.fixtures import REQUEST_FIXTURES
from kie_async.catalogue.listing import render_markdown
from kie_async.catalogue.payload import build_submission_payload, check_wire_payload
from kie_async.catalogue.pricing import estimate_request_cost
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.spec_drift import page_examples
from kie_async.catalogue.specs import ModelSpec, load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.core.media_sniff import read_head, sniff_head
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = load_registry(ROOT / "model_specs")
SPECS = sorted(REGISTRY.specs.values(), key=lambda s: s.key)
FAST_POLL = PollSettings(schedule=((float("inf"), 0.02),), timeout=30.0)
DEAD_CALLBACK = "http://127.0.0.1:9/kie/callback"
SUBMITTABLE = ("ready", "ready_with_defaults", "ready_with_warning")


def _runnable(key: str) -> RawUserRequest:
    """The model's first submittable fixture (ready first), its callback on a closed loopback port: some APIs
    (Suno) require one, and nothing must be delivered off this machine."""
    for state in SUBMITTABLE:
        for fixture in REQUEST_FIXTURES.values():
            if fixture.expected_model_key == key and fixture.expected_state == state:
                return fixture.request.model_copy(update={"callback_url": DEAD_CALLBACK})
    raise AssertionError(f"{key} has no submittable request fixture")


async def _with_earlier_task(
    spec: ModelSpec, request: RawUserRequest, kie: KieSession, opts: PipelineOptions
) -> RawUserRequest:
    """A follow-up on a separate API (Veo's extend) works on a task that API really sold: buy one first (a
    sibling model read at the same status path) and name it, as a user would."""
    if spec.transport.is_market or "taskId" not in request.options:
        return request
    sibling = next(
        s
        for s in SPECS
        if s.transport.status.path == spec.transport.status.path and "taskId" not in s.options and s is not spec
    )
    earlier = await run_pipeline(_runnable(sibling.key), kie, options=opts)
    assert earlier.succeeded and earlier.task_id, earlier.error
    return request.model_copy(update={"options": {**request.options, "taskId": earlier.task_id}})


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.0, image_long_edge=16, create_rate_limit=None, credits=1_000_000)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as session:
        yield session


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
async def test_every_model_runs_offline(spec: ModelSpec, kie: KieSession, tmp_path: Path) -> None:
    """validate -> submit -> wait -> download -> artifact, and the file is the kind the spec promises."""
    request = _runnable(spec.key)
    opts = PipelineOptions(
        artifacts=ArtifactSettings(
            root=tmp_path, fsync=False, update_index=False, derivatives=ArtifactDerivativeSettings(enabled=False)
        ),
        allow_unknown_cost=True,
    )
    request = await _with_earlier_task(spec, request, kie, opts)
    result = await run_pipeline(request, kie, options=opts)
    assert result.status == "succeeded", (result.error, result.validation and result.validation.all_details())
    assert result.run_dir is not None and (Path(result.run_dir) / "run.json").is_file()
    assert result.outputs  # one file per output URL (Suno sells two tracks)
    for output in result.outputs:
        sniffed = sniff_head(read_head(output.path))
        assert spec.output_kind in sniffed.kinds, (spec.key, sniffed.looks_like)
        assert sniffed.kind == spec.output_kind


@pytest.mark.parametrize("spec", [s for s in SPECS if s.source_page], ids=lambda s: s.key)
def test_ready_fixture_payload_speaks_the_pages_wire_types(spec: ModelSpec, kie_docs: Path) -> None:
    """The SDK's payload for the ready fixture uses the same JSON types the page's example uses, field by field."""
    payload = build_submission_payload(validate_request(_runnable(spec.key), check_files=False))
    assert check_wire_payload(payload.model, payload.input) == []
    examples, _ = page_examples(spec, kie_docs)
    for example in examples:
        for name, value in payload.input.items():
            if name in example.input and name in spec.options and example.input[name] is not None:
                assert type(value) is type(example.input[name]) or {type(value), type(example.input[name])} == {
                    int,
                    float,
                }, (spec.key, name, value, example.input[name])


@pytest.mark.parametrize("spec", [s for s in SPECS if s.source_page], ids=lambda s: s.key)
def test_page_example_passes_the_wire_check(spec: ModelSpec, kie_docs: Path) -> None:
    """Each page's own example request (with the spec's recorded corrections) is accepted by the SDK's check."""
    examples, stale = page_examples(spec, kie_docs)
    assert stale == [], f"{spec.key}: example_corrections that change nothing: {stale}"
    fields = set(spec.options) | {spec.prompt.field} | {s.field for m in spec.task_modes for s in m.slots}
    for example in examples:
        model = spec.task_modes[0].provider_model
        if example.model is not None and "provider_models" not in {o.path for o in spec.overrides}:
            assert example.model in spec.provider_models
        assert check_wire_payload(model, example.input) == [], (spec.key, example.corrected)
        assert set(example.input) <= fields, f"{spec.key}: the page's example sends fields the spec lacks"


def test_corrections_are_explained() -> None:
    corrected = {s.key: s.example_corrections for s in SPECS if s.example_corrections}
    assert all(len(c.why) > 20 for fixes in corrected.values() for c in fixes)


def test_unknown_price_stays_explicit() -> None:
    """A model without a price estimates as unknown, and the preflight blocks it unless allowed."""
    from kie_async.catalogue.preflight import run_preflight

    unpriced = next(s for s in SPECS if json.loads(_models_json_row(s.key))["priced"] is False)
    request = _runnable(unpriced.key)
    estimate = estimate_request_cost(validate_request(request, check_files=False).normalized)
    assert not estimate.has_numeric_estimate and estimate.credits is None
    import asyncio

    blocked = asyncio.run(run_preflight(request, available_credits=1000, check_files=False))
    assert not blocked.allowed and any(r.blocking for r in blocked.reasons)
    allowed = asyncio.run(run_preflight(request, available_credits=1000, check_files=False, allow_unknown_cost=True))
    assert allowed.allowed


def _models_json_row(key: str) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models", "--json"]) == 0
    return json.dumps(next(r for r in json.loads(out.getvalue()) if r["key"] == key))


def test_models_lists_families_with_kinds_modes_and_prices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for family in {s.family for s in SPECS}:
        assert f"{family} (" in out
    assert "audio" in out and "text_to_audio" in out and "8-18 cr/image" in out and "unknown" in out
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    media = [r for r in rows if r["kind"] == "media"]
    assert {r["key"] for r in media} == {s.key for s in SPECS}
    assert {r["output"] for r in media} == {"image", "video", "audio"}
    assert {r["output"] for r in rows if r["kind"] == "chat"} == {"text"}


def test_models_show_prints_fields_limits_defaults_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "hailuo-2.3-i2v-pro"]) == 0
    out = capsys.readouterr().out
    assert "duration" in out and "6, 10" in out and "768P" in out  # field, allowed values, a default
    assert "image_url: 1-1 image (first_frame)" in out and "10 MB" in out
    assert "no_10s_at_1080p" in out
    assert "kie-async run --offline --model hailuo-2.3-i2v-pro" in out
    assert main(["models", "show"]) == 2
    assert main(["models", "show", "no-such-model"]) == 1
    assert main(["models", "hailuo-2.3-i2v-pro", "extra"]) == 2


def test_models_show_example_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example `models show` prints is a command that works as printed."""
    import shlex

    assert main(["models", "show", "elevenlabs-text-to-speech-turbo-2.5"]) == 0
    line = next(x.strip() for x in capsys.readouterr().out.splitlines() if x.strip().startswith("kie-async run"))
    monkeypatch.chdir(tmp_path)
    words = shlex.split(line)[1:]
    assert main([*words, "--allow-unknown-cost", "--out", str(tmp_path / "o"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"


def test_catalogue_page_is_current() -> None:
    page = ROOT / "docs" / "catalogue.md"
    assert page.read_text(encoding="utf-8") == render_markdown(REGISTRY), (
        "docs/catalogue.md is stale: run `python -m kie_async.catalogue.listing > docs/catalogue.md`"
    )


def test_catalogue_page_names_the_exclusions() -> None:
    text = (ROOT / "docs" / "catalogue.md").read_text(encoding="utf-8")
    assert "chat" in text and "Claude" in text and "speech-to-text" in text
