"""Regenerate the emulator's bundled provider schemas from Kie.ai's captured docs pages.

    python scripts/extract_provider_schemas.py [--docs ../shared/kie-docs] [--check]

Writes kie_async/emulator/provider_schemas/{market,apis}/*.json (and removes files no page produces any more).
``--check`` writes nothing and exits 1 when a bundled file differs from its page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kie_async.emulator.chat_schemas import CHAT_BUNDLE_DIR, extract_chat  # noqa: E402
from kie_async.emulator.provider_schemas import BUNDLE_DIR  # noqa: E402
from kie_async.emulator.schema_extract import extract_all  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--docs",
        type=Path,
        default=ROOT.parent / "shared" / "kie-docs",
        help="the captured docs folder (holding manifest.json)",
    )
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    args = parser.parse_args()
    if not (args.docs / "manifest.json").is_file():
        print(f"no captured docs at {args.docs} (expected manifest.json there)", file=sys.stderr)
        return 2
    return max(
        _sync(BUNDLE_DIR, {n: b.to_json() for n, b in extract_all(args.docs).items()}, args.check),
        _sync(CHAT_BUNDLE_DIR, {n: b.to_json() for n, b in extract_chat(args.docs).items()}, args.check),
    )


def _sync(folder: Path, wanted: dict[str, str], check: bool) -> int:
    """Write (or with ``check`` compare) one bundle folder: the media schemas, or the chat schemas."""
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*.json")}
    changed = sorted(
        n for n, text in wanted.items() if n not in present or (folder / n).read_text(encoding="utf-8") != text
    )
    stale = sorted(present - set(wanted))
    if check:
        for name in changed:
            print(f"differs from its page: {name}")
        for name in stale:
            print(f"no page produces: {name}")
        return 1 if changed or stale else 0
    for name in changed:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[name], encoding="utf-8")
    for name in stale:
        (folder / name).unlink()
    print(
        f"{len(wanted)} schemas: {len(changed)} written, {len(stale)} removed, {len(wanted) - len(changed)} unchanged"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
