"""Run ids become one folder under the output root; this checks them wherever they come from.

A run id read back from a journal line, a shared Redis ledger or a run record is data someone else may have
written: ``"../../victim"`` there must never make a re-run replace (and delete) a folder outside the output
root. (Task ids from the network are made into folder names by ``pipeline.collect.folder_name``.)
"""

from __future__ import annotations

import re

from kie_async.core.errors import KieInputError

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,199}")


def is_safe_run_id(value: str) -> bool:
    """One path component of letters, digits and ``._~-``, not starting with a dot (so never ``.`` or ``..``)."""
    return _RUN_ID.fullmatch(value) is not None


def require_run_id(value: str, *, field: str = "run_id") -> str:
    """``value`` when it is a safe run folder name, else a typed error naming the field."""
    if not is_safe_run_id(value):
        raise KieInputError(
            f"{field} {value[:80]!r} is not a single safe folder name",
            hint="use letters, digits and . _ ~ - only (no / or ..), or leave it unset for a generated one",
        )
    return value
