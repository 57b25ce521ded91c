"""``extra_options``: fields Kie.ai added before our specs did, sent verbatim with a warning; against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactSettings, load_run
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.payload import build_submission_payload
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.validate import validate_request
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main
from kie_async.ledger.journal import raw_request_key, request_key
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession


def nb2(**extra: object) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt="a red fox", extra_options=dict(extra))


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


def test_sent_verbatim_with_a_warning() -> None:
    validation = validate_request(nb2(style_strength=0.7, seed_list=[1, 2], nested={"a": None}))
    assert validation.state == "ready_with_warning"
    flagged = [d for d in validation.warning_details if d.rule == "extra_option"]
    assert [d.field for d in flagged] == [
        "extra_options.style_strength",
        "extra_options.seed_list",
        "extra_options.nested",
    ]
    body = build_submission_payload(validation).input
    assert body["style_strength"] == 0.7 and body["seed_list"] == [1, 2] and body["nested"] == {"a": None}
    assert body["prompt"] == "a red fox"


def test_unknown_options_stay_an_error_and_known_names_are_refused_as_extras() -> None:
    unknown = validate_request(RawUserRequest(model_key="nano-banana-2", prompt="p", options={"style_strength": 1}))
    assert unknown.state == "invalid"
    known = validate_request(nb2(resolution="4K"))
    assert known.state == "invalid" and known.impossible_inputs[0].rule == "extra_option_known"
    assert "options" in known.impossible_inputs[0].fix
    for bad in (
        {"prompt": "x"},
        {"image_input": ["https://a.test/x.png"]},
        {"": 1},
        {"model": "x"},
        {"x": float("nan")},
        {"x": b"bytes"},
    ):
        assert (
            validate_request(RawUserRequest(model_key="nano-banana-2", prompt="p", extra_options=bad)).state
            == "invalid"
        ), bad


def test_journal_keys_of_plain_requests_did_not_move() -> None:
    # Fixed before extra_options existed: a journal written then still finds its requests (never buys twice).
    plain = RawUserRequest(model_key="nano-banana-2", prompt="a red fox", options={"resolution": "2K"})
    assert raw_request_key(plain) == "raw-908514d67af0e361c607dd9d"
    assert request_key(normalize_request(plain)) == "d9243895ba36a0f7ee70729b"
    with_extra = plain.model_copy(update={"extra_options": {"x": 1}})
    assert raw_request_key(with_extra) != raw_request_key(plain)
    assert request_key(normalize_request(with_extra)) != request_key(normalize_request(plain))


async def test_the_emulator_receives_it_and_the_manifest_warns(emulator: KieEmulator, tmp_path: Path) -> None:
    async with KieSession(emulator.settings(poll=PollSettings(schedule=((float("inf"), 0.05),)))) as kie:
        result = await run_pipeline(
            nb2(style_strength=0.7), kie, options=PipelineOptions(artifacts=ArtifactSettings(root=tmp_path))
        )
        assert result.status == "succeeded", result.error
        assert result.task_id is not None
        record = await kie.get_task(result.task_id)
    sent = record.request_param["input"]
    assert isinstance(sent, dict) and sent["style_strength"] == 0.7
    assert result.run_id is not None
    manifest = (await load_run(tmp_path, result.run_id)).manifest
    assert any("style_strength" in w and "verbatim" in w for w in manifest.warnings)


def test_cli_extra_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["validate", "--model", "nano-banana-2", "--prompt", "p", "--extra-option", "style_strength=0.7", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "ready_with_warning"
    assert main(["validate", "--model", "nano-banana-2", "--prompt", "p", "--option", "style_strength=0.7"]) == 1
