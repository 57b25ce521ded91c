"""Output files: real images rendered with pyvips, a small real MP4, and bulk bytes for download benchmarks.

Everything here is synchronous and CPU- or disk-bound on purpose; callers run it via ``asyncio.to_thread``.
Content is derived from the task id, so an evicted cache entry re-renders to identical bytes.
"""

from __future__ import annotations

import hashlib
import random
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import pyvips

ImageFormat = Literal["png", "jpeg"]

_ASPECT_NAMES = {"auto": (1, 1), "adaptive": (16, 9)}
_BLOB_BLOCK_SIZE = 64 * 1024
_PNG_PAD_TYPE = b"kiEp"  # ancillary, private, safe-to-copy: every decoder skips it
_JPEG_COM_MAX = 65533


def output_format(params: dict[str, Any]) -> ImageFormat:
    fmt = str(params.get("output_format", "png")).lower()
    return "jpeg" if fmt in ("jpg", "jpeg") else "png"


def output_size(params: dict[str, Any], long_edge: int) -> tuple[int, int]:
    """Width and height honouring ``aspect_ratio`` ("16:9", "auto", ...), long edge fixed."""
    ratio = str(params.get("aspect_ratio", "1:1")).lower()
    if ratio in _ASPECT_NAMES:
        rw, rh = _ASPECT_NAMES[ratio]
    else:
        try:
            left, right = ratio.split(":", 1)
            rw, rh = max(1, int(float(left))), max(1, int(float(right)))
        except ValueError:
            rw, rh = 1, 1
    if rw >= rh:
        return long_edge, max(1, round(long_edge * rh / rw))
    return max(1, round(long_edge * rw / rh)), long_edge


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def render_image(seed_text: str, width: int, height: int, fmt: ImageFormat, target_bytes: int | None = None) -> bytes:
    """A gradient with a disc, coloured from the seed, so outputs differ per task but are reproducible."""
    rng = random.Random(_seed_of(seed_text))
    start = [rng.randrange(256) for _ in range(3)]
    end = [rng.randrange(256) for _ in range(3)]
    disc = [rng.randrange(256) for _ in range(3)]
    xy = pyvips.Image.xyz(width, height)
    t = (xy[0] + xy[1]) / float(max(1, width + height - 2))
    image = t * [b - a for a, b in zip(start, end, strict=True)] + start
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    radius = min(width, height) * rng.uniform(0.15, 0.35)
    inside = ((xy[0] - cx) ** 2 + (xy[1] - cy) ** 2) < radius**2
    image = inside.ifthenelse(disc, image).cast("uchar").copy(interpretation="srgb")
    data: bytes
    if fmt == "jpeg":
        data = image.write_to_buffer(".jpg", Q=85, strip=True)
        return pad_jpeg(data, target_bytes, seed_text) if target_bytes else data
    data = image.write_to_buffer(".png", compression=6)
    return pad_png(data, target_bytes, seed_text) if target_bytes else data


def _noise(seed_text: str, size: int) -> bytes:
    return random.Random(_seed_of("pad:" + seed_text)).randbytes(size)


def pad_png(data: bytes, target: int | None, seed_text: str) -> bytes:
    """Insert an ancillary chunk of noise before IEND so the file is ``target`` bytes and still valid."""
    overhead = 12
    if target is None or target < len(data) + overhead:
        return data
    payload = _noise(seed_text, target - len(data) - overhead)
    chunk = struct.pack(">I", len(payload)) + _PNG_PAD_TYPE + payload
    chunk += struct.pack(">I", zlib.crc32(_PNG_PAD_TYPE + payload) & 0xFFFFFFFF)
    iend = data.rfind(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


def pad_jpeg(data: bytes, target: int | None, seed_text: str) -> bytes:
    """Insert COM segments of noise after SOI so the file is ``target`` bytes and still valid."""
    if target is None or target <= len(data) + 4:
        return data
    missing = target - len(data)
    noise = _noise(seed_text, missing)
    segments: list[bytes] = []
    while missing > 0:
        # Each segment costs 4 bytes of header; avoid a trailing segment too small to hold its header.
        body_len = min(_JPEG_COM_MAX, missing - 4)
        if body_len < 0:
            break
        if 0 < missing - 4 - body_len < 4:
            body_len -= 4
        segments.append(b"\xff\xfe" + struct.pack(">H", body_len + 2) + noise[:body_len])
        noise = noise[body_len:]
        missing -= body_len + 4
    return data[:2] + b"".join(segments) + data[2:]


def pad_mp4(data: bytes, target: int | None, seed_text: str) -> bytes:
    """Append a ``free`` box (ignored by players) so the file is ``target`` bytes."""
    if target is None or target < len(data) + 8:
        return data
    size = target - len(data)
    return data + struct.pack(">I", size) + b"free" + _noise(seed_text, size - 8)


@lru_cache(maxsize=1)
def sample_video() -> bytes:
    """The bundled MP4 (160x90, 1 s, H.264) served for every video model."""
    return resources.files("kie_async.emulator").joinpath("assets/sample.mp4").read_bytes()


@lru_cache(maxsize=1)
def sample_audio() -> bytes:
    """A tiny real WAV (0.1 s of a 440 Hz tone, 8 kHz mono 16-bit) served for every audio model."""
    import io
    import math
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(
            b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(800))
        )
    return buf.getvalue()


def pad_wav(data: bytes, target: int | None, seed_text: str) -> bytes:
    """Append a RIFF ``JUNK`` chunk (ignored by players) and fix the RIFF size so the file is ``target`` bytes."""
    if target is None or target < len(data) + 8:
        return data
    size = target - len(data) - 8
    padded = data + b"JUNK" + struct.pack("<I", size) + _noise(seed_text, size)
    return padded[:4] + struct.pack("<I", len(padded) - 8) + padded[8:]


def render_output(
    seed_text: str,
    params: dict[str, Any],
    *,
    video: bool,
    long_edge: int,
    target_bytes: int | None,
    audio: bool = False,
) -> tuple[bytes, str]:
    """Bytes and content type for one output file."""
    if audio:
        return pad_wav(sample_audio(), target_bytes, seed_text), "audio/wav"
    if video:
        return pad_mp4(sample_video(), target_bytes, seed_text), "video/mp4"
    fmt = output_format(params)
    width, height = output_size(params, long_edge)
    return render_image(seed_text, width, height, fmt, target_bytes), f"image/{fmt}"


def output_extension(params: dict[str, Any], *, video: bool, audio: bool = False) -> str:
    if audio:
        return "wav"
    if video:
        return "mp4"
    return "jpeg" if output_format(params) == "jpeg" else "png"


class OutputCache:
    """LRU of rendered files bounded by total bytes (content is reproducible, so eviction is safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bytes, str] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, item: tuple[bytes, str]) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old[0])
            if len(item[0]) > self.max_bytes:
                return
            self._items[key] = item
            self._size += len(item[0])
            while self._size > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted[0])


@lru_cache(maxsize=1)
def _blob_block() -> bytes:
    return random.Random(_seed_of("blob")).randbytes(_BLOB_BLOCK_SIZE)


def blob_chunks(size: int, chunk_size: int = _BLOB_BLOCK_SIZE) -> Iterator[bytes]:
    """Deterministic bytes for ``size`` in bounded chunks: memory stays flat for any size."""
    block = _blob_block()
    offset = 0
    while offset < size:
        start = offset % _BLOB_BLOCK_SIZE
        length = min(chunk_size, size - offset, _BLOB_BLOCK_SIZE - start)
        yield block[start : start + length]
        offset += length


def parse_size(text: str) -> int:
    """``"1048576"``, ``"512k"``, ``"10M"``, ``"1G"`` -> bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    cleaned = text.strip().lower().removesuffix("b").removesuffix("i")
    multiplier = units.get(cleaned[-1:], 1)
    number = cleaned[:-1] if cleaned[-1:] in units else cleaned
    value = int(float(number) * multiplier)
    if value < 0:
        raise ValueError("size must be >= 0")
    return value
