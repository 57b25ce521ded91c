"""The base HTTP session: the request path, waiting, callback adoption, files and uploads.

The pipeline's stages annotate :class:`BaseSession`; the public :class:`kie_async.session.KieSession` builds on
it and adds the task handles (``submit``, ``task``, ``create_and_wait``, ``output``).
"""

from kie_async.client.base import KieSession as BaseSession

__all__ = ["BaseSession"]
