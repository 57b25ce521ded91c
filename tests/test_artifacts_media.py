"""File facts (sniffing, media info, hashing) and secret redaction used by the artifact writer."""

from __future__ import annotations

import hashlib
import struct
import wave
from pathlib import Path

import pyvips

from kie_async.artifacts.manifest import ArtifactKind
from kie_async.artifacts.media import probe, sha256_file, sniff
from kie_async.core.redact import REDACTED, redact_url, redact_value


def test_sniff_trusts_magic_bytes_over_extension(tmp_path: Path) -> None:
    lying = tmp_path / "really_a_png.jpg"
    pyvips.Image.black(4, 4).write_to_file(str(tmp_path / "x.png"))
    lying.write_bytes((tmp_path / "x.png").read_bytes())
    assert sniff(lying) == ("image/png", "png")
    webp = tmp_path / "w.bin"
    pyvips.Image.black(4, 4).write_to_file(str(tmp_path / "w.webp"))
    webp.write_bytes((tmp_path / "w.webp").read_bytes())
    assert sniff(webp) == ("image/webp", "webp")
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    assert sniff(unknown) == ("text/plain", "txt")
    assert probe(unknown)[0] is ArtifactKind.TEXT


def test_probe_sees_a_file_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    pyvips.Image.black(80, 60).write_to_file(str(path))
    assert probe(path)[1].width == 80
    pyvips.Image.black(30, 90).write_to_file(str(path))
    _, info = probe(path)
    assert (info.width, info.height) == (30, 90)  # not libvips' cached header of the old file


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def test_mp4_version1_boxes_and_audio_track_first(tmp_path: Path) -> None:
    mvhd = _box(b"mvhd", b"\x01" + bytes(3) + struct.pack(">QQIQ", 0, 0, 600, 600 * 8) + bytes(80))
    audio_tkhd = _box(b"tkhd", bytes(4) + bytes(72) + struct.pack(">II", 0, 0))
    video_tkhd = _box(b"tkhd", b"\x01" + bytes(3) + bytes(84) + struct.pack(">II", 720 << 16, 1280 << 16))
    moov = _box(b"moov", mvhd + _box(b"trak", audio_tkhd) + _box(b"trak", video_tkhd))
    path = tmp_path / "v.mov"
    path.write_bytes(_box(b"ftyp", b"qt  " + bytes(4)) + _box(b"free", bytes(16)) + moov)
    kind, info = probe(path)
    assert kind is ArtifactKind.VIDEO and info.format == "mov" and info.mime_type == "video/quicktime"
    assert (info.width, info.height, info.duration_seconds) == (720, 1280, 8.0)


def test_wav_duration_and_corrupt_media_does_not_raise(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(2 * 8000 * 3))
    kind, info = probe(path)
    assert kind is ArtifactKind.AUDIO and info.duration_seconds == 3.0
    broken = tmp_path / "b.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(4) + b"\xff" * 9)
    kind, info = probe(broken)
    assert kind is ArtifactKind.VIDEO and info.duration_seconds is None


def test_sha256_streams_large_files(tmp_path: Path) -> None:
    data = bytes(range(256)) * 20_000  # > one read chunk
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))


def test_redaction_rules() -> None:
    assert redact_url("https://u:p@h.example/a?b=1&sig=xyz&X-Amz-Credential=c") == (
        f"https://h.example/a?b=1&sig={REDACTED}&X-Amz-Credential={REDACTED}"
    )
    assert redact_url("https://h.example/a.png?w=2") == "https://h.example/a.png?w=2"
    cleaned = redact_value(
        {
            "apiKey": "k1",
            "max_tokens": 5,
            "prompt": "Bearer abc123defghij and s3cr3t-value",
            "style": "Basic watercolours, bearer of light",
            "list": ["s3cr3t-value"],
        },
        ["s3cr3t-value"],
    )
    assert cleaned == {
        "apiKey": REDACTED,
        "max_tokens": 5,
        "prompt": f"Bearer {REDACTED} and {REDACTED}",
        "style": "Basic watercolours, bearer of light",
        "list": [REDACTED],
    }
