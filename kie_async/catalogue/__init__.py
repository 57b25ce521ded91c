"""What kie-async knows about models, and the checks that come before any credit is spent.

Stages in order: :mod:`.normalize` (the caller's spelling to the spec's), :mod:`.presets` (prompt templates),
:mod:`.validate`, :mod:`.pricing`, :mod:`.preflight` (the gate), then :mod:`.payload` (the wire body). Beside
them: :mod:`.specs` (the YAML model specs), :mod:`.request_models`, :mod:`.fixtures`, :mod:`.listing` (the
catalogue page), :mod:`.guides` (agent guides), :mod:`.spec_import` / :mod:`.spec_drift` (from the provider's pages).

``kie_async.catalogue`` used to be the module of the catalogue page; its names still resolve here, with a
``DeprecationWarning`` naming :mod:`kie_async.catalogue.listing`.
"""

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    listing = importlib.import_module("kie_async.catalogue.listing")
    if not hasattr(listing, name):
        raise AttributeError(f"module 'kie_async.catalogue' has no attribute {name!r}")
    warnings.warn(
        f"kie_async.catalogue.{name} moved to kie_async.catalogue.listing.{name}", DeprecationWarning, stacklevel=2
    )
    return getattr(listing, name)
