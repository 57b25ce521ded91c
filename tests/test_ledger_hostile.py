"""Hostile inputs to the purchase records: each case was a way to pay twice or lose data, now refused.

Task counts are read from the emulator, never from what the SDK reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.artifacts.manifest import RunArtifactCreateRequest, RunStatus
from kie_async.artifacts.writer import create_run_artifact
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.jsonl_log import is_torn_write
from kie_async.core.settings import KieSettings, PollSettings
from kie_async.emulator import KieEmulator
from kie_async.errors import (
    KieDownloadTooLargeError,
    KieInputError,
    KieJournalUnreadableError,
    KieValidationError,
)
from kie_async.ledger.journal import BatchJournal, JournalRecord, request_key
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions
from kie_async.session import KieSession
from kie_async.wire.download import DEFAULT_MAX_OUTPUT_BYTES, output_cap, stream_response_to_file
from tests.conftest import serve_app

FAST_POLL = PollSettings(schedule=((float("inf"), 0.1),), timeout=60.0)


def _request(i: int) -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt=f"hostile request {i}")


def _options(root: Path) -> PipelineOptions:
    return PipelineOptions(
        artifacts=ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    )


async def _paid_journal(emulator: KieEmulator, tmp_path: Path, count: int) -> Path:
    """A journal of ``count`` bought and delivered requests, written by a real batch."""
    journal = tmp_path / "journal.jsonl"
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        results = await run_many(
            [_request(i) for i in range(count)], kie, options=_options(tmp_path / "out"), journal_path=journal
        )
    assert all(r.succeeded for r in results) and emulator.stats.tasks_created == count
    return journal


async def test_a_journal_re_encoded_as_utf16_stops_the_batch_before_any_purchase(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    journal = await _paid_journal(emulator, tmp_path, 3)
    journal.write_bytes(journal.read_text(encoding="utf-8").encode("utf-16"))  # what some editors and shells write
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        with pytest.raises(KieJournalUnreadableError) as caught:
            await run_many(
                [_request(i) for i in range(3)], kie, options=_options(tmp_path / "out"), journal_path=journal
            )
    assert emulator.stats.tasks_created == 3  # not one more
    assert str(journal) in str(caught.value) and caught.value.lines and caught.value.path == str(journal)
    assert "nothing was bought" in str(caught.value)


async def test_a_hand_damaged_middle_line_stops_the_batch(emulator: KieEmulator, tmp_path: Path) -> None:
    journal = await _paid_journal(emulator, tmp_path, 2)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"key": oops, "state": "submitted"}\n'
    journal.write_bytes(b"".join(lines))
    with pytest.raises(KieJournalUnreadableError) as caught:
        await BatchJournal.open(journal)
    assert caught.value.lines == [2]


async def test_a_torn_record_sealed_mid_file_is_still_skipped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    good = JournalRecord(key="k1", state=RequestState.SUBMITTED, task_id="t1")
    path.write_bytes(good.to_line() + b'{"key": "k2", "state": "submitted", "task_id": "t')  # killed mid-append
    async with await BatchJournal.open(path) as journal:
        await journal.write(JournalRecord(key="k3", state=RequestState.SUBMITTING))
    async with await BatchJournal.open(path) as reopened:  # the torn line now sits in the middle
        assert reopened.skipped_lines == [2] and reopened.get("k3") is not None


@pytest.mark.parametrize(
    ("raw", "torn"),
    [
        (b'{"key": "k2", "state": "subm', True),
        (b'{"key": "k2", "state": "submitted", ', True),
        (b'{"key": "k2", "state"', True),
        (b'{"key": "k2", "state": "submitted"}', False),  # complete: not torn (invalid for another reason)
        (b'{"key": oops}', False),
        ('{"key": "k2"}'.encode("utf-16"), False),
        (b"\xff\xfe{\x00", False),
        (b"garbage", False),
    ],
)
def test_only_a_cut_off_record_counts_as_torn(raw: bytes, torn: bool) -> None:
    assert is_torn_write(raw) is torn


async def test_a_run_id_in_a_journal_line_cannot_point_outside_the_output_root(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    request = _request(1)
    key = request_key(normalize_request(request))
    journal = tmp_path / "journal.jsonl"
    forged = {"key": key, "state": "submitted", "task_id": "t-forged", "run_id": "../../victim"}
    journal.write_text(json.dumps(forged) + "\n" + json.dumps({"key": "other", "state": "refused"}) + "\n")
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        with pytest.raises(KieJournalUnreadableError) as caught:
            await run_many([request], kie, options=_options(tmp_path / "out"), journal_path=journal)
    assert caught.value.lines == [1]
    assert (victim / "precious.txt").read_text() == "keep me" and emulator.stats.tasks_created == 0


@pytest.mark.parametrize("run_id", ["../victim", "a/b", "..", ".hidden", "x\\y", ""])
def test_a_record_refuses_a_run_id_that_is_not_one_folder_name(run_id: str) -> None:
    line = json.dumps({"key": "k", "state": "submitted", "task_id": "t1", "run_id": run_id})
    if run_id == "":
        assert JournalRecord.model_validate_json(line).run_id is None  # empty means "none yet", not a path
        return
    with pytest.raises(ValueError, match="run_id"):
        JournalRecord.model_validate_json(line)


async def test_the_artifact_writer_refuses_a_run_id_outside_its_root(tmp_path: Path) -> None:
    """Even a request built without validation (``model_construct``) cannot name a folder outside the root."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    request = RunArtifactCreateRequest.model_construct(
        status=RunStatus.SUCCEEDED,
        model_key="nano-banana-2",
        run_id="../victim",
        inputs=[],
        outputs=[],
    )
    settings = ArtifactSettings(root=tmp_path / "out", derivatives=ArtifactDerivativeSettings(enabled=False))
    with pytest.raises(KieInputError, match="run_id"):
        await create_run_artifact(request, settings, replace=True)
    assert (victim / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"prompt": "a cat \udcff on a mat"}, "prompt"),  # a non-UTF-8 byte from argv (surrogateescape)
        ({"prompt": "half an emoji \ud83d"}, "prompt"),
        ({"prompt": "ok", "options": {"aspect_ratio": "1:1\udc80"}}, "options.aspect_ratio"),
        ({"prompt": "ok", "extra_options": {"note": ["fine", "bad\ud800"]}}, "extra_options.note[1]"),
    ],
)
async def test_text_that_cannot_be_encoded_is_refused_before_the_wire(
    emulator: KieEmulator, tmp_path: Path, request_fields: dict[str, object], field: str
) -> None:
    request = RawUserRequest.model_validate({"model_key": "nano-banana-2", **request_fields})
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        (result,) = await run_many([request], kie, options=_options(tmp_path / "out"))
    assert emulator.stats.tasks_created == 0 and not result.succeeded
    problems = [i for i in result.validation.impossible_inputs if i.rule == "unencodable_text"]  # type: ignore[union-attr]
    assert [p.field for p in problems] == [field] and "position" in problems[0].message


async def test_the_library_checks_the_run_folder_root_before_buying(emulator: KieEmulator, tmp_path: Path) -> None:
    """A root that cannot hold run folders blocks the run before the purchase (the CLI checked; the library did not).

    (A file stands where the root should be: root can write anywhere, so a read-only folder proves nothing here.)
    """
    in_the_way = tmp_path / "out"
    in_the_way.write_text("not a folder")
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        (result,) = await run_many([_request(1)], kie, options=_options(in_the_way / "runs"))
    assert emulator.stats.tasks_created == 0
    assert result.status == "blocked" and "ArtifactSettings.root" in (result.error or "")
    assert "is a file" in (result.error or "")


async def test_an_output_with_no_end_stops_at_its_cap_and_leaves_no_file(tmp_path: Path) -> None:
    """A PNG header then zeros, forever: written until the disk was full. Now it stops at the kind's cap."""
    sent = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        await response.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 1024)
        with contextlib.suppress(ConnectionError):
            for _ in range(100_000):  # bounded: ~6 GB if nothing stopped it
                await response.write(b"\0" * 65536)
                sent.set()
        return response

    app = web.Application()
    app.router.add_get("/out.png", endless)
    async with serve_app(app) as base, aiohttp.ClientSession() as http, http.get(f"{base}/out.png") as response:
        with pytest.raises(KieDownloadTooLargeError, match="cap"):
            await stream_response_to_file(response, tmp_path / "out.png", expect_kind="image", max_bytes=1 << 20)
    assert sent.is_set() and list(tmp_path.iterdir()) == []  # no file, no temp file


def test_the_default_caps_are_by_kind_and_settings_override_them() -> None:
    assert output_cap("image") < output_cap("video") and output_cap(None) == DEFAULT_MAX_OUTPUT_BYTES["other"]
    assert output_cap("image", {"image": 10}) == 10
    with pytest.raises(ValueError, match="max_output_bytes"):
        KieSettings(max_output_bytes={"image": 0})


async def test_a_session_download_obeys_the_settings_cap(emulator: KieEmulator, tmp_path: Path) -> None:
    """``KieSession.download`` takes its cap from ``KieSettings.max_output_bytes`` for the expected kind."""
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        created = await kie.create_task(model="nano-banana-2", input={"prompt": "a cap test"})
        record = await kie.wait_for_task(created.task_id)
        url = record.output_urls[0]
        whole = await kie.download(url, tmp_path / "whole.png", expect_kind="image")
    async with KieSession(emulator.settings(poll=FAST_POLL, max_output_bytes={"image": 64})) as small:
        with pytest.raises(KieDownloadTooLargeError):
            await small.download(url, tmp_path / "capped.png", expect_kind="image")
    assert whole.bytes_written > 64 and not (tmp_path / "capped.png").exists()


async def test_low_level_create_task_refuses_a_mistyped_option_key(emulator: KieEmulator) -> None:
    """``kie.create_task(model=, input=)`` bought a body with a typo; the spec is now checked first."""
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        with pytest.raises(KieInputError, match="create_task input for nano-banana-2") as caught:
            await kie.create_task(model="nano-banana-2", input={"prompt": "a typo", "aspect_ratoi": "1:1"})
        assert "aspect_ratoi" in str(caught.value) and "validate=False" in str(caught.value)
        assert emulator.stats.tasks_created == 0
        await kie.create_task(model="nano-banana-2", input={"prompt": "fine", "aspect_ratio": "1:1"})
        assert emulator.stats.tasks_created == 1
        with pytest.raises(KieValidationError, match="not a model this service offers"):  # sent; the server said no
            await kie.create_task(model="a-model-the-catalogue-lacks", input={"x": 1})
        assert emulator.stats.requests.get("createTask", 0) == 2  # the typo never reached the wire
