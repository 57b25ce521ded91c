"""A compiled cache of data files: what parsing YAML produced, stored as JSON, keyed by the files' content.

Parsing every model spec with ruamel costs most of a CLI call; reading the same data back as JSON costs a
fraction of that, and only the entries a command needs are decoded. A cache file is named by a hash of the
source files' bytes (plus a salt naming the code that reads them), so an edited, added or removed file means
another name: a stale cache is never read, it is simply not found, and the next call rebuilds it.

One file holds one JSON header line (``{"format": ..., "meta": ..., "entries": {name: [offset, length]}}``)
followed by the entries' JSON. It is written to a temporary file in the same folder and moved into place with
``os.replace``: several processes rebuilding at once each write their own temporary file, and a reader sees
either no file or a whole one. A cache that cannot be read or written (no home, a read-only disk, a torn or
foreign file) is ignored: the caller parses the sources as it would without a cache.

The folder is ``$KIE_ASYNC_CACHE_DIR``, else ``$XDG_CACHE_HOME/kie-async``, else ``~/.cache/kie-async``;
``KIE_ASYNC_CACHE_DIR=off`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

CACHE_DIR_ENV = "KIE_ASYNC_CACHE_DIR"
FORMAT = 1
_OFF = ("off", "0", "false", "no")
_KEEP = 16
"""Cache files of one kind kept in the folder; older ones (other spec folders, earlier edits) are removed."""


def cache_folder() -> Path | None:
    """Where compiled caches live, or ``None`` when the cache is turned off or no folder can be named."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured.lower() in _OFF:
        return None
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg:
        return Path(xdg) / "kie-async"
    with contextlib.suppress(RuntimeError, KeyError):  # no home directory (a bare container user)
        return Path.home() / ".cache" / "kie-async"
    return None


def content_key(sources: Iterable[tuple[str, bytes]], salt: str) -> str:
    """A hash of the sources' names and bytes, in the order given, and of ``salt`` (the code reading them)."""
    digest = hashlib.sha256(f"{FORMAT}\0{salt}\0".encode())
    for name, data in sources:
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:40]


class CompiledIndex:
    """A cache file read into memory: its ``meta`` and each entry's JSON, decoded on first access."""

    def __init__(self, meta: dict[str, Any], offsets: dict[str, tuple[int, int]], body: bytes) -> None:
        self.meta = meta
        self._offsets = offsets
        self._body = body

    def names(self) -> list[str]:
        return list(self._offsets)

    def entry(self, name: str) -> Any:
        start, length = self._offsets[name]
        return json.loads(self._body[start : start + length])


def cache_path(kind: str, key: str) -> Path | None:
    folder = cache_folder()
    return None if folder is None else folder / f"{kind}-{key}.json"


def read_index(kind: str, key: str) -> CompiledIndex | None:
    """The cache file for ``key``, or ``None`` when there is none (or it cannot be read whole)."""
    path = cache_path(kind, key)
    if path is None:
        return None
    try:
        data = path.read_bytes()
        header_end = data.index(b"\n")
        header = json.loads(data[:header_end])
        if header.get("format") != FORMAT or header.get("key") != key:
            return None
        offsets = {name: (int(start), int(length)) for name, (start, length) in header["entries"].items()}
        body = data[header_end + 1 :]
        if any(start + length > len(body) for start, length in offsets.values()):
            return None  # torn: cannot happen with os.replace, but a copied or truncated file can
        return CompiledIndex(dict(header.get("meta") or {}), offsets, body)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_index(kind: str, key: str, entries: Mapping[str, Any], meta: Mapping[str, Any]) -> Path | None:
    """Store ``entries`` (JSON values) under ``key``, atomically; returns the path, or ``None`` if not written."""
    path = cache_path(kind, key)
    if path is None:
        return None
    chunks: list[bytes] = []
    offsets: dict[str, list[int]] = {}
    position = 0
    for name, value in entries.items():
        try:
            chunk = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()
        except (TypeError, ValueError):
            return None  # a value JSON cannot hold: no cache, the caller keeps what it parsed
        offsets[name] = [position, len(chunk)]
        chunks.append(chunk)
        position += len(chunk)
    header = json.dumps(
        {"format": FORMAT, "key": key, "meta": dict(meta), "entries": offsets},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("xb") as fh:
            fh.write(header + b"\n" + b"".join(chunks))
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        return None
    _prune(path.parent, kind, keep=path)
    return path


def _json_default(value: object) -> str:
    if isinstance(value, date | datetime):  # YAML dates; the models reading them back take ISO text
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _prune(folder: Path, kind: str, *, keep: Path) -> None:
    """Remove the oldest caches of ``kind`` beyond the newest :data:`_KEEP` (never ``keep``)."""
    with contextlib.suppress(OSError):
        found = []
        for candidate in folder.glob(f"{kind}-*.json"):
            with contextlib.suppress(OSError):
                found.append((candidate.stat().st_mtime_ns, candidate))
        found.sort(reverse=True)
        for _, old in found[_KEEP:]:
            if old != keep:
                with contextlib.suppress(OSError):
                    old.unlink()
