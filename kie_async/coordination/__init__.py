"""Sharing one Kie.ai account between processes: the coordinator seam and how a session picks one."""

from __future__ import annotations

from kie_async.coordination.base import (
    UPLOAD_REUSE_SECONDS,
    AdoptionListener,
    Coordinator,
    ReadLimit,
    ResyncListener,
    SubmitWindow,
    TaskListener,
    account_namespace,
)
from kie_async.coordination.local import LocalCoordinator

__all__ = [
    "UPLOAD_REUSE_SECONDS",
    "AdoptionListener",
    "Coordinator",
    "LocalCoordinator",
    "ReadLimit",
    "ResyncListener",
    "SubmitWindow",
    "TaskListener",
    "account_namespace",
]
