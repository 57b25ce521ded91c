"""What a session shares with every ``with_options`` view of it, in one object.

A second ``KieSession`` would get its own rate limiter (two together could pass Kie.ai's 20 createTask calls
per 10 s), open a second pool and forget the first one's uploads and callback waiters. So a view is a session
built from the same ``SharedState`` with its own :class:`~kie_async.client.options.SessionOptions`: the pool
(even one opened after the view was made), coordinator and limiters, stats, the API each task was bought
through, the waiters, the adoption desk and the upload cache are all the same objects, live.
"""

from __future__ import annotations

import dataclasses

import aiohttp

from kie_async.client.adoption import AdoptionState
from kie_async.client.connection import Connection, SessionStats
from kie_async.client.files import UploadState
from kie_async.client.waiting import WaitState
from kie_async.core.settings import KieSettings
from kie_async.wire.task_apis import TransportSpec


@dataclasses.dataclass
class SharedState:
    """The state of one session and all its views; built once, by the session that owns the pool."""

    connection: Connection
    stats: SessionStats = dataclasses.field(default_factory=SessionStats)
    task_apis: dict[str, TransportSpec] = dataclasses.field(default_factory=dict)
    waits: WaitState = dataclasses.field(default_factory=WaitState)
    adoptions: AdoptionState = dataclasses.field(default_factory=AdoptionState)
    uploads: UploadState = dataclasses.field(default_factory=UploadState)

    @classmethod
    def create(
        cls,
        settings: KieSettings,
        *,
        http_session: aiohttp.ClientSession | None,
        connector: aiohttp.BaseConnector | None,
    ) -> SharedState:
        return cls(Connection(settings, http_session=http_session, connector=connector))
