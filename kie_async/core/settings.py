"""Settings: one object holding everything a session needs, read from the environment or passed in.

The API key is a ``SecretStr`` so it never shows in ``repr``/``str``, logs, tracebacks or files. Every
number must be finite (``allow_inf_nan=False``): a NaN timeout or rate does not fail loudly, it turns a wait
or a limit into nonsense. The one infinity allowed is the poll schedule's last "until" (meaning "from then on").
"""

from __future__ import annotations

import ipaddress
import math
import os
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

DEFAULT_BASE_URL = "https://api.kie.ai"
DEFAULT_UPLOAD_BASE_URL = "https://kieai.redpandaai.co"


class RetrySettings(BaseModel):
    """Backoff for idempotent reads (and for createTask only when it provably never reached the server)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    max_retries: int = Field(default=4, ge=0, le=20)
    initial_backoff: float = Field(default=0.5, gt=0)
    max_backoff: float = Field(default=20.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.5, ge=0, le=1, description="fraction of each delay that is randomised")
    max_retry_after: float = Field(default=60.0, gt=0, description="longest Retry-After the SDK sleeps through")
    over_retry_after_cap: Literal["raise", "wait"] = Field(
        default="raise",
        description="a Retry-After above max_retry_after: raise at once (the error's retry_after says how long) "
        "or wait the full time",
    )


class RateLimitSettings(BaseModel):
    """Client-side token buckets; defaults follow Kie.ai's published limits."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    create_per_window: int = Field(default=20, ge=1)
    create_window_seconds: float = Field(default=10.0, gt=0)
    reads_per_second: float = Field(default=10.0, gt=0)


class PollSettings(BaseModel):
    """Polling schedule for ``wait_for_task``: fast first, then slower, capped (the provider's guidance)."""

    model_config = ConfigDict(frozen=True)

    schedule: tuple[tuple[float, float], ...] = Field(
        default=((30.0, 2.5), (120.0, 7.5), (float("inf"), 20.0)),
        description="(until_elapsed_seconds, interval_seconds) steps; the last until may be inf",
    )
    timeout: float = Field(default=900.0, gt=0, allow_inf_nan=False)
    first_poll_max: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="cap on the wait before a new task's first status read (which is seeded from the model's "
        "typical generation time: a read before the task can be done is a wasted request)",
    )
    callback_safety_interval: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    @field_validator("schedule")
    @classmethod
    def _sane_schedule(cls, schedule: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if not schedule:
            raise ValueError("needs at least one (until_elapsed_seconds, interval_seconds) step, e.g. ((inf, 5.0),)")
        previous = 0.0
        for index, (until, interval) in enumerate(schedule):
            if not (math.isfinite(interval) and interval > 0):
                raise ValueError(f"step {index}: interval must be a finite number of seconds > 0, got {interval!r}")
            if math.isnan(until) or until <= previous:
                raise ValueError(
                    f"step {index}: until must be > {previous:g} (steps in increasing order; the last "
                    f"may be inf), got {until!r}"
                )
            previous = until
        return schedule


PATH_ENV = {
    "create_task": "KIE_CREATE_TASK_PATH",
    "record_info": "KIE_STATUS_PATH",
    "credits": "KIE_CREDITS_PATH",
    "download_url": "KIE_DOWNLOAD_URL_PATH",
    "upload_stream": "KIE_UPLOAD_STREAM_PATH",
    "upload_url": "KIE_UPLOAD_URL_PATH",
    "upload_base64": "KIE_UPLOAD_BASE64_PATH",
}
"""Environment variable of each endpoint path; the names are the seed toolkit's (plus the download-url one)."""


class EndpointPaths(BaseModel):
    """Where each endpoint lives under its host; change them only for a proxy or gateway that moves them.

    Each is a path (``/…``), never a URL: a full URL here would send the key to whatever host it names,
    past the base URL's live opt-in.
    """

    model_config = ConfigDict(frozen=True)

    create_task: str = "/api/v1/jobs/createTask"
    record_info: str = "/api/v1/jobs/recordInfo"
    credits: str = "/api/v1/chat/credit"
    download_url: str = "/api/v1/common/download-url"
    upload_stream: str = "/api/file-stream-upload"
    upload_url: str = "/api/file-url-upload"
    upload_base64: str = "/api/file-base64-upload"

    @field_validator("*")
    @classmethod
    def _a_path(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/") or value.startswith("//") or any(c in value for c in "?#\\ \t\r\n"):
            raise ValueError(f"an endpoint path starts with one '/' and has no host, query or spaces, got {value!r}")
        return value.rstrip("/") or "/"


SEED_NUMBER_ENV = {
    "connect_timeout": "KIE_CONNECT_TIMEOUT_SECONDS",
    "request_timeout": "KIE_READ_TIMEOUT_SECONDS",
    "upload_timeout": "KIE_UPLOAD_READ_TIMEOUT_SECONDS",
}
"""The seed toolkit's timeout variables, read into the matching fields."""


def _poll_from_env() -> PollSettings | None:
    """``KIE_WAIT_TIMEOUT_SECONDS`` and ``KIE_WAIT_POLL_INTERVAL_SECONDS`` (the toolkit's names).

    An interval replaces the adaptive schedule with that fixed interval, as the toolkit polled.
    """
    timeout = os.environ.get("KIE_WAIT_TIMEOUT_SECONDS", "").strip()
    interval = os.environ.get("KIE_WAIT_POLL_INTERVAL_SECONDS", "").strip()
    if not timeout and not interval:
        return None
    update: dict[str, Any] = {}
    if timeout:
        update["timeout"] = timeout
    if interval:
        update["schedule"] = ((float("inf"), interval),)
    return PollSettings.model_validate({**PollSettings().model_dump(), **update})


def _is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost`` or a loopback address: this machine."""
    host = host.lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


OutputKind = Literal["image", "video", "audio", "other"]
"""The kinds an output size cap is set for (``other``: an output whose kind is not known)."""


class KieSettings(BaseModel):
    """Configuration for a :class:`~kie_async.session.KieSession`."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    api_key: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    upload_base_url: str = DEFAULT_UPLOAD_BASE_URL
    upload_path: str = "kie-async/uploads"
    user_agent: str = "kie-async (+python; aiohttp)"
    connect_timeout: float = Field(default=10.0, gt=0)
    request_timeout: float = Field(default=60.0, gt=0)
    download_timeout: float = Field(default=600.0, gt=0)
    upload_timeout: float = Field(default=300.0, gt=0)
    max_connections: int = Field(default=64, ge=1)
    max_concurrent_uploads: int = Field(default=4, ge=1)
    max_concurrent_downloads: int = Field(default=8, ge=1)
    max_output_bytes: dict[OutputKind, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict,
        description="size cap of one downloaded output by kind (bytes), over the built-in caps (image 256 MiB, "
        "audio 1 GiB, video 16 GiB, other 4 GiB): a body with no end stops there instead of filling the disk",
    )
    retry: RetrySettings = Field(default_factory=RetrySettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    poll: PollSettings = Field(default_factory=PollSettings)
    coordination_url: SecretStr | None = Field(
        default=None,
        description="redis://… shared by every process on this account (limits, callbacks, budgets, journal)",
    )
    coordination_prefix: str = Field(default="", description="namespace prefix in the shared store")
    coordination_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="a shared batch's claim on a request lives this long unless renewed (every third of it): "
        "how soon the others take over a dead process's requests",
    )
    trust_env: bool = Field(
        default=True,
        description="honour HTTPS_PROXY / HTTP_PROXY / NO_PROXY (loopback always goes direct); KIE_TRUST_ENV=0 "
        "turns it off",
    )
    paths: EndpointPaths = Field(default_factory=EndpointPaths, description="endpoint paths (KIE_*_PATH)")
    ledger_dir: str | None = Field(
        default=None,
        description="folder of the purchase ledger (every purchase of this account on this machine, by request); "
        "default: $KIE_LEDGER, else the user's state folder (see docs/batches-and-resuming.md)",
    )
    allow_live: bool = Field(
        default=False,
        description="must be True (or KIE_ALLOW_LIVE=1) before the SDK talks to any non-loopback host",
    )

    @field_validator("base_url", "upload_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"URL must start with http:// or https://, got {value!r}")
        return value

    @field_validator("upload_path")
    @classmethod
    def _clean_upload_path(cls, value: str) -> str:
        # Kie.ai rejects leading/trailing slashes in uploadPath.
        return value.strip("/")

    @classmethod
    def from_env(cls, **overrides: Any) -> KieSettings:
        """Build settings from ``KIE_*`` variables; explicit keyword arguments win."""
        values: dict[str, Any] = {}
        if key := os.environ.get("KIE_API_KEY"):
            values["api_key"] = key
        # The seed toolkit's name for the market host still works; ours wins when both are set.
        if url := os.environ.get("KIE_BASE_URL") or os.environ.get("KIE_MARKET_BASE_URL"):
            values["base_url"] = url
        if url := os.environ.get("KIE_UPLOAD_BASE_URL"):
            values["upload_base_url"] = url
        if url := os.environ.get("KIE_COORDINATION_URL"):
            values["coordination_url"] = url
        if prefix := os.environ.get("KIE_COORDINATION_PREFIX"):
            values["coordination_prefix"] = prefix
        if lease := os.environ.get("KIE_COORDINATION_LEASE_SECONDS"):
            values["coordination_lease_seconds"] = lease
        if ledger := os.environ.get("KIE_LEDGER", "").strip():
            values["ledger_dir"] = ledger
        if os.environ.get("KIE_TRUST_ENV", "").lower() in ("0", "false", "no"):
            values["trust_env"] = False
        for field, name in SEED_NUMBER_ENV.items():
            if text := os.environ.get(name, "").strip():
                values[field] = text  # pydantic refuses a non-number, NaN or a value out of range, naming the field
        if upload_path := os.environ.get("KIE_UPLOAD_DEFAULT_PATH", "").strip().strip("/"):
            values["upload_path"] = upload_path
        poll = _poll_from_env()
        if poll is not None:
            values["poll"] = poll
        paths = {field: os.environ[name] for field, name in PATH_ENV.items() if os.environ.get(name, "").strip()}
        if paths:
            values["paths"] = EndpointPaths(**paths)
        if os.environ.get("KIE_ALLOW_LIVE", "").lower() in ("1", "true", "yes"):
            values["allow_live"] = True
        values.update(overrides)
        return cls(**values)

    @property
    def is_live(self) -> bool:
        """True unless both hosts are on this machine (loopback): anything else may be the real Kie.ai.

        Comparing host names instead would let ``https://API.kie.ai:443`` or a proxy slip past the opt-in.
        """
        return not (_is_loopback(self.base_url) and _is_loopback(self.upload_base_url))

    def coordination_url_value(self) -> str | None:
        """The raw coordination URL (it may carry a Redis password), for the one place that connects."""
        return self.coordination_url.get_secret_value() if self.coordination_url is not None else None

    def key_value(self) -> str | None:
        """The raw key, for the one place that builds the Authorization header."""
        return self.api_key.get_secret_value() if self.api_key is not None else None
