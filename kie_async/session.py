"""The session a user opens: ``async with KieSession() as kie``.

Its machinery lives in :mod:`kie_async.client` (the HTTP request path, waiting, callback adoption, uploads);
this is its public home.
"""

from kie_async.client.base import KieSession

__all__ = ["KieSession"]
