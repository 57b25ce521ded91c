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
    models: tuple[str, ...]
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
        return (f"{', '.join(frames)} and {', '.join(refs)}: first-frame, first-and-last-frame and multimodal "
                "reference are mutually exclusive scenarios; send frames or references, not both")
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


PAGE_RULES: tuple[PageRule, ...] = (
    PageRule(name="seedance-scenarios-exclusive", models=_SEEDANCE, page="market/bytedance/seedance-2.md",
             says="first frame, first & last frames and multimodal reference are mutually exclusive scenarios",
             check=_seedance_scenarios),
    PageRule(name="seedance-images-total-9", models=_SEEDANCE, page="market/bytedance/seedance-2.md",
             says="the frames plus the reference images must not exceed 9", check=_seedance_images_total),
    PageRule(name="kling30-multi-prompt-with-multi-shots", models=("kling-3.0/video",),
             page="market/kling/kling-3-0.md", says="multi-shot mode uses the multi_prompt array to define its shots",
             check=_kling30_multi_prompt),
    PageRule(name="kling30-prompt-single-shot", models=("kling-3.0/video",), page="market/kling/kling-3-0.md",
             says="prompt drives a single-shot video (multi_shots false); multi-shot videos use multi_prompt",
             check=_kling30_prompt),
    PageRule(name="kling30-aspect-ratio", models=("kling-3.0/video",), page="market/kling/kling-3-0.md",
             says="aspect_ratio is optional only when image_urls (frames) are given; it then follows the images",
             check=_kling30_aspect_ratio),
    PageRule(name="kling30-frames", models=("kling-3.0/video",), page="market/kling/kling-3-0.md",
             says="image_urls holds the first and last frame; multi-shot mode supports only the first frame",
             check=_kling30_frames),
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
