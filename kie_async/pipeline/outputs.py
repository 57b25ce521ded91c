"""Readable outputs: a generated file you can stream, read or save, without a temp file in between.

A web backend that hands a generated image to its own client should not have to write it to disk first.
:class:`FileOutput` opens the file host's answer once per read and gives the bytes as they arrive
(``aiter_bytes``), all at once (``aread``, with an optional size cap), or saves them atomically (``save``,
which is :meth:`KieSession.download`). Everything goes through the session: one pool, its download slots,
its error mapping and its retries.

Two rules from the download path carry over to streaming. Opening is retried (reading a file spends no
credits) until the first bytes have been checked; once a byte was handed to the caller nothing is retried,
because the caller may already have sent it on. And the first bytes are sniffed before any is handed over:
when the output should be an image and the host answers 200 with an HTML error page, the caller gets a
:class:`KieDownloadContentError` instead of streaming that page to its own client as ``image/png``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp

from kie_async.client import BaseSession
from kie_async.core.errors import (
    KieConnectionError,
    KieDownloadContentError,
    KieDownloadError,
    KieInputError,
    KieTimeoutError,
    error_class_for_code,
)
from kie_async.core.media_sniff import HEAD_BYTES, MediaKind, SniffedMedia, sniff_head
from kie_async.wire.api_models import DownloadResult
from kie_async.wire.download import check_download_url
from kie_async.wire.retry import parse_retry_after

CHUNK_SIZE = 64 * 1024
"""What one ``aiter_bytes`` step hands over: the socket's own granularity, so a proxy adds no latency."""


def _shown(url: str) -> str:
    """The URL for messages and reprs: scheme, host and path (signed links carry secrets in the query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


_MID_STREAM_HINT = "the bytes already handed over are incomplete (not retried mid-stream); read the output again"


class OutputStream:
    """An opened output: its type and size are known, its first bytes were checked, the body is still to read.

    Use it as an async context manager (or call :meth:`aclose`), or iterate :meth:`aiter_bytes` to the end,
    which closes it. ``media_type`` is what the content is (sniffed), not what the host claims.
    """

    def __init__(
        self,
        session: BaseSession,
        stack: contextlib.AsyncExitStack,
        response: aiohttp.ClientResponse,
        head: bytes,
        sniffed: SniffedMedia,
        name: str,
    ) -> None:
        self._session = session
        self._stack = stack
        self._response = response
        self._head = head
        self._name = name
        self.sniffed = sniffed
        self.content_length: int | None = response.content_length
        self.bytes_read = 0
        self._started = False

    @property
    def media_type(self) -> str:
        """The sniffed MIME type, else the host's ``Content-Type``, else ``application/octet-stream``."""
        return self.sniffed.mime_type or self._response.headers.get("Content-Type") or "application/octet-stream"

    def __repr__(self) -> str:
        return f"OutputStream({self._name}, {self.media_type}, length={self.content_length})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Give the connection and the download slot back (idempotent)."""
        await self._stack.aclose()

    async def aiter_bytes(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The body, chunk by chunk, exactly once; closes the stream at the end, on error and on ``aclose()``.

        A body that ends short of its ``Content-Length`` raises :class:`KieDownloadError` after the last
        chunk (the caller has sent the rest on; it must not treat the file as whole).
        """
        if self._started:
            raise KieInputError(f"{self._name} was already read", hint="open the output again for a second read")
        self._started = True
        try:
            _check_chunk_size(chunk_size)
            if self._head:
                self.bytes_read += len(self._head)
                yield self._head
            while True:
                chunk = await self._read(chunk_size)
                if not chunk:
                    break
                self.bytes_read += len(chunk)
                self._session.stats.bytes_downloaded += len(chunk)
                yield chunk
            if self.content_length is not None and self.bytes_read != self.content_length:
                raise KieDownloadError(
                    f"{self._name}: got {self.bytes_read} bytes, the host announced {self.content_length}",
                    hint=_MID_STREAM_HINT,
                )
        finally:
            await self.aclose()

    async def _read(self, size: int) -> bytes:
        hint = _MID_STREAM_HINT if self.bytes_read else None
        try:
            return await self._response.content.read(size)
        except aiohttp.ClientPayloadError as exc:
            raise KieConnectionError(f"{self._name}: body cut short", hint=hint) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise KieConnectionError(f"{self._name}: connection dropped ({type(exc).__name__})", hint=hint) from exc
        except TimeoutError as exc:
            raise KieTimeoutError(f"{self._name}: the file host stopped sending", hint=hint) from exc


class FileOutput:
    """One generated file (a URL on Kie.ai's file host) that can be streamed, read or saved.

    ``kind`` ("image", "video", "audio"), when known, is checked against the first bytes of every read.
    Built by :meth:`TaskHandle.outputs`, :attr:`TaskOutcome.outputs` or :meth:`KieSession.output`.
    """

    def __init__(
        self,
        session: BaseSession,
        url: str,
        *,
        kind: MediaKind | None = None,
        task_id: str | None = None,
        index: int = 0,
    ) -> None:
        check_download_url(url)
        self._session = session
        self.url = url
        self.kind: MediaKind | None = kind
        self.task_id = task_id
        self.index = index

    def __repr__(self) -> str:
        task = f"task={self.task_id!r}, " if self.task_id else ""
        return f"FileOutput({task}index={self.index}, kind={self.kind!r}, url={_shown(self.url)!r})"

    @property
    def name(self) -> str:
        """For messages: the task and index, else the URL's last path segment."""
        if self.task_id:
            return f"output {self.index} of task {self.task_id}"
        return Path(urlsplit(self.url).path).name or "output"

    async def open(self, *, timeout: float | None = None, via_download_url: bool = False) -> OutputStream:
        """Open the file host's answer and check its first bytes; retried until then, never after.

        ``via_download_url`` first asks Kie.ai for a fresh 20-minute link (for an older task whose direct URL
        stopped answering). ``timeout`` bounds the whole read (default ``KieSettings.download_timeout``).
        """
        session = self._session
        source = await session.get_download_url(self.url) if via_download_url else self.url
        check_download_url(source)
        client_timeout = aiohttp.ClientTimeout(
            total=timeout or session.settings.download_timeout,
            sock_connect=session.settings.connect_timeout,
            sock_read=session.settings.request_timeout,
        )

        async def attempt() -> OutputStream:
            stack = contextlib.AsyncExitStack()
            try:
                await stack.enter_async_context(session._download_slots)
                response = await stack.enter_async_context(
                    session._send("GET", source, endpoint="download", timeout=client_timeout)
                )
                if response.status >= 400:
                    raise error_class_for_code(response.status)(
                        f"file host answered HTTP {response.status} for {_shown(source)}",
                        code=response.status,
                        http_status=response.status,
                        endpoint="download",
                        retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    )
                stream = OutputStream(session, stack, response, b"", sniff_head(b""), self.name)
                head = await _read_head(stream)
                sniffed = sniff_head(head)
                self._check_kind(sniffed, response)
                stream._head, stream.sniffed = head, sniffed
                session.stats.bytes_downloaded += len(head)
                return stream
            except BaseException:
                await stack.aclose()
                raise

        return await session._with_retries(attempt, idempotent=True, what="download")

    def _check_kind(self, sniffed: SniffedMedia, response: aiohttp.ClientResponse) -> None:
        if self.kind is None or self.kind in sniffed.kinds:
            return
        said = response.headers.get("Content-Type")
        raise KieDownloadContentError(
            f"{self.name}: the file host answered HTTP {response.status}"
            + (f" ({said})" if said else "")
            + f", but the body is not {_ARTICLE[self.kind]} (looks like {sniffed.looks_like})"
        )

    async def aiter_bytes(
        self, chunk_size: int = CHUNK_SIZE, *, timeout: float | None = None, via_download_url: bool = False
    ) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive, for a ``StreamingResponse`` or a ``web.StreamResponse``.

        The first chunk comes only after the content was checked (see the module docstring).
        """
        _check_chunk_size(chunk_size)
        stream = await self.open(timeout=timeout, via_download_url=via_download_url)
        async for chunk in stream.aiter_bytes(chunk_size):
            yield chunk

    async def aread(
        self, *, max_bytes: int | None = None, timeout: float | None = None, via_download_url: bool = False
    ) -> bytes:
        """The whole file in memory. ``max_bytes`` refuses a larger file (announced or actual) with nothing kept."""
        if max_bytes is not None and max_bytes < 0:
            raise KieInputError(f"max_bytes must be >= 0, got {max_bytes}")
        async with await self.open(timeout=timeout, via_download_url=via_download_url) as stream:
            announced = stream.content_length
            if max_bytes is not None and announced is not None and announced > max_bytes:
                raise _too_big(self.name, announced, max_bytes)
            body = bytearray()
            async for chunk in stream.aiter_bytes():
                body += chunk
                if max_bytes is not None and len(body) > max_bytes:
                    raise _too_big(self.name, len(body), max_bytes)
            return bytes(body)

    async def save(
        self,
        dest: str | Path,
        *,
        name_from_content: bool = False,
        timeout: float | None = None,
        via_download_url: bool = False,
    ) -> DownloadResult:
        """Save atomically to ``dest`` (temp file, size and content checks, rename): :meth:`KieSession.download`."""
        return await self._session.download(
            self.url,
            dest,
            via_download_url=via_download_url,
            timeout=timeout,
            expect_kind=self.kind,
            name_from_content=name_from_content,
        )


_ARTICLE: dict[MediaKind, str] = {"image": "an image", "video": "a video", "audio": "an audio file"}


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise KieInputError(f"chunk_size must be a whole number of bytes >= 1, got {chunk_size!r}")


def _too_big(name: str, size: int, limit: int) -> KieDownloadError:
    error = KieDownloadError(
        f"{name} is {size} bytes, over max_bytes={limit}", hint="raise max_bytes, or stream it with aiter_bytes()"
    )
    error.retryable = False
    return error


async def _read_head(stream: OutputStream) -> bytes:
    """Up to :data:`HEAD_BYTES` from the start of the body (less only when the body is shorter)."""
    head = bytearray()
    while len(head) < HEAD_BYTES:
        chunk = await stream._read(HEAD_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return bytes(head)
