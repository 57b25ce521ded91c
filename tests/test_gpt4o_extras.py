"""4o Image's mask (``maskUrl``) and ``nVariants``, bought against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieValidationError
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)
FAST_RETRY = RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)
IMAGE = "https://example.com/original.png"
MASK = {"source": "https://example.com/mask.png", "role": "mask"}


def opts(root: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts, allow_unknown_cost=True, wait_timeout=20)


def fast(emulator: KieEmulator) -> KieSession:
    return KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS))


async def test_a_masked_edit_with_variants_sends_the_mask_and_gets_each_variant(tmp_path: Path) -> None:
    request = RawUserRequest(
        model_key="gpt4o-image",
        prompt="Replace the sky with a starry night sky",
        images=[IMAGE, MASK],
        options={"nVariants": 2, "size": "3:2"},
    )
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        result = await run_pipeline(request, kie, options=opts(tmp_path))
    assert result.succeeded, result.error
    (task,) = emulator.tasks()
    assert task.body["filesUrl"] == [IMAGE] and task.body["maskUrl"] == MASK["source"]
    assert task.body["nVariants"] == 2 and len(task.output_names) == 2 and len(result.outputs) == 2


def test_a_mask_with_several_images_is_refused_since_the_page_says_it_would_be_ignored() -> None:
    report = validate_request(
        RawUserRequest(model_key="gpt4o-image", prompt="edit", images=[IMAGE, "https://example.com/b.png", MASK]),
        check_files=False,
    )
    assert report.state == "invalid" and any(d.field == "filesUrl" for d in report.all_details())


def test_an_unroled_image_never_becomes_the_mask() -> None:
    report = validate_request(
        RawUserRequest(model_key="gpt4o-image", prompt="edit", images=[IMAGE, "https://example.com/b.png"]),
        check_files=False,
    )
    assert report.state.startswith("ready")
    assert [m.slot for m in report.normalized.media] == ["images", "images"]


def test_variants_are_1_2_or_4() -> None:
    for n, ok in ((1, True), (2, True), (4, True), (3, False), (8, False)):
        report = validate_request(
            RawUserRequest(model_key="gpt4o-image", prompt="a cat", options={"nVariants": n}), check_files=False
        )
        assert report.state.startswith("ready") is ok, n


async def test_a_4o_image_file_gets_its_link_from_4o_images_own_download_url(tmp_path: Path) -> None:
    transport = load_registry().get("gpt4o-image").transport
    assert transport.download_url is not None
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        created = await kie.create_task(
            model="gpt4o-image", input={"prompt": "a cat", "size": "1:1"}, transport=transport
        )
        record = await kie.wait_for_task(created.task_id, timeout=10)
        (url,) = record.output_urls
        link = await kie.get_download_url(url, task_id=created.task_id)
        saved = await kie.download(link, tmp_path / "cat.png", expect_kind="image")
        requests = dict(emulator.stats.requests)
        other = await kie.create_task(
            model="gpt4o-image", input={"prompt": "a dog", "size": "1:1"}, transport=transport
        )
        with pytest.raises(KieValidationError, match="record result data not exist"):
            await kie.get_download_url(url, task_id=other.task_id)  # a file of another task
    assert requests.get("download-url:gpt4o-image") == 1 and "download-url" not in requests
    assert saved.bytes_written > 0 and "expires=" in link
