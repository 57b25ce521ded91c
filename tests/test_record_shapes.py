"""recordInfo and createTask answers in shapes the docs do not promise: tolerated and reported, task id kept.

Unit-level shapes go through aioresponses (the emulator only speaks the documented shape); the emulator
checks that the documented shapes still read as usable results and failures.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from aioresponses import aioresponses

from kie_async.core.settings import KieSettings, PollSettings, RetrySettings
from kie_async.emulator import KieEmulator
from kie_async.errors import (
    KieAPIStatusError,
    KieResponseShapeError,
    KieServerError,
    KieSubmissionUncertainError,
    KieTaskFailedError,
    KieTimeoutError,
)
from kie_async.session import KieSession
from kie_async.wire.api_models import Envelope, TaskRecord, TaskState
from kie_async.wire.retry import RetryPolicy, is_retryable
from tests.aioresponses_compat import patch_aioresponses  # noqa: F401  (autouse fixture)

BASE = "http://kie.test"
CREATE = f"{BASE}/api/v1/jobs/createTask"
CREDIT = f"{BASE}/api/v1/chat/credit"
RECORD = re.compile(r"^http://kie\.test/api/v1/jobs/recordInfo\?taskId=.*$")
NB2 = {"prompt": "a red fox"}


class NoSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def kie() -> Any:
    settings = KieSettings(
        api_key="sk-shapes",
        base_url=BASE,
        upload_base_url="http://upload.test",
        allow_live=True,  # aioresponses answers; nothing leaves the process
        retry=RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.02),
        poll=PollSettings(schedule=((float("inf"), 0.01),), timeout=5.0),
    )
    async with KieSession(settings, retry_policy=RetryPolicy(settings.retry, sleep=NoSleep())) as session:
        yield session


def envelope(data: Any, code: Any = 200) -> dict[str, Any]:
    return {"code": code, "msg": "success", "data": data}


def record(task_id: str, state: Any, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"taskId": task_id, "model": "nano-banana-2", "state": state, "resultJson": ""}
    body.update(extra)
    return body


def result_json(urls: Any) -> str:
    return json.dumps({"resultUrls": urls})


def record_calls(m: aioresponses) -> int:
    return sum(len(v) for (meth, u), v in m.requests.items() if meth == "GET" and "recordInfo" in str(u))


# -- states ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("SUCCESS", TaskState.SUCCESS),
        (" Generating ", TaskState.GENERATING),
        ("canceled", TaskState.CANCELED),
        ("Cancelled", TaskState.CANCELED),
        (None, TaskState.UNKNOWN),
        ("paused", TaskState.UNKNOWN),
        (7, TaskState.UNKNOWN),
    ],
)
def test_state_is_normalised_and_the_raw_value_kept(raw: Any, state: TaskState) -> None:
    rec = TaskRecord.model_validate(record("t1", raw))
    assert rec.state is state and rec.task_id == "t1"
    assert rec.raw_state == (None if raw is None else str(raw))
    assert (state is TaskState.UNKNOWN) == any("state" in p for p in rec.shape_problems)


def test_missing_state_is_unknown_not_an_error() -> None:
    rec = TaskRecord.model_validate({"taskId": "t1"})
    assert rec.state is TaskState.UNKNOWN and rec.raw_state is None and not rec.is_terminal


def test_canceled_is_a_terminal_provider_failure() -> None:
    assert TaskState.CANCELED.is_terminal and TaskState.CANCELED.is_failure
    assert TaskState.FAIL.is_failure and not TaskState.SUCCESS.is_failure
    assert not TaskState.UNKNOWN.is_terminal and not TaskState.UNKNOWN.is_failure


async def test_get_task_with_null_state_keeps_task_id(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=envelope(record("t1", None)))
        rec = await kie.get_task("t1")
    assert rec.task_id == "t1" and rec.state is TaskState.UNKNOWN


async def test_wait_keeps_polling_an_unknown_state_and_times_out_naming_it(
    kie: KieSession, caplog: pytest.LogCaptureFixture
) -> None:
    with aioresponses() as m, caplog.at_level(logging.WARNING, logger="kie_async.client.base"):
        m.get(RECORD, payload=envelope(record("t-odd", "Paused")), repeat=True)
        with pytest.raises(KieTimeoutError) as info:
            await kie.wait_for_task("t-odd", timeout=0.15)
        polls = record_calls(m)
    assert polls >= 3
    assert "t-odd" in str(info.value) and "'paused'" in str(info.value).lower()
    warnings = [r for r in caplog.records if "unrecognised state" in r.getMessage()]
    assert len(warnings) == 1


async def test_wait_resumes_after_an_unknown_state(kie: KieSession) -> None:
    ok = record("t1", "success", resultJson=result_json(["https://files.test/a.png"]))
    with aioresponses() as m:
        m.get(RECORD, payload=envelope(record("t1", None)))
        m.get(RECORD, payload=envelope(ok))
        rec = await kie.wait_for_task("t1")
    assert rec.state is TaskState.SUCCESS and rec.has_usable_result


async def test_wait_treats_canceled_as_a_provider_failure(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=envelope(record("t1", "CANCELED")), repeat=True)
        with pytest.raises(KieTaskFailedError) as info:
            await kie.wait_for_task("t1")
        rec = await kie.wait_for_task("t1", raise_on_failure=False)
    assert info.value.task_id == "t1" and "cancel" in str(info.value)
    assert rec.state is TaskState.CANCELED and not rec.has_usable_result


# -- results --------------------------------------------------------------------------------------------------


def test_bad_result_url_entries_are_dropped_and_reported() -> None:
    urls = [None, 5, "", "ftp://x/y.png", "javascript:alert(1)", "https://files.test/ok.png", "http://f.test/b.png"]
    rec = TaskRecord.model_validate(record("t1", "success", resultJson=result_json(urls)))
    assert rec.output_urls == ["https://files.test/ok.png", "http://f.test/b.png"]
    assert len(rec.result_problems) == 5 and all("resultUrls" in p for p in rec.result_problems)
    assert rec.has_usable_result


@pytest.mark.parametrize(
    ("raw_result", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (result_json([]), "no output URL"),
        (result_json([None, 5]), "no output URL"),
        (json.dumps({"resultUrls": {"a": 1}}), "resultUrls"),
    ],
)
def test_success_without_usable_outputs_is_reported(raw_result: str, needle: str) -> None:
    rec = TaskRecord.model_validate(record("t1", "success", resultJson=raw_result))
    assert rec.state is TaskState.SUCCESS and rec.is_terminal
    assert not rec.has_usable_result
    assert any(needle in p for p in rec.result_problems), rec.result_problems
    assert rec.output_urls == []


def test_result_json_given_as_an_object_is_accepted() -> None:
    rec = TaskRecord.model_validate(record("t1", "success", resultJson={"resultUrls": ["https://f.test/a.png"]}))
    assert rec.has_usable_result and rec.result_problems == []


def test_unreadable_metadata_is_dropped_not_fatal() -> None:
    rec = TaskRecord.model_validate(
        record("t1", "generating", progress="45%", costTime="soon", creditsConsumed="many", failMsg={"a": 1})
    )
    assert rec.progress is None and rec.cost_time is None and rec.credits_consumed is None
    assert len(rec.shape_problems) == 3


async def test_get_task_success_with_unparsable_result_returns_and_explains(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=envelope(record("t1", "success", resultJson="{oops")))
        rec = await kie.wait_for_task("t1")
    assert rec.task_id == "t1" and rec.state is TaskState.SUCCESS
    assert not rec.has_usable_result and "not valid JSON" in rec.result_problems[0]


# -- envelope code --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["200", " 200 ", 200.0])
async def test_envelope_code_as_digit_string_is_accepted(kie: KieSession, code: Any) -> None:
    ok = record("t1", "success", resultJson=result_json(["https://f.test/a.png"]))
    with aioresponses() as m:
        m.get(RECORD, payload=envelope(ok, code=code))
        rec = await kie.get_task("t1")
    assert rec.has_usable_result


def test_envelope_code_validation() -> None:
    assert Envelope.model_validate({"code": "402", "msg": None}).code == 402
    for bad in ("OK", "2OO", True, None, "-1", 200.5, "1" * 20):
        with pytest.raises(ValueError):
            Envelope.model_validate({"code": bad})


async def test_envelope_code_not_a_number_is_a_typed_retryable_read_error(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=envelope(record("t1", "success"), code="OK"), repeat=True)
        with pytest.raises(KieResponseShapeError) as info:
            await kie.get_task("t1")
        assert record_calls(m) == 3  # first try + 2 retries: a read may be repeated
    assert info.value.task_id == "t1" and "'OK'" in str(info.value)
    assert isinstance(info.value, KieAPIStatusError)


async def test_envelope_code_string_error_is_still_mapped(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(CREDIT, payload={"code": "500", "msg": "boom"}, repeat=True)
        with pytest.raises(KieServerError, match="boom"):
            await kie.get_credits()


# -- remaining shape problems in get_task -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        [1, 2, 3],
        "success",
        record("someone-else", "success"),
        {"taskId": ["t1"], "state": "success"},
    ],
)
async def test_record_shape_errors_are_typed_retried_and_keep_the_task_id(kie: KieSession, data: Any) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=envelope(data), repeat=True)
        with pytest.raises(KieResponseShapeError) as info:
            await kie.get_task("t1")
        assert record_calls(m) == 3
    assert info.value.task_id == "t1" and "t1" in str(info.value)
    assert info.value.endpoint == "recordInfo"


async def test_record_shape_error_recovers_on_retry(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=envelope("garbage"))
        m.get(RECORD, payload=envelope(record("t1", "generating")))
        rec = await kie.get_task("t1")
    assert rec.state is TaskState.GENERATING and kie.stats.retries == 1


async def test_record_without_task_id_gets_the_requested_one(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(RECORD, payload=envelope({"state": "queuing"}))
        rec = await kie.get_task("t1")
    assert rec.task_id == "t1" and rec.state is TaskState.QUEUING


def test_shape_error_is_retryable_only_for_reads() -> None:
    exc = KieResponseShapeError("x", task_id="t1", endpoint="recordInfo")
    assert is_retryable(exc, idempotent=True)
    assert not is_retryable(exc, idempotent=False)


async def test_non_json_200_on_a_read_is_a_shape_error(kie: KieSession) -> None:
    with aioresponses() as m:
        m.get(CREDIT, status=200, body="<html>maintenance</html>", content_type="text/html", repeat=True)
        with pytest.raises(KieResponseShapeError, match="maintenance"):
            await kie.get_credits()


# -- createTask answers we cannot read: the task may exist ---------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        envelope(None),
        envelope({}),
        envelope({"taskId": ""}),
        envelope({"taskId": None, "recordId": "r1"}),
        envelope(["t1"]),
        envelope({"taskId": "t1"}, code="OK"),
        {"weird": True},
    ],
)
async def test_create_task_unreadable_200_is_submission_uncertain(kie: KieSession, answer: dict[str, Any]) -> None:
    with aioresponses() as m:
        m.post(CREATE, payload=answer, repeat=True)
        with pytest.raises(KieSubmissionUncertainError) as info:
            await kie.create_task(model="nano-banana-2", input=NB2)
        sent = sum(len(v) for (meth, _), v in m.requests.items() if meth == "POST")
    assert sent == 1  # never re-sent: it may have created a task
    assert "nano-banana-2" in str(info.value) and "may" in str(info.value)


async def test_create_task_tolerates_numeric_ids() -> None:
    # Not the documented shape, but a number is still a readable id: no reason to call that uncertain.
    from kie_async.wire.api_models import TaskCreated

    created = TaskCreated.model_validate({"taskId": 12345, "recordId": 7})
    assert created.task_id == "12345" and created.record_id == "7"


# -- the documented shapes, end to end through the emulator -------------------------------------------------------


async def test_emulator_records_are_usable_results(emulator: KieEmulator) -> None:
    async with KieSession(emulator.settings(poll=PollSettings(schedule=((float("inf"), 0.02),)))) as kie:
        created = await kie.create_task(model="nano-banana-2", input=NB2)
        rec = await kie.wait_for_task(created.task_id)
        assert rec.has_usable_result and rec.result_problems == [] and rec.shape_problems == []
        assert rec.raw_state == "success"

        emulator.fail_next(1, code="500", msg="upstream broke")
        failed = await kie.create_task(model="nano-banana-2", input=NB2)
        rec2 = await kie.wait_for_task(failed.task_id, raise_on_failure=False)
    assert rec2.state is TaskState.FAIL and rec2.state.is_failure and not rec2.has_usable_result
    assert rec2.result_problems == []  # a failure is not a result problem: there was never meant to be one


async def test_emulator_truncated_record_read_is_retried(emulator: KieEmulator) -> None:
    async with KieSession(emulator.settings(poll=PollSettings(schedule=((float("inf"), 0.02),)))) as kie:
        created = await kie.create_task(model="nano-banana-2", input=NB2)
        emulator.faults.add("recordInfo", "truncated_body", count=2)
        rec = await kie.get_task(created.task_id)
    assert rec.task_id == created.task_id and kie.stats.retries == 2


def test_parsed_results_are_shared_by_text_but_never_by_reference() -> None:
    """resultJson is parsed once per text; what a caller gets must still be its own to change."""
    from kie_async.wire.api_models import TaskRecord

    wire = {"taskId": "t1", "state": "success", "resultJson": '{"resultUrls": ["https://cdn.example/a.png"]}'}
    first = TaskRecord.model_validate(wire)
    first.result.result_urls.append("https://evil.example/x.png")
    first.output_urls.append("https://evil.example/y.png")
    second = TaskRecord.model_validate(wire)
    assert second.output_urls == ["https://cdn.example/a.png"] == first.output_urls
    changed = first.model_copy(update={"result_json": '{"resultUrls": ["https://cdn.example/b.png"]}'})
    assert changed.output_urls == ["https://cdn.example/b.png"]
