"""``kie.with_options(...)``: the same session with other per-call defaults.

A web handler that must answer fast wants a short timeout and no retries; a batch wants patient polling. A
second ``KieSession`` would get its own rate limiter and the two together could pass Kie.ai's 20 createTask
calls per 10 s; it would also open a second pool and forget the first one's uploads and callback waiters. A
view changes only what it was given (timeouts, retries, polling) and shares everything else with the session
it came from, live: the pool (even one opened after the view was made), limiters, coordination, caches,
callback waiters and stats. Closing a view (``async with`` on it, or ``close()``) leaves the pool open: only
the session that owns it closes it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import ValidationError

from kie_async.client.base import KieSession
from kie_async.core.errors import KieInputError
from kie_async.core.limits import check_timeout
from kie_async.core.settings import KieSettings, PollSettings
from kie_async.wire.retry import RetryPolicy

_OWN = frozenset({"settings", "retry_policy", "_view_of"})
"""The only attributes a view holds itself; every other one is read from and written to its session."""


def view_settings(
    settings: KieSettings,
    retry_policy: RetryPolicy,
    *,
    timeout: float | None,
    max_retries: int | None,
    poll: PollSettings | None,
) -> tuple[KieSettings, RetryPolicy]:
    """The view's settings and retry policy: the session's with the given options replaced."""
    check_timeout("timeout", timeout)
    if max_retries is not None and (isinstance(max_retries, bool) or not isinstance(max_retries, int)):
        raise KieInputError(f"max_retries must be a whole number 0..20 (got {max_retries!r})", hint="pass e.g. 0")
    if poll is not None and not isinstance(poll, PollSettings):
        raise KieInputError(f"poll must be a PollSettings (got {type(poll).__name__})", hint="pass PollSettings(...)")
    update: dict[str, Any] = {}
    retry = retry_policy.settings
    if max_retries is not None:
        try:
            retry = type(retry).model_validate({**retry.model_dump(), "max_retries": max_retries})
        except ValidationError as exc:
            raise KieInputError(f"max_retries must be 0..20 (got {max_retries!r})", hint="pass e.g. 0") from exc
        update["retry"] = retry
    if timeout is not None:
        update["request_timeout"] = timeout
    if poll is not None:
        update["poll"] = poll
    policy = dataclasses.replace(retry_policy, settings=retry) if max_retries is not None else retry_policy
    return settings.model_copy(update=update), policy


class SessionView(KieSession):
    """``KieSession`` methods over another session's state; see :mod:`kie_async.client.view`."""

    _view_of: KieSession

    def __init__(self, root: KieSession, settings: KieSettings, retry_policy: RetryPolicy) -> None:
        # No KieSession.__init__: a view builds nothing of its own.
        object.__setattr__(self, "_view_of", root)
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "retry_policy", retry_policy)

    def __getattr__(self, name: str) -> Any:  # reached only for what the view does not hold itself
        return getattr(object.__getattribute__(self, "_view_of"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._view_of, name, value)

    def __repr__(self) -> str:
        return f"{self._view_of!r}.with_options(...)"

    async def open(self) -> None:
        """Nothing to open: a view uses its session's pool (open that session, ``async with KieSession(...)``)."""

    async def close(self) -> None:
        """Nothing to close: the pool, limiters and caches belong to the session the view came from."""


def make_view(session: KieSession, settings: KieSettings, retry_policy: RetryPolicy) -> SessionView:
    """A view of ``session`` (of its root session, if ``session`` is itself a view)."""
    root = session._view_of if isinstance(session, SessionView) else session
    return SessionView(root, settings, retry_policy)
