"""What a file or a body really is, told from its content: for inputs before upload, for outputs before they are kept.

Names and URLs lie (a text file renamed ``.png``, an HTML error page served with status 200, an output URL
ending in ``.sh``); the first bytes do not. One table of magic numbers serves every caller: validation reports
a non-media input as impossible (so nothing is uploaded or bought), ``prepare`` re-checks right before upload
(the file may have changed since), and downloads refuse a body of the wrong kind and name the file after what
it holds. Past the magic bytes a cheap header read catches look-alikes: images are opened lazily with pyvips
(header only), MP4/MOV/M4A must contain a ``moov`` box and WAV a ``fmt `` chunk.

Everything here that touches a file or pyvips blocks: call it from a worker thread.
"""

from __future__ import annotations

import io
import stat
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict

from kie_async.core.image_header import header_facts, remember

MediaKind = Literal["image", "video", "audio"]
ProblemRule = Literal["file_exists", "file_unreadable", "empty_media", "not_media", "media_kind", "media_corrupt"]

HEAD_BYTES = 512
"""Bytes read for sniffing: enough for every magic number, a Matroska DocType and a text-or-binary guess."""


@dataclass(frozen=True)
class _Format:
    extension: str
    mime: str
    kinds: tuple[MediaKind, ...]
    label: str


_FORMATS: dict[str, _Format] = {
    "png": _Format("png", "image/png", ("image",), "a PNG image"),
    "jpeg": _Format("jpg", "image/jpeg", ("image",), "a JPEG image"),
    "gif": _Format("gif", "image/gif", ("image",), "a GIF image"),
    "webp": _Format("webp", "image/webp", ("image",), "a WebP image"),
    "bmp": _Format("bmp", "image/bmp", ("image",), "a BMP image"),
    "tiff": _Format("tiff", "image/tiff", ("image",), "a TIFF image"),
    "heic": _Format("heic", "image/heic", ("image",), "a HEIC image"),
    "heif": _Format("heif", "image/heif", ("image",), "a HEIF image"),
    "avif": _Format("avif", "image/avif", ("image",), "an AVIF image"),
    # Containers that may hold sound only list audio too, so a music model's MP4 is not called the wrong kind.
    "mp4": _Format("mp4", "video/mp4", ("video", "audio"), "an MP4 video"),
    "mov": _Format("mov", "video/quicktime", ("video",), "a QuickTime (MOV) video"),
    "webm": _Format("webm", "video/webm", ("video", "audio"), "a WebM video"),
    "mkv": _Format("mkv", "video/x-matroska", ("video", "audio"), "a Matroska (MKV) video"),
    "avi": _Format("avi", "video/x-msvideo", ("video",), "an AVI video"),
    "wav": _Format("wav", "audio/wav", ("audio",), "a WAV audio file"),
    "mp3": _Format("mp3", "audio/mpeg", ("audio",), "an MP3 audio file"),
    "ogg": _Format("ogg", "audio/ogg", ("audio", "video"), "an Ogg audio file"),
    "flac": _Format("flac", "audio/flac", ("audio",), "a FLAC audio file"),
    "m4a": _Format("m4a", "audio/mp4", ("audio",), "an M4A audio file"),
    "aac": _Format("aac", "audio/aac", ("audio",), "an AAC audio stream"),
}

_FTYP_BRANDS: dict[bytes, str] = {
    b"qt  ": "mov",
    b"M4A ": "m4a",
    b"M4B ": "m4a",
    b"M4P ": "m4a",
    b"avif": "avif",
    b"avis": "avif",
    b"heic": "heic",
    b"heix": "heic",
    b"heim": "heic",
    b"heis": "heic",
    b"hevc": "heic",
    b"hevx": "heic",
}
_QUICKTIME_FIRST_BOXES = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
_OTHER_BINARY: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "a program (ELF binary)"),
)
_VIPS_LOADERS = {
    "png": "pngload",
    "jpeg": "jpegload",
    "gif": "gifload",
    "webp": "webpload",
    "tiff": "tiffload",
    "heic": "heifload",
    "heif": "heifload",
    "avif": "heifload",
}
_A_KIND: dict[MediaKind | None, str] = {
    "image": "an image",
    "video": "a video",
    "audio": "an audio file",
    None: "a media file",
}
_MAX_BOXES = 4096


class SniffedMedia(BaseModel):
    """What the first bytes say: a known media format (``format`` set) or a description of what else it is."""

    model_config = ConfigDict(frozen=True)

    format: str | None = None
    """``png``, ``jpeg``, ``mp4``, ``wav``, ...; None when the content is not a media format known here."""
    extension: str | None = None
    """File extension for the format, without the dot (``jpg`` for JPEG)."""
    mime_type: str | None = None
    kinds: tuple[MediaKind, ...] = ()
    """Every kind the format can hold, the usual one first (an MP4 may be a video or sound only)."""
    looks_like: str
    """For messages: "a PNG image", "text", "an HTML page", "empty", ..."""

    @property
    def kind(self) -> MediaKind | None:
        return self.kinds[0] if self.kinds else None

    @property
    def is_media(self) -> bool:
        return self.format is not None


class MediaProblem(BaseModel):
    """Why an input or a body is not the media it should be; ``message`` reads after the thing's name."""

    model_config = ConfigDict(frozen=True)

    rule: ProblemRule
    message: str
    """E.g. "is not an image (looks like text)", to follow "images[0]: /tmp/x.png"."""


class MediaCheck(BaseModel):
    """The outcome of :func:`check_media`."""

    model_config = ConfigDict(frozen=True)

    sniffed: SniffedMedia | None = None
    size: int | None = None
    problem: MediaProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


# ---------------------------------------------------------------- magic bytes


def sniff_head(head: bytes) -> SniffedMedia:
    """Classify the first bytes of a file or body (pure and cheap; pass at least :data:`HEAD_BYTES` when you can)."""
    name = _format_of(head)
    if name is None:
        return SniffedMedia(looks_like=_describe(head))
    fmt = _FORMATS[name]
    return SniffedMedia(format=name, extension=fmt.extension, mime_type=fmt.mime, kinds=fmt.kinds, looks_like=fmt.label)


def read_head(path: Path) -> bytes:
    """The first :data:`HEAD_BYTES` of ``path`` (raises ``OSError``)."""
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES)


def _format_of(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF":
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12])
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if _is_bmp(head):
        return "bmp"
    if head[4:8] == b"ftyp":
        return _ftyp_format(head)
    # Old QuickTime files start with a box other than ftyp; a zero first byte (box size < 16 MB) rules out text.
    if len(head) >= 8 and head[0] == 0 and head[4:8] in _QUICKTIME_FIRST_BOXES and _u32(head, 0) >= 8:
        return "mov"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "webm" if b"webm" in head[:64] else "mkv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"ID3"):
        return "mp3"
    return _mpeg_audio(head)


def _u32(data: bytes, offset: int) -> int:
    value: int = struct.unpack_from(">I", data, offset)[0]
    return value


def _is_bmp(head: bytes) -> bool:
    # "BM" alone starts plenty of text; the reserved zeros and a known DIB header size do not.
    return (
        len(head) >= 18
        and head[:2] == b"BM"
        and head[6:10] == b"\x00\x00\x00\x00"
        and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    )


def _ftyp_format(head: bytes) -> str:
    brand = head[8:12]
    if brand in (b"mif1", b"msf1"):
        compatible = head[16 : min(_u32(head, 0), len(head))]
        return "avif" if b"avif" in compatible else "heif"
    return _FTYP_BRANDS.get(brand, "mp4")


def _mpeg_audio(head: bytes) -> str | None:
    """MPEG audio frames (MP3) and ADTS (raw AAC) both start with an 11/12-bit sync word of ones."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    layer = (head[1] >> 1) & 3
    if layer == 0:
        return "aac" if head[1] & 0xF6 == 0xF0 else None
    version = (head[1] >> 3) & 3
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 3
    if version == 1 or bitrate == 15 or sample_rate == 3:  # reserved values: not a frame header
        return None
    return "mp3"


def _describe(head: bytes) -> str:
    if not head:
        return "empty"
    for magic, label in _OTHER_BINARY:
        if head.startswith(magic):
            return label
    text = _as_text(head)
    if text is None:
        return "binary data of an unknown type"
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    if lowered.startswith(("<!doctype html", "<html", "<head", "<body")):
        return "an HTML page"
    if "<svg" in lowered:
        return "an SVG drawing"
    if lowered.startswith("<?xml"):
        return "XML"
    if lowered.startswith(("{", "[")):
        return "JSON"
    if lowered.startswith("#!"):
        return "a script"
    return "text"


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return None
        text = head[: exc.start].decode("utf-8")
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\t\r\n\f")
    return text if printable >= 0.95 * len(text) else None


# ---------------------------------------------------------------- the full check


def check_media(source: Path | bytes, expect: MediaKind | None = None, *, decode: bool = True) -> MediaCheck:
    """Is ``source`` (a local file or in-memory bytes) real media of kind ``expect``? Blocking; never raises.

    The checks run cheapest first: the path is a readable regular file, it is not empty, its magic bytes name
    a media format, that format can hold ``expect``, and (with ``decode``) its header reads.
    """
    if isinstance(source, Path):
        try:
            info = source.stat()
        except FileNotFoundError:
            return _problem("file_exists", "does not exist")
        except OSError as exc:
            return _problem("file_unreadable", f"cannot be read ({exc.strerror or exc})")
        if stat.S_ISDIR(info.st_mode):
            return _problem("file_exists", "is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            return _problem("file_exists", "is not a regular file")
        try:
            head = read_head(source)
        except OSError as exc:
            return _problem("file_unreadable", f"cannot be read ({exc.strerror or exc})")
        size = info.st_size
    else:
        head = bytes(source[:HEAD_BYTES])
        size = len(source)
    if not head:
        return _problem("empty_media", "is empty (0 bytes)", size=0)
    sniffed = sniff_head(head)
    if not sniffed.is_media:
        return _problem("not_media", f"is not {_A_KIND[expect]} (looks like {sniffed.looks_like})", sniffed, size)
    if expect is not None and expect not in sniffed.kinds:
        return _problem(
            "media_kind", f"contains {sniffed.kind} data ({sniffed.format}), not {_A_KIND[expect]}", sniffed, size
        )
    if decode:
        trouble = header_problem(source, sniffed)
        if trouble is not None:
            return _problem("media_corrupt", f"looks like {sniffed.looks_like} but {trouble}", sniffed, size)
    return MediaCheck(sniffed=sniffed, size=size)


def _problem(
    rule: ProblemRule, message: str, sniffed: SniffedMedia | None = None, size: int | None = None
) -> MediaCheck:
    return MediaCheck(sniffed=sniffed, size=size, problem=MediaProblem(rule=rule, message=message))


def header_problem(source: Path | bytes, sniffed: SniffedMedia) -> str | None:
    """Why content whose magic bytes look right is still not usable media; None when its header reads fine.

    Only cheap reads: pyvips opens images lazily (the header, not the pixels), ISO-BMFF files are walked box by
    box with seeks, WAV chunks in the first bytes. Formats without a check here pass on their magic bytes.
    """
    fmt = sniffed.format
    try:
        if fmt in _VIPS_LOADERS and _vips_has(_VIPS_LOADERS[fmt]):
            return _image_header_problem(source)
        if fmt in ("mp4", "mov", "m4a"):
            with _open(source) as handle:
                return _isobmff_problem(handle)
        if fmt == "wav":
            with _open(source) as handle:
                return _wav_problem(handle.read(64 * 1024))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _open(source: Path | bytes) -> BinaryIO:
    return source.open("rb") if isinstance(source, Path) else io.BytesIO(source)


@cache
def _vips_has(loader: str) -> bool:
    import pyvips

    return bool(pyvips.type_find("VipsOperation", loader))


def _image_header_problem(source: Path | bytes) -> str | None:
    import pyvips

    # A Source (not new_from_file): no filename option parsing ("x[1].png") and no stale cache entry.
    try:
        stream = (
            pyvips.Source.new_from_file(str(source))
            if isinstance(source, Path)
            else pyvips.Source.new_from_memory(source)
        )
        image = pyvips.Image.new_from_source(stream, "", access="sequential")
        width, height = image.width, image.height
        if isinstance(source, Path) and width > 0 and height > 0:
            remember(source, header_facts(image))  # the run folder's probe and derivatives read it from here
    except pyvips.Error as exc:
        detail = next((line for line in str(exc.detail or "").splitlines() if line.strip()), "")
        reason = detail.rsplit(": ", 1)[-1].strip()
        return f"its header cannot be read ({reason})" if reason else "its header cannot be read"
    if width <= 0 or height <= 0:
        return "its header gives no size"
    return None


def _isobmff_problem(handle: BinaryIO) -> str | None:
    end = handle.seek(0, io.SEEK_END)
    pos = 0
    for _ in range(_MAX_BOXES):
        if pos + 8 > end:
            break
        handle.seek(pos)
        header = handle.read(16)
        size, kind = struct.unpack(">I4s", header[:8])
        if size == 1:
            if len(header) < 16:
                return "its box structure is cut short"
            size = struct.unpack(">Q", header[8:16])[0]
        elif size == 0:
            size = end - pos
        if size < 8:
            return f"its box structure is broken at byte {pos}"
        if kind == b"moov":
            return None
        pos += size
    else:
        return None  # thousands of boxes and still going: not worth more reads; let the player judge
    return "has no 'moov' box (truncated, still being written, or not a finished file)"


def _wav_problem(data: bytes) -> str | None:
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            return None
        pos += 8 + size + (size & 1)
    return "has no 'fmt ' chunk in its header"


def input_fix(rule: ProblemRule, kind: MediaKind, formats: list[str] | None = None) -> str:
    """The fix to suggest for an input that failed :func:`check_media` with ``rule``."""
    wanted = f"a real {kind} file" + (f" ({', '.join(formats)})" if formats else "")
    fixes: dict[ProblemRule, str] = {
        "file_exists": "check the path; pass a file, not a folder",
        "file_unreadable": "check the file's permissions, or copy it somewhere readable",
        "empty_media": f"pass {wanted}; this one has no content (an unfinished download or export?)",
        "not_media": f"pass {wanted}",
        "media_kind": f"pass {wanted}, or pass this one as the kind it is",
        "media_corrupt": f"re-export or re-download it; the file is truncated or damaged, or pass {wanted}",
    }
    return fixes[rule]
