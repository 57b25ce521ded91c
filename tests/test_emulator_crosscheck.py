"""The SDK's validation and the emulator's provider-schema validation, side by side, for every model key.

Each case (the SDK's fixtures, generated boundary requests, the docs pages' own examples; see
``tests/crosscheck_cases.py``) is judged by both. A disagreement is allowed only when it is listed below as
a deliberate, documented difference, with the page that justifies it (docs/emulator.md has the same table);
a listed difference that no longer occurs must be removed, so the list stays true.
"""

from __future__ import annotations

import re

import pytest

from kie_async.catalogue.specs import load_registry
from tests.crosscheck_cases import Verdict, all_cases, judge

KLING30 = "market/kling/kling-3-0.md"
KLING30_MOTION = "market/kling/motion-control-v3.md"
SEEDANCE2 = "market/bytedance/seedance-2.md"
RUNWAY = "runway-api/generate-ai-video.md"

# Page examples that leave a required field empty (a placeholder: "" or []), which the page's schema accepts
# (a string or a list is present) and the SDK refuses: (model key, provider model, page, the empty fields).
EMPTY_PLACEHOLDER_EXAMPLES: list[tuple[str, str, str, str]] = [
    ("elevenlabs-sound-effect-v2", "elevenlabs/sound-effect-v2", "market/elevenlabs/sound-effect-v2.md", "text"),
    ("kling-ai-avatar-pro", "kling/ai-avatar-pro", "market/kling/ai-avatar-pro.md", "prompt"),
    ("kling-ai-avatar-standard", "kling/ai-avatar-standard", "market/kling/ai-avatar-standard.md", "prompt"),
    ("qwen-i2i", "qwen/image-to-image", "market/qwen/image-to-image.md", "prompt and image_url"),
    ("qwen-image-edit", "qwen/image-edit", "market/qwen/image-edit.md", "prompt"),
    ("qwen-t2i", "qwen/text-to-image", "market/qwen/text-to-image.md", "prompt"),
    ("qwen2-image-edit", "qwen2/image-edit", "market/qwen2/image-edit.md", "prompt"),
    ("qwen2-t2i", "qwen2/text-to-image", "market/qwen2/text-to-image.md", "prompt"),
    (
        "sora-2-pro-i2v",
        "sora-2-pro-image-to-video",
        "market/sora2/sora-2-pro-image-to-video.md",
        "prompt and image_urls",
    ),
    ("wan-2.6-flash-i2v", "wan/2-6-flash-image-to-video", "market/wan/2-6-flash-image-to-video.md", "image_urls"),
    ("wan-2.6-flash-v2v", "wan/2-6-flash-video-to-video", "market/wan/2-6-flash-video-to-video.md", "video_urls"),
]
IDEOGRAM_CHARACTER = {
    "ideogram-character": "market/ideogram/character.md",
    "ideogram-character-edit": "market/ideogram/character-edit.md",
    "ideogram-character-remix": "market/ideogram/character-remix.md",
}

# (case-id pattern, page, why). Case ids read "<model key>/<task mode>: <case>".
DOCUMENTED: list[tuple[str, str, str]] = [
    (
        r"^runway-extend/follow_up: quality=<not a listed value>$",
        "runway-api/extend-ai-video.md",
        "SDK stricter on purpose: the schema types quality as any string, its description says 720p or 1080p",
    ),
    (
        r"^veo-3\.1-4k/upscale: index=min-1$",
        "veo3-api/get-veo-3-4k-video.md",
        "SDK stricter on purpose: the page's schema gives the video index no minimum, but a negative index names "
        "no video (the emulator refuses it too once it looks at the earlier task: record result data not exist)",
    ),
    (
        r"^kling-3\.0-motion/motion_control: mode=<not a listed value>$",
        KLING30_MOTION,
        "SDK stricter on purpose: the page gives mode no enum (its text says std/pro, its example 720p), so the "
        "emulator accepts any string; the SDK refuses values nobody documents",
    ),
    (
        r"^kling-3\.0-motion/motion_control: missing (mode|character_orientation)$",
        KLING30_MOTION,
        "SDK stricter on purpose: the page marks these optional with defaults, but documented defaults are not "
        "always applied live (facts file section 5, 'sound cannot be empty'), so the SDK always sends them",
    ),
    (
        r"^kling-3\.0-(t2v|i2v)/\w+: prompt too long$",
        KLING30,
        "SDK stricter on purpose: the page states no prompt limit for Kling 3.0; the SDK keeps the 2500-character "
        "cap the other Kling pages state (motion-control-v3.md) rather than send an unbounded prompt",
    ),
    (
        r"^kling-3\.0-(t2v|i2v)/page: page example 1 of kling-3\.0/video$",
        KLING30,
        "SDK stricter on purpose: the page's example sends multi_prompt with multi_shots false; the page says the "
        "shots are used only in multi-shot mode, so the SDK refuses a request whose shots would be ignored",
    ),
    (
        r"^seedance-2\.0/\w+: resolution='4k'$",
        SEEDANCE2,
        "page vs later evidence: the captured page (2026-04-29) lists 480p/720p/1080p; the later published price "
        "table (2026-06-30, facts file section 5) prices 4K, and the SDK follows the later evidence",
    ),
    (
        r"^seedance-2\.0(-fast|-mini)?/first_last_frames: missing first_frame_url$",
        SEEDANCE2,
        "SDK stricter on purpose: the page names 'first & last frames' as one scenario; a last frame alone is none "
        "of its three scenarios, so the SDK's first_last_frames mode needs both",
    ),
    (
        r"^runway-gen/image_to_video: missing imageUrl$",
        RUNWAY,
        "SDK fills the gap itself: the page requires aspectRatio for text-to-video; the SDK always sends one there "
        "(16:9 unless asked), and its wire check reads an absent aspectRatio as that default, so it accepts a text "
        "body the SDK itself never sends without one",
    ),
    *[
        (
            rf"^{re.escape(key)}/page: page example 1 of {re.escape(model)}$",
            page,
            f"SDK stricter on purpose: the page's example leaves the required {fields} empty (a placeholder); its "
            "schema accepts an empty string or list, the SDK refuses an empty required value (nothing to generate "
            "from; the live service answers 'cannot be empty' for a missing field, facts file section 5)",
        )
        for key, model, page, fields in EMPTY_PLACEHOLDER_EXAMPLES
    ],
    *[
        (
            rf"^{re.escape(key)}/image_edit: reference_image_urls: one too many \(2\)$",
            page,
            "SDK stricter on purpose: the page says 'Currently only 1 image is supported, rest will be ignored'; the "
            "service ignores extra character references, the SDK refuses them so nothing is silently dropped",
        )
        for key, page in IDEOGRAM_CHARACTER.items()
    ],
    (
        r"^ideogram-character-remix/image_edit: image_urls: one too many \(4\)$",
        IDEOGRAM_CHARACTER["ideogram-character-remix"],
        "SDK choice: the page states no count for the style references (only a 10 MB total); the SDK allows 3 "
        "(a spec override) rather than send an unbounded list",
    ),
]


@pytest.fixture(scope="module")
def verdicts() -> list[Verdict]:
    return [judge(case) for case in all_cases()]


def test_every_model_key_is_cross_checked(verdicts: list[Verdict]) -> None:
    checked = {v.case.model_key for v in verdicts}
    assert set(load_registry().model_keys()) <= checked
    generated = [v for v in verdicts if v.case.case.startswith(("missing", "fixture")) or "=" in v.case.case]
    assert len(generated) > 10 * len(checked)  # enum values, bounds and missing fields, not only fixtures


def test_every_disagreement_is_documented_and_every_entry_still_occurs(verdicts: list[Verdict]) -> None:
    disagreements = [v for v in verdicts if not v.agree]
    undocumented = []
    used: set[str] = set()
    for verdict in disagreements:
        hits = [pattern for pattern, _, _ in DOCUMENTED if re.search(pattern, verdict.case.id)]
        if len(hits) != 1:
            undocumented.append(
                f"{verdict.case.id}\n    SDK: {verdict.sdk_problems or 'accepts'}\n"
                f"    emulator: {verdict.emulator_problems or 'accepts'}"
            )
        used.update(hits)
    assert not undocumented, "undocumented SDK/provider disagreements:\n" + "\n".join(undocumented)
    stale = [pattern for pattern, _, _ in DOCUMENTED if pattern not in used]
    assert not stale, f"documented differences that no longer occur (remove them): {stale}"


def test_every_documented_difference_cites_a_bundled_page() -> None:
    from kie_async.emulator.provider_schemas import load_provider_schemas

    sources = {s.page.get("source") for s in load_provider_schemas().schemas}
    for _, page, why in DOCUMENTED:
        assert page in sources and why


def test_both_judges_refuse_a_plainly_broken_request() -> None:
    from kie_async.catalogue.payload import check_wire_payload
    from kie_async.emulator.policy import schema_input_checker

    for spec in load_registry().specs.values():
        for provider_model in spec.provider_models:
            broken = {"prompt": 12345, "not_a_field_either": True}
            assert check_wire_payload(provider_model, broken), provider_model
            assert schema_input_checker(provider_model, broken), provider_model
