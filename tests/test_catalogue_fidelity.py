"""Catalogue fidelity (issue 22): the concrete mismatches between the specs and their provider pages.

Each case is judged where the money is: the SDK's validator and payload builder, and, where the page states the
limit, the emulator's own judgement of the wire body (which reads the pages, not the SDK's specs).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import pyvips

from kie_async.catalogue.payload import build_submission_payload, check_wire_payload
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.spec_import import _formats, import_page
from kie_async.catalogue.specs import ModelSpec, SpecError, load_registry, load_spec_file
from kie_async.catalogue.validate import validate_request
from kie_async.core.provider_pages import read_page
from kie_async.emulator.page_rules import rule_problems
from kie_async.emulator.policy import api_body_problems, schema_input_checker

ROOT = Path(__file__).resolve().parents[1]


def _url(n: int) -> str:
    return f"https://example.com/media/item-{n}.png"


def _payload(request: RawUserRequest) -> dict[str, Any]:
    result = validate_request(request, check_files=False)
    assert result.is_submittable, result.summary()
    return dict(build_submission_payload(result).input)


def _problems(result: Any) -> list[str]:
    return [f"{d.field}:{d.rule}" for d in (*result.impossible_inputs, *result.missing_inputs)]


# ---------------------------------------------------------------- ideogram character remix: one slot per field


def test_ideogram_remix_main_image_is_not_sent_as_a_style_reference() -> None:
    body = _payload(RawUserRequest(model_key="ideogram-character-remix", prompt="a knight", images=[_url(1), _url(2)]))
    assert body["image_url"] == _url(1)
    assert body["reference_image_urls"] == [_url(2)]
    assert "image_urls" not in body
    body = _payload(
        RawUserRequest(model_key="ideogram-character-remix", prompt="a knight", images=[_url(1), _url(2), _url(3)])
    )
    assert body["image_url"] == _url(1) and body["reference_image_urls"] == [_url(2)]
    assert body["image_urls"] == [_url(3)]
    assert schema_input_checker("ideogram/character-remix", body) == []


def test_duplicate_slot_names_in_one_task_mode_are_refused(tmp_path: Path) -> None:
    text = (ROOT / "model_specs" / "grok-imagine-i2i.yaml").read_text()
    doubled = text.replace(
        "        max_mb: 10\n",
        "        max_mb: 10\n      - name: image\n        kind: image\n"
        "        roles: [reference]\n        field: other_urls\n",
        1,
    )
    assert doubled != text
    path = tmp_path / "grok-imagine-i2i.yaml"
    path.write_text(doubled)
    with pytest.raises(SpecError, match="slot name"):
        load_spec_file(path)


def test_no_committed_spec_repeats_a_slot_name_in_a_mode() -> None:
    for spec in load_registry().specs.values():
        for mode in spec.task_modes:
            names = [s.name for s in mode.slots]
            assert len(names) == len(set(names)), (spec.key, mode.name, names)


# ---------------------------------------------------------------- flux kontext: the 16:9 default is text-to-image's


@pytest.mark.parametrize("key", ["flux-kontext-pro", "flux-kontext-max"])
def test_flux_kontext_edit_without_ratio_keeps_the_input_ratio(key: str) -> None:
    edit = _payload(RawUserRequest(model_key=key, prompt="make it night", images=[_url(1)]))
    assert "aspectRatio" not in edit
    text = _payload(RawUserRequest(model_key=key, prompt="a lake at night"))
    assert text["aspectRatio"] == "16:9"
    chosen = _payload(
        RawUserRequest(model_key=key, prompt="make it night", images=[_url(1)], options={"aspect_ratio": "1:1"})
    )
    assert chosen["aspectRatio"] == "1:1"


# ---------------------------------------------------------------- media formats the pages accept


def test_importer_reads_a_mime_type_before_a_full_stop() -> None:
    assert _formats("(Accepted types: image/jpeg, image/png, image/webp. Max size: 10.0MB per image.)") == [
        "jpg",
        "jpeg",
        "png",
        "webp",
    ]
    assert "m4a" in _formats("Accepted types: audio/mpeg, audio/wav, audio/aac, audio/mp4, audio/ogg; Max size")


def test_grok_imagine_i2i_page_and_spec_take_webp(tmp_path: Path, kie_docs: Path) -> None:
    docs = kie_docs
    page = read_page(docs / "market/grok-imagine/image-to-image.md", docs_root=docs)
    imported = ModelSpec.model_validate(import_page(page, family="grok-imagine", key="grok-imagine-i2i").data)
    assert "webp" in imported.task_modes[0].slots[0].formats
    webp = tmp_path / "in.webp"
    pyvips.Image.black(16, 16).write_to_file(str(webp))
    result = validate_request(RawUserRequest(model_key="grok-imagine-i2i", prompt="x", images=[str(webp)]))
    assert result.is_submittable, result.summary()


def _m4a_bytes() -> bytes:
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"M4A ", 0, b"M4A ", b"isom")
    moov = struct.pack(">I4s", 8, b"moov")
    return ftyp + moov


@pytest.mark.parametrize(
    "key", ["elevenlabs-audio-isolation", "infinitalk-from-audio", "kling-ai-avatar-pro", "kling-ai-avatar-standard"]
)
def test_m4a_audio_is_accepted_where_the_page_takes_audio_mp4(key: str, tmp_path: Path) -> None:
    clip = tmp_path / "voice.m4a"
    clip.write_bytes(_m4a_bytes())
    spec = load_registry().get(key)
    images = [_url(1)] if any(s.kind == "image" and s.min for m in spec.task_modes for s in m.slots) else []
    result = validate_request(RawUserRequest(model_key=key, prompt="speak", images=images, audios=[str(clip)]))
    assert not [d for d in result.impossible_inputs if d.rule == "format"], result.summary()


# ---------------------------------------------------------------- Suno: lengths per mode and version


def _suno(prompt: str, **options: Any) -> Any:
    return validate_request(
        RawUserRequest(model_key="suno-music", prompt=prompt, options=options, callback_url="https://example.com/cb"),
        check_files=False,
    )


@pytest.mark.parametrize(
    ("prompt_len", "options", "blocked"),
    [
        (500, {}, False),
        (501, {}, True),
        (3000, {"customMode": True, "style": "pop", "title": "t", "model": "V4"}, False),
        (3001, {"customMode": True, "style": "pop", "title": "t", "model": "V4"}, True),
        (3001, {"customMode": True, "style": "pop", "title": "t", "model": "V4_5"}, False),
        (5001, {"customMode": True, "style": "pop", "title": "t", "model": "V5"}, True),
    ],
)
def test_suno_prompt_length_by_mode_and_version(prompt_len: int, options: dict[str, Any], blocked: bool) -> None:
    result = _suno("a" * prompt_len, **options)
    assert (not result.is_submittable) == blocked, result.summary()
    body = {
        "prompt": "a" * prompt_len,
        "customMode": False,
        "instrumental": False,
        "model": "V4_5",
        "callBackUrl": "https://example.com/cb",
        **options,
    }
    assert bool(api_body_problems("/api/v1/generate", body)) == blocked
    wire = {k: v for k, v in body.items() if k != "callBackUrl"}
    assert bool(check_wire_payload("suno-music", wire)) == blocked


def test_suno_v4_style_is_200_characters() -> None:
    base = {"customMode": True, "title": "t", "model": "V4"}
    assert _suno("la la", style="s" * 200, **base).is_submittable
    result = _suno("la la", style="s" * 201, **base)
    assert "style:max_chars" in _problems(result)
    assert _suno("la la", style="s" * 201, **{**base, "model": "V5"}).is_submittable


# ---------------------------------------------------------------- gpt-image-2 image-to-image: ratio vs resolution


@pytest.mark.parametrize(
    ("options", "ok"),
    [
        ({"aspect_ratio": "1:1", "resolution": "4K"}, False),
        ({"aspect_ratio": "1:1", "resolution": "2K"}, True),
        ({"aspect_ratio": "auto", "resolution": "2K"}, False),
        ({"resolution": "4K"}, False),
        ({"aspect_ratio": "auto", "resolution": "1K"}, True),
        ({"aspect_ratio": "16:9", "resolution": "4K"}, True),
        ({"aspect_ratio": "auto"}, True),
    ],
)
def test_gpt_image_2_i2i_ratio_and_resolution(options: dict[str, Any], ok: bool) -> None:
    result = validate_request(
        RawUserRequest(model_key="gpt-image-2-i2i", prompt="poster", images=[_url(1)], options=options),
        check_files=False,
    )
    assert result.is_submittable == ok, result.summary()
    body = {"prompt": "poster", "input_urls": [_url(1)], **options}
    assert (schema_input_checker("gpt-image-2-image-to-image", body) == []) == ok
    assert (check_wire_payload("gpt-image-2-image-to-image", body) == []) == ok


# ---------------------------------------------------------------- limits the pages state in words, both judges


VOICE = "EkK5I93UQWFDigLMpZcX"


@pytest.mark.parametrize(
    ("model_id", "good", "bad"),
    [
        (
            "flux-2/pro-text-to-image",
            {"prompt": "abc", "aspect_ratio": "1:1", "resolution": "1K"},
            {"prompt": "ab", "aspect_ratio": "1:1", "resolution": "1K"},
        ),
        ("wan/2-6-image-to-video", {"prompt": "ab", "image_urls": [_url(1)]}, {"prompt": "a", "image_urls": [_url(1)]}),
        (
            "elevenlabs/text-to-dialogue-v3",
            {"dialogue": [{"text": "a" * 2500, "voice": VOICE}, {"text": "b" * 2500, "voice": VOICE}]},
            {"dialogue": [{"text": "a" * 2500, "voice": VOICE}, {"text": "b" * 2501, "voice": VOICE}]},
        ),
        (
            "wan/2-2-a14b-speech-to-video-turbo",
            {"prompt": "talk", "image_url": _url(1), "audio_url": _url(2), "num_frames": 44},
            {"prompt": "talk", "image_url": _url(1), "audio_url": _url(2), "num_frames": 42},
        ),
    ],
)
def test_prose_limits_refused_by_sdk_and_emulator(model_id: str, good: dict[str, Any], bad: dict[str, Any]) -> None:
    assert check_wire_payload(model_id, good) == []
    assert rule_problems(model_id, good) == []
    assert check_wire_payload(model_id, bad)
    assert rule_problems(model_id, bad)


def test_suno_weights_take_two_decimals() -> None:
    body = {
        "prompt": "x",
        "customMode": False,
        "instrumental": False,
        "model": "V4_5",
        "callBackUrl": "https://example.com/cb",
        "styleWeight": 0.65,
    }
    assert api_body_problems("/api/v1/generate", body) == []
    assert api_body_problems("/api/v1/generate", {**body, "styleWeight": 0.655})
    assert _suno("a tune", styleWeight=0.65).is_submittable
    assert "styleWeight:decimals" in _problems(_suno("a tune", styleWeight=0.655))
