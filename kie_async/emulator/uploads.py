"""The upload host (kieai.redpandaai.co): stream, URL and base64 uploads, and GET of the stored files.

Files go to disk (never held whole in memory for stream and URL uploads) under ``kieai/<uid>/<uploadPath>/``
like the live ``filePath``. The URL upload only fetches from this machine: the emulator must never be a way
to reach the internet from a test run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import mimetypes
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiofiles
import aiohttp
from aiohttp import BodyPartReader, web

from kie_async.emulator.context import CONTEXT_KEY, EmulatorContext
from kie_async.emulator.faults import FaultKind
from kie_async.emulator.wire import (
    POST_FAULT_KEY,
    bearer_key,
    context,
    drop_connection,
    envelope,
    fault_middleware,
    is_loopback_url,
    send_spoiled_body,
)

CHUNK = 256 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?(?P<b64>;base64)?,", re.IGNORECASE)


class UploadError(Exception):
    """An upload refused with an envelope code (400 for bad parameters, like the live host)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _uid(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _check_upload_path(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UploadError(400, "Missing required parameter: uploadPath")
    value = value.strip()
    if value.startswith("/") or value.endswith("/"):
        raise UploadError(400, "uploadPath must not start or end with '/'")
    if not all(_SEGMENT.match(part) and part not in (".", "..") for part in value.split("/")):
        raise UploadError(400, "uploadPath may only contain letters, digits, '.', '_', '-' and '/'")
    return value


def _check_file_name(value: object, fallback_ext: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return f"{secrets.token_hex(8)}{fallback_ext}"
    if not isinstance(value, str):
        raise UploadError(400, "fileName must be a string")
    name = value.strip()
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise UploadError(400, "fileName must be a plain file name")
    return name


def _extension(name: str | None, mime: str | None) -> str:
    if name:
        suffix = PurePosixPath(name).suffix
        if suffix:
            return suffix.lower()
    guessed = mimetypes.guess_extension(mime or "") if mime else None
    return guessed or ".bin"


def _mime(name: str, declared: str | None) -> str:
    guessed, _ = mimetypes.guess_type(name)
    if guessed:
        return guessed
    if declared and declared != "application/octet-stream":
        return declared.split(";")[0].strip()
    return "application/octet-stream"


def _incoming(ctx: EmulatorContext) -> Path:
    return ctx.upload_dir / ".incoming" / secrets.token_hex(8)


async def _finish(
    ctx: EmulatorContext, key: str, temp: Path, upload_path: str, file_name: str, size: int, mime: str
) -> web.Response:
    relative = f"kieai/{_uid(key)}/{upload_path}/{file_name}"
    final = ctx.upload_dir / relative

    def place() -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)  # a repeated fileName overwrites, as documented

    await asyncio.to_thread(place)
    ctx.stats.uploads += 1
    ctx.stats.upload_bytes += size
    data = {
        "fileName": file_name,
        "filePath": relative,
        "downloadUrl": f"{ctx.upload_base_url}/{quote(relative)}",
        "fileSize": size,
        "mimeType": mime,
        "uploadedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "success": True,
    }
    return envelope(ctx, 200, "File uploaded successfully", data, upload=True)


async def _discard(path: Path | None) -> None:
    if path is not None:
        await asyncio.to_thread(path.unlink, True)


Work = Callable[[EmulatorContext, str], Awaitable[web.StreamResponse]]


async def _guarded(request: web.Request, work: Work) -> web.StreamResponse:
    ctx = context(request)
    key = bearer_key(request)
    if key is None:
        return envelope(ctx, 401, "Authentication failed: Invalid API Key", upload=True)
    try:
        return await work(ctx, key)
    except UploadError as exc:
        return envelope(ctx, exc.code, exc.msg, upload=True)


async def _write_stream(ctx: EmulatorContext, part: BodyPartReader | aiohttp.StreamReader, temp: Path) -> int:
    await asyncio.to_thread(temp.parent.mkdir, parents=True, exist_ok=True)
    size = 0
    async with aiofiles.open(temp, "wb") as handle:
        while True:
            chunk = await (part.read_chunk(CHUNK) if isinstance(part, BodyPartReader) else part.read(CHUNK))
            if not chunk:
                break
            size += len(chunk)
            if size > ctx.config.max_upload_bytes:
                raise UploadError(400, f"File exceeds the {ctx.config.max_upload_bytes} byte limit")
            await handle.write(chunk)
    return size


async def stream_upload(request: web.Request) -> web.StreamResponse:
    async def work(ctx: EmulatorContext, key: str) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            raise UploadError(400, "Request must be multipart/form-data")
        reader = await request.multipart()
        fields: dict[str, str] = {}
        temp: Path | None = None
        original: str | None = None
        declared: str | None = None
        size = 0
        try:
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "file" and temp is None:
                    original, declared = part.filename, part.headers.get("Content-Type")
                    temp = _incoming(ctx)
                    size = await _write_stream(ctx, part, temp)
                elif part.name in ("uploadPath", "fileName"):
                    fields[part.name] = (await part.text()).strip()
                else:
                    await part.release()
            if temp is None:
                raise UploadError(400, "Missing required parameter: file")
            upload_path = _check_upload_path(fields.get("uploadPath"))
            name = _check_file_name(fields.get("fileName"), _extension(original, declared))
            response = await _finish(ctx, key, temp, upload_path, name, size, _mime(name, declared))
            temp = None
            return response
        finally:
            await _discard(temp)

    return await _guarded(request, work)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise UploadError(400, "Request body must be JSON") from None
    if not isinstance(body, dict):
        raise UploadError(400, "Request body must be a JSON object")
    return body


async def url_upload(request: web.Request) -> web.StreamResponse:
    async def work(ctx: EmulatorContext, key: str) -> web.StreamResponse:
        body = await _json_body(request)
        file_url = body.get("fileUrl")
        if not isinstance(file_url, str) or not file_url.strip():
            raise UploadError(400, "Missing required parameter: fileUrl")
        upload_path = _check_upload_path(body.get("uploadPath"))
        file_url = file_url.strip()
        if urlsplit(file_url).scheme not in ("http", "https") or not is_loopback_url(file_url):
            raise UploadError(400, "The emulator only fetches fileUrl from this machine (loopback addresses)")
        temp = _incoming(ctx)
        try:
            timeout = aiohttp.ClientTimeout(total=ctx.config.url_fetch_timeout)
            async with ctx.http_client().get(file_url, timeout=timeout) as response:
                if response.status >= 400:
                    raise UploadError(400, f"Failed to download file from URL: HTTP {response.status}")
                declared = response.headers.get("Content-Type")
                size = await _write_stream(ctx, response.content, temp)
            url_name = unquote(PurePosixPath(urlsplit(file_url).path).name) or None
            fallback = _extension(url_name, declared)
            name = _check_file_name(
                body.get("fileName") or (url_name if url_name and _SEGMENT.match(url_name) else None), fallback
            )
            result = await _finish(ctx, key, temp, upload_path, name, size, _mime(name, declared))
        except TimeoutError:
            await _discard(temp)
            raise UploadError(500, "Timed out downloading fileUrl (30 s limit)") from None
        except aiohttp.ClientError as exc:
            await _discard(temp)
            raise UploadError(500, f"Failed to download file from URL: {type(exc).__name__}") from None
        except UploadError:
            await _discard(temp)
            raise
        return result

    return await _guarded(request, work)


def _decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise UploadError(400, "base64Data is not valid base64") from None


async def base64_upload(request: web.Request) -> web.StreamResponse:
    async def work(ctx: EmulatorContext, key: str) -> web.StreamResponse:
        body = await _json_body(request)
        raw = body.get("base64Data")
        if not isinstance(raw, str) or not raw.strip():
            raise UploadError(400, "Missing required parameter: base64Data")
        upload_path = _check_upload_path(body.get("uploadPath"))
        declared: str | None = None
        match = _DATA_URL.match(raw)
        if match is not None:
            if not match["b64"]:
                raise UploadError(400, "base64Data data URL must be base64-encoded")
            declared = match["mime"]
            raw = raw[match.end() :]
        data = await asyncio.to_thread(_decode_base64, raw)
        if len(data) > ctx.config.max_upload_bytes:
            raise UploadError(400, f"File exceeds the {ctx.config.max_upload_bytes} byte limit")
        name = _check_file_name(body.get("fileName"), _extension(None, declared))
        temp = _incoming(ctx)
        await asyncio.to_thread(temp.parent.mkdir, parents=True, exist_ok=True)
        async with aiofiles.open(temp, "wb") as handle:
            await handle.write(data)
        return await _finish(ctx, key, temp, upload_path, name, len(data), _mime(name, declared))

    return await _guarded(request, work)


async def serve_upload(request: web.Request) -> web.StreamResponse:
    """Uploaded files are public on the live temp host, so no auth here either."""
    ctx = context(request)
    relative = request.match_info["tail"]

    def locate() -> Path | None:
        root = (ctx.upload_dir / "kieai").resolve()
        target = (root / relative).resolve()
        return target if target.is_relative_to(root) and target.is_file() else None

    target = await asyncio.to_thread(locate)
    if target is None:
        return web.Response(status=404, text="file not found")
    ctx.stats.files_served += 1
    rule = request.get(POST_FAULT_KEY)
    if rule is not None and rule.kind == FaultKind.RESET_AFTER:
        return drop_connection(request)
    if rule is not None:
        size = (await asyncio.to_thread(target.stat)).st_size
        headers = [("Content-Type", _mime(target.name, None))]
        return await send_spoiled_body(request, 200, headers, _file_chunks(target), size, rule)
    return web.FileResponse(target)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with aiofiles.open(path, "rb") as handle:
        while chunk := await handle.read(CHUNK):
            yield chunk


def build_upload_app(ctx: EmulatorContext) -> web.Application:
    # JSON uploads carry the whole file (base64 is 4/3 larger), so the body limit follows the upload limit.
    app = web.Application(middlewares=[fault_middleware], client_max_size=ctx.config.max_upload_bytes * 4 // 3 + 2**20)
    app[CONTEXT_KEY] = ctx
    app.router.add_post("/api/file-stream-upload", stream_upload, name="file-stream-upload")
    app.router.add_post("/api/file-url-upload", url_upload, name="file-url-upload")
    app.router.add_post("/api/file-base64-upload", base64_upload, name="file-base64-upload")
    app.router.add_get("/kieai/{tail:.+}", serve_upload, name="uploaded-file")
    return app


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
