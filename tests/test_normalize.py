"""Normalization: aliases, task-mode detection from media, coercion, defaults with reasons, media classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kie_async.catalogue.normalize import canonical_task_mode, coerce_value, normalize_request
from kie_async.catalogue.request_models import MediaInput, RawUserRequest
from kie_async.catalogue.specs import FieldSpec

IMG = "https://cdn.test/a.png"
IMG2 = "https://cdn.test/b.png"
VID = "https://cdn.test/v.mp4"
AUD = "https://cdn.test/a.mp3"


@pytest.mark.parametrize(
    ("model", "images", "videos", "audios", "key", "mode"),
    [
        ("kling-3.0", [], [], [], "kling-3.0-t2v", "text_to_video"),
        ("kling-3.0", [IMG], [], [], "kling-3.0-i2v", "image_to_video"),
        ("kling-3.0", [IMG, IMG2], [], [], "kling-3.0-i2v", "first_last_frames"),
        ("kling-2.6", [], [], [], "kling-2.6-t2v", "text_to_video"),
        ("kling-2.6", [IMG], [], [], "kling-2.6-i2v", "image_to_video"),
        ("seedance", [], [], [], "seedance-2.0", "text_to_video"),
        ("seedance", [IMG], [], [], "seedance-2.0", "image_to_video"),
        ("seedance", [IMG, IMG2], [], [], "seedance-2.0", "first_last_frames"),
        ("seedance", [IMG, IMG2, IMG], [], [], "seedance-2.0", "multimodal_reference"),
        ("seedance", [], [VID], [], "seedance-2.0", "multimodal_reference"),
        ("seedance", [], [], [AUD], "seedance-2.0", "multimodal_reference"),
        ("seedance-fast", [IMG], [VID], [], "seedance-2.0-fast", "multimodal_reference"),
        ("nano-banana-2", [], [], [], "nano-banana-2", "text_to_image"),
        ("nano-banana-2", [IMG], [], [], "nano-banana-2", "image_edit"),
        ("nanobanana-pro", [IMG, IMG2], [], [], "nano-banana-pro", "image_edit"),
        ("kling-3.0-motion-control", [IMG], [VID], [], "kling-3.0-motion", "motion_control"),
    ],
)
def test_alias_and_task_mode_detection(
    model: str, images: list[str], videos: list[str], audios: list[str], key: str, mode: str
) -> None:
    normalized = normalize_request(
        RawUserRequest(model_key=model, prompt="a prompt", images=images, videos=videos, audios=audios)
    )
    assert (normalized.model_key, normalized.task_mode) == (key, mode)
    assert normalized.requested_model_key == model


def test_roles_decide_the_seedance_mode() -> None:
    normalized = normalize_request(
        RawUserRequest(model_key="seedance-2.0", prompt="abc", images=[MediaInput(source=IMG, role="reference")])
    )
    assert normalized.task_mode == "multimodal_reference"
    assert normalized.media[0].slot == "reference_images"


def test_labelled_last_frame_takes_its_slot_before_unlabelled_images() -> None:
    normalized = normalize_request(
        RawUserRequest(
            model_key="kling-3.0-i2v", prompt="abc", images=[MediaInput(source=IMG2, role="last_frame"), IMG]
        )
    )
    slots = {m.id: (m.slot, m.role) for m in normalized.media}
    assert slots == {"images[0]": ("last_frame", "last_frame"), "images[1]": ("first_frame", "first_frame")}


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("i2v", "image_to_video"),
        ("Image-To-Video", "image_to_video"),
        ("t2v", "text_to_video"),
        ("first+last", "first_last_frames"),
        ("reference", "multimodal_reference"),
        ("edit", "image_edit"),
        ("motion", "motion_control"),
        ("text_to_image", "text_to_image"),
    ],
)
def test_task_mode_names(typed: str, canonical: str) -> None:
    assert canonical_task_mode(typed) == canonical


def test_explicit_task_mode_picks_among_alias_candidates() -> None:
    normalized = normalize_request(RawUserRequest(model_key="kling-3.0", task_mode="t2v", prompt="x"))
    assert normalized.model_key == "kling-3.0-t2v"


@pytest.mark.parametrize(
    ("spec", "raw", "expected"),
    [
        (FieldSpec(type="integer"), "5", 5),
        (FieldSpec(type="integer"), " 10 ", 10),
        (FieldSpec(type="integer"), "5s", 5),
        (FieldSpec(type="integer"), 5.0, 5),
        (FieldSpec(type="number"), "2.5", 2.5),
        (FieldSpec(type="boolean"), "true", True),
        (FieldSpec(type="boolean"), "No", False),
        (FieldSpec(type="boolean"), 1, True),
        (FieldSpec(type="enum", allowed=["1K", "2K", "4K"]), "4k", "4K"),
        (FieldSpec(type="enum", allowed=["std", "pro", "4K"]), "PRO", "pro"),
        (FieldSpec(type="string"), 12, "12"),
        (FieldSpec(type="list", items=FieldSpec(type="integer")), ("1", 2), [1, 2]),
    ],
)
def test_coercion(spec: FieldSpec, raw: object, expected: object) -> None:
    value, errors = coerce_value(spec, raw)
    assert errors == []
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("spec", "raw"),
    [
        (FieldSpec(type="integer"), True),
        (FieldSpec(type="integer"), "five"),
        (FieldSpec(type="integer"), 5.5),
        (FieldSpec(type="boolean"), "maybe"),
        (FieldSpec(type="boolean"), 2),
        (FieldSpec(type="list", items=FieldSpec(type="string")), "a"),
    ],
)
def test_coercion_errors(spec: FieldSpec, raw: object) -> None:
    _, errors = coerce_value(spec, raw)
    assert errors


def test_strict_wire_coercion_wants_exact_types() -> None:
    duration = FieldSpec(type="integer", wire="string")
    assert coerce_value(duration, "5", strict_wire=True) == (5, [])
    assert coerce_value(duration, 5, strict_wire=True)[1]
    assert coerce_value(FieldSpec(type="boolean"), "true", strict_wire=True)[1]


def test_options_are_coerced_and_defaults_recorded_with_reasons() -> None:
    normalized = normalize_request(
        RawUserRequest(model_key="kling-2.6-t2v", prompt="x", options={"duration": "10", "audio": "yes"})
    )
    assert normalized.options == {"sound": True, "aspect_ratio": "1:1", "duration": 10}
    assert normalized.explicit_options == ["duration", "sound"]
    [defaulted] = normalized.defaulted
    assert (defaulted.field, defaulted.value) == ("aspect_ratio", "1:1")
    assert "documented default" in defaulted.message


def test_sdk_chosen_default_says_so() -> None:
    normalized = normalize_request(RawUserRequest(model_key="kling-2.6-t2v", prompt="x"))
    sound = next(d for d in normalized.defaulted if d.field == "sound")
    assert "SDK default" in sound.message


def test_conditional_defaults_follow_multi_prompt() -> None:
    normalized = normalize_request(
        RawUserRequest(model_key="kling-3.0-t2v", multi_prompt=[{"prompt": "a", "duration": "4"}])
    )
    assert normalized.options["multi_shots"] is True
    assert normalized.options["sound"] is True
    assert normalized.options["multi_prompt"] == [{"prompt": "a", "duration": 4}]
    reasons = {d.field: d.message for d in normalized.defaulted}
    assert "multi_prompt was given" in reasons["multi_shots"]
    assert "multi-shot" in reasons["sound"]


def test_explicit_value_beats_conditional_default() -> None:
    normalized = normalize_request(
        RawUserRequest(
            model_key="kling-3.0-t2v", options={"sound": False}, multi_prompt=[{"prompt": "a", "duration": 4}]
        )
    )
    assert normalized.options["sound"] is False


def test_deprecated_fields_without_default_are_not_filled() -> None:
    normalized = normalize_request(RawUserRequest(model_key="seedance-2.0", prompt="abc"))
    assert "return_last_frame" not in normalized.options
    assert "web_search" not in normalized.options


def test_media_classification(tmp_path: Path) -> None:
    local = tmp_path / "x.PNG"
    normalized = normalize_request(
        RawUserRequest(
            model_key="seedance-2.0",
            prompt="abc",
            images=[
                str(local),
                local,
                b"\x89PNG",
                "asset://asset-1",
                f"file://{local}",
                MediaInput(source=b"data", filename="y.webp", role="reference"),
            ],
        )
    )
    kinds = [(m.source_type, m.extension) for m in normalized.media]
    assert kinds == [
        ("local_path", "png"),
        ("local_path", "png"),
        ("bytes", None),
        ("asset", None),
        ("local_path", "png"),
        ("bytes", "webp"),
    ]
    assert normalized.media[4].value == str(local)
    assert "b'data'" not in repr(normalized.media[5])


def test_bytes_are_dumped_as_a_digest_not_content() -> None:
    import pydantic

    from kie_async.catalogue.request_models import NormalizedRequest

    first = normalize_request(RawUserRequest(model_key="nano-banana-2", prompt="x", images=[b"0" * 100]))
    second = normalize_request(RawUserRequest(model_key="nano-banana-2", prompt="x", images=[b"1" * 100]))
    dumped = first.model_dump_json()
    assert "<100 bytes sha256=" in dumped and "0" * 100 not in dumped
    assert first.model_dump() != second.model_dump()  # equal length, different content
    with pytest.raises(pydantic.ValidationError, match="placeholder"):
        NormalizedRequest.model_validate_json(dumped)


def test_unknown_model_is_recorded_not_raised() -> None:
    normalized = normalize_request(RawUserRequest(model_key="dall-e-9", prompt="x"))
    assert not normalized.known_model
    assert normalized.issues.impossible[0].field == "model_key"


def test_prompt_is_kept_raw_and_final() -> None:
    normalized = normalize_request(RawUserRequest(model_key="nano-banana-2", prompt="hello"))
    assert normalized.raw_prompt == normalized.final_prompt_used == normalized.prompt == "hello"
