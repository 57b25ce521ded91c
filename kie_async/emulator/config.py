"""Emulator configuration: every knob a test or benchmark needs, with defaults that keep tests fast.

The pluggable hooks (``cost_fn``, ``input_checker``) default to the provider's word (its published schemas,
the emulator's own price list), never to the SDK's specs or estimates; tests may plug in others (a test that
wants the emulator to agree with the SDK passes the SDK's ``check_wire_payload`` / ``estimate_wire_cost``; the
emulator itself imports neither, and whoever plugs them in preloads the SDK's model data if it wants it warm).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kie_async.emulator.policy import basic_input_checker, price_table_cost, schema_input_checker

CostFn = Callable[[str, dict[str, Any]], float | None]
"""``cost_fn(model_id, input) -> credits`` (``None``: price unknown, charge ``unknown_model_cost``)."""

InputChecker = Callable[[str, Any], list[str]]
"""``input_checker(model_id, input) -> problems``; a non-empty list makes createTask answer 422."""

DEFAULT_API_KEY = "kie-emulator-key"
DEFAULT_VIDEO_MARKERS = (
    "kling",
    "seedance",
    "video",
    "hailuo",
    "happyhorse",
    "sora",
    "infinitalk",
    "avatar",
    "wan/2-2-animate",
    "wan/2-7-r2v",
    "grok-imagine/extend",
    "grok-imagine/upscale",
)
"""Model ids (substrings) whose output is an MP4: the emulator's own reading of Kie.ai's catalogue pages."""
DEFAULT_AUDIO_MARKERS = ("elevenlabs/",)
"""Model ids (substrings) whose output is audio (ElevenLabs speech, dialogue, sound effects, isolation)."""


class EmulatorConfig(BaseModel):
    """How a :class:`~kie_async.emulator.KieEmulator` behaves."""

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True)

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="market host port; 0 picks a free one")
    upload_port: int = Field(default=0, ge=0, le=65535, description="upload host port; 0 picks a free one")
    public_host: str | None = Field(default=None, description="host name used in URLs (default: the bind host)")

    api_key: str = DEFAULT_API_KEY
    credits: float = Field(default=5000.0, ge=0, description="starting balance of ``api_key``")
    extra_keys: dict[str, float] = Field(default_factory=dict, description="more accepted keys -> balances")

    generation_seconds: float = Field(default=0.3, ge=0, description="time from createTask to a terminal state")
    model_generation_seconds: dict[str, float] = Field(default_factory=dict, description="per-model override")
    waiting_fraction: float = Field(default=0.25, ge=0, le=1, description="share of the time spent 'waiting'")
    queuing_fraction: float = Field(default=0.25, ge=0, le=1, description="share spent 'queuing'")

    create_rate_limit: int | None = Field(default=20, ge=1, description="createTask calls per window per key")
    create_rate_window: float = Field(default=10.0, gt=0)
    record_info_rate_limit: int | None = Field(default=None, ge=1, description="recordInfo calls per second")
    http_errors: bool = Field(
        default=False, description="mirror envelope error codes to HTTP statuses (Kie.ai answers HTTP 200)"
    )

    cost_fn: CostFn = Field(default=price_table_cost, exclude=True)
    input_checker: InputChecker = Field(default=schema_input_checker, exclude=True)
    unknown_model_cost: float = Field(default=10.0, ge=0, description="charged when cost_fn returns None")
    accept_unknown_models: bool = Field(
        default=False,
        description="test setting: accept any model id with an input object (basic checks only) at a flat "
        "unknown_model_cost, as the emulator did before it judged by the provider's schemas",
    )

    image_long_edge: int = Field(default=256, ge=8, le=8192)
    output_bytes: int | None = Field(default=None, ge=0, description="pad every output file to this size")
    video_models: list[str] = Field(default_factory=list, description="model ids that produce MP4 output")
    video_markers: tuple[str, ...] = DEFAULT_VIDEO_MARKERS
    audio_models: list[str] = Field(default_factory=list, description="model ids that produce audio output")
    audio_markers: tuple[str, ...] = DEFAULT_AUDIO_MARKERS
    render_on_completion: bool = Field(
        default=False, description="render outputs when a task succeeds instead of on first GET (benchmarks)"
    )
    output_cache_bytes: int = Field(default=256 * 1024 * 1024, ge=0, description="rendered outputs kept in RAM")

    download_url_ttl: float = Field(default=1200.0, gt=0, description="download-url links last 20 minutes")
    upload_dir: Path | None = Field(default=None, description="where uploads are stored (default: a temp dir)")
    state_dir: Path | None = Field(
        default=None,
        description="keep the account (balances, tasks, uploads) in this folder, shared by every emulator that "
        "opens it, so it outlives the process (default: in memory, gone at stop)",
    )
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    url_fetch_timeout: float = Field(default=30.0, gt=0)

    webhook_hmac_key: str | None = Field(default=None, description="sign callbacks like Kie.ai when set")
    staged_callbacks: bool = Field(
        default=False,
        description="also send an API's intermediate callbacks (Suno's text and first) before the final one, as "
        "Kie.ai does; off by default: the signature covers only the task id and a timestamp in seconds, so "
        "callbacks of one task within one second look like replays to a receiver (use tasks of 4 s or more)",
    )
    callback_timeout: float = Field(default=10.0, gt=0)
    callback_any_host: bool = Field(
        default=False, description="allow callbacks to non-loopback hosts (off so tests never leave the machine)"
    )

    seed: int = Field(default=0, description="seed for fault probabilities and generated content")

    @field_validator("video_models", "audio_models")
    @classmethod
    def _lower_models(cls, value: list[str]) -> list[str]:
        return [v.lower() for v in value]

    def check_input(self, model_id: str, params: Any) -> list[str]:
        """The problems ``input_checker`` finds, or only the basic ones in the flat-cost test mode."""
        if self.accept_unknown_models:
            return basic_input_checker(model_id, params)
        return self.input_checker(model_id, params)

    def cost(self, model_id: str, params: dict[str, Any]) -> float | None:
        return None if self.accept_unknown_models else self.cost_fn(model_id, params)

    def is_audio_model(self, model_id: str) -> bool:
        lowered = model_id.lower()
        return lowered in self.audio_models or any(marker in lowered for marker in self.audio_markers)

    def is_video_model(self, model_id: str) -> bool:
        lowered = model_id.lower()
        if self.is_audio_model(model_id) and lowered not in self.video_models:
            return False
        return lowered in self.video_models or any(marker in lowered for marker in self.video_markers)

    def duration_for(self, model_id: str) -> float:
        return self.model_generation_seconds.get(model_id, self.generation_seconds)

    def url_host(self) -> str:
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
