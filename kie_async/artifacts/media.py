"""Facts about a file on disk: kind, MIME type, size, sha256 and media info.

The magic-byte table is :mod:`kie_async.core.media_sniff`'s, shared with input and download checks.

Everything here is blocking and meant to run in a worker thread. Images are probed with pyvips, which reads
only the header. MP4/MOV dimensions and duration come from a small ISO-BMFF box walk and WAV from the
standard library, so no ffprobe or other system tool is needed for the manifest.
"""

from __future__ import annotations

import hashlib
import mimetypes
import struct
import wave
from pathlib import Path
from typing import BinaryIO

from kie_async.artifacts.manifest import ArtifactKind, MediaInfo
from kie_async.core.image_header import read_header
from kie_async.core.media_sniff import read_head, sniff_head

_CHUNK = 1024 * 1024


def sha256_file(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size, streamed so large videos never load into memory."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sniff(path: Path) -> tuple[str | None, str | None]:
    """(mime type, format) from magic bytes, falling back to the extension: providers mislabel files."""
    try:
        head = read_head(path)
    except OSError:
        head = b""
    found = sniff_head(head)
    if found.format is not None:
        return found.mime_type, found.format
    guessed, _ = mimetypes.guess_type(path.name)
    suffix = path.suffix.lower().lstrip(".")
    return guessed, ("jpeg" if suffix == "jpg" else suffix or None)


def kind_of(mime: str | None) -> ArtifactKind:
    if not mime:
        return ArtifactKind.OTHER
    major = mime.split("/", 1)[0]
    if major in ("image", "video", "audio", "text"):
        return ArtifactKind(major)
    if mime in ("application/json",):
        return ArtifactKind.TEXT
    return ArtifactKind.OTHER


def kind_from_url(url: str) -> ArtifactKind:
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return kind_of(guessed)


def probe(path: Path, kind: ArtifactKind | None = None) -> tuple[ArtifactKind, MediaInfo]:
    """Kind and media info; unreadable or unknown media yields what could be found, never an exception."""
    mime, fmt = sniff(path)
    found_kind = kind or kind_of(mime)
    info = MediaInfo(mime_type=mime, format=fmt)
    try:
        if found_kind is ArtifactKind.IMAGE:
            info = _probe_image(path, info)
        elif fmt in ("mp4", "mov", "m4a"):
            info = _probe_isobmff(path, info)
        elif fmt == "wav":
            info = _probe_wav(path, info)
    except Exception:  # a corrupt or exotic file must not stop the artifact from being written
        return found_kind, info
    return found_kind, info


def _probe_image(path: Path, info: MediaInfo) -> MediaInfo:
    header = read_header(path)  # the header only; a download's content check usually read it already
    return info.model_copy(update={"width": header.width, "height": header.page_height, "has_alpha": header.has_alpha})


def _probe_wav(path: Path, info: MediaInfo) -> MediaInfo:
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        duration = wav.getnframes() / rate if rate else None
    return info.model_copy(update={"duration_seconds": round(duration, 3) if duration is not None else None})


# ISO-BMFF (MP4/MOV): walk moov → mvhd for the duration and moov → trak → tkhd for the video track size.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


def _boxes(fh: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    found: list[tuple[bytes, int, int]] = []
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        header = fh.read(8)
        if len(header) < 8:
            break
        size, box_type = struct.unpack(">I4s", header)
        body = pos + 8
        if size == 1:
            size = struct.unpack(">Q", fh.read(8))[0]
            body = pos + 16
        elif size == 0:
            size = end - pos
        if size < 8:
            break
        found.append((box_type, body, min(pos + size, end)))
        pos += size
    return found


def _probe_isobmff(path: Path, info: MediaInfo) -> MediaInfo:
    size = path.stat().st_size
    duration: float | None = None
    width = height = None
    with path.open("rb") as fh:
        moov = next((b for b in _boxes(fh, 0, size) if b[0] == b"moov"), None)
        if moov is None:
            return info
        for box_type, body, end in _boxes(fh, moov[1], moov[2]):
            if box_type == b"mvhd":
                fh.seek(body)
                version = fh.read(1)[0]
                fh.seek(body + 4)
                if version == 1:
                    _, _, timescale, dur = struct.unpack(">QQIQ", fh.read(28))
                else:
                    _, _, timescale, dur = struct.unpack(">IIII", fh.read(16))
                if timescale:
                    duration = round(dur / timescale, 3)
            elif box_type == b"trak" and width is None:
                for sub_type, sub_body, _sub_end in _boxes(fh, body, end):
                    if sub_type != b"tkhd":
                        continue
                    fh.seek(sub_body)
                    version = fh.read(1)[0]
                    # width/height are the last 8 bytes of tkhd, 16.16 fixed point
                    offset = sub_body + (88 if version == 1 else 76)
                    fh.seek(offset)
                    w, h = struct.unpack(">II", fh.read(8))
                    if w and h:
                        width, height = w >> 16, h >> 16
    return info.model_copy(update={"duration_seconds": duration, "width": width, "height": height})
