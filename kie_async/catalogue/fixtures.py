"""Named example requests covering every model key in every validation state it can reach.

They are data, written out by hand (not derived from the specs) so tests that run them catch spec drift,
and wrapper repos can reuse them for their own integration tests: ``get_request_fixture(name).request``.
Media are hosted URLs so every fixture validates without touching the file system.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kie_async.catalogue.request_models import MediaInput, RawUserRequest, ValidationState


class RequestFixture(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    request: RawUserRequest
    expected_state: ValidationState
    expected_model_key: str
    expected_task_mode: str | None = None
    tags: list[str] = Field(default_factory=list)


IMG = "https://example.com/media/first.png"
IMG2 = "https://example.com/media/last.png"
IMG3 = "https://example.com/media/third.jpg"
VID = "https://example.com/media/driver.mp4"
AUD = "https://example.com/media/voice.mp3"
HTTPS_CB = "https://hooks.example.com/kie"
HTTP_CB = "http://hooks.example.com/kie"

_FIXTURES: list[RequestFixture] = []


def _add(
    name: str,
    description: str,
    state: ValidationState,
    model_key: str,
    task_mode: str | None,
    *,
    expected_key: str | None = None,
    tags: list[str] | None = None,
    **request: Any,
) -> None:
    _FIXTURES.append(
        RequestFixture(
            name=name,
            description=description,
            request=RawUserRequest(model_key=model_key, **request),
            expected_state=state,
            expected_model_key=expected_key or model_key,
            expected_task_mode=task_mode,
            tags=tags or [],
        )
    )


# ---- Nano Banana 2
_NB2_ALL = {"aspect_ratio": "16:9", "resolution": "2K", "output_format": "png"}
_add(
    "nano_banana_2_ready",
    "every option given",
    "ready",
    "nano-banana-2",
    "text_to_image",
    prompt="A lighthouse at dawn, watercolor",
    options=_NB2_ALL,
)
_add(
    "nano_banana_2_defaults",
    "prompt only; options defaulted",
    "ready_with_defaults",
    "nano-banana-2",
    "text_to_image",
    prompt="A lighthouse at dawn",
)
_add(
    "nano_banana_2_edit_defaults",
    "edit with two reference images",
    "ready_with_defaults",
    "nano-banana-2",
    "image_edit",
    prompt="Put the cat from image 1 on the sofa in image 2",
    images=[IMG, IMG2],
)
_add(
    "nano_banana_2_warning",
    "google_search is UNCONFIRMED",
    "ready_with_warning",
    "nano-banana-2",
    "text_to_image",
    prompt="Today's weather in Paris as a poster",
    options={**_NB2_ALL, "google_search": True},
)
_add("nano_banana_2_missing_prompt", "no prompt", "needs_input", "nano-banana-2", "text_to_image", options=_NB2_ALL)
_add(
    "nano_banana_2_too_many_images",
    "15 images where 14 are allowed",
    "invalid",
    "nano-banana-2",
    "image_edit",
    prompt="Collage",
    images=[f"https://example.com/media/{i}.png" for i in range(15)],
)

# ---- Nano Banana Pro
_NBP_ALL = {"aspect_ratio": "1:1", "resolution": "4K", "output_format": "jpg"}
_add(
    "nano_banana_pro_ready",
    "every option given",
    "ready",
    "nano-banana-pro",
    "text_to_image",
    prompt="Isometric city block, clean typography 'OPEN'",
    options=_NBP_ALL,
)
_add(
    "nano_banana_pro_defaults",
    "edit with one image, defaults",
    "ready_with_defaults",
    "nano-banana-pro",
    "image_edit",
    prompt="Make it night",
    images=[IMG],
)
_add(
    "nano_banana_pro_warning",
    "plain-http callback",
    "ready_with_warning",
    "nano-banana-pro",
    "text_to_image",
    prompt="A poster",
    options=_NBP_ALL,
    callback_url=HTTP_CB,
)
_add(
    "nano_banana_pro_missing_prompt",
    "edit without a prompt",
    "needs_input",
    "nano-banana-pro",
    "image_edit",
    images=[IMG],
    options=_NBP_ALL,
)
_add(
    "nano_banana_pro_bad_resolution",
    "8K is not offered",
    "invalid",
    "nano-banana-pro",
    "text_to_image",
    prompt="A poster",
    options={"resolution": "8K"},
)

# ---- Kling 2.6 text-to-video
_K26_T2V_ALL = {"sound": False, "aspect_ratio": "16:9", "duration": "10"}
_add(
    "kling_2_6_t2v_ready",
    "every field given; duration as a string",
    "ready",
    "kling-2.6-t2v",
    "text_to_video",
    prompt="A paper boat in the rain",
    options=_K26_T2V_ALL,
)
_add(
    "kling_2_6_t2v_defaults",
    "prompt only",
    "ready_with_defaults",
    "kling-2.6-t2v",
    "text_to_video",
    prompt="A paper boat in the rain",
)
_add(
    "kling_2_6_t2v_warning",
    "plain-http callback",
    "ready_with_warning",
    "kling-2.6-t2v",
    "text_to_video",
    prompt="A paper boat",
    options=_K26_T2V_ALL,
    callback_url=HTTP_CB,
)
_add("kling_2_6_t2v_missing_prompt", "no prompt", "needs_input", "kling-2.6-t2v", "text_to_video", options=_K26_T2V_ALL)
_add(
    "kling_2_6_t2v_bad_duration",
    "7 s is not offered (5 or 10)",
    "invalid",
    "kling-2.6-t2v",
    "text_to_video",
    prompt="A paper boat",
    options={"duration": 7},
)

# ---- Kling 2.6 image-to-video
_K26_I2V_ALL = {"sound": True, "duration": 5}
_add(
    "kling_2_6_i2v_ready",
    "image and every field",
    "ready",
    "kling-2.6-i2v",
    "image_to_video",
    prompt="The boat drifts away",
    images=[IMG],
    options=_K26_I2V_ALL,
)
_add(
    "kling_2_6_i2v_defaults",
    "image, defaults",
    "ready_with_defaults",
    "kling-2.6-i2v",
    "image_to_video",
    prompt="The boat drifts away",
    images=[IMG],
)
_add(
    "kling_2_6_i2v_alias_defaults",
    "alias kling-2.6 with an image picks i2v",
    "ready_with_defaults",
    "kling-2.6",
    "image_to_video",
    expected_key="kling-2.6-i2v",
    prompt="The boat drifts away",
    images=[IMG],
)
_add(
    "kling_2_6_i2v_warning",
    "URL without a file extension",
    "ready_with_warning",
    "kling-2.6-i2v",
    "image_to_video",
    prompt="The boat drifts away",
    images=["https://example.com/media/frame"],
    options=_K26_I2V_ALL,
)
_add(
    "kling_2_6_i2v_missing_image",
    "no image",
    "needs_input",
    "kling-2.6-i2v",
    "image_to_video",
    prompt="The boat drifts away",
    options=_K26_I2V_ALL,
)
_add(
    "kling_2_6_i2v_two_images",
    "two images where one is allowed",
    "invalid",
    "kling-2.6-i2v",
    "image_to_video",
    prompt="The boat drifts away",
    images=[IMG, IMG2],
)

# ---- Kling 2.6 motion control
_K26_MC_ALL = {"character_orientation": "video", "mode": "1080p"}
_add(
    "kling_2_6_motion_ready",
    "image + driver video, every field",
    "ready",
    "kling-2.6-motion",
    "motion_control",
    images=[IMG],
    videos=[VID],
    options=_K26_MC_ALL,
)
_add(
    "kling_2_6_motion_defaults",
    "image + driver video",
    "ready_with_defaults",
    "kling-2.6-motion",
    "motion_control",
    images=[IMG],
    videos=[VID],
    prompt="Keep the red jacket",
)
_add(
    "kling_2_6_motion_warning",
    "orientation=image caps output at 10 s",
    "ready_with_warning",
    "kling-2.6-motion",
    "motion_control",
    images=[IMG],
    videos=[VID],
    options={"character_orientation": "image", "mode": "720p"},
)
_add(
    "kling_2_6_motion_missing_video",
    "no driver video",
    "needs_input",
    "kling-2.6-motion",
    "motion_control",
    images=[IMG],
    options=_K26_MC_ALL,
)
_add(
    "kling_2_6_motion_bad_mode",
    "std is not in the 720p/1080p enum",
    "invalid",
    "kling-2.6-motion",
    "motion_control",
    images=[IMG],
    videos=[VID],
    options={"mode": "std"},
)

# ---- Kling 3.0 text-to-video
_K30_T2V_ALL = {"sound": True, "duration": "8", "aspect_ratio": "9:16", "mode": "std", "multi_shots": False}
_add(
    "kling_3_t2v_ready",
    "every field given",
    "ready",
    "kling-3.0-t2v",
    "text_to_video",
    prompt="A skateboarder at sunset",
    options=_K30_T2V_ALL,
)
_add(
    "kling_3_t2v_defaults",
    "alias kling-3.0 without media picks t2v",
    "ready_with_defaults",
    "kling-3.0",
    "text_to_video",
    expected_key="kling-3.0-t2v",
    prompt="A skateboarder at sunset",
)
_add(
    "kling_3_t2v_multishot_defaults",
    "multi_prompt turns multi_shots and sound on",
    "ready_with_defaults",
    "kling-3.0-t2v",
    "text_to_video",
    multi_prompt=[{"prompt": "Wide shot of the park", "duration": 3}, {"prompt": "Close-up", "duration": 2}],
)
_add(
    "kling_3_t2v_warning",
    "plain-http callback",
    "ready_with_warning",
    "kling-3.0-t2v",
    "text_to_video",
    prompt="A skateboarder",
    options=_K30_T2V_ALL,
    callback_url=HTTP_CB,
)
_add(
    "kling_3_t2v_multishot_missing_shots",
    "multi_shots on, no multi_prompt",
    "needs_input",
    "kling-3.0-t2v",
    "text_to_video",
    prompt="A skateboarder",
    options={**_K30_T2V_ALL, "multi_shots": True},
)
_add(
    "kling_3_t2v_bad_duration",
    "20 s is above 15",
    "invalid",
    "kling-3.0-t2v",
    "text_to_video",
    prompt="A skateboarder",
    options={"duration": 20},
)

# ---- Kling 3.0 image-to-video
_K30_I2V_ALL = {"sound": False, "duration": 5, "mode": "pro", "multi_shots": False}
_add(
    "kling_3_i2v_ready",
    "first frame, every field",
    "ready",
    "kling-3.0-i2v",
    "image_to_video",
    prompt="She turns and smiles",
    images=[IMG],
    options=_K30_I2V_ALL,
)
_add(
    "kling_3_i2v_defaults",
    "alias kling-3.0 with an image picks i2v",
    "ready_with_defaults",
    "kling-3.0",
    "image_to_video",
    expected_key="kling-3.0-i2v",
    prompt="She turns and smiles",
    images=[IMG],
)
_add(
    "kling_3_i2v_first_last_defaults",
    "two images = first and last frame",
    "ready_with_defaults",
    "kling-3.0-i2v",
    "first_last_frames",
    prompt="Day turns to night",
    images=[IMG, IMG2],
)
_add(
    "kling_3_i2v_warning",
    "aspect_ratio with frames is dropped",
    "ready_with_warning",
    "kling-3.0-i2v",
    "image_to_video",
    prompt="She turns",
    images=[IMG],
    options={**_K30_I2V_ALL, "aspect_ratio": "9:16"},
)
_add(
    "kling_3_i2v_missing_first_frame",
    "only a last frame",
    "needs_input",
    "kling-3.0-i2v",
    "first_last_frames",
    prompt="Day turns to night",
    images=[MediaInput(source=IMG2, role="last_frame")],
    options=_K30_I2V_ALL,
)
_add(
    "kling_3_i2v_multishot_last_frame",
    "multi-shot takes a first frame only",
    "invalid",
    "kling-3.0-i2v",
    "first_last_frames",
    images=[IMG, IMG2],
    multi_prompt=[{"prompt": "Shot one", "duration": 3}, {"prompt": "Shot two", "duration": 3}],
)

# ---- Kling 3.0 motion control
_K30_MC_ALL = {"mode": "pro", "character_orientation": "video", "background_source": "input_image"}
_add(
    "kling_3_motion_ready",
    "every field and an https callback",
    "ready",
    "kling-3.0-motion",
    "motion_control",
    images=[IMG],
    videos=[VID],
    options=_K30_MC_ALL,
    callback_url=HTTPS_CB,
)
_add(
    "kling_3_motion_defaults",
    "defaults, https callback",
    "ready_with_defaults",
    "kling-3.0-motion",
    "motion_control",
    images=[IMG],
    videos=[VID],
    callback_url=HTTPS_CB,
)
_add(
    "kling_3_motion_warning",
    "no callback although the docs list it as required",
    "ready_with_warning",
    "kling-3.0-motion",
    "motion_control",
    images=[IMG],
    videos=[VID],
    options=_K30_MC_ALL,
)
_add(
    "kling_3_motion_missing_video",
    "no driver video",
    "needs_input",
    "kling-3.0-motion",
    "motion_control",
    images=[IMG],
    options=_K30_MC_ALL,
    callback_url=HTTPS_CB,
)
_add(
    "kling_3_motion_audio_input",
    "audio is not an input of motion control",
    "invalid",
    "kling-3.0-motion",
    "motion_control",
    images=[IMG],
    videos=[VID],
    audios=[AUD],
    callback_url=HTTPS_CB,
)

# ---- Seedance 2.0 family (same shape, different ids and resolutions)
for _key, _slug, _res in (
    ("seedance-2.0", "seedance_2", "1080p"),
    ("seedance-2.0-fast", "seedance_2_fast", "480p"),
    ("seedance-2.0-mini", "seedance_2_mini", "720p"),
):
    _all = {"generate_audio": False, "resolution": _res, "aspect_ratio": "9:16", "duration": 8, "nsfw_checker": False}
    _add(
        f"{_slug}_ready",
        "text-to-video, every defaulted field given",
        "ready",
        _key,
        "text_to_video",
        prompt="A koi pond in the rain",
        options=_all,
    )
    _add(
        f"{_slug}_first_frame_defaults",
        "one image = first frame",
        "ready_with_defaults",
        _key,
        "image_to_video",
        prompt="The koi swim in circles",
        images=[IMG],
    )
    _add(
        f"{_slug}_first_last_defaults",
        "two images = first + last frame",
        "ready_with_defaults",
        _key,
        "first_last_frames",
        prompt="Rain starts and stops",
        images=[IMG, IMG2],
    )
    _add(
        f"{_slug}_reference_defaults",
        "reference image, video and audio",
        "ready_with_defaults",
        _key,
        "multimodal_reference",
        prompt="The character from image 1 dances like video 1",
        images=[MediaInput(source=IMG, role="reference")],
        videos=[MediaInput(source=VID, duration_seconds=6)],
        audios=[MediaInput(source=AUD, duration_seconds=6)],
    )
    _add(
        f"{_slug}_warning",
        "deprecated return_last_frame",
        "ready_with_warning",
        _key,
        "text_to_video",
        prompt="A koi pond",
        options={**_all, "return_last_frame": True},
    )
    _add(f"{_slug}_missing_prompt", "no prompt", "needs_input", _key, "image_to_video", images=[IMG], options=_all)
    _add(
        f"{_slug}_mixed_modes",
        "first frame and reference video cannot be mixed",
        "invalid",
        _key,
        "image_to_video",
        prompt="A koi pond",
        images=[MediaInput(source=IMG, role="first_frame")],
        videos=[VID],
    )

_add(
    "seedance_2_alias_bad_duration",
    "alias 'seedance'; 16 s is above 15",
    "invalid",
    "seedance",
    "text_to_video",
    expected_key="seedance-2.0",
    prompt="A koi pond",
    options={"duration": 16},
)
_add(
    "seedance_2_fast_4k",
    "fast has no 4k",
    "invalid",
    "seedance-2.0-fast",
    "text_to_video",
    prompt="A koi pond",
    options={"resolution": "4k"},
)

# ---- Separate APIs (their own endpoints and states; see docs/transports.md)
# Veo 3.1 Quality and Fast
for _key, _slug in (("veo-3.1", "veo_3_1"), ("veo-3.1-fast", "veo_3_1_fast"), ("veo-3.1-lite", "veo_3_1_lite")):
    _veo_all = {"aspect_ratio": "9:16", "enableTranslation": False}
    _add(
        f"{_slug}_ready",
        "text-to-video, every defaulted field given",
        "ready",
        _key,
        "text_to_video",
        prompt="A paper lantern drifting over a night river",
        options=_veo_all,
    )
    _add(
        f"{_slug}_first_frame_defaults",
        "one image = first frame",
        "ready_with_defaults",
        _key,
        "image_to_video",
        prompt="The lantern rises slowly",
        images=[IMG],
    )
    _add(
        f"{_slug}_first_last_defaults",
        "two images = first + last frame",
        "ready_with_defaults",
        _key,
        "first_last_frames",
        prompt="Day turns to night",
        images=[IMG, IMG2],
    )
    _add(
        f"{_slug}_warning",
        "deprecated enableFallback",
        "ready_with_warning",
        _key,
        "text_to_video",
        prompt="A lantern",
        options={**_veo_all, "enableFallback": True},
    )
    _add(f"{_slug}_missing_prompt", "no prompt", "needs_input", _key, "image_to_video", images=[IMG], options=_veo_all)
    _add(
        f"{_slug}_text_mode_with_image",
        "TEXT_2_VIDEO takes no images",
        "invalid",
        _key,
        "image_to_video",
        prompt="A lantern",
        images=[IMG],
        options={"generationType": "TEXT_2_VIDEO"},
    )
_add(
    "veo_3_1_fast_references",
    "three reference images (fast only)",
    "ready_with_defaults",
    "veo-3.1-fast",
    "multimodal_reference",
    prompt="The fox from image 1 walks through the forest of image 2",
    images=[MediaInput(source=u, role="reference") for u in (IMG, IMG2, IMG3)],
    options={"generationType": "REFERENCE_2_VIDEO"},
)
_add(
    "veo_3_1_fast_references_no_type",
    "references without REFERENCE_2_VIDEO",
    "needs_input",
    "veo-3.1-fast",
    "multimodal_reference",
    prompt="The fox",
    images=[MediaInput(source=IMG, role="reference")],
)
_add(
    "veo_3_1_fast_references_frames_type",
    "reference images under FIRST_AND_LAST_FRAMES_2_VIDEO",
    "invalid",
    "veo-3.1-fast",
    "multimodal_reference",
    prompt="The fox",
    images=[MediaInput(source=u, role="reference") for u in (IMG, IMG2, IMG3)],
    options={"generationType": "FIRST_AND_LAST_FRAMES_2_VIDEO"},
)

# Runway (Gen) and Aleph
_RW_ALL = {"duration": 10, "quality": "720p", "aspectRatio": "9:16", "waterMark": ""}
_add(
    "runway_ready",
    "text-to-video, every field and a callback",
    "ready",
    "runway-gen",
    "text_to_video",
    prompt="A hummingbird in slow motion",
    options=_RW_ALL,
    callback_url=HTTPS_CB,
)
_add(
    "runway_image_defaults",
    "image-to-video, defaults",
    "ready_with_defaults",
    "runway-gen",
    "image_to_video",
    prompt="The bird takes off",
    images=[IMG],
    callback_url=HTTPS_CB,
)
_add(
    "runway_warning",
    "aspectRatio with an image is dropped",
    "ready_with_warning",
    "runway-gen",
    "image_to_video",
    prompt="The bird takes off",
    images=[IMG],
    options=_RW_ALL,
    callback_url=HTTPS_CB,
)
_add(
    "runway_missing_prompt",
    "no prompt",
    "needs_input",
    "runway-gen",
    "text_to_video",
    options=_RW_ALL,
    callback_url=HTTPS_CB,
)
_add(
    "runway_1080p_10s",
    "1080p is 5 s only",
    "invalid",
    "runway-gen",
    "text_to_video",
    prompt="A bird",
    options={**_RW_ALL, "quality": "1080p"},
    callback_url=HTTPS_CB,
)
_add(
    "runway_aleph_ready",
    "video plus every option",
    "ready",
    "runway-aleph",
    "video_to_video",
    prompt="Make it a watercolor painting",
    videos=[VID],
    options={"aspectRatio": "16:9", "seed": 7, "waterMark": "", "uploadCn": False},
)
_add(
    "runway_aleph_defaults",
    "video and a reference image, defaults",
    "ready_with_defaults",
    "runway-aleph",
    "video_to_video",
    prompt="Restyle like image 1",
    videos=[VID],
    images=[MediaInput(source=IMG, role="reference")],
)
_add(
    "runway_aleph_warning",
    "plain-http callback",
    "ready_with_warning",
    "runway-aleph",
    "video_to_video",
    prompt="Make it snow",
    videos=[VID],
    callback_url=HTTP_CB,
)
_add(
    "runway_aleph_missing_video",
    "no input video",
    "needs_input",
    "runway-aleph",
    "video_to_video",
    prompt="Make it snow",
)
_add(
    "runway_aleph_bad_ratio",
    "2:1 is not offered",
    "invalid",
    "runway-aleph",
    "video_to_video",
    prompt="Make it snow",
    videos=[VID],
    options={"aspectRatio": "2:1"},
)

# Suno music generation
_SUNO_ALL = {
    "customMode": True,
    "instrumental": True,
    "model": "V5",
    "style": "Classical, calm piano",
    "title": "Quiet Harbour",
}
_add(
    "suno_ready",
    "custom instrumental, every field",
    "ready",
    "suno-music",
    "text_to_audio",
    options=_SUNO_ALL,
    callback_url=HTTPS_CB,
)
_add(
    "suno_defaults",
    "a description only (non-custom mode)",
    "ready_with_defaults",
    "suno-music",
    "text_to_audio",
    prompt="A calm piano piece for a rainy morning",
    callback_url=HTTPS_CB,
)
_add(
    "suno_warning",
    "vocalGender outside custom mode is dropped",
    "ready_with_warning",
    "suno-music",
    "text_to_audio",
    prompt="An upbeat pop song about summer",
    callback_url=HTTPS_CB,
    options={"customMode": False, "instrumental": False, "model": "V4_5", "vocalGender": "f"},
)
_add(
    "suno_missing_callback",
    "Suno requires a callback URL",
    "needs_input",
    "suno-music",
    "text_to_audio",
    prompt="A calm piano piece",
)
_add(
    "suno_bad_weight",
    "styleWeight above 1",
    "invalid",
    "suno-music",
    "text_to_audio",
    prompt="A calm piano piece",
    callback_url=HTTPS_CB,
    options={"styleWeight": 1.5},
)

# 4o Image
_add(
    "gpt4o_image_ready",
    "text-to-image, every defaulted field given",
    "ready",
    "gpt4o-image",
    "text_to_image",
    prompt="A ceramic teapot shaped like a whale",
    options={"size": "3:2", "isEnhance": False, "enableFallback": False},
)
_add(
    "gpt4o_image_edit_defaults",
    "edit with two images, no prompt needed",
    "ready_with_defaults",
    "gpt4o-image",
    "image_edit",
    images=[IMG, IMG2],
)
_add(
    "gpt4o_image_warning",
    "fallbackModel without enableFallback",
    "ready_with_warning",
    "gpt4o-image",
    "text_to_image",
    prompt="A teapot",
    options={"size": "1:1", "isEnhance": False, "enableFallback": False, "fallbackModel": "FLUX_MAX"},
)
_add(
    "gpt4o_image_missing_prompt",
    "no prompt and no image",
    "needs_input",
    "gpt4o-image",
    "text_to_image",
    options={"size": "1:1"},
)
_add(
    "gpt4o_image_too_many",
    "six images where 5 are allowed",
    "invalid",
    "gpt4o-image",
    "image_edit",
    prompt="Collage",
    images=[f"https://example.com/media/{i}.png" for i in range(6)],
)

# Flux Kontext Pro and Max
for _key, _slug in (("flux-kontext-pro", "flux_kontext_pro"), ("flux-kontext-max", "flux_kontext_max")):
    _fk_all = {
        "aspectRatio": "1:1",
        "outputFormat": "png",
        "promptUpsampling": False,
        "safetyTolerance": 2,
        "enableTranslation": False,
    }
    _add(
        f"{_slug}_ready",
        "text-to-image, every defaulted field given",
        "ready",
        _key,
        "text_to_image",
        prompt="A glass greenhouse on a cliff at dusk",
        options=_fk_all,
    )
    _add(
        f"{_slug}_edit_defaults",
        "edit one image, defaults",
        "ready_with_defaults",
        _key,
        "image_edit",
        prompt="Make it winter",
        images=[IMG],
    )
    _add(
        f"{_slug}_warning",
        "plain-http callback",
        "ready_with_warning",
        _key,
        "text_to_image",
        prompt="A greenhouse",
        options=_fk_all,
        callback_url=HTTP_CB,
    )
    _add(
        f"{_slug}_missing_prompt",
        "edit without a prompt",
        "needs_input",
        _key,
        "image_edit",
        images=[IMG],
        options=_fk_all,
    )
    _add(
        f"{_slug}_edit_safety",
        "safetyTolerance 5 is for generation only",
        "invalid",
        _key,
        "image_edit",
        prompt="Make it winter",
        images=[IMG],
        options={"safetyTolerance": 5},
    )

# ---- The imported catalogue: one entry per model key in catalogue_fixtures.yaml (built once from each docs
# page's own example request, then kept as data), in every state the model can reach.
_STATES: tuple[ValidationState, ...] = ("ready", "ready_with_defaults", "ready_with_warning", "needs_input", "invalid")
UNREACHABLE_STATES: dict[str, dict[str, str]] = {}
"""Model key -> validation state -> why no request can land there (e.g. a model without defaults)."""


def _load_catalogue() -> None:
    from importlib import resources

    from ruamel.yaml import YAML

    text = resources.files("kie_async.catalogue").joinpath("catalogue_fixtures.yaml").read_text(encoding="utf-8")
    data: dict[str, dict[str, Any]] = YAML(typ="safe").load(text) or {}
    for key, entry in data.items():
        slug = key.replace("-", "_").replace(".", "_")
        for state in _STATES:
            if state in entry:
                _add(
                    f"{slug}_{state}",
                    f"catalogue: {key} {state.replace('_', ' ')}",
                    state,
                    key,
                    entry["task_mode"],
                    tags=["catalogue"],
                    **entry[state],
                )
        for extra in entry.get("more") or []:  # the other task modes of a multi-mode model
            _add(
                f"{slug}_{extra['task_mode']}_{extra['state']}",
                f"catalogue: {key} {extra['task_mode']}",
                extra["state"],
                key,
                extra["task_mode"],
                tags=["catalogue"],
                **extra["request"],
            )
        UNREACHABLE_STATES[key] = dict(entry.get("unreachable") or {})


_load_catalogue()

REQUEST_FIXTURES: dict[str, RequestFixture] = {f.name: f for f in _FIXTURES}
if len(REQUEST_FIXTURES) != len(_FIXTURES):  # pragma: no cover - guards hand edits
    raise RuntimeError("duplicate request fixture names")


def get_request_fixture(name: str) -> RequestFixture:
    """A fixture by name; the KeyError lists the names that exist."""
    try:
        return REQUEST_FIXTURES[name]
    except KeyError:
        raise KeyError(f"no request fixture {name!r}; known: {', '.join(sorted(REQUEST_FIXTURES))}") from None
