"""Kling 3.0 motion control's ``mode``: both spellings accepted, the docs example's (720p/1080p) sent."""

from __future__ import annotations

import pytest

from kie_async.catalogue.payload import build_submission_payload, check_wire_payload
from kie_async.catalogue.pricing import estimate_request_cost
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import FieldSpec, load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.session import KieSession

IMG = "https://cdn.example.com/actor.png"
VID = "https://cdn.example.com/dance.mp4"


def motion(**options: object) -> RawUserRequest:
    return RawUserRequest(model_key="kling-3.0-motion", images=[IMG], videos=[VID], options=dict(options))


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (None, "720p"),
        ("std", "720p"),
        ("STD", "720p"),
        ("pro", "1080p"),
        ("720p", "720p"),
        ("1080p", "1080p"),
    ],
)
def test_either_spelling_in_the_docs_example_spelling_out(given: str | None, sent: str) -> None:
    validation = validate_request(motion(**({"mode": given} if given is not None else {})), check_files=False)
    assert validation.is_submittable, validation.summary()
    payload = build_submission_payload(validation)
    assert payload.input["mode"] == sent
    assert check_wire_payload("kling-3.0/motion-control", payload.input) == []
    # both spellings price the same
    assert estimate_request_cost(validation).rate_credits == (20 if sent == "720p" else 27)


def test_other_values_are_still_refused_and_the_spec_says_why() -> None:
    assert validate_request(motion(mode="4K"), check_files=False).state == "invalid"
    spec = load_registry().get("kling-3.0-motion").options["mode"]
    assert spec.provenance is not None and spec.provenance.status == "unconfirmed"
    assert "720p" in (spec.provenance.note or "") and "std" in (spec.provenance.note or "")
    with pytest.raises(ValueError, match="value_aliases"):
        FieldSpec(type="enum", allowed=["a"], value_aliases={"b": "c"})


def test_the_wire_check_takes_the_provider_spelling_std_too() -> None:
    body = {"input_urls": [IMG], "video_urls": [VID], "mode": "std", "character_orientation": "video"}
    assert check_wire_payload("kling-3.0/motion-control", body) == []


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


async def test_the_emulator_accepts_what_the_sdk_sends(emulator: KieEmulator) -> None:
    validation = validate_request(motion(mode="pro"), check_files=False)
    payload = build_submission_payload(validation)
    async with KieSession(emulator.settings()) as kie:
        task = await kie.create_task(model=payload.model, input=payload.input)
        record = await kie.get_task(task.task_id)
    sent = record.request_param["input"]
    assert isinstance(sent, dict) and sent["mode"] == "1080p"
