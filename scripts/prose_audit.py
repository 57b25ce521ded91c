"""Every limit a provider page states in words: enforced by its model spec, or listed there with why not.

    python scripts/prose_audit.py [--docs ../shared/kie-docs] [--unmapped] [--model KEY] [--json]

Prints one line per statement (model, page:line, field, status, text) and the counts found / enforced / explained /
unmapped; exits 1 while any statement is unmapped or a ``page_limits`` entry is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kie_async.catalogue.prose_audit import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    default_docs = ROOT.parent / "shared" / "kie-docs"
    if "--docs" not in args and (default_docs / "manifest.json").is_file():
        args = ["--docs", str(default_docs), *args]
    raise SystemExit(main(args))
