"""Picking the shared coordinator for ``coordination_url`` (only Redis today), imported only when asked for."""

from __future__ import annotations

from urllib.parse import urlsplit

from kie_async.coordination.base import Coordinator, account_namespace
from kie_async.core.errors import KieConfigError
from kie_async.core.redact import redacted_url
from kie_async.core.settings import KieSettings

SCHEMES = ("redis", "rediss", "unix")


async def open_shared_coordinator(settings: KieSettings) -> Coordinator:
    """Connect the coordinator ``settings.coordination_url`` names; a typed error when that is impossible."""
    url = settings.coordination_url_value()
    assert url is not None
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise KieConfigError(
            f"coordination_url {redacted_url(url)!r} is not a Redis URL",
            hint="use redis://host:6379/0 (or rediss:// for TLS, unix:///path/redis.sock)",
        )
    try:
        from kie_async.coordination.redis_coordinator import RedisCoordinator
    except ImportError as exc:  # the optional extra is not installed
        raise KieConfigError(
            "coordination_url is set but the Redis client is not installed",
            hint="pip install 'kie-async[redis]'",
        ) from exc
    coordinator = RedisCoordinator(
        url, account_namespace(settings.key_value(), settings.coordination_prefix), settings.rate_limit
    )
    await coordinator.start()
    return coordinator
