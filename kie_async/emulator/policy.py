"""Default pricing and input checks for the emulator.

Deliberately small: the prices are the facts-file figures (1 credit = $0.005) so the credits ledger behaves
plausibly out of the box; the SDK's pricing snapshot and spec registry replace both through ``EmulatorConfig``.
"""

from __future__ import annotations

from typing import Any

CREDITS_PER_USD = 200.0
DEFAULT_VIDEO_SECONDS = 5

_IMAGE_PRICES: dict[str, dict[str, float]] = {
    "nano-banana-2": {"1K": 8, "2K": 12, "4K": 18},
    "nano-banana-pro": {"1K": 18, "2K": 18, "4K": 24},
}
_FLAT_PRICES: dict[str, float] = {
    "google/nano-banana": 4,
    "google/nano-banana-edit": 4,
}
# Seedance 2 family: USD per second by resolution, (without video input, with video input).
_SEEDANCE_USD_PER_SECOND: dict[str, dict[str, tuple[float, float]]] = {
    "bytedance/seedance-2": {
        "480p": (0.095, 0.057),
        "720p": (0.205, 0.125),
        "1080p": (0.51, 0.31),
        "4k": (1.04, 0.64),
    },
    "bytedance/seedance-2-fast": {"480p": (0.0775, 0.045), "720p": (0.165, 0.10)},
    "bytedance/seedance-2-mini": {"480p": (0.0475, 0.030), "720p": (0.1025, 0.0625)},
}


def _seconds(value: object, default: int = DEFAULT_VIDEO_SECONDS) -> int:
    try:
        return max(1, int(str(value)))
    except (TypeError, ValueError):
        return default


def default_cost(model_id: str, params: dict[str, Any]) -> float | None:
    """Credits a task costs, from the facts-file prices; ``None`` for models it does not know."""
    if model_id in _IMAGE_PRICES:
        table = _IMAGE_PRICES[model_id]
        return table.get(str(params.get("resolution", "1K")).upper(), table["1K"])
    if model_id in _FLAT_PRICES:
        return _FLAT_PRICES[model_id]
    sound = bool(params.get("sound", False))
    if model_id in ("kling-2.6/text-to-video", "kling-2.6/image-to-video"):
        return 55.0 * (_seconds(params.get("duration", "5")) / 5) * (2 if sound else 1)
    if model_id == "kling-2.6/motion-control":
        return (18.0 if params.get("mode") == "1080p" else 11.0) * DEFAULT_VIDEO_SECONDS
    if model_id == "kling-3.0/video":
        mode = str(params.get("mode", "pro")).lower()
        per_second = {"std": (14.0, 20.0), "pro": (18.0, 27.0), "4k": (67.0, 67.0)}.get(mode, (18.0, 27.0))
        return per_second[1 if sound else 0] * _seconds(params.get("duration", "5"))
    if model_id == "kling-3.0/motion-control":
        return (27.0 if params.get("mode") in ("pro", "1080p") else 20.0) * DEFAULT_VIDEO_SECONDS
    if model_id in _SEEDANCE_USD_PER_SECOND:
        rates = _SEEDANCE_USD_PER_SECOND[model_id]
        resolution = str(params.get("resolution", "720p")).lower()
        pair = rates.get(resolution, rates["720p"])
        usd = pair[1 if params.get("reference_video_urls") else 0]
        return round(usd * CREDITS_PER_USD * _seconds(params.get("duration", 5)), 2)
    return None


def basic_input_checker(model_id: str, params: Any) -> list[str]:
    """Only the checks any model shares; the spec registry adds per-model rules later."""
    problems: list[str] = []
    if not isinstance(model_id, str) or not model_id.strip():
        problems.append("model is required")
    if not isinstance(params, dict):
        problems.append("input must be an object")
    return problems
