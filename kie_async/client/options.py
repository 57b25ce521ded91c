"""What one session (or one ``with_options`` view of it) decides for itself: its settings and retry policy.

Everything else a session uses is shared with its views (see :mod:`kie_async.client.shared`). The parts of a
session (request path, waiter, files) hold this object rather than a copy of its fields, so assigning
``kie.settings = ...`` reaches every part at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import ValidationError

from kie_async.core.errors import KieInputError
from kie_async.core.limits import check_timeout
from kie_async.core.settings import KieSettings, PollSettings
from kie_async.wire.retry import RetryPolicy


@dataclasses.dataclass
class SessionOptions:
    """One session's own settings and retry policy (a view has its own; the pool and caches are shared)."""

    settings: KieSettings
    retry_policy: RetryPolicy


def options_with(
    options: SessionOptions,
    *,
    timeout: float | None,
    max_retries: int | None,
    poll: PollSettings | None,
) -> SessionOptions:
    """``options`` with the given ones replaced: what ``with_options`` gives a view. Unusable values are refused."""
    check_timeout("timeout", timeout)
    if max_retries is not None and (isinstance(max_retries, bool) or not isinstance(max_retries, int)):
        raise KieInputError(f"max_retries must be a whole number 0..20 (got {max_retries!r})", hint="pass e.g. 0")
    if poll is not None and not isinstance(poll, PollSettings):
        raise KieInputError(f"poll must be a PollSettings (got {type(poll).__name__})", hint="pass PollSettings(...)")
    update: dict[str, Any] = {}
    retry_policy = options.retry_policy
    retry = retry_policy.settings
    if max_retries is not None:
        try:
            retry = type(retry).model_validate({**retry.model_dump(), "max_retries": max_retries})
        except ValidationError as exc:
            raise KieInputError(f"max_retries must be 0..20 (got {max_retries!r})", hint="pass e.g. 0") from exc
        update["retry"] = retry
        retry_policy = dataclasses.replace(retry_policy, settings=retry)
    if timeout is not None:
        update["request_timeout"] = timeout
    if poll is not None:
        update["poll"] = poll
    return SessionOptions(options.settings.model_copy(update=update), retry_policy)
