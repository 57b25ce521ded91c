"""Whether files can be written under a folder, asked before anything is bought.

Found late, a read-only output root or a file standing where a folder should be failed a run after its task
was paid for; the CLI's folder arguments and the pipeline's gate ask the same question here.
"""

from __future__ import annotations

import os
from pathlib import Path


def folder_problem(path: Path) -> str | None:
    """Why files cannot be written under ``path`` (a file in the way, no write permission), or None.

    Blocking (stats the path and its parents): call it in a thread. Checked before anything is bought: found
    late, a read-only root or a file named like the folder failed the run after the task was paid for.
    """
    path = path.absolute()
    for candidate in (path, *path.parents):
        if not candidate.exists():
            continue
        if not candidate.is_dir():
            return "is not a folder" + ("" if candidate == path else f" ({candidate} is a file)")
        if not os.access(candidate, os.W_OK | os.X_OK):
            return f"no permission to write in {candidate}"
        return None
    return None
