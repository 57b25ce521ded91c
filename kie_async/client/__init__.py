"""The base HTTP session: the request path, waiting, callback adoption, files and uploads.

The pipeline's stages annotate :class:`BaseSession`; the public :class:`kie_async.session.KieSession` builds on
it and adds the task handles (``submit``, ``task``, ``create_and_wait``, ``output``). Each job is a part the
session holds, in its own module here (``request_path``, ``waiting``, ``adoption``, ``files``).
"""

from kie_async.client.base import BaseSession
from kie_async.client.connection import SessionStats

__all__ = ["BaseSession", "SessionStats"]
