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

_RUN_NAMES = frozenset(
    {
        "Enhancer",
        "PipelineHooks",
        "PipelineOptions",
        "PipelineStatus",
        "RunOutput",
        "RunResult",
        "StageName",
        "StageOutcome",
        "StageStatus",
        "outputs_intact",
        "parent_run_ids_of",
        "run_pipeline",
    }
)


def __getattr__(name: str) -> Any:
    # A fixed set, so ``from kie_async.pipeline import prepare`` (a submodule) never loads the whole pipeline.
    if name not in _RUN_NAMES:
        raise AttributeError(f"module 'kie_async.pipeline' has no attribute {name!r}")
    run = importlib.import_module("kie_async.pipeline.run")
    warnings.warn(f"kie_async.pipeline.{name} moved to kie_async.pipeline.run.{name}", DeprecationWarning, stacklevel=2)
    return getattr(run, name)
