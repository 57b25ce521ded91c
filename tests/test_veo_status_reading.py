"""Veo's record-info read as its details page shows it: the unknown-task message ``record is null`` and times
sent as date text (the page's example) as well as numbers (its schema), against the emulator and the page."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kie_async.catalogue.specs import load_registry
from kie_async.client.request_path import _parse_record
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieTimeoutError, KieValidationError
from kie_async.session import KieSession
from kie_async.wire.api_models import TaskRecord, TaskState
from kie_async.wire.task_apis import TransportSpec, market_transport

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)
FAST_RETRY = RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)


def veo() -> TransportSpec:
    return load_registry().get("veo-3.1").transport


def fast(emulator: KieEmulator) -> KieSession:
    return KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS))


def page_example(kie_docs: Path, page: str, path: str, method: str) -> dict[str, Any]:
    """The ``data`` of the 200 answer's example on a captured docs page."""
    text = (kie_docs / page).read_text(encoding="utf-8")
    block = text.split("```yaml", 1)[1].split("```", 1)[0]
    document = YAML(typ="safe").load(io.StringIO(block))
    example = document["paths"][path][method]["responses"]["200"]["content"]["application/json"]["example"]
    data: dict[str, Any] = example["data"]
    return data


def test_the_veo_details_pages_example_is_read_with_its_date_text_times(kie_docs: Path) -> None:
    data = page_example(kie_docs, "veo3-api/get-veo-3-video-details.md", "/api/v1/veo/record-info", "get")
    assert isinstance(data["createTime"], str)  # the page's example, though its schema says number
    record = _parse_record(data["taskId"], data, veo())
    assert record.state is TaskState.SUCCESS and record.output_urls == ["http://example.com/video1.mp4"]
    assert record.shape_problems == []
    assert record.created_at == datetime(2025, 6, 6, 10, 25, tzinfo=UTC)
    assert record.completed_at == datetime(2025, 6, 6, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("page", "path"),
    [
        ("runway-api/get-aleph-video-details.md", "/api/v1/aleph/record-info"),
        ("flux-kontext-api/get-image-details.md", "/api/v1/flux/kontext/record-info"),
    ],
)
def test_the_aleph_and_flux_pages_iso_times_are_read(kie_docs: Path, page: str, path: str) -> None:
    data = page_example(kie_docs, page, path, "get")
    key = "runway-aleph" if "aleph" in path else "flux-kontext-pro"
    transport = load_registry().get(key).transport
    record = _parse_record(str(transport.record_data(data).get("taskId", "t")), data, transport)
    assert record.shape_problems == []
    assert record.created_at is not None and record.completed_at is not None
    assert record.created_at.tzinfo is not None and record.completed_at > record.created_at


@pytest.mark.parametrize(
    ("value", "expected_ms", "problem"),
    [
        (1_749_205_500_000, 1_749_205_500_000, False),
        ("1749205500000", 1_749_205_500_000, False),
        ("2025-06-06 10:25:00", 1_749_205_500_000, False),  # no zone: read as UTC
        ("2025-06-06T10:25:00Z", 1_749_205_500_000, False),
        ("2025-06-06T12:25:00+02:00", 1_749_205_500_000, False),
        ("", None, False),
        ("yesterday", None, True),  # neither a number nor a date: noted, not fatal
    ],
)
def test_times_are_numbers_or_date_text(value: object, expected_ms: int | None, problem: bool) -> None:
    record = TaskRecord.model_validate({"taskId": "t", "state": "waiting", "createTime": value})
    assert record.create_time == expected_ms
    assert bool(record.shape_problems) is problem


def test_each_api_says_which_message_means_an_unknown_task() -> None:
    assert veo().status.says_unknown("record is null")
    assert veo().status.says_unknown("recordInfo is null")  # tolerant: the market's spelling is accepted too
    assert not veo().status.says_unknown("record status is not success")
    assert market_transport().status.says_unknown("recordInfo is null")
    assert not market_transport().status.says_unknown("record is null")


async def test_an_unknown_veo_task_answers_record_is_null() -> None:
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        with pytest.raises(KieValidationError, match="record is null") as caught:
            await kie.get_task("veo-no-such-task", transport=veo())
    assert caught.value.code == 422


async def test_a_brand_new_veo_task_not_yet_visible_is_waited_for_not_refused() -> None:
    """Veo's "record is null" right after a purchase is the task not visible yet: the wait keeps going (it would
    give up at once on a message it did not recognise)."""
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        with pytest.raises(KieTimeoutError):
            await kie.wait_for_task("veo-not-yet-visible", timeout=0.5, transport=veo())


async def test_a_veo_task_read_from_the_emulator_has_its_date_text_times(tmp_path: Path) -> None:
    async with KieEmulator(EmulatorConfig(generation_seconds=0.2)) as emulator, fast(emulator) as kie:
        created = await kie.create_task(model="veo3_fast", input={"prompt": "a fox"}, transport=veo())
        record = await kie.wait_for_task(created.task_id, timeout=10)
    assert record.state is TaskState.SUCCESS and record.shape_problems == []
    assert record.created_at is not None and record.completed_at is not None
    assert record.completed_at >= record.created_at
    assert abs((record.created_at - datetime.now(UTC)).total_seconds()) < 60
