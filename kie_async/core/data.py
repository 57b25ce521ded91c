"""Where the shipped data folders live: inside the wheel, or at the repo root in a source checkout.

There is one copy of each folder (at the repo root); the wheel build maps it to ``kie_async/_data/``.
"""

from __future__ import annotations

import functools
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # kie_async/, two levels up from core/data.py


@functools.cache
def data_dir(name: str) -> Path:
    """Return the folder holding ``model_specs``, ``prompt_presets`` or ``pricing`` (resolved; looked up once:
    the spec, pricing and preset loaders ask for it on every run)."""
    packaged = _PACKAGE_DIR / "_data" / name
    if packaged.is_dir():
        return packaged.resolve()
    source = _PACKAGE_DIR.parent / name
    if source.is_dir():
        return source.resolve()
    raise FileNotFoundError(f"data folder {name!r} not found in {packaged} or {source}")
