"""What an image file's header says, read once per file.

A pipeline run opened each output's header three times: the download's content check, the run folder's probe
and the derivatives' reuse decision, each a libvips loader build plus pyvips' Python wrapping (~0.2-0.3 ms
of CPU, most of it holding the GIL, at 200 runs/s). The facts are kept per file identity (device, inode,
size, modification time and the first 64 KiB): a rename or a hard link keeps it, so the run folder's copy of
a download finds the check's reading; a rewrite changes it and is read again. Blocking: call from worker
threads.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_MAX_ENTRIES = 512


@dataclass(frozen=True, slots=True)
class ImageHeader:
    width: int
    height: int
    page_height: int
    """The height of one page (frame) of a multi-page image; ``height`` otherwise."""
    has_alpha: bool
    loader: str
    """The libvips loader that read it, e.g. ``pngload`` or ``jpegload_source``."""
    band_format: str
    interpretation: str


_Identity = tuple[int, int, int, int, int]
_lock = threading.Lock()
_known: OrderedDict[_Identity, ImageHeader] = OrderedDict()
_HEAD = 64 * 1024
"""Bytes of the file's start that are part of its identity: where image formats keep what the header says."""


def _identity(path: Path) -> _Identity:
    # Device, inode, size and mtime alone are not enough: a deleted file's inode is reused, and the kernel's
    # coarse clock can give a new file of the same size the same mtime. The first 64 KiB (where PNG, GIF, WebP
    # and nearly every JPEG keep their dimensions) settle it, for a read that costs a fraction of a header load.
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        head = fh.read(_HEAD)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, hash(head))


def header_facts(image: Any) -> ImageHeader:
    """The facts of an opened (lazy) pyvips image."""
    pages = image.get("n-pages") if image.get_typeof("n-pages") else 1
    page_height = image.get("page-height") if pages > 1 and image.get_typeof("page-height") else image.height
    loader = image.get("vips-loader") if image.get_typeof("vips-loader") else ""
    return ImageHeader(
        width=image.width,
        height=image.height,
        page_height=page_height,
        has_alpha=bool(image.hasalpha()),
        loader=str(loader),
        band_format=str(image.format),
        interpretation=str(image.interpretation),
    )


def remember(path: Path, header: ImageHeader) -> None:
    """Record what a header read of ``path`` found (the file must not change until it is renamed or linked)."""
    try:
        key = _identity(path)
    except OSError:
        return
    with _lock:
        _known[key] = header
        _known.move_to_end(key)
        while len(_known) > _MAX_ENTRIES:
            _known.popitem(last=False)


def read_header(path: Path) -> ImageHeader:
    """The header of the image at ``path``: remembered for this very file, else read (lazily: no pixels).

    Raises ``pyvips.Error`` when it is not a readable image and ``OSError`` when the file is gone.
    """
    key = _identity(path)
    with _lock:
        known = _known.get(key)
    if known is not None:
        return known
    import pyvips

    # revalidate: libvips caches loads by file name, so a file rewritten in place would report the old size.
    header = header_facts(pyvips.Image.new_from_file(str(path), revalidate=True))
    with _lock:
        _known[key] = header
        _known.move_to_end(key)
        while len(_known) > _MAX_ENTRIES:
            _known.popitem(last=False)
    return header


def image_size(source: Path | bytes) -> tuple[int, int] | None:
    """Width and height (one page of a multi-page image) of a local image file or in-memory image bytes, from
    the header only; ``None`` when it cannot be read. Blocking."""
    import pyvips

    try:
        if isinstance(source, Path):
            header = read_header(source)
        else:
            header = header_facts(pyvips.Image.new_from_buffer(source, "", access="sequential"))
    except (pyvips.Error, OSError):
        return None
    return header.width, header.page_height


_MOOV_CAP = 32 * 1024 * 1024
"""The most of a ``moov`` box read to find a track header (long recordings keep big sample tables there)."""


def video_size(source: Path | bytes) -> tuple[int, int] | None:
    """Width and height of an MP4/MOV (ISO-BMFF) file's first visual track, from its ``tkhd`` box; ``None`` when
    there is none or it cannot be read. Only box headers are read, never a frame. Rotation is not applied. Blocking."""
    try:
        with source.open("rb") if isinstance(source, Path) else io.BytesIO(source) as handle:
            moov = _find_box(handle, b"moov")
            if moov is None:
                return None
            return _track_size(moov)
    except OSError:
        return None


def _find_box(handle: BinaryIO, wanted: bytes) -> bytes | None:
    end = handle.seek(0, io.SEEK_END)
    pos = 0
    for _ in range(10_000):
        if pos + 8 > end:
            return None
        handle.seek(pos)
        header = handle.read(16)
        size, kind = struct.unpack(">I4s", header[:8])
        skip = 8
        if size == 1 and len(header) >= 16:
            size, skip = struct.unpack(">Q", header[8:16])[0], 16
        elif size == 0:
            size = end - pos
        if size < skip:
            return None
        if kind == wanted:
            handle.seek(pos + skip)
            return handle.read(min(size - skip, _MOOV_CAP))
        pos += size
    return None


def _children(data: bytes) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        skip = 8
        if size == 1 and pos + 16 <= len(data):
            size, skip = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < skip:
            break
        out.append((kind, data[pos + skip : pos + size]))
        pos += size
    return out


def _track_size(moov: bytes) -> tuple[int, int] | None:
    for kind, trak in _children(moov):
        if kind != b"trak":
            continue
        for sub, tkhd in _children(trak):
            if sub != b"tkhd" or len(tkhd) < 4:
                continue
            offset = 88 if tkhd[0] == 1 else 76
            if len(tkhd) < offset + 8:
                continue
            width, height = struct.unpack(">II", tkhd[offset : offset + 8])
            if width >> 16 and height >> 16:  # 16.16 fixed point; an audio track says 0 x 0
                return width >> 16, height >> 16
    return None
