"""The HTTP client to Kie.ai: :class:`BaseSession` and the parts it holds (request path, waiting, adoption, files).

The session users open, :class:`kie_async.session.KieSession`, builds on ``BaseSession``; everything below the
front (pipeline, artifacts, coordination) is written against ``BaseSession``.
"""

from kie_async.client.base import BaseSession
from kie_async.client.connection import SessionStats

__all__ = ["BaseSession", "SessionStats"]
