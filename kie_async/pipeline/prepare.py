"""Upload-first preparation: every local input becomes a hosted URL before a payload is built.

Kie.ai models take URLs, not file bodies. Local paths and in-memory bytes are uploaded concurrently
(bounded by the session), identical content is uploaded once per session (keyed by sha256, hashed in a
worker thread), and remote URLs pass through unless asked to be re-hosted (useful for links that expire
before Kie.ai fetches them).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Literal

from kie_async.artifacts.media import sha256_file
from kie_async.catalogue.payload import media_needing_upload, with_hosted_media
from kie_async.catalogue.request_models import NormalizedMedia, ValidationResult
from kie_async.catalogue.validate import media_subject
from kie_async.client import BaseSession
from kie_async.core.errors import KieInputError
from kie_async.core.media_sniff import MediaCheck, check_media, input_fix
from kie_async.core.threads import run_file_io
from kie_async.pipeline.prepared import MediaUpload, PreparedRequest

__all__ = ["MediaUpload", "PreparedRequest", "prepare_request_for_submission"]


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _host_one(session: BaseSession, media: NormalizedMedia) -> MediaUpload:
    if media.source_type == "bytes":
        if media.data is None:
            raise KieInputError(f"{media.id}: bytes input has no data")
        data = media.data
        digest = await asyncio.to_thread(_hash_bytes, data) if len(data) > 65536 else _hash_bytes(data)
        name = media.filename or f"{media.id.replace('[', '_').replace(']', '')}.{media.extension or 'bin'}"
        hosted, reused = await session.upload_once(digest, lambda: session.upload_bytes(data, name))
        action: Literal["uploaded", "reused"] = "reused" if reused else "uploaded"
        return MediaUpload(
            media_id=media.id, source="bytes", sha256=digest, bytes=len(data), url=hosted.download_url, action=action
        )
    if media.source_type == "local_path" and media.value:
        path = Path(media.value)
        try:
            digest, size = await run_file_io(sha256_file, path)
        except OSError as exc:
            raise KieInputError(f"{media.id}: cannot read {path}: {exc.strerror}", hint="check the path") from exc
        hosted, reused = await session.upload_once(digest, lambda: session.upload_file(path))
        action = "reused" if reused else "uploaded"
        return MediaUpload(
            media_id=media.id, source=str(path), sha256=digest, bytes=size, url=hosted.download_url, action=action
        )
    raise KieInputError(f"{media.id}: nothing to upload for source type {media.source_type}")


def _check_content(media: NormalizedMedia) -> MediaCheck:
    if media.source_type == "bytes":
        return check_media(media.data if media.data is not None else b"", media.kind)
    return check_media(Path(media.value or ""), media.kind)


async def _refuse_non_media(local: list[NormalizedMedia]) -> None:
    """The last look before bytes leave the machine: validation may have skipped files, or a file changed since."""
    checks = await asyncio.gather(*(asyncio.to_thread(_check_content, m) for m in local))
    failed = [(m, c.problem) for m, c in zip(local, checks, strict=True) if c.problem is not None]
    if failed:
        media, first = failed[0]
        raise KieInputError(
            "; ".join(f"{media_subject(m)} {p.message}" for m, p in failed) + "; nothing was uploaded",
            hint=input_fix(first.rule, media.kind),
        )


async def _rehost(session: BaseSession, media: NormalizedMedia) -> MediaUpload:
    assert media.value is not None
    url = media.value
    hosted, _ = await session.upload_once(f"url:{url}", lambda: session.upload_url(url))
    return MediaUpload(media_id=media.id, source=url, url=hosted.download_url, action="rehosted")


async def prepare_request_for_submission(
    validation: ValidationResult,
    session: BaseSession,
    *,
    rehost_urls: bool = False,
) -> PreparedRequest:
    """Upload every local/bytes input (and optionally re-host remote URLs); return the hosted request.

    Limits (kinds, counts, sizes) were checked by ``validate_request`` before anything is sent here, so an
    oversize or wrong-kind file fails before a byte is uploaded. The content of every local file and bytes input
    is sniffed once more (in worker threads) before the first upload starts, so a non-media input raises
    :class:`KieInputError` with nothing sent. Cancelling this cancels the uploads.
    """
    if not validation.is_submittable:
        raise KieInputError(
            f"{validation.model_key} is {validation.state}; not uploading anything",
            hint=validation.summary(),
        )
    normalized = validation.normalized
    local = media_needing_upload(normalized)
    remote = [m for m in normalized.media if m.source_type == "url" and m.value] if rehost_urls else []
    await _refuse_non_media(local)
    jobs = [_host_one(session, m) for m in local] + [_rehost(session, m) for m in remote]
    uploads: list[MediaUpload] = list(await asyncio.gather(*jobs)) if jobs else []
    passed = {u.media_id for u in uploads}
    uploads += [
        MediaUpload(media_id=m.id, source=m.value or "", url=m.value or "", action="passed_through")
        for m in normalized.media
        if m.is_hosted and m.id not in passed
    ]
    hosted = with_hosted_media(normalized, {u.media_id: u.url for u in uploads if u.action != "passed_through"})
    return PreparedRequest(validation=validation.model_copy(update={"normalized": hosted}), uploads=uploads)
