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

_LISTING_NAMES = frozenset(
    {
        "CatalogueRow",
        "price_range",
        "catalogue_rows",
        "group_by_family",
        "limits_text",
        "example_request",
        "example_command",
        "render_markdown",
    }
)


def __getattr__(name: str) -> Any:
    # A fixed set: ``from kie_async.catalogue import specs`` asks here first for a submodule not yet loaded,
    # and that must fall through to the import system without loading the listing.
    if name not in _LISTING_NAMES:
        raise AttributeError(f"module 'kie_async.catalogue' has no attribute {name!r}")
    listing = importlib.import_module("kie_async.catalogue.listing")
    warnings.warn(
        f"kie_async.catalogue.{name} moved to kie_async.catalogue.listing.{name}", DeprecationWarning, stacklevel=2
    )
    return getattr(listing, name)
