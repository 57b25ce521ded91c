"""Non-media inputs are refused before anything is uploaded or bought: the content is sniffed, not the name.

Each bad input is checked three ways: ``validate_request`` names it as an impossible input, ``run_pipeline`` /
``run_many`` / the CLI end ``blocked`` with 0 uploads and 0 tasks on the emulator, and the hard check in
``prepare_request_for_submission`` refuses it even when validation skipped the file system.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import pyvips

from kie_async import KieInputError
from kie_async.artifacts import ArtifactSettings
from kie_async.catalogue.request_models import MediaInput, RawUserRequest
from kie_async.catalogue.validate import validate_request
from kie_async.core.media_sniff import check_media, sniff_head
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main as cli_main
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.prepare import prepare_request_for_submission
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)


# ---------------------------------------------------------------- real media and look-alikes


def png_bytes(width: int = 16, height: int = 12) -> bytes:
    data: bytes = pyvips.Image.black(width, height).write_to_buffer(".png")
    return data


def jpeg_bytes() -> bytes:
    data: bytes = (pyvips.Image.black(16, 16) + 90).cast("uchar").write_to_buffer(".jpg")
    return data


def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def mp4_bytes() -> bytes:
    ftyp = box(b"ftyp", b"isom" + bytes(4) + b"isomiso2mp41")
    moov = box(b"moov", box(b"mvhd", bytes(100)))
    return ftyp + moov + box(b"mdat", bytes(64))


def wav_bytes() -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    data = bytes(16000 * 3)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


HTML = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n"


# ---------------------------------------------------------------- the sniffer itself


@pytest.mark.parametrize(
    ("head", "fmt", "ext", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(24), "png", "png", "image"),
        (b"\xff\xd8\xff\xe0" + bytes(28), "jpeg", "jpg", "image"),
        (b"GIF89a" + bytes(26), "gif", "gif", "image"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp", "webp", "image"),
        (b"II*\x00" + bytes(8), "tiff", "tiff", "image"),
        (b"BM" + struct.pack("<IHHII", 70, 0, 0, 54, 40), "bmp", "bmp", "image"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(12), "heic", "heic", "image"),
        (b"\x00\x00\x00\x1cftypavif" + bytes(16), "avif", "avif", "image"),
        (b"\x00\x00\x00\x18ftypisom" + bytes(12), "mp4", "mp4", "video"),
        (b"\x00\x00\x00\x14ftypqt  " + bytes(12), "mov", "mov", "video"),
        (b"\x00\x00\x00\x10moov" + bytes(8), "mov", "mov", "video"),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\x82\x84webm", "webm", "webm", "video"),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\x82\x88matroska", "mkv", "mkv", "video"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "avi", "avi", "video"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav", "wav", "audio"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3", "mp3", "audio"),
        (b"\xff\xfb\x90\x64" + bytes(8), "mp3", "mp3", "audio"),
        (b"OggS\x00\x02" + bytes(8), "ogg", "ogg", "audio"),
        (b"fLaC\x00\x00\x00\x22", "flac", "flac", "audio"),
        (b"\x00\x00\x00\x20ftypM4A " + bytes(12), "m4a", "m4a", "audio"),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc", "aac", "aac", "audio"),
    ],
)
def test_magic_bytes_name_the_format(head: bytes, fmt: str, ext: str, kind: str) -> None:
    sniffed = sniff_head(head)
    assert (sniffed.format, sniffed.extension, sniffed.kind) == (fmt, ext, kind)


@pytest.mark.parametrize(
    ("head", "looks_like"),
    [
        (b"", "empty"),
        (b"hello world", "text"),
        (b"root:x:0:0:root:/root:/bin/bash\n", "text"),
        (HTML, "an HTML page"),
        (b'{"code": 500, "msg": "error"}', "JSON"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "a PDF document"),
        (b"PK\x03\x04\x14\x00", "a ZIP archive"),
        (b"#!/bin/sh\nrm -rf /\n", "a script"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing"),
        (bytes(range(256)), "binary data of an unknown type"),
        (b"BMW is a car maker", "text"),  # "BM" alone is not a bitmap
    ],
)
def test_non_media_is_described(head: bytes, looks_like: str) -> None:
    sniffed = sniff_head(head)
    assert sniffed.format is None and sniffed.kind is None
    assert sniffed.looks_like == looks_like


def test_check_media_reads_headers_of_real_files(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    good.write_bytes(png_bytes())
    assert check_media(good, "image").ok
    assert check_media(jpeg_bytes(), "image").sniffed.extension == "jpg"  # type: ignore[union-attr]
    assert check_media(mp4_bytes(), "video").ok and check_media(wav_bytes(), "audio").ok
    broken = check_media(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "image")
    assert broken.problem is not None and broken.problem.rule == "media_corrupt"
    no_moov = check_media(box(b"ftyp", b"isom" + bytes(4)) + box(b"mdat", bytes(40)), "video")
    assert no_moov.problem is not None and no_moov.problem.rule == "media_corrupt"
    assert "moov" in no_moov.problem.message
    wrong = check_media(png_bytes(), "video")
    assert wrong.problem is not None and wrong.problem.rule == "media_kind"


# ---------------------------------------------------------------- the bad inputs


BadInput = Callable[[Path], RawUserRequest]


def _text_named_png(tmp: Path) -> RawUserRequest:
    path = tmp / "photo.png"
    path.write_text("this is not a picture\n")
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[path])


def _empty_png(tmp: Path) -> RawUserRequest:
    path = tmp / "empty.png"
    path.write_bytes(b"")
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[path])


def _file_url_passwd(tmp: Path) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=["file:///etc/passwd"])


def _hello_world_bytes(tmp: Path) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[b"hello world"])


def _empty_bytes(tmp: Path) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[MediaInput(source=b"", filename="a.png")])


def _directory(tmp: Path) -> RawUserRequest:
    folder = tmp / "folder.png"
    folder.mkdir()
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[folder])


def _html_named_jpg(tmp: Path) -> RawUserRequest:
    path = tmp / "saved-from-browser.jpg"
    path.write_bytes(HTML)
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[path])


def _png_magic_then_garbage(tmp: Path) -> RawUserRequest:
    path = tmp / "truncated.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[path])


def _jpeg_magic_bytes(tmp: Path) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[b"\xff\xd8\xff\xe0" + bytes(60)])


def _pdf_named_webp(tmp: Path) -> RawUserRequest:
    path = tmp / "scan.webp"
    path.write_bytes(b"%PDF-1.7\n" + b"1 0 obj << >> endobj\n" * 10)
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[path])


def _percent_encoded_file_url(tmp: Path) -> RawUserRequest:
    path = tmp / "my notes.png"
    path.write_text("shopping list\n")
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[f"file://{quote(str(path))}"])


def _text_named_mp4(tmp: Path) -> RawUserRequest:
    path = tmp / "clip.mp4"
    path.write_text("not a video at all\n" * 10)
    return RawUserRequest(
        model_key="seedance-2.0", prompt="a dance", videos=[MediaInput(source=path, role="reference")]
    )


def _mp4_without_moov(tmp: Path) -> RawUserRequest:
    path = tmp / "unfinished.mp4"
    path.write_bytes(box(b"ftyp", b"isom" + bytes(4) + b"isom") + box(b"mdat", bytes(200)))
    return RawUserRequest(
        model_key="seedance-2.0", prompt="a dance", videos=[MediaInput(source=path, role="reference")]
    )


def _text_named_mp3(tmp: Path) -> RawUserRequest:
    path = tmp / "song.mp3"
    path.write_text("la la la\n" * 10)
    return RawUserRequest(
        model_key="seedance-2.0", prompt="a dance", audios=[MediaInput(source=path, role="reference")]
    )


def _json_bytes_as_wav(tmp: Path) -> RawUserRequest:
    data = b'{"error": "not found"}'
    return RawUserRequest(
        model_key="seedance-2.0",
        prompt="a dance",
        audios=[MediaInput(source=data, filename="voice.wav", role="reference")],
    )


def _remote_file_url(tmp: Path) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt="edit", images=["file://fileserver/share/photo.png"])


BAD_INPUTS: dict[str, tuple[BadInput, str, str]] = {
    # name: (request builder, validation rule, words the message must contain)
    "text file named .png": (_text_named_png, "not_media", "is not an image (looks like text)"),
    "0-byte .png": (_empty_png, "empty_media", "is empty"),
    "file:///etc/passwd": (_file_url_passwd, "not_media", "/etc/passwd is not an image (looks like text)"),
    'b"hello world"': (_hello_world_bytes, "not_media", "is not an image (looks like text)"),
    'b""': (_empty_bytes, "empty_media", "is empty"),
    "a directory": (_directory, "file_exists", "not a regular file"),
    "HTML page named .jpg": (_html_named_jpg, "not_media", "looks like an HTML page"),
    "PNG magic then garbage": (_png_magic_then_garbage, "media_corrupt", "looks like a PNG image but"),
    "JPEG magic bytes only": (_jpeg_magic_bytes, "media_corrupt", "looks like a JPEG image but"),
    "PDF named .webp": (_pdf_named_webp, "not_media", "looks like a PDF document"),
    "percent-encoded file:// URL to text": (_percent_encoded_file_url, "not_media", "my notes.png is not an image"),
    "text named .mp4": (_text_named_mp4, "not_media", "is not a video (looks like text)"),
    "MP4 without a moov box": (_mp4_without_moov, "media_corrupt", "no 'moov' box"),
    "text named .mp3": (_text_named_mp3, "not_media", "is not an audio file (looks like text)"),
    "JSON bytes named .wav": (_json_bytes_as_wav, "not_media", "is not an audio file (looks like JSON)"),
    "file:// URL on another host": (_remote_file_url, "url_scheme", "file://fileserver/share/photo.png"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_validation_names_the_bad_input_and_the_fix(name: str, tmp_path: Path) -> None:
    build, rule, words = BAD_INPUTS[name]
    result = validate_request(build(tmp_path))
    assert result.state == "invalid", (name, result.summary())
    problem = result.impossible_inputs[0]
    assert problem.rule == rule, (name, problem)
    assert problem.field.endswith("[0]"), problem  # names the input, e.g. images[0]
    assert problem.message.startswith(problem.field) and words in problem.message, problem.message
    assert problem.fix


def _unreadable_file(tmp: Path) -> tuple[Path, Callable[[], None]]:
    """A regular file whose read fails: chmod 000, or for root (who reads anything) the kernel's /proc/self/mem."""
    if os.geteuid() != 0:
        path = tmp / "secret.png"
        path.write_bytes(png_bytes())
        path.chmod(0)
        return path, lambda: path.chmod(0o600)
    return Path("/proc/self/mem"), lambda: None


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux (posix permissions or /proc)")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path, restore = _unreadable_file(tmp_path)
    try:
        result = validate_request(RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[path]))
    finally:
        restore()
    assert result.state == "invalid"
    assert result.impossible_inputs[0].rule == "file_unreadable"
    assert result.impossible_inputs[0].message.startswith(f"images[0]: {path} cannot be read (")


def test_real_media_still_pass(tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    image.write_bytes(png_bytes())
    video = tmp_path / "clip.mov"  # the name says MOV, the content is MP4: content decides, both accepted
    video.write_bytes(mp4_bytes())
    audio = tmp_path / "voice.wav"
    audio.write_bytes(wav_bytes())
    result = validate_request(
        RawUserRequest(
            model_key="seedance-2.0",
            prompt="a dance",
            images=[MediaInput(source=image, role="reference"), MediaInput(source=jpeg_bytes(), role="reference")],
            videos=[MediaInput(source=video, role="reference", duration_seconds=4)],
            audios=[MediaInput(source=audio, role="reference", duration_seconds=3)],
        )
    )
    assert result.is_submittable, result.summary()


def test_a_jpeg_named_png_is_fine_but_a_file_url_is_a_path(tmp_path: Path) -> None:
    path = tmp_path / "renamed.png"
    path.write_bytes(jpeg_bytes())
    assert validate_request(
        RawUserRequest(model_key="nano-banana-2", prompt="x", images=[f"file://{path}"])
    ).is_submittable


# ---------------------------------------------------------------- nothing is uploaded or bought


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1, create_rate_limit=400)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as session:
        yield session


def _nothing_sent(emulator: KieEmulator) -> None:
    assert emulator.stats.uploads == 0 and emulator.stats.tasks_created == 0
    assert emulator.stats.requests.get("createTask", 0) == 0


@pytest.mark.parametrize("name", list(BAD_INPUTS))
async def test_run_pipeline_blocks_every_bad_input(
    name: str, kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    build, _, words = BAD_INPUTS[name]
    options = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path / "out"))
    result = await run_pipeline(build(tmp_path), kie, options=options)
    assert result.status == "blocked" and result.spent_nothing, (name, result.status, result.error)
    assert words in (result.error or "")
    _nothing_sent(emulator)


async def test_run_many_blocks_bad_inputs_and_runs_the_good_one(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes())
    requests = [BAD_INPUTS[n][0](tmp_path) for n in ("text file named .png", "0-byte .png", 'b"hello world"')]
    requests.append(RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[good]))
    options = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path / "out"))
    results = await run_many(requests, kie, concurrency=4, options=options, journal_path=tmp_path / "j.jsonl")
    assert [r.status for r in results] == ["blocked", "blocked", "blocked", "succeeded"], [r.error for r in results]
    assert emulator.stats.uploads == 1 and emulator.stats.tasks_created == 1


async def test_prepare_refuses_non_media_even_when_validation_skipped_files(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    """Defence in depth: validation without file checks (or a file swapped after validation) still uploads nothing."""
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes())
    swapped = tmp_path / "swapped.png"
    swapped.write_bytes(png_bytes())
    request = RawUserRequest(model_key="nano-banana-pro", prompt="edit", images=[good, swapped])
    validation = validate_request(request)
    assert validation.is_submittable
    swapped.write_text("replaced by text after validation\n")
    with pytest.raises(KieInputError, match=r"images\[1\]: .*swapped.png is not an image \(looks like text\)"):
        await prepare_request_for_submission(validation, kie)
    blind = validate_request(
        RawUserRequest(model_key="nano-banana-2", prompt="edit", images=[b"hello world"]), check_files=False
    )
    assert not blind.is_submittable  # bytes need no file system: still sniffed
    for media in (tmp_path / "missing.png", tmp_path):
        skipped = validate_request(
            RawUserRequest(model_key="nano-banana-2", prompt="x", images=[media]), check_files=False
        )
        assert skipped.is_submittable
        with pytest.raises(KieInputError, match=r"images\[0\]"):
            await prepare_request_for_submission(skipped, kie)
    await asyncio.sleep(0.05)  # any stray upload would have reached the emulator by now
    _nothing_sent(emulator)


# ---------------------------------------------------------------- the CLI


def _cli_env(emulator: KieEmulator) -> dict[str, str]:
    return {
        **os.environ,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_API_KEY": emulator.api_key,
    }


async def _cli(emulator: KieEmulator, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kie_async",
        *args,
        env=_cli_env(emulator),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_run_and_run_batch_refuse_non_media(emulator: KieEmulator, tmp_path: Path) -> None:
    text = tmp_path / "x.png"
    text.write_text("hello\n")
    code, out, err = await _cli(
        emulator,
        "run",
        "--model",
        "nano-banana-2",
        "--prompt",
        "edit",
        "--image",
        str(text),
        "--out",
        str(tmp_path / "out"),
        "--json",
    )
    assert code == 1 and "Traceback" not in err
    summary = json.loads(out)
    assert summary["status"] == "blocked"
    assert f"images[0]: {text} is not an image (looks like text)" in summary["error"]

    batch = tmp_path / "batch.jsonl"
    lines = [
        {"model_key": "nano-banana-2", "prompt": "edit", "images": ["file:///etc/passwd"]},
        {"model_key": "nano-banana-2", "prompt": "edit", "images": [str(tmp_path / "empty.png")]},
    ]
    (tmp_path / "empty.png").write_bytes(b"")
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, err = await _cli(emulator, "run-batch", str(batch), "--out", str(tmp_path / "out"), "--json")
    assert code == 1 and "Traceback" not in err
    report = json.loads(out)
    assert [r["status"] for r in report["results"]] == ["blocked", "blocked"]
    assert "/etc/passwd is not an image" in report["results"][0]["error"]
    assert "is empty" in report["results"][1]["error"]
    _nothing_sent(emulator)


def test_cli_validate_shows_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "x.png"
    text.write_text("hello\n")
    code = cli_main(["validate", "--model", "nano-banana-2", "--prompt", "edit", "--image", str(text), "--json"])
    assert code == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "invalid"
    assert shown["impossible_inputs"][0]["rule"] == "not_media"
    assert shown["impossible_inputs"][0]["message"] == f"images[0]: {text} is not an image (looks like text)"
