"""The blocking facade, for code that cannot ``await`` (scripts, Django views, a REPL): :class:`KieClient`.

It lives in :mod:`kie_async.interfaces.sync` with the other interfaces; this public module is where users import it.
"""

from kie_async.interfaces.sync import KieClient, SyncTaskHandle

__all__ = ["KieClient", "SyncTaskHandle"]
