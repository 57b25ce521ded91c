"""The pipeline: prepare (upload-first) → purchase → wait → collect (download, run folder), and what runs it.

Stages in order: :mod:`.prepare`, :mod:`.purchase`, :mod:`.collect`; :mod:`.run` chains them for one request
(``run_pipeline``), :mod:`.fanout` runs many (``run_many``) with :mod:`.progress`; :mod:`.handle` and
:mod:`.outputs` are the bare task handle and its files. The checks that come before money are in
:mod:`kie_async.catalogue`.

``kie_async.pipeline`` used to be the module of ``run_pipeline``; its names still resolve here, with a
``DeprecationWarning`` naming :mod:`kie_async.pipeline.run`.
"""

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    run = importlib.import_module("kie_async.pipeline.run")
    if name not in run.__all__ and not hasattr(run, name):
        raise AttributeError(f"module 'kie_async.pipeline' has no attribute {name!r}")
    warnings.warn(
        f"kie_async.pipeline.{name} moved to kie_async.pipeline.run.{name}", DeprecationWarning, stacklevel=2
    )
    return getattr(run, name)
