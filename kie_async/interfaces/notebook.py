"""How results look in Jupyter: ``RunResult`` and ``run_many``'s results render as HTML cards and tables.

The rendering itself lives in :mod:`kie_async.pipeline.result_html` (beside the results, which call it from
``_repr_html_``); this module is the notebook-facing name for it.
"""

from __future__ import annotations

from kie_async.pipeline.result_html import (
    MAX_INLINE_IMAGE_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_TABLE_ROWS,
    RunView,
    preview_data_uri,
    run_result_html,
    run_results_html,
)

__all__ = [
    "MAX_INLINE_IMAGE_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_TABLE_ROWS",
    "RunView",
    "preview_data_uri",
    "run_result_html",
    "run_results_html",
]
