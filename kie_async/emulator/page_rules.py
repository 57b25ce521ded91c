"""Rules a docs page states in words that its JSON Schema cannot express, one small named check each.

Every rule names the page it comes from, so a reader can check the emulator against the provider's text.
They run after the schema check, on the request's ``input`` as sent (a rule about a field being required
must see it missing, so the page's defaults are not filled in). Rules the
emulator cannot check without fetching the media (total seconds of reference videos, pixel counts) are not
here: the emulator does not download inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

RuleCheck = Callable[[dict[str, Any]], str | None]


class PageRule(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    models: tuple[str, ...] = ()
    """``createTask`` model ids the rule judges (their ``input``)."""
    endpoints: tuple[str, ...] = ()
    """Separate APIs' create paths the rule judges (the whole body: those APIs have no ``input`` object)."""
    page: str
    says: str
    """What the page states, in our words."""
    check: RuleCheck


def _filled(params: dict[str, Any], field: str) -> bool:
    return params.get(field) not in (None, "", [])


def _count(params: dict[str, Any], field: str) -> int:
    value = params.get(field)
    if isinstance(value, list):
        return len(value)
    return 1 if isinstance(value, str) and value else 0


_SEEDANCE = ("bytedance/seedance-2", "bytedance/seedance-2-fast", "bytedance/seedance-2-mini")
_SEEDANCE_REFS = ("reference_image_urls", "reference_video_urls", "reference_audio_urls")


def _seedance_scenarios(params: dict[str, Any]) -> str | None:
    frames = [f for f in ("first_frame_url", "last_frame_url") if _filled(params, f)]
    refs = [f for f in _SEEDANCE_REFS if _filled(params, f)]
    if frames and refs:
        return (
            f"{', '.join(frames)} and {', '.join(refs)}: first-frame, first-and-last-frame and multimodal "
            "reference are mutually exclusive scenarios; send frames or references, not both"
        )
    return None


def _seedance_images_total(params: dict[str, Any]) -> str | None:
    total = sum(_count(params, f) for f in ("first_frame_url", "last_frame_url", "reference_image_urls"))
    if total > 9:
        return f"reference_image_urls: frames plus reference images must not exceed 9, got {total}"
    return None


def _kling30_multi_prompt(params: dict[str, Any]) -> str | None:
    if params.get("multi_shots") is True and not _filled(params, "multi_prompt"):
        return "multi_prompt: is required when multi_shots is true"
    return None


def _kling30_prompt(params: dict[str, Any]) -> str | None:
    if params.get("multi_shots") is not True and not _filled(params, "prompt"):
        return "prompt: is required unless multi_shots is true"
    return None


def _kling30_aspect_ratio(params: dict[str, Any]) -> str | None:
    if not _filled(params, "image_urls") and not _filled(params, "aspect_ratio"):
        return "aspect_ratio: is required when no image_urls (frames) are given"
    return None


def _kling30_frames(params: dict[str, Any]) -> str | None:
    images = _count(params, "image_urls")
    limit = 1 if params.get("multi_shots") is True else 2
    if images > limit:
        what = "multi-shot takes only a first frame" if limit == 1 else "at most a first and a last frame"
        return f"image_urls: {what} ({limit} image(s)), got {images}"
    return None


def _grok_task_id_or_images(params: dict[str, Any]) -> str | None:
    if _filled(params, "task_id") and _filled(params, "image_urls"):
        return "task_id: cannot be used together with image_urls"
    return None


def _wan27_i2v_modes(params: dict[str, Any]) -> str | None:
    first, last, clip = (_filled(params, f) for f in ("first_frame_url", "last_frame_url", "first_clip_url"))
    if clip and (first or last):
        return "first_clip_url: video continuation takes no frame images (send frames or a first clip, not both)"
    if not (first or clip):
        what = "a last frame needs a first frame" if last else "give first_frame_url or first_clip_url"
        return f"first_frame_url: {what} (first frame, first and last frame, or video continuation)"
    return None


_VEO_IMAGES = {"TEXT_2_VIDEO": (0, 0), "FIRST_AND_LAST_FRAMES_2_VIDEO": (1, 2), "REFERENCE_2_VIDEO": (1, 3)}


def _veo_images_by_generation_type(body: dict[str, Any]) -> str | None:
    images = _count(body, "imageUrls")
    kind = body.get("generationType")
    if kind not in _VEO_IMAGES:  # left out (or not a listed value, which the schema refuses): 1 or 2 images
        return None if images <= 2 else f"imageUrls: 1 or 2 images (first and last frame), got {images}"
    low, high = _VEO_IMAGES[kind]
    if low <= images <= high:
        return None
    wanted = "no images" if high == 0 else f"{low}-{high} images"
    return f"imageUrls: generationType {kind} takes {wanted}, got {images}"


def _veo_reference_fast_only(body: dict[str, Any]) -> str | None:
    if body.get("generationType") == "REFERENCE_2_VIDEO" and body.get("model", "veo3_fast") != "veo3_fast":
        return f"generationType: REFERENCE_2_VIDEO is supported only by veo3_fast, not {body.get('model')!r}"
    return None


def _runway_no_1080p_at_10s(body: dict[str, Any]) -> str | None:
    if body.get("quality") == "1080p" and body.get("duration") == 10:
        return "quality: 1080p cannot be generated for a 10-second video"
    return None


def _runway_text_needs_aspect_ratio(body: dict[str, Any]) -> str | None:
    if not _filled(body, "imageUrl") and not _filled(body, "aspectRatio"):
        return "aspectRatio: is required for text-to-video (no imageUrl)"
    return None


def _suno_prompt_by_mode(body: dict[str, Any]) -> str | None:
    if _filled(body, "prompt"):
        return None
    if body.get("customMode") is not True:
        return "prompt: is required in non-custom mode"
    if body.get("instrumental") is not True:
        return "prompt: is required in custom mode with instrumental false (it is the lyrics)"
    return None


def _suno_custom_style_title(body: dict[str, Any]) -> str | None:
    if body.get("customMode") is not True:
        return None
    missing = [f for f in ("style", "title") if not _filled(body, f)]
    return f"{' and '.join(missing)}: required in custom mode" if missing else None


def _suno_lengths(body: dict[str, Any]) -> str | None:
    v4 = body.get("model") == "V4"
    limits = {
        "prompt": (3000 if v4 else 5000) if body.get("customMode") is True else 500,
        "style": 200 if v4 else 1000,
        "title": 80,
    }
    for field, limit in limits.items():
        value = body.get(field)
        if isinstance(value, str) and len(value) > limit:
            return f"{field}: at most {limit} characters here, got {len(value)}"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _within(field: str, low: float, high: float) -> RuleCheck:
    """A range a page states only in a field's description (numbers may be sent as strings)."""

    def check(params: dict[str, Any]) -> str | None:
        value = _number(params.get(field))
        if value is None or low <= value <= high:
            return None
        return f"{field}: {params.get(field)!r} is outside {low:g}-{high:g}"

    return check


def _max_chars(field: str, limit: int) -> RuleCheck:
    def check(params: dict[str, Any]) -> str | None:
        value = params.get(field)
        if isinstance(value, str) and len(value) > limit:
            return f"{field}: at most {limit} characters, got {len(value)}"
        return None

    return check


def _min_chars(field: str, limit: int) -> RuleCheck:
    def check(params: dict[str, Any]) -> str | None:
        value = params.get(field)
        if isinstance(value, str) and value and len(value) < limit:
            return f"{field}: at least {limit} characters, got {len(value)}"
        return None

    return check


def _dialogue_total(params: dict[str, Any]) -> str | None:
    lines = params.get("dialogue")
    if not isinstance(lines, list):
        return None
    total = sum(len(line["text"]) for line in lines if isinstance(line, dict) and isinstance(line.get("text"), str))
    return f"dialogue: all text together at most 5000 characters, got {total}" if total > 5000 else None


def _num_frames_step(params: dict[str, Any]) -> str | None:
    value = _number(params.get("num_frames"))
    if value is None or value % 4 == 0:
        return None
    return f"num_frames: {params.get('num_frames')!r} is not a multiple of 4"


def _suno_two_decimals(body: dict[str, Any]) -> str | None:
    for field in ("styleWeight", "weirdnessConstraint", "audioWeight"):
        value = _number(body.get(field))
        if value is not None and round(value, 2) != value:
            return f"{field}: at most 2 decimal places, got {body.get(field)!r}"
    return None


def _wan27_image_count(params: dict[str, Any]) -> str | None:
    value = _number(params.get("n"))
    high = 12 if params.get("enable_sequential") is True else 4
    if value is None or 1 <= value <= high:
        return None
    return f"n: {params.get('n')!r} is outside 1-{high} (enable_sequential {params.get('enable_sequential') is True})"


def _gpt_image_2_resolution(params: dict[str, Any]) -> str | None:
    resolution, ratio = params.get("resolution"), params.get("aspect_ratio")
    if resolution == "4K" and ratio == "1:1":
        return "resolution: a 1:1 image cannot be made in 4K"
    if resolution in ("2K", "4K") and ratio in (None, "", "auto"):
        return f"resolution: {resolution} needs an explicit aspect_ratio (auto or none gives 1K only)"
    return None


def _gpt4o_prompt_or_images(body: dict[str, Any]) -> str | None:
    if any(_filled(body, f) for f in ("prompt", "filesUrl", "fileUrl")):
        return None
    return "prompt: at least one of prompt or filesUrl must be provided"


_VEO = ("/api/v1/veo/generate",)
_VEO_PAGE = "veo3-api/generate-veo-3-video.md"
_RUNWAY = ("/api/v1/runway/generate",)
_RUNWAY_PAGE = "runway-api/generate-ai-video.md"
_SUNO = ("/api/v1/generate",)
_SUNO_PAGE = "suno-api/generate-music.md"

PAGE_RULES: tuple[PageRule, ...] = (
    PageRule(
        name="seedance-scenarios-exclusive",
        models=_SEEDANCE,
        page="market/bytedance/seedance-2.md",
        says="first frame, first & last frames and multimodal reference are mutually exclusive scenarios",
        check=_seedance_scenarios,
    ),
    PageRule(
        name="seedance-images-total-9",
        models=_SEEDANCE,
        page="market/bytedance/seedance-2.md",
        says="the frames plus the reference images must not exceed 9",
        check=_seedance_images_total,
    ),
    PageRule(
        name="kling30-multi-prompt-with-multi-shots",
        models=("kling-3.0/video",),
        page="market/kling/kling-3-0.md",
        says="multi-shot mode uses the multi_prompt array to define its shots",
        check=_kling30_multi_prompt,
    ),
    PageRule(
        name="kling30-prompt-single-shot",
        models=("kling-3.0/video",),
        page="market/kling/kling-3-0.md",
        says="prompt drives a single-shot video (multi_shots false); multi-shot videos use multi_prompt",
        check=_kling30_prompt,
    ),
    PageRule(
        name="kling30-aspect-ratio",
        models=("kling-3.0/video",),
        page="market/kling/kling-3-0.md",
        says="aspect_ratio is optional only when image_urls (frames) are given; it then follows the images",
        check=_kling30_aspect_ratio,
    ),
    PageRule(
        name="kling30-frames",
        models=("kling-3.0/video",),
        page="market/kling/kling-3-0.md",
        says="image_urls holds the first and last frame; multi-shot mode supports only the first frame",
        check=_kling30_frames,
    ),
    PageRule(
        name="grok-i2v-task-id-or-images",
        models=("grok-imagine/image-to-video",),
        page="market/grok-imagine/image-to-video.md",
        says="image_urls must not be used simultaneously with task_id",
        check=_grok_task_id_or_images,
    ),
    PageRule(
        name="wan27-i2v-modes",
        models=("wan/2-7-image-to-video",),
        page="market/wan/2-7-image-to-video.md",
        says="three modes: first_frame_url only, first_frame_url and last_frame_url, or first_clip_url",
        check=_wan27_i2v_modes,
    ),
    PageRule(
        name="veo-images-by-generation-type",
        endpoints=_VEO,
        page=_VEO_PAGE,
        says="imageUrls holds 1 or 2 images; TEXT_2_VIDEO uses text only, FIRST_AND_LAST_FRAMES_2_VIDEO one or "
        "two images, REFERENCE_2_VIDEO requires 1-3 images",
        check=_veo_images_by_generation_type,
    ),
    PageRule(
        name="veo-reference-fast-only",
        endpoints=_VEO,
        page=_VEO_PAGE,
        says="REFERENCE_2_VIDEO mode currently only supports the veo3_fast model",
        check=_veo_reference_fast_only,
    ),
    PageRule(
        name="runway-no-1080p-at-10s",
        endpoints=_RUNWAY,
        page=_RUNWAY_PAGE,
        says="if a 10-second video is selected, 1080p resolution cannot be selected",
        check=_runway_no_1080p_at_10s,
    ),
    PageRule(
        name="runway-text-needs-aspect-ratio",
        endpoints=_RUNWAY,
        page=_RUNWAY_PAGE,
        says="aspectRatio is required for text-to-video requests (with imageUrl the image decides it)",
        check=_runway_text_needs_aspect_ratio,
    ),
    PageRule(
        name="suno-prompt-by-mode",
        endpoints=_SUNO,
        page=_SUNO_PAGE,
        says="prompt is always required in non-custom mode, and in custom mode when instrumental is false",
        check=_suno_prompt_by_mode,
    ),
    PageRule(
        name="suno-custom-style-title",
        endpoints=_SUNO,
        page=_SUNO_PAGE,
        says="style and title are required in custom mode",
        check=_suno_custom_style_title,
    ),
    PageRule(
        name="suno-lengths",
        endpoints=_SUNO,
        page=_SUNO_PAGE,
        says="prompt: 500 characters in non-custom mode, 3000 (V4) or 5000 in custom mode; style: 200 (V4) or "
        "1000; title: 80",
        check=_suno_lengths,
    ),
    PageRule(
        name="gpt-image-2-i2i-prompt-20000",
        models=("gpt-image-2-image-to-image",),
        page="market/gpt/gpt-image-2-image-to-image.md",
        says="prompt: up to 20,000 characters",
        check=_max_chars("prompt", 20000),
    ),
    PageRule(
        name="grok-i2v-duration-6-30",
        models=("grok-imagine/image-to-video",),
        page="market/grok-imagine/image-to-video.md",
        says="duration: 6-30 seconds (a string)",
        check=_within("duration", 6, 30),
    ),
    PageRule(
        name="infinitalk-seed-range",
        models=("infinitalk/from-audio",),
        page="market/infinitalk/from-audio.md",
        says="seed: valid range 10000 to 1000000",
        check=_within("seed", 10000, 1000000),
    ),
    PageRule(
        name="wan27-image-count",
        models=("wan/2-7-image", "wan/2-7-image-pro"),
        page="market/wan/2-7-image.md",
        says="n: 1-4, or 1-12 when enable_sequential is true",
        check=_wan27_image_count,
    ),
    PageRule(
        name="flux2-prompt-min-3",
        models=(
            "flux-2/flex-image-to-image",
            "flux-2/flex-text-to-image",
            "flux-2/pro-image-to-image",
            "flux-2/pro-text-to-image",
        ),
        page="market/flux2/pro-text-to-image.md",
        says="prompt: between 3 and 5000 characters",
        check=_min_chars("prompt", 3),
    ),
    PageRule(
        name="wan26-prompt-min-2",
        models=(
            "wan/2-6-flash-image-to-video",
            "wan/2-6-flash-video-to-video",
            "wan/2-6-image-to-video",
            "wan/2-6-video-to-video",
        ),
        page="market/wan/2-6-image-to-video.md",
        says="prompt: a minimum of 2 characters",
        check=_min_chars("prompt", 2),
    ),
    PageRule(
        name="elevenlabs-dialogue-total-5000",
        models=("elevenlabs/text-to-dialogue-v3",),
        page="market/elevenlabs/text-to-dialogue-v3.md",
        says="all text fields of the dialogue together at most 5000 characters",
        check=_dialogue_total,
    ),
    PageRule(
        name="wan22-s2v-num-frames-step-4",
        models=("wan/2-2-a14b-speech-to-video-turbo",),
        page="market/wan/2-2-a14b-speech-to-video-turbo.md",
        says="num_frames: 40-120, a multiple of 4",
        check=_num_frames_step,
    ),
    PageRule(
        name="suno-weights-two-decimals",
        endpoints=_SUNO,
        page=_SUNO_PAGE,
        says="styleWeight, weirdnessConstraint, audioWeight: 0-1 with up to 2 decimal places",
        check=_suno_two_decimals,
    ),
    PageRule(
        name="gpt-image-2-resolution-by-ratio",
        models=("gpt-image-2-text-to-image", "gpt-image-2-image-to-image"),
        page="market/gpt/gpt-image-2-image-to-image.md",
        says="a 1:1 ratio cannot be 4K; auto or no ratio gives 1K only, otherwise the task fails to create",
        check=_gpt_image_2_resolution,
    ),
    PageRule(
        name="gpt4o-prompt-or-images",
        endpoints=("/api/v1/gpt4o-image/generate",),
        page="4o-image-api/generate-4-o-image.md",
        says="at least one of prompt or filesUrl must be provided",
        check=_gpt4o_prompt_or_images,
    ),
)


def rule_problems(model_id: str, params: dict[str, Any]) -> list[str]:
    """What the page rules for ``model_id`` find wrong with ``params`` (the input as sent)."""
    problems: list[str] = []
    for rule in PAGE_RULES:
        if model_id in rule.models:
            found = rule.check(params)
            if found is not None:
                problems.append(f"input.{found} [{rule.name}]")
    return problems


def endpoint_rule_problems(create_path: str, body: dict[str, Any]) -> list[str]:
    """What the page rules for a separate API's create endpoint find wrong with its whole ``body``."""
    problems: list[str] = []
    for rule in PAGE_RULES:
        if create_path in rule.endpoints:
            found = rule.check(body)
            if found is not None:
                problems.append(f"body.{found} [{rule.name}]")
    return problems
