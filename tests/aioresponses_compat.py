"""aioresponses 0.7.x predates aiohttp 3.14's required ``stream_writer`` argument (aioresponses issue #289).

Until a fixed release exists, tests that use aioresponses import :func:`patch_aioresponses` (an autouse
fixture) so its fake responses are built with a stand-in writer; real HTTP paths are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aioresponses.core
import pytest
from aiohttp import ClientResponse


class _SentWriter:
    """What aiohttp reads from a writer once the request is fully sent."""

    output_size = 0


class CompatClientResponse(ClientResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(*args, **kwargs)


@pytest.fixture(autouse=True)
def patch_aioresponses(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aioresponses.core, "ClientResponse", CompatClientResponse)
    yield
