"""Audio outputs for the emulator's music models: a short, valid WAV file, different per task."""

from __future__ import annotations

import hashlib
import io
import math
import struct
import wave

_RATE = 8000
_SECONDS = 0.5


def render_audio(seed_text: str) -> tuple[bytes, str]:
    """A half-second mono 16-bit WAV tone whose pitch follows ``seed_text`` (so outputs differ by task)."""
    pitch = 220 + int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:2], "big") % 660
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * pitch * n / _RATE))) for n in range(int(_RATE * _SECONDS))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(_RATE)
        out.writeframes(frames)
    return buffer.getvalue(), "audio/wav"
