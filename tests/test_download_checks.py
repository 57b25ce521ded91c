"""A 200 answer that is not the output is never saved as the output, and hopeless URLs are not retried.

Against the emulator's ``wrong_body`` fault (an HTML page or an empty body with status 200): a one-off is
retried and the real file lands; a persistent one ends in ``KieDownloadContentError`` with no file left. The
saved name's extension comes from the content, never from the server's URL.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pyvips

from kie_async import KieSession, PollSettings, RawUserRequest, RetrySettings
from kie_async.artifacts import ArtifactSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieConnectionError, KieDownloadContentError, KieDownloadError, KieDownloadURLError
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.wire.retry import is_retryable

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=20.0)
FAST_RETRY = RetrySettings(max_retries=3, initial_backoff=0.01, max_backoff=0.05)
PNG_IN = {"prompt": "a lighthouse", "aspect_ratio": "1:1", "resolution": "1K", "output_format": "png"}
JPEG_IN = {**PNG_IN, "output_format": "jpg"}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1, create_rate_limit=400)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY)) as session:
        yield session


async def finished_output(kie: KieSession, params: dict[str, str] | None = None) -> str:
    created = await kie.create_task(model="nano-banana-2", input=params or PNG_IN)
    record = await kie.wait_for_task(created.task_id)
    return record.output_urls[0]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("body", ["html", "empty"])
async def test_one_wrong_body_is_retried_then_the_real_file_lands(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path, body: str
) -> None:
    url = await finished_output(kie)
    emulator.faults.add("files", "wrong_body", count=1, wrong_body=body)
    result = await kie.download(url, tmp_path / "out.png", expect_kind="image")
    assert emulator.stats.faults_fired["wrong_body"] == 1 and kie.stats.retries == 1
    data = (tmp_path / "out.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) == result.bytes_written
    assert (result.format, result.extension) == ("png", "png")
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert files_in(tmp_path) == ["out.png"]


@pytest.mark.parametrize(("body", "words"), [("html", "looks like an HTML page"), ("empty", "is empty")])
async def test_persistent_wrong_body_fails_and_leaves_nothing(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path, body: str, words: str
) -> None:
    url = await finished_output(kie)
    emulator.faults.add("files", "wrong_body", count=None, wrong_body=body)
    with pytest.raises(KieDownloadContentError, match=words) as caught:
        await kie.download(url, tmp_path / "out.png", expect_kind="image")
    assert isinstance(caught.value, KieDownloadError)
    assert kie.stats.retries == FAST_RETRY.max_retries  # content errors are retried like other download faults
    assert files_in(tmp_path) == []


async def test_wrong_kind_is_a_content_error(kie: KieSession, tmp_path: Path) -> None:
    url = await finished_output(kie)
    with pytest.raises(KieDownloadContentError, match="contains image data"):
        await kie.download(url, tmp_path / "clip.mp4", expect_kind="video")
    assert files_in(tmp_path) == []


async def test_without_expect_kind_the_body_is_kept_but_described(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    """The plain download keeps its old contract (any bytes), yet tells what it got."""
    url = await finished_output(kie)
    emulator.faults.add("files", "wrong_body", count=1, wrong_body="html")
    result = await kie.download(url, tmp_path / "page.bin")
    assert result.format is None and result.extension is None
    assert (tmp_path / "page.bin").read_bytes().startswith(b"<!DOCTYPE html>")


async def test_extension_comes_from_the_content(kie: KieSession, tmp_path: Path) -> None:
    url = await finished_output(kie, JPEG_IN)
    assert url.endswith(".jpeg")
    result = await kie.download(url, tmp_path / "fox", expect_kind="image", name_from_content=True)
    assert Path(result.destination_path) == tmp_path / "fox.jpg"
    assert (result.format, result.extension) == ("jpeg", "jpg")
    lying = await kie.download(url, tmp_path / "named.png", expect_kind="image", name_from_content=True)
    assert Path(lying.destination_path).name == "named.jpg"
    assert files_in(tmp_path) == ["fox.jpg", "named.jpg"]


async def test_pipeline_names_outputs_from_content_not_the_url(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    """A server URL ending in .sh used to give output_0.sh; the PNG it serves is saved as output_0.png."""
    options = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path / "out"), write_artifact=False)
    emulator.config.generation_seconds = 0.5
    job = run_pipeline(
        RawUserRequest(model_key="nano-banana-2", prompt="a fox", options={"output_format": "png"}),
        kie,
        options=options,
    )

    async def rename_when_created() -> None:
        while not emulator.tasks():
            await asyncio.sleep(0.01)
        task = emulator.tasks()[0]
        task.output_names = [f"{task.task_id}_0.sh"]

    result, _ = await asyncio.gather(job, rename_when_created())
    assert result.status == "succeeded", result.error
    assert result.output_urls[0].endswith(".sh")
    saved = result.outputs[0].path
    assert saved.name == "output_0.png"
    pyvips.Image.new_from_file(str(saved))  # a real image


async def test_pipeline_with_a_garbage_file_host_is_incomplete_and_keeps_nothing(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    root = tmp_path / "out"
    emulator.faults.add("files", "wrong_body", count=None, wrong_body="html")
    result = await run_pipeline(
        RawUserRequest(model_key="nano-banana-2", prompt="a fox"),
        kie,
        options=PipelineOptions(artifacts=ArtifactSettings(root=root)),
    )
    # the task is paid for: not "failed" (which would invite buying it again) but resumable on its task id
    assert result.status == "incomplete" and result.error_type == "KieDownloadContentError", result.error
    assert result.resumable and result.task_id and not result.spent_nothing
    assert "looks like an HTML page" in (result.error or "")
    assert result.outputs == []
    assert [p for p in files_in(root) if "output" in p] == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example/out.png",
        "file:///etc/passwd",
        "http://",
        "not a url",
        "javascript:alert(1)",
        "http://[::1/out.png",
    ],
)
async def test_hopeless_urls_are_permanent_errors_and_never_requested(
    kie: KieSession, tmp_path: Path, url: str
) -> None:
    with pytest.raises(KieDownloadURLError, match="cannot be downloaded") as caught:
        await kie.download(url, tmp_path / "x.png")
    assert isinstance(caught.value, KieDownloadError) and not isinstance(caught.value, KieConnectionError)
    assert kie.stats.retries == 0 and kie.stats.requests.get("download", 0) == 0
    assert files_in(tmp_path) == []


def test_retry_policy_classes() -> None:
    assert is_retryable(KieDownloadError("short body"), idempotent=True)
    assert is_retryable(KieDownloadContentError("html page"), idempotent=True)
    assert not is_retryable(KieDownloadURLError("ftp://x"), idempotent=True)
    assert not is_retryable(KieDownloadError("short body"), idempotent=False)
