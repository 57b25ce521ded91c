"""The emulator's separate APIs (Veo 3.1, Runway, Aleph, Suno, 4o Image, Flux Kontext).

:mod:`.dialects` is how each API spells its bodies, records and callbacks (read by the routes and by the task
lifecycle); :mod:`.routes` holds their create and status routes.
"""

from kie_async.emulator.transports.dialects import DIALECTS, Dialect, view_of

__all__ = ["DIALECTS", "Dialect", "view_of"]
