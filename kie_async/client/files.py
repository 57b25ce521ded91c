"""Files: downloading outputs and uploading inputs, over the session's pool and retry policy.

Downloads stream to a temp file and rename (see :mod:`kie_async.wire.download`); uploads pick Kie.ai's
endpoint by source (stream for a file, base64 JSON for small bytes, URL for a remote file). Both are retried
from scratch, since neither spends credits, and both are bounded by the loop's transfer slots. Identical
content is uploaded once per session and its views (``upload_once``), or once per account with a shared
coordinator.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import mimetypes
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import aiofiles.os
import aiohttp

from kie_async.client.connection import Connection, SessionStats
from kie_async.client.options import SessionOptions
from kie_async.client.request_path import RequestPath
from kie_async.core import telemetry
from kie_async.core.errors import (
    KieAPIStatusError,
    KieConnectionError,
    KieInputError,
    KieTimeoutError,
    error_class_for_code,
)
from kie_async.core.evidence import error_body
from kie_async.core.limits import check_timeout
from kie_async.core.media_sniff import MediaKind
from kie_async.wire.api_models import DownloadResult, JSONValue, UploadedFile
from kie_async.wire.download import check_download_url, output_cap, stream_response_to_file
from kie_async.wire.retry import parse_retry_after

BASE64_UPLOAD_LIMIT = 10 * 1024 * 1024
"""Kie.ai recommends base64 uploads up to 10 MB and the stream endpoint above that."""

BodyFactory = Callable[[], Awaitable[tuple[Any, Any]]]
"""Builds one attempt's ``(json_body, form)``; a form may carry ``_kie_close`` to release its file."""


@dataclasses.dataclass
class UploadState:
    """Shared by a session and its views: uploads in flight or done, by content key, and who waits on each."""

    cache: dict[str, asyncio.Future[UploadedFile]] = dataclasses.field(default_factory=dict)
    waiters: dict[str, int] = dataclasses.field(default_factory=dict)
    shared: set[str] = dataclasses.field(default_factory=set)


class Files:
    """Downloads and uploads for one session (or view): its own timeouts, the shared upload cache."""

    def __init__(
        self,
        options: SessionOptions,
        requests: RequestPath,
        connection: Connection,
        stats: SessionStats,
        state: UploadState,
        download_link: Callable[[str], Awaitable[str]],
    ) -> None:
        """``download_link`` is the session's ``get_download_url`` (a subclass or a patched session's own)."""
        self._options = options
        self._download_link = download_link
        self._requests = requests
        self._connection = connection
        self._stats = stats
        self._state = state

    # -- downloads -------------------------------------------------------------------------------------------

    async def get_download_url(self, url: str, *, timeout: float | None, task_id: str | None = None) -> str:
        """A direct link for ``url``; with the ``task_id`` of a task bought on an API that has its own
        download-url endpoint (4o Image), that endpoint is asked, with the task id, as its page says."""
        check_timeout("timeout", timeout)
        api = self._requests.known_transport(task_id) if task_id else None
        own = api.download_url if api is not None else None
        path = own.path if own is not None else self._options.settings.paths.download_url
        body = own.body(task_id, url) if own is not None and task_id else {"url": url}
        data = await self._requests.api(
            "POST",
            self._requests.url(path),
            endpoint="download-url",
            idempotent=True,
            json_body=body,
            timeout=timeout,
            limiter=self._requests.read_limit(),
        )
        if not isinstance(data, str) or not data:
            raise KieAPIStatusError(f"download-url returned no URL: {data!r}", code=200, endpoint="download-url")
        return data

    async def download(
        self,
        url: str,
        dest: str | Path,
        *,
        via_download_url: bool,
        timeout: float | None,
        expect_kind: MediaKind | None,
        name_from_content: bool,
    ) -> DownloadResult:
        """Stream ``url`` to ``dest`` atomically, retried from scratch (see ``KieSession.download``)."""
        check_timeout("timeout", timeout)
        target = Path(dest)
        check_download_url(url)
        source = await self._download_link(url) if via_download_url else url
        check_download_url(source)
        settings = self._options.settings
        client_timeout = aiohttp.ClientTimeout(
            total=timeout or settings.download_timeout,
            sock_connect=settings.connect_timeout,
            sock_read=settings.request_timeout,
        )

        async def attempt() -> DownloadResult:
            async with (
                self._connection.download_slots(),
                self._requests.send("GET", source, endpoint="download", timeout=client_timeout) as response,
            ):
                if response.status >= 400:
                    raise error_class_for_code(response.status)(
                        f"file host answered HTTP {response.status} for {_redact_url(source)}",
                        code=response.status,
                        http_status=response.status,
                        endpoint="download",
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                        **self._requests.evidence(response, await error_body(response)),
                    )
                return await self._save(url, response, target, expect_kind, name_from_content)

        return await self._requests.with_retries(attempt, idempotent=True, what="download")

    async def _save(
        self,
        url: str,
        response: aiohttp.ClientResponse,
        target: Path,
        expect_kind: MediaKind | None,
        name_from_content: bool,
    ) -> DownloadResult:
        """Stream one answered download to ``target``; a cut connection is a retryable typed error."""
        started = time.perf_counter()
        try:
            saved = await stream_response_to_file(
                response,
                target,
                expect_kind=expect_kind,
                name_from_content=name_from_content,
                max_bytes=output_cap(expect_kind, self._options.settings.max_output_bytes),
            )
        except aiohttp.ClientPayloadError as exc:
            raise KieConnectionError(f"download of {target.name} was cut short") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise KieConnectionError(f"download of {target.name}: connection dropped") from exc
        except TimeoutError as exc:
            raise KieTimeoutError(f"download of {target.name} timed out") from exc
        self._stats.bytes_downloaded += saved.bytes_written
        kind = {"kie.output.kind": expect_kind}
        telemetry.record("kie.download.size", saved.bytes_written, kind)
        telemetry.record("kie.download.duration", time.perf_counter() - started, kind)
        return DownloadResult(
            url=url,
            destination_path=str(saved.path),
            bytes_written=saved.bytes_written,
            content_type=response.headers.get("Content-Type"),
            format=saved.sniffed.format,
            extension=saved.sniffed.extension,
            sha256=saved.sha256,
        )

    # -- uploads ---------------------------------------------------------------------------------------------

    async def _upload(self, path: str, body_factory: BodyFactory, *, what: str) -> UploadedFile:
        """Shared upload path: bounded concurrency, retries (uploads spend no credits), typed result."""
        client_timeout = self._requests.timeout(None, self._options.settings.upload_timeout)

        async def attempt() -> UploadedFile:
            json_body, form = await body_factory()
            try:
                async with (
                    self._connection.upload_slots(),
                    self._requests.send(
                        "POST",
                        self._requests.upload_url(path),
                        endpoint=what,
                        timeout=client_timeout,
                        json_body=json_body,
                        data=form,
                    ) as response,
                ):
                    envelope = await self._requests.read_envelope(response, what)
            finally:
                closer = getattr(form, "_kie_close", None)
                if closer is not None:
                    await asyncio.to_thread(closer)
            if not isinstance(envelope.data, dict):
                raise KieAPIStatusError(f"{what} returned no file data", code=200, endpoint=what)
            return UploadedFile.model_validate(envelope.data)

        return await self._requests.with_retries(attempt, idempotent=True, what=what)

    async def upload_once(
        self, content_key: str, upload: Callable[[], Awaitable[UploadedFile]]
    ) -> tuple[UploadedFile, bool]:
        """One upload per content key; see ``KieSession.upload_once``."""
        state = self._state
        task = state.cache.get(content_key)
        started = task is None or (task.done() and (task.cancelled() or task.exception() is not None))
        if task is None or started:
            task = asyncio.ensure_future(self._upload_or_reuse(content_key, upload))
            state.cache[content_key] = task
            state.waiters[content_key] = 0
        state.waiters[content_key] = state.waiters.get(content_key, 0) + 1
        try:
            hosted = await asyncio.shield(task)
            return hosted, not started or content_key in state.shared
        finally:
            state.waiters[content_key] -= 1
            if state.waiters[content_key] == 0 and not task.done():
                task.cancel()
                state.cache.pop(content_key, None)

    async def _upload_or_reuse(self, content_key: str, upload: Callable[[], Awaitable[UploadedFile]]) -> UploadedFile:
        coordinator = self._connection.coordinator
        if coordinator.kind != "local":
            found = await coordinator.find_upload(content_key)
            if found is not None:
                self._state.shared.add(content_key)
                return found
        uploaded = await upload()
        await self._connection.coordinator.remember_upload(content_key, uploaded)
        return uploaded

    async def upload_file(self, path: str | Path, *, upload_path: str | None, file_name: str | None) -> UploadedFile:
        source = Path(path)
        if not await aiofiles.os.path.isfile(source):
            raise KieInputError(f"upload source {str(source)!r} is not a file", hint="check the path")
        size = await aiofiles.os.path.getsize(source)
        name = file_name or _unique_name(source.name)
        content_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        settings = self._options.settings

        async def body() -> tuple[Any, Any]:
            fh: BinaryIO = await asyncio.to_thread(source.open, "rb")
            form = aiohttp.FormData()
            form.add_field("file", fh, filename=name, content_type=content_type)
            form.add_field("uploadPath", upload_path or settings.upload_path)
            form.add_field("fileName", name)
            form._kie_close = fh.close  # type: ignore[attr-defined]
            return None, form

        result = await self._upload(settings.paths.upload_stream, body, what="file-stream-upload")
        self._stats.bytes_uploaded += size
        return result

    async def upload_bytes(
        self, data: bytes, filename: str, *, upload_path: str | None, content_type: str | None
    ) -> UploadedFile:
        if not data:
            raise KieInputError("upload_bytes got no data", hint="pass non-empty bytes")
        name = _unique_name(filename)
        settings = self._options.settings
        target = upload_path or settings.upload_path
        mime = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if len(data) <= BASE64_UPLOAD_LIMIT:
            encoded = await asyncio.to_thread(base64.b64encode, data) if len(data) > 65536 else base64.b64encode(data)

            async def b64_body() -> tuple[Any, Any]:
                return {
                    "base64Data": f"data:{mime};base64,{encoded.decode('ascii')}",
                    "uploadPath": target,
                    "fileName": name,
                }, None

            result = await self._upload(settings.paths.upload_base64, b64_body, what="file-base64-upload")
        else:

            async def stream_body() -> tuple[Any, Any]:
                form = aiohttp.FormData()
                form.add_field("file", data, filename=name, content_type=mime)
                form.add_field("uploadPath", target)
                form.add_field("fileName", name)
                return None, form

            result = await self._upload(settings.paths.upload_stream, stream_body, what="file-stream-upload")
        self._stats.bytes_uploaded += len(data)
        return result

    async def upload_url(self, url: str, *, upload_path: str | None, file_name: str | None) -> UploadedFile:
        if not url.startswith(("http://", "https://")):
            raise KieInputError(f"upload_url needs an http(s) URL, got {url!r}")
        settings = self._options.settings
        body_json: dict[str, JSONValue] = {"fileUrl": url, "uploadPath": upload_path or settings.upload_path}
        if file_name:
            body_json["fileName"] = file_name

        async def body() -> tuple[Any, Any]:
            return body_json, None

        return await self._upload(settings.paths.upload_url, body, what="file-url-upload")

    # -- closing ---------------------------------------------------------------------------------------------

    async def cancel_uploads(self) -> None:
        """Cancel the uploads still in flight and wait for them to stop (closing in the loop that opened)."""
        pending = [task for task in self._state.cache.values() if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def forget_uploads(self) -> None:
        """A closed session keeps no hosted files: a reopened one uploads afresh."""
        self._state.cache.clear()
        self._state.waiters.clear()


def _unique_name(filename: str) -> str:
    """Kie.ai overwrites uploads with the same name, so prefix a short random id."""
    return f"{uuid.uuid4().hex[:10]}-{Path(filename).name or 'upload.bin'}"


def _redact_url(url: str) -> str:
    """Drop query strings (signed links) from URLs that go into messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
