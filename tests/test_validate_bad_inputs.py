"""Over a hundred bad requests: each must land in the right state with a detail naming the right field."""

from __future__ import annotations

from typing import Any

import pytest

from kie_async.catalogue.request_models import MediaInput, RawUserRequest, ValidationResult
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request

IMG = "https://cdn.test/a.png"
IMG2 = "https://cdn.test/b.jpg"
VID = "https://cdn.test/v.mp4"
AUD = "https://cdn.test/a.mp3"
SHOT = {"prompt": "a shot", "duration": 3}


def _case(case_id: str, state: str, field: str, model: str, **kw: Any) -> Any:
    return pytest.param(model, kw, state, field, id=case_id)


HAND_WRITTEN = [
    # ---- wrong type
    _case("nb2-resolution-int", "invalid", "resolution", "nano-banana-2", prompt="x", options={"resolution": 4}),
    _case(
        "nb2-google-search-word",
        "invalid",
        "google_search",
        "nano-banana-2",
        prompt="x",
        options={"google_search": "perhaps"},
    ),
    _case("k26-duration-word", "invalid", "duration", "kling-2.6-t2v", prompt="x", options={"duration": "five"}),
    _case("k26-duration-bool", "invalid", "duration", "kling-2.6-t2v", prompt="x", options={"duration": True}),
    _case("k26-sound-2", "invalid", "sound", "kling-2.6-i2v", prompt="x", images=[IMG], options={"sound": 2}),
    _case("k30-duration-fraction", "invalid", "duration", "kling-3.0-t2v", prompt="x", options={"duration": 5.5}),
    _case(
        "k30-multi-shots-word",
        "invalid",
        "multi_shots",
        "kling-3.0-t2v",
        prompt="x",
        options={"multi_shots": "sometimes"},
    ),
    _case(
        "k30-multi-prompt-not-list",
        "invalid",
        "multi_prompt",
        "kling-3.0-t2v",
        multi_prompt=None,
        options={"multi_prompt": "shot one"},
    ),
    _case(
        "k30-shot-duration-word",
        "invalid",
        "multi_prompt[0].duration",
        "kling-3.0-t2v",
        multi_prompt=[{"prompt": "a", "duration": "long"}],
    ),
    _case(
        "k30-shot-unknown-key",
        "invalid",
        "multi_prompt[0].camera",
        "kling-3.0-t2v",
        multi_prompt=[{"prompt": "a", "duration": 3, "camera": "dolly"}],
    ),
    _case(
        "k30-elements-not-list",
        "invalid",
        "kling_elements",
        "kling-3.0-t2v",
        prompt="x",
        options={"kling_elements": {"name": "a"}},
    ),
    _case("sd-duration-word", "invalid", "duration", "seedance-2.0", prompt="abc", options={"duration": "ten"}),
    _case(
        "sd-audio-word", "invalid", "generate_audio", "seedance-2.0", prompt="abc", options={"generate_audio": "loud"}
    ),
    _case(
        "sd-nsfw-list", "invalid", "nsfw_checker", "seedance-2.0-mini", prompt="abc", options={"nsfw_checker": [True]}
    ),
    _case(
        "mc-orientation-int",
        "invalid",
        "character_orientation",
        "kling-2.6-motion",
        images=[IMG],
        videos=[VID],
        options={"character_orientation": 1},
    ),
    # ---- out of range / not allowed
    _case("nb2-aspect-7-5", "invalid", "aspect_ratio", "nano-banana-2", prompt="x", options={"aspect_ratio": "7:5"}),
    _case("nb2-format-gif", "invalid", "output_format", "nano-banana-2", prompt="x", options={"output_format": "gif"}),
    _case("nbp-aspect-1-8", "invalid", "aspect_ratio", "nano-banana-pro", prompt="x", options={"aspect_ratio": "1:8"}),
    _case(
        "nbp-format-webp", "invalid", "output_format", "nano-banana-pro", prompt="x", options={"output_format": "webp"}
    ),
    _case("k26-duration-15", "invalid", "duration", "kling-2.6-t2v", prompt="x", options={"duration": 15}),
    _case("k26-aspect-4-3", "invalid", "aspect_ratio", "kling-2.6-t2v", prompt="x", options={"aspect_ratio": "4:3"}),
    _case(
        "k26i-duration-6", "invalid", "duration", "kling-2.6-i2v", prompt="x", images=[IMG], options={"duration": "6"}
    ),
    _case("k30-duration-2", "invalid", "duration", "kling-3.0-t2v", prompt="x", options={"duration": 2}),
    _case(
        "k30-duration-16", "invalid", "duration", "kling-3.0-i2v", prompt="x", images=[IMG], options={"duration": "16"}
    ),
    _case("k30-mode-8k", "invalid", "mode", "kling-3.0-t2v", prompt="x", options={"mode": "8K"}),
    _case("k30-aspect-21-9", "invalid", "aspect_ratio", "kling-3.0-t2v", prompt="x", options={"aspect_ratio": "21:9"}),
    _case("k30-six-shots", "invalid", "multi_prompt", "kling-3.0-t2v", multi_prompt=[SHOT] * 6),
    _case(
        "k30-shot-13s",
        "invalid",
        "multi_prompt[0].duration",
        "kling-3.0-t2v",
        multi_prompt=[{"prompt": "a", "duration": 13}],
    ),
    _case(
        "k30-shot-prompt-long",
        "invalid",
        "multi_prompt[1].prompt",
        "kling-3.0-t2v",
        multi_prompt=[SHOT, {"prompt": "p" * 501, "duration": 3}],
    ),
    _case(
        "k30-shot-missing-duration",
        "invalid",
        "multi_prompt[0].duration",
        "kling-3.0-i2v",
        images=[IMG],
        multi_prompt=[{"prompt": "a"}],
    ),
    _case(
        "k30-empty-shots",
        "invalid",
        "multi_prompt",
        "kling-3.0-t2v",
        prompt="x",
        options={"multi_shots": True, "multi_prompt": []},
    ),
    _case(
        "k30-four-elements",
        "invalid",
        "kling_elements",
        "kling-3.0-t2v",
        prompt="x",
        options={"kling_elements": [{"name": "a", "description": "b", "element_input_urls": [IMG]}] * 4},
    ),
    _case(
        "k30-element-five-images",
        "invalid",
        "kling_elements[0].element_input_urls",
        "kling-3.0-t2v",
        prompt="x",
        options={"kling_elements": [{"name": "a", "description": "b", "element_input_urls": [IMG] * 5}]},
    ),
    _case(
        "k30-element-no-name",
        "invalid",
        "kling_elements[0].name",
        "kling-3.0-i2v",
        prompt="x",
        images=[IMG],
        options={"kling_elements": [{"description": "b", "element_input_urls": [IMG]}]},
    ),
    _case(
        "k30-element-negative-start",
        "invalid",
        "kling_elements[0].start_time",
        "kling-3.0-t2v",
        prompt="x",
        options={"kling_elements": [{"name": "a", "description": "b", "element_input_urls": [IMG], "start_time": -1}]},
    ),
    _case("k26mc-mode-std", "invalid", "mode", "kling-2.6-motion", images=[IMG], videos=[VID], options={"mode": "std"}),
    # 720p/1080p and std/pro are both spellings of Kling 3.0 motion's mode; anything else is not.
    _case("k30mc-mode-4k", "invalid", "mode", "kling-3.0-motion", images=[IMG], videos=[VID], options={"mode": "4K"}),
    _case(
        "k30mc-background-other",
        "invalid",
        "background_source",
        "kling-3.0-motion",
        images=[IMG],
        videos=[VID],
        options={"background_source": "none"},
    ),
    _case("sd-duration-3", "invalid", "duration", "seedance-2.0", prompt="abc", options={"duration": 3}),
    _case("sd-resolution-8k", "invalid", "resolution", "seedance-2.0", prompt="abc", options={"resolution": "8k"}),
    _case("sdf-1080p", "invalid", "resolution", "seedance-2.0-fast", prompt="abc", options={"resolution": "1080p"}),
    _case("sdm-4k", "invalid", "resolution", "seedance-2.0-mini", prompt="abc", options={"resolution": "4k"}),
    _case("sd-aspect-2-1", "invalid", "aspect_ratio", "seedance-2.0", prompt="abc", options={"aspect_ratio": "2:1"}),
    _case("sd-prompt-2-chars", "invalid", "prompt", "seedance-2.0", prompt="ab"),
    _case("sd-prompt-too-long", "invalid", "prompt", "seedance-2.0-fast", prompt="p" * 20001),
    _case("nb2-prompt-too-long", "invalid", "prompt", "nano-banana-2", prompt="p" * 20001),
    _case("nbp-prompt-too-long", "invalid", "prompt", "nano-banana-pro", prompt="p" * 10001),
    _case("k26-prompt-too-long", "invalid", "prompt", "kling-2.6-t2v", prompt="p" * 1001),
    _case("k26i-prompt-too-long", "invalid", "prompt", "kling-2.6-i2v", prompt="p" * 1001, images=[IMG]),
    _case(
        "k26mc-prompt-too-long", "invalid", "prompt", "kling-2.6-motion", prompt="p" * 2501, images=[IMG], videos=[VID]
    ),
    _case(
        "k30mc-prompt-too-long", "invalid", "prompt", "kling-3.0-motion", prompt="p" * 2501, images=[IMG], videos=[VID]
    ),
    _case("k30-prompt-too-long", "invalid", "prompt", "kling-3.0-t2v", prompt="p" * 2501),
    # ---- too many media
    _case("nb2-15-images", "invalid", "image_input", "nano-banana-2", prompt="x", images=[IMG] * 15),
    _case("nbp-9-images", "invalid", "image_input", "nano-banana-pro", prompt="x", images=[IMG] * 9),
    _case("k26i-2-images", "invalid", "image_urls", "kling-2.6-i2v", prompt="x", images=[IMG, IMG2]),
    _case("k30i-3-images", "invalid", "image_urls", "kling-3.0-i2v", prompt="x", images=[IMG, IMG2, IMG]),
    _case("k26mc-2-videos", "invalid", "video_urls", "kling-2.6-motion", images=[IMG], videos=[VID, VID]),
    _case("k26mc-2-images", "invalid", "input_urls", "kling-2.6-motion", images=[IMG, IMG2], videos=[VID]),
    _case("k30mc-2-videos", "invalid", "video_urls", "kling-3.0-motion", images=[IMG], videos=[VID, VID]),
    _case(
        "sd-10-ref-images",
        "invalid",
        "reference_image_urls",
        "seedance-2.0",
        prompt="abc",
        images=[MediaInput(source=IMG, role="reference")] * 10,
    ),
    _case("sd-4-ref-videos", "invalid", "reference_video_urls", "seedance-2.0", prompt="abc", videos=[VID] * 4),
    _case("sdf-4-ref-audios", "invalid", "reference_audio_urls", "seedance-2.0-fast", prompt="abc", audios=[AUD] * 4),
    _case(
        "sd-two-first-frames",
        "invalid",
        "first_frame_url",
        "seedance-2.0",
        prompt="abc",
        task_mode="i2v",
        images=[MediaInput(source=IMG, role="first_frame"), MediaInput(source=IMG2, role="first_frame")],
    ),
    # ---- wrong media kind
    _case("nb2-video", "invalid", "videos[0]", "nano-banana-2", prompt="x", videos=[VID]),
    _case("nbp-audio", "invalid", "audios[0]", "nano-banana-pro", prompt="x", audios=[AUD]),
    _case("k26t-image", "invalid", "images[0]", "kling-2.6-t2v", prompt="x", images=[IMG]),
    _case("k26i-video", "invalid", "videos[0]", "kling-2.6-i2v", prompt="x", images=[IMG], videos=[VID]),
    _case("k30t-video", "invalid", "videos[0]", "kling-3.0-t2v", prompt="x", videos=[VID]),
    _case("k30i-audio", "invalid", "audios[0]", "kling-3.0-i2v", prompt="x", images=[IMG], audios=[AUD]),
    _case("k26mc-audio", "invalid", "audios[0]", "kling-2.6-motion", images=[IMG], videos=[VID], audios=[AUD]),
    _case("k30mc-audio", "invalid", "audios[0]", "kling-3.0-motion", images=[IMG], videos=[VID], audios=[AUD]),
    _case(
        "sd-image-marked-video",
        "invalid",
        "images[0]",
        "seedance-2.0",
        prompt="abc",
        task_mode="i2v",
        images=[MediaInput(source=VID, kind="video")],
    ),
    _case("k26i-gif", "invalid", "images[0]", "kling-2.6-i2v", prompt="x", images=["https://cdn.test/a.gif"]),
    _case("nb2-bmp", "invalid", "images[0]", "nano-banana-2", prompt="x", images=["https://cdn.test/a.bmp"]),
    _case("k30i-webp", "invalid", "images[0]", "kling-3.0-i2v", prompt="x", images=["https://cdn.test/a.webp"]),
    _case("k26mc-avi", "invalid", "videos[0]", "kling-2.6-motion", images=[IMG], videos=["https://cdn.test/v.avi"]),
    _case("sd-ref-video-mkv", "invalid", "videos[0]", "seedance-2.0", prompt="abc", videos=["https://cdn.test/v.mkv"]),
    _case(
        "sd-ref-audio-ogg", "invalid", "audios[0]", "seedance-2.0-mini", prompt="abc", audios=["https://cdn.test/a.ogg"]
    ),
    _case(
        "k26mc-video-too-short",
        "invalid",
        "videos[0]",
        "kling-2.6-motion",
        images=[IMG],
        videos=[MediaInput(source=VID, duration_seconds=2)],
    ),
    _case(
        "k26mc-video-too-long",
        "invalid",
        "videos[0]",
        "kling-2.6-motion",
        images=[IMG],
        videos=[MediaInput(source=VID, duration_seconds=31)],
    ),
    _case(
        "sd-ref-audio-too-long",
        "invalid",
        "audios[0]",
        "seedance-2.0",
        prompt="abc",
        audios=[MediaInput(source=AUD, duration_seconds=16)],
    ),
    _case(
        "sd-ref-audio-total",
        "invalid",
        "reference_audio_urls",
        "seedance-2.0",
        prompt="abc",
        audios=[MediaInput(source=AUD, duration_seconds=8), MediaInput(source=AUD, duration_seconds=8)],
    ),
    _case("k26i-ftp-url", "invalid", "images[0]", "kling-2.6-i2v", prompt="x", images=["ftp://cdn.test/a.png"]),
    # ---- missing required media / prompt / fields
    _case("k26i-no-image", "needs_input", "image_urls", "kling-2.6-i2v", prompt="x"),
    _case("k30i-no-image", "needs_input", "image_urls", "kling-3.0-i2v", prompt="x"),
    _case(
        "k30i-only-last",
        "needs_input",
        "image_urls",
        "kling-3.0-i2v",
        prompt="x",
        images=[MediaInput(source=IMG, role="last_frame")],
    ),
    _case("k26mc-no-video", "needs_input", "video_urls", "kling-2.6-motion", images=[IMG]),
    _case("k26mc-no-image", "needs_input", "input_urls", "kling-2.6-motion", videos=[VID]),
    _case("k30mc-no-video", "needs_input", "video_urls", "kling-3.0-motion", images=[IMG]),
    _case("k30mc-nothing", "needs_input", "input_urls", "kling-3.0-motion"),
    _case("nb2-edit-no-image", "needs_input", "image_input", "nano-banana-2", prompt="x", task_mode="image_edit"),
    _case("nbp-edit-no-image", "needs_input", "image_input", "nano-banana-pro", prompt="x", task_mode="edit"),
    _case(
        "sd-first-last-one-image",
        "needs_input",
        "last_frame_url",
        "seedance-2.0",
        prompt="abc",
        task_mode="first_last_frames",
        images=[IMG],
    ),
    _case(
        "sd-reference-nothing",
        "needs_input",
        "reference_image_urls/reference_video_urls/reference_audio_urls",
        "seedance-2.0",
        prompt="abc",
        task_mode="reference",
    ),
    _case("sd-i2v-no-image", "needs_input", "first_frame_url", "seedance-2.0-fast", prompt="abc", task_mode="i2v"),
    _case("nb2-no-prompt", "needs_input", "prompt", "nano-banana-2"),
    _case("nbp-blank-prompt", "needs_input", "prompt", "nano-banana-pro", prompt="   "),
    _case("k26t-no-prompt", "needs_input", "prompt", "kling-2.6-t2v"),
    _case("k26i-no-prompt", "needs_input", "prompt", "kling-2.6-i2v", images=[IMG]),
    _case("k30t-no-prompt", "needs_input", "prompt", "kling-3.0-t2v"),
    _case("k30i-no-prompt", "needs_input", "prompt", "kling-3.0-i2v", images=[IMG]),
    _case("sd-no-prompt", "needs_input", "prompt", "seedance-2.0"),
    _case("sdm-no-prompt", "needs_input", "prompt", "seedance-2.0-mini", images=[IMG]),
    _case(
        "k30-multishot-no-shots",
        "needs_input",
        "multi_prompt",
        "kling-3.0-t2v",
        prompt="x",
        options={"multi_shots": True},
    ),
    _case(
        "k30i-multishot-no-shots",
        "needs_input",
        "multi_prompt",
        "kling-3.0-i2v",
        images=[IMG],
        options={"multi_shots": "yes"},
    ),
    # ---- contradictory options / inputs
    _case(
        "k30-shots-but-multishot-off",
        "invalid",
        "multi_shots",
        "kling-3.0-t2v",
        prompt="x",
        options={"multi_shots": False},
        multi_prompt=[SHOT],
    ),
    _case(
        "k30i-shots-but-multishot-off",
        "invalid",
        "multi_shots",
        "kling-3.0-i2v",
        prompt="x",
        images=[IMG],
        options={"multi_shots": "false"},
        multi_prompt=[SHOT],
    ),
    _case(
        "k30i-multishot-with-last-frame",
        "invalid",
        "image_urls",
        "kling-3.0-i2v",
        images=[IMG, IMG2],
        multi_prompt=[SHOT],
    ),
    _case(
        "sd-first-frame-plus-reference",
        "invalid",
        "images[1]",
        "seedance-2.0",
        prompt="abc",
        images=[MediaInput(source=IMG, role="first_frame"), MediaInput(source=IMG2, role="reference")],
    ),
    _case(
        "sd-last-frame-plus-video",
        "invalid",
        "videos[0]",
        "seedance-2.0",
        prompt="abc",
        images=[IMG, MediaInput(source=IMG2, role="last_frame")],
        videos=[VID],
    ),
    _case(
        "sd-fast-first-frame-plus-audio",
        "invalid",
        "audios[0]",
        "seedance-2.0-fast",
        prompt="abc",
        images=[MediaInput(source=IMG, role="first_frame")],
        audios=[AUD],
    ),
    _case(
        "k26i-last-frame-role",
        "invalid",
        "images[0]",
        "kling-2.6-i2v",
        prompt="x",
        images=[MediaInput(source=IMG, role="last_frame")],
    ),
    _case(
        "nb2-first-frame-role",
        "invalid",
        "images[0]",
        "nano-banana-2",
        prompt="x",
        images=[MediaInput(source=IMG, role="first_frame")],
    ),
    _case("k30t-task-mode-i2v", "invalid", "task_mode", "kling-3.0-t2v", prompt="x", task_mode="i2v"),
    _case("nb2-task-mode-video", "invalid", "task_mode", "nano-banana-2", prompt="x", task_mode="text_to_video"),
    _case("k26-task-mode-garbage", "invalid", "task_mode", "kling-2.6-t2v", prompt="x", task_mode="dance"),
    _case(
        "k26-duplicate-option", "invalid", "sound", "kling-2.6-t2v", prompt="x", options={"sound": True, "audio": False}
    ),
    _case("nb2-multi-prompt", "invalid", "multi_prompt", "nano-banana-2", prompt="x", multi_prompt=[SHOT]),
    # ---- request-level
    _case("unknown-model", "invalid", "model_key", "midjourney-7", prompt="x"),
    _case("callback-ftp", "invalid", "callback_url", "nano-banana-2", prompt="x", callback_url="ftp://h.test/cb"),
    _case("callback-bare", "invalid", "callback_url", "seedance-2.0", prompt="abc", callback_url="h.test/cb"),
]


def _generated() -> list[Any]:
    """One unknown option and one wrong-typed value per model, so every spec's fields are exercised."""
    cases = []
    for spec in load_registry().specs.values():
        base: dict[str, Any] = {"prompt": "a prompt"}
        for mode in spec.task_modes[:1]:
            for slot in mode.slots:
                target = {"image": "images", "video": "videos", "audio": "audios"}[slot.kind]
                ext = slot.formats[0] if slot.formats else {"image": "png", "video": "mp4", "audio": "mp3"}[slot.kind]
                base.setdefault(target, []).extend([f"https://cdn.test/x{slot.min}.{ext}"] * slot.min)
        cases.append(
            pytest.param(
                spec.key,
                {**base, "options": {"colour_grade": "teal"}},
                "invalid",
                "colour_grade",
                id=f"{spec.key}-unknown-option",
            )
        )
        for name, opt in spec.options.items():
            if opt.type in ("integer", "boolean", "enum"):
                cases.append(
                    pytest.param(
                        spec.key, {**base, "options": {name: {"x": 1}}}, "invalid", name, id=f"{spec.key}-{name}-object"
                    )
                )
    return cases


def _fields(result: ValidationResult, state: str) -> list[str]:
    details = result.impossible_inputs if state == "invalid" else result.missing_inputs
    return [d.field for d in details]


@pytest.mark.parametrize(("model", "kwargs", "state", "field"), [*HAND_WRITTEN, *_generated()])
def test_bad_input(model: str, kwargs: dict[str, Any], state: str, field: str) -> None:
    result = validate_request(RawUserRequest(model_key=model, **kwargs))
    assert result.state == state, result.all_details()
    assert field in _fields(result, state), _fields(result, state)
    detail = next(d for d in [*result.impossible_inputs, *result.missing_inputs] if d.field == field)
    assert detail.message and detail.fix and detail.rule


def test_there_are_at_least_a_hundred_cases() -> None:
    assert len(HAND_WRITTEN) + len(_generated()) >= 100
    assert len(HAND_WRITTEN) >= 100
