"""Warm the model data caches (specs, pricing snapshots, prompt presets) off the event loop.

Each is parsed from YAML/markdown once per process (about 150 ms with the pure-Python YAML parser); doing
that inside a coroutine would stall every other task on the loop, so async entry points call this first.
Once warm, the call returns without a thread hop: the pipeline calls it for every run, and at 200 runs/s a
worker-thread round trip per run (a queue put, a wake-up, the GIL passed twice) was measurable CPU.
"""

from __future__ import annotations

import asyncio
import os

from kie_async.catalogue import presets, pricing, specs

_warm: set[tuple[str, str, str]] = set()


def _env_key() -> tuple[str, str, str]:
    """What the default folders depend on: a changed variable means other files, so load again."""
    return (
        os.environ.get(specs.SPEC_DIR_ENV, ""),
        os.environ.get(pricing.PRICING_DIR_ENV, ""),
        os.environ.get(presets.PRESET_DIR_ENV, ""),
    )


def _is_warm(key: tuple[str, str, str]) -> bool:
    # The clear_*_cache helpers empty the caches behind our back: then the marker alone would lie.
    loaded = specs.loaded_registry() is not None and pricing.snapshots_cached() and presets.presets_cached()
    return key in _warm and loaded


def _load_all(key: tuple[str, str, str]) -> None:
    specs.load_registry()
    pricing.latest_snapshot()
    presets.load_presets()
    _warm.add(key)


async def preload_model_data() -> None:
    """Parse the specs, latest pricing snapshot and presets in a worker thread, unless they are in memory."""
    key = _env_key()
    if not _is_warm(key):
        await asyncio.to_thread(_load_all, key)
