"""The one error type of the artifacts package (a ``KieError``, so the CLI prints it cleanly)."""

from __future__ import annotations

from kie_async.core.errors import KieError


class KieArtifactError(KieError):
    """A run artifact could not be written or read (missing source file, unknown run id, bad root)."""

    hint = "check the artifacts root and the paths passed in; `kie-async artifacts rebuild` repairs the index"
