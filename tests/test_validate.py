"""Validation: the five states, structured details, local file checks, rules from the spec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pyvips

from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import MediaInput, RawUserRequest
from kie_async.catalogue.validate import validate_request

IMG = "https://cdn.test/a.png"
REAL_PNG: bytes = pyvips.Image.black(8, 8).write_to_buffer(".png")
REAL_JPEG: bytes = pyvips.Image.black(8, 8).write_to_buffer(".jpg")
REAL_GIF: bytes = pyvips.Image.black(8, 8).write_to_buffer(".gif")
VID = "https://cdn.test/v.mp4"


def test_ready_when_everything_is_given() -> None:
    result = validate_request(
        RawUserRequest(
            model_key="kling-2.6-t2v", prompt="x", options={"sound": True, "aspect_ratio": "9:16", "duration": 10}
        )
    )
    assert result.state == "ready"
    assert result.is_submittable
    assert not result.all_details()


def test_ready_with_defaults_lists_each_default() -> None:
    result = validate_request(RawUserRequest(model_key="nano-banana-pro", prompt="x"))
    assert result.state == "ready_with_defaults"
    assert {d.field for d in result.defaulted_fields} == {"aspect_ratio", "resolution", "output_format"}
    for detail in result.defaulted_fields:
        assert detail.fix and detail.rule == "default"


def test_warning_beats_defaults_and_needs_input_beats_warning() -> None:
    warn = validate_request(RawUserRequest(model_key="nano-banana-pro", prompt="x", callback_url="http://h.test/cb"))
    assert warn.state == "ready_with_warning"
    assert warn.defaulted_fields
    needs = validate_request(RawUserRequest(model_key="nano-banana-pro", callback_url="http://h.test/cb"))
    assert needs.state == "needs_input"
    assert not needs.is_submittable


def test_invalid_beats_needs_input() -> None:
    result = validate_request(RawUserRequest(model_key="kling-2.6-i2v", options={"duration": 7}))
    assert result.state == "invalid"
    assert {d.field for d in result.missing_inputs} == {"prompt", "image_urls"}
    assert [d.field for d in result.impossible_inputs] == ["duration"]


def test_details_name_field_value_rule_and_fix() -> None:
    result = validate_request(RawUserRequest(model_key="seedance-2.0", prompt="abc", options={"duration": 20}))
    [detail] = result.impossible_inputs
    assert detail.field == "duration"
    assert detail.value == 20
    assert detail.rule == "max"
    assert "15" in detail.message and "4 to 15" in detail.fix


def test_unknown_model_is_invalid_with_where_to_find_the_keys_in_fix() -> None:
    result = validate_request(RawUserRequest(model_key="sora-9", prompt="x"))
    assert result.state == "invalid"
    fix = result.impossible_inputs[0].fix
    assert "kie-async models" in fix and "nano-banana-2" not in fix  # where the keys are, not all 116 of them
    typo = validate_request(RawUserRequest(model_key="nano-banan", prompt="x")).impossible_inputs[0].fix
    assert typo.startswith("did you mean 'nano-banana-2'")


def test_kling3_i2v_drops_aspect_ratio_with_a_warning() -> None:
    result = validate_request(
        RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG], options={"aspect_ratio": "9:16"})
    )
    assert result.state == "ready_with_warning"
    assert result.dropped_fields == ["aspect_ratio"]
    assert result.warning_details[0].rule == "aspect_ratio_with_frames"


def test_prompt_not_needed_with_multi_shots() -> None:
    result = validate_request(RawUserRequest(model_key="kling-3.0-t2v", multi_prompt=[{"prompt": "a", "duration": 3}]))
    assert result.state == "ready_with_defaults"


def test_prompt_optional_for_motion_control() -> None:
    result = validate_request(RawUserRequest(model_key="kling-2.6-motion", images=[IMG], videos=[VID]))
    assert result.state == "ready_with_defaults"


def test_reference_total_length_is_checked_when_known() -> None:
    result = validate_request(
        RawUserRequest(
            model_key="seedance-2.0",
            prompt="abc",
            videos=[MediaInput(source=VID, duration_seconds=10), MediaInput(source=VID, duration_seconds=10)],
        )
    )
    assert result.state == "invalid"
    assert result.impossible_inputs[0].rule == "max_total_seconds"


def test_local_file_checks(tmp_path: Path) -> None:
    good = tmp_path / "frame.png"
    good.write_bytes(REAL_PNG)
    result = validate_request(RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[good]))
    assert result.state == "ready_with_defaults"

    missing = validate_request(RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[tmp_path / "no.png"]))
    assert missing.state == "invalid"
    assert missing.impossible_inputs[0].rule == "file_exists"
    assert missing.impossible_inputs[0].field == "images[0]"

    folder = validate_request(RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[tmp_path]))
    assert folder.impossible_inputs[0].rule in ("file_exists", "format")

    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.write(REAL_PNG)
        handle.truncate(11 * 1024 * 1024)  # sparse: no real 11 MB written; a real PNG header, then zeros
    too_big = validate_request(RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[big]))
    assert too_big.state == "invalid"
    assert too_big.impossible_inputs[0].rule == "max_mb"


def test_check_files_false_never_touches_the_file_system(tmp_path: Path) -> None:
    result = validate_request(
        RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[tmp_path / "no.png"]), check_files=False
    )
    assert result.state == "ready_with_defaults"


def test_bytes_media_size_is_checked() -> None:
    data = REAL_PNG + bytes(10 * 1024 * 1024 + 1)
    result = validate_request(
        RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[MediaInput(source=data, filename="a.png")])
    )
    assert result.impossible_inputs[0].rule == "max_mb"


def test_url_without_extension_is_a_warning() -> None:
    result = validate_request(RawUserRequest(model_key="nano-banana-2", prompt="x", images=["https://h.test/blob"]))
    assert result.state == "ready_with_warning"
    assert result.warning_details[0].rule == "format_unknown"


def test_asset_references_only_where_the_spec_allows() -> None:
    ok = validate_request(RawUserRequest(model_key="seedance-2.0", prompt="abc", images=["asset://asset-1"]))
    assert ok.state == "ready_with_defaults"
    bad = validate_request(RawUserRequest(model_key="kling-2.6-i2v", prompt="abc", images=["asset://asset-1"]))
    assert bad.state == "invalid" and bad.impossible_inputs[0].rule == "url_scheme"


def test_validating_a_normalized_request_gives_the_same_result() -> None:
    raw = RawUserRequest(model_key="kling-3.0", prompt="x", images=[IMG])
    assert validate_request(normalize_request(raw)) == validate_request(raw)


@pytest.mark.skipif(os.name == "nt", reason="posix permissions")
def test_unreadable_path_does_not_raise(tmp_path: Path) -> None:
    result = validate_request(
        RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[tmp_path / "a" / "b" / "c.png"])
    )
    assert result.state == "invalid"


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 28
MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 20
MOV = b"\x00\x00\x00\x14ftypqt  " + b"\x00" * 20
WAV = b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 26


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        (PNG, "png"),
        (JPEG, "jpg"),
        (MP4, "mp4"),
        (MOV, "mov"),
        (WAV, "wav"),
        (GIF, "gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"ID3\x04", "mp3"),
        (b"\x1aE\xdf\xa3", "mkv"),
        (b"II*\x00", "tiff"),
        (b"hello world", None),
    ],
)
def test_sniff_format(header: bytes, fmt: str | None) -> None:
    from kie_async.catalogue.validate import sniff_format

    assert sniff_format(header) == fmt


def test_content_beats_the_name(tmp_path: Path) -> None:
    fake = tmp_path / "frame.png"
    fake.write_bytes(MP4)
    result = validate_request(RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[fake]))
    assert result.state == "invalid"
    assert (result.impossible_inputs[0].rule, result.impossible_inputs[0].value) == ("media_kind", "mp4")
    renamed = tmp_path / "frame.png"
    renamed.write_bytes(REAL_JPEG)  # a JPEG named .png is still an accepted image
    assert (
        validate_request(RawUserRequest(model_key="kling-2.6-i2v", prompt="x", images=[renamed])).state
        == "ready_with_defaults"
    )
    gif = tmp_path / "anim.png"
    gif.write_bytes(REAL_GIF)
    bad = validate_request(RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[gif]))
    assert bad.impossible_inputs[0].rule == "format"
    assert "contains .gif" in bad.impossible_inputs[0].message


def test_unnamed_bytes_are_recognised_by_content() -> None:
    ok = validate_request(RawUserRequest(model_key="nano-banana-2", prompt="x", images=[REAL_PNG]))
    assert ok.state == "ready_with_defaults"
    wrong = validate_request(RawUserRequest(model_key="seedance-2.0", prompt="abc", videos=[WAV]))
    assert wrong.state == "invalid" and wrong.impossible_inputs[0].rule == "media_kind"
    # Bytes that are no known media are refused (they used to be a warning, then uploaded and paid for).
    unknown = validate_request(RawUserRequest(model_key="nano-banana-2", prompt="x", images=[b"??"]))
    assert unknown.state == "invalid" and unknown.impossible_inputs[0].rule == "not_media"
    fake = validate_request(RawUserRequest(model_key="nano-banana-2", prompt="x", images=[PNG]))
    assert fake.impossible_inputs[0].rule == "media_corrupt"  # PNG magic, but no PNG header behind it


def test_asset_references_are_for_seedance_frames_only() -> None:
    result = validate_request(
        RawUserRequest(
            model_key="seedance-2.0", prompt="abc", images=[MediaInput(source="asset://a-1", role="reference")]
        )
    )
    assert result.state == "invalid" and result.impossible_inputs[0].rule == "url_scheme"
