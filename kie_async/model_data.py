"""Warm the model data caches (specs, pricing snapshots, prompt presets) off the event loop.

Each is parsed from YAML/markdown once per process (about 150 ms with the pure-Python YAML parser); doing
that inside a coroutine would stall every other task on the loop, so async entry points call this first.
"""

from __future__ import annotations

import asyncio

from kie_async.presets import load_presets
from kie_async.pricing import latest_snapshot
from kie_async.specs import load_registry


def _load_all() -> None:
    load_registry()
    latest_snapshot()
    load_presets()


async def preload_model_data() -> None:
    """Parse (or re-use the cached) specs, latest pricing snapshot and presets in a worker thread."""
    await asyncio.to_thread(_load_all)
