"""Refuse a wrong kind of argument with one typed line naming it and the fix, before anything runs.

``run_many(RawUserRequest(...), kie)`` (one request where a list goes) or a list of dicts used to fail deep inside
with an ``AttributeError``; now it is a :class:`KieInputError` that names the call's own argument and how to pass
it. ``call`` is the caller's spelling (``run_many``, ``KieSyncClient.run_many``...), so the message reads in the
interface the caller used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest
from kie_async.core.errors import KieInputError

_REQUEST_TYPES = (RawUserRequest, NormalizedRequest)


def _kind(value: object) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _fix_for(value: object, where: str) -> str:
    if isinstance(value, dict):
        return f"build it with RawUserRequest(**{where}) or RawUserRequest.model_validate({where})"
    if isinstance(value, str):
        return f"pass RawUserRequest(model_key=..., prompt=...) as {where}, not text"
    return f"pass a RawUserRequest as {where}"


def check_request_arg(request: object, *, call: str, name: str = "request") -> None:
    """``request`` must be one :class:`RawUserRequest` (or an already normalized request)."""
    if isinstance(request, _REQUEST_TYPES):
        return
    if isinstance(request, list | tuple) and request and all(isinstance(r, _REQUEST_TYPES) for r in request):
        raise KieInputError(
            f"{call}: {name} is a list of {len(request)} requests, not one request",
            hint="run_many(requests, session) runs several; pass one RawUserRequest here",
        )
    raise KieInputError(f"{call}: {name} is {_kind(request)}, not a RawUserRequest", hint=_fix_for(request, name))


def check_requests_arg(
    requests: object, *, call: str, name: str = "requests", also: tuple[type, ...] = ()
) -> Sequence[Any]:
    """``requests`` must be a list (or tuple) of :class:`RawUserRequest` (or of the ``also`` types); returns it."""
    if isinstance(requests, _REQUEST_TYPES):
        raise KieInputError(
            f"{call}: {name} is one {type(requests).__name__}, not a list of requests",
            hint=f"wrap it in a list: {call}([request], ...)",
        )
    if isinstance(requests, dict):
        raise KieInputError(
            f"{call}: {name} is a dict, not a list of requests",
            hint=f"pass [RawUserRequest(**{name})] (a list of RawUserRequest)",
        )
    if not isinstance(requests, Sequence) or isinstance(requests, str | bytes):
        raise KieInputError(
            f"{call}: {name} is {_kind(requests)}, not a list of requests",
            hint="pass a list of RawUserRequest (list(...) turns a generator into one)",
        )
    for index, item in enumerate(requests):
        if not isinstance(item, (RawUserRequest, *also)):
            raise KieInputError(
                f"{call}: {name}[{index}] is {_kind(item)}, not a RawUserRequest",
                hint=_fix_for(item, f"{name}[{index}]"),
            )
    return requests
