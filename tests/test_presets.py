"""Prompt presets: default per model and input pattern, user folders, rendering, raw/enhanced/final record."""

from __future__ import annotations

from pathlib import Path

import pytest

from kie_async.catalogue.presets import (
    PRESET_DIR_ENV,
    PresetError,
    apply_enhanced_prompt,
    clear_preset_cache,
    dry_run_prompt_enhancement,
    load_presets,
    parse_preset,
    resolve_prompt_context,
)
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request

IMG = "https://cdn.test/a.png"


def _user_preset(
    folder: Path, key: str, body: str, models: str = "[kling-3.0-i2v]", patterns: str = "[single_image]"
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{key}.md").write_text(
        f"---\nkey: {key}\nversion: 7\nmodel_keys: {models}\ninput_patterns: {patterns}\n---\n{body}\n"
    )


@pytest.mark.parametrize(
    ("request_", "preset"),
    [
        (RawUserRequest(model_key="nano-banana-2", prompt="x"), "nano_banana_text_to_image_v1"),
        (RawUserRequest(model_key="nano-banana-pro", prompt="x", images=[IMG]), "nano_banana_image_edit_v1"),
        (RawUserRequest(model_key="kling-3.0", prompt="x", images=[IMG]), "kling_image_to_video_v1"),
        (RawUserRequest(model_key="kling-3.0", prompt="x", images=[IMG, IMG]), "kling_first_last_frames_v1"),
        (RawUserRequest(model_key="kling-2.6-t2v", prompt="x"), "kling_text_to_video_v1"),
        (
            RawUserRequest(model_key="kling-3.0-motion", images=[IMG], videos=["https://c.test/v.mp4"]),
            "kling_motion_control_v1",
        ),
        (
            RawUserRequest(model_key="seedance-2.0-mini", prompt="abc", videos=["https://c.test/v.mp4"]),
            "seedance_multimodal_reference_v1",
        ),
    ],
)
def test_default_preset_follows_model_and_input_pattern(request_: RawUserRequest, preset: str) -> None:
    context = resolve_prompt_context(request_)
    assert context.preset_key == preset
    assert context.system_prompt and "{{" not in context.system_prompt
    assert preset in context.available_presets
    assert not context.warnings


def test_every_model_and_pattern_has_a_default_preset() -> None:
    for spec in load_registry().specs.values():
        if not spec.prompt.accepted:  # nothing to rewrite (upscalers, background removal, dialogue lists)
            assert not spec.default_presets, spec.key
            continue
        for mode in spec.task_modes:
            assert mode.input_pattern in spec.default_presets, (spec.key, mode.input_pattern)
            preset = spec.default_presets[mode.input_pattern]
            context = resolve_prompt_context(RawUserRequest(model_key=spec.key, prompt="x", task_mode=mode.name))
            assert context.preset_key == preset and not context.warnings, (spec.key, context.warnings)


def test_rendering_fills_model_details() -> None:
    context = resolve_prompt_context(RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG]))
    assert context.system_prompt is not None
    assert "Kling 3.0 image-to-video" in context.system_prompt
    assert "2500" in context.system_prompt
    assert "1 image (first_frame)" in context.system_prompt
    assert context.input_pattern == "single_image"


def test_requested_preset_and_mismatch_warning() -> None:
    context = resolve_prompt_context(
        RawUserRequest(model_key="nano-banana-2", prompt="x"), preset_key="kling_text_to_video_v1"
    )
    assert context.preset_key == "kling_text_to_video_v1"
    assert context.warnings and "written for" in context.warnings[0]


def test_unknown_preset_raises_with_choices() -> None:
    with pytest.raises(PresetError, match="nano_banana_text_to_image_v1"):
        resolve_prompt_context(RawUserRequest(model_key="nano-banana-2", prompt="x"), preset_key="nope_v9")


def test_user_folder_adds_and_overrides_presets(tmp_path: Path) -> None:
    _user_preset(tmp_path, "kling_image_to_video_v1", "Mine for {{model_label}}.")
    _user_preset(tmp_path, "house_style_v1", "House style, {{unknown_thing}}.")
    context = resolve_prompt_context(
        RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG]), preset_dirs=tmp_path
    )
    assert context.system_prompt == "Mine for Kling 3.0 image-to-video."
    assert context.preset_version == 7
    assert context.preset_source is not None
    assert Path(context.preset_source).parent == tmp_path.resolve()
    with pytest.raises(PresetError, match="unknown_thing"):  # a typo must not reach the LLM as literal braces
        resolve_prompt_context(
            RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG]),
            preset_dirs=[tmp_path],
            preset_key="house_style_v1",
        )
    custom = resolve_prompt_context(
        RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG]),
        preset_dirs=[tmp_path],
        preset_key="house_style_v1",
        allow_unknown_placeholders=True,
    )
    assert custom.system_prompt == "House style, {{unknown_thing}}."
    assert any("unknown_thing" in w for w in custom.warnings)
    assert "kling_image_to_video_v1" in load_presets()  # bundled set untouched


def test_env_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _user_preset(tmp_path, "env_preset_v1", "From env.")
    monkeypatch.setenv(PRESET_DIR_ENV, str(tmp_path))
    assert "env_preset_v1" in load_presets()


def test_preset_requested_on_the_request_is_used(tmp_path: Path) -> None:
    _user_preset(tmp_path, "req_v1", "Req.")
    request = RawUserRequest(model_key="kling-3.0-i2v", prompt="x", images=[IMG], prompt_preset="req_v1")
    assert resolve_prompt_context(request, preset_dirs=tmp_path).system_prompt == "Req."


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("no front matter", "front matter"),
        ("---\nkey: [unclosed\n---\nbody", "not valid YAML"),
        ("---\n- a\n---\nbody", "mapping"),
        ("---\nversion: 1\n---\nbody", "key"),
        ("---\nkey: a\nversion: 1\nsurprise: 2\n---\nbody", "surprise"),
    ],
)
def test_bad_preset_files(text: str, match: str) -> None:
    with pytest.raises(PresetError, match=match):
        parse_preset(text, "x.md")


def test_duplicate_keys_in_one_folder(tmp_path: Path) -> None:
    _user_preset(tmp_path, "a_v1", "A")
    (tmp_path / "copy.md").write_text((tmp_path / "a_v1.md").read_text())
    clear_preset_cache()
    with pytest.raises(PresetError, match="defined twice"):
        load_presets(tmp_path)


def test_missing_user_folder(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="does not exist"):
        load_presets(tmp_path / "missing")


def test_apply_enhanced_prompt_records_all_three_and_revalidation_catches_length() -> None:
    result = validate_request(RawUserRequest(model_key="kling-2.6-t2v", prompt="cat"))
    enhanced = apply_enhanced_prompt(result, "x" * 1200, preset_key="kling_text_to_video_v1")
    assert (enhanced.raw_prompt, enhanced.enhanced_prompt, enhanced.final_prompt_used) == (
        "cat",
        "x" * 1200,
        "x" * 1200,
    )
    assert enhanced.prompt_preset == "kling_text_to_video_v1"
    again = validate_request(enhanced)
    assert again.state == "invalid" and again.impossible_inputs[0].field == "prompt"


def test_apply_with_edited_final_prompt() -> None:
    normalized = validate_request(RawUserRequest(model_key="nano-banana-2", prompt="cat")).normalized
    final = apply_enhanced_prompt(normalized, "A cat, edited", enhanced_prompt="A cat")
    assert (final.enhanced_prompt, final.final_prompt_used) == ("A cat", "A cat, edited")


def test_dry_run_without_and_with_enhancer() -> None:
    request = RawUserRequest(model_key="seedance-2.0", prompt="koi pond", images=[IMG])
    preview = dry_run_prompt_enhancement(request)
    assert preview.enhanced_prompt is None
    assert preview.final_prompt_used == "koi pond"
    assert [m["role"] for m in preview.messages] == ["system", "user"]
    assert preview.messages[1]["content"] == "koi pond"
    seen = []

    def enhancer(context: object) -> str:
        seen.append(context)
        return "A koi pond in soft rain, slow dolly in"

    enhanced = dry_run_prompt_enhancement(request, enhancer=enhancer)
    assert enhanced.final_prompt_used == "A koi pond in soft rain, slow dolly in"
    assert enhanced.final_prompt_fits and len(seen) == 1
    too_long = dry_run_prompt_enhancement(request, enhancer=lambda c: "y" * 20001)
    assert not too_long.final_prompt_fits
