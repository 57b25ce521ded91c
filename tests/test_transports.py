"""The separate APIs (Veo 3.1, Runway, Aleph, Suno, 4o Image, Flux Kontext) end to end against the emulator.

Each model's spec carries a ``transport:`` section; the session, the wait loop, the pipeline and ``run_many``
are the market's, unchanged. The emulator's dialects are written from the provider's pages, not from the
specs, so a wrong path, state word or result path in a spec fails here.
"""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import pytest
from aiohttp import web

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.fixtures import REQUEST_FIXTURES
from kie_async.catalogue.payload import build_submission_payload
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.client.request_path import _parse_record
from kie_async.core.media_sniff import SniffedMedia, read_head, sniff_head
from kie_async.core.provider_pages import PageOperation, iter_pages
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.emulator.lifecycle import callback_body
from kie_async.emulator.transports import DIALECTS
from kie_async.errors import KieServerError, KieSubmissionUncertainError, KieValidationError
from kie_async.interfaces.callback_receiver import add_callback_route
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession
from kie_async.wire.api_models import TaskState
from kie_async.wire.callbacks import sign_callback, verify_callback
from kie_async.wire.task_apis import StateSpec, TransportSpec, market_transport, pick, pick_all
from tests.conftest import serve_app

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)
FAST_RETRY = RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)
CALLBACK = "http://127.0.0.1:9/kie/callback"  # nothing listens: the emulator's delivery fails quietly

# One submittable fixture per separate-API model key, and the dialect that must have sold it.
CASES = {
    "veo-3.1": ("veo_3_1_first_frame_defaults", "veo3"),
    "veo-3.1-fast": ("veo_3_1_fast_ready", "veo3"),
    "runway-gen": ("runway_image_defaults", "runway"),
    "runway-aleph": ("runway_aleph_defaults", "aleph"),
    "suno-music": ("suno_defaults", "suno"),
    "gpt4o-image": ("gpt4o_image_edit_defaults", "gpt4o-image"),
    "flux-kontext-pro": ("flux_kontext_pro_ready", "flux-kontext"),
    "flux-kontext-max": ("flux_kontext_max_edit_defaults", "flux-kontext"),
}


def opts(root: Path, **extra: object) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    values: dict[str, object] = {"artifacts": artifacts, "allow_unknown_cost": True, "wait_timeout": 20, **extra}
    return PipelineOptions(**values)  # type: ignore[arg-type]


def fast(emulator: KieEmulator) -> KieSession:
    return KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS))


def sniff_file(path: Path) -> SniffedMedia:
    return sniff_head(read_head(path))


def request_for(key: str) -> RawUserRequest:
    return REQUEST_FIXTURES[CASES[key][0]].request


def spec_transport(key: str) -> TransportSpec:
    return load_registry().get(key).transport


# -- every separate API, end to end through the pipeline ------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CASES))
async def test_pipeline_runs_each_separate_api_end_to_end(key: str, tmp_path: Path) -> None:
    spec = load_registry().get(key)
    async with KieEmulator(EmulatorConfig(generation_seconds=0.15)) as emulator, fast(emulator) as kie:
        result = await run_pipeline(request_for(key), kie, options=opts(tmp_path))
        requests = dict(emulator.stats.requests)
    assert result.succeeded, result.error
    (task,) = emulator.tasks()
    dialect = CASES[key][1]
    assert task.dialect == dialect and result.task_id == task.task_id
    # Bought at the API's own create path and read at its own status path; the market's were never called.
    assert requests.get(f"createTask:{dialect}") == 1 and "createTask" not in requests
    assert requests.get(f"recordInfo:{dialect}", 0) >= 1 and "recordInfo" not in requests
    assert len(result.outputs) == len(task.output_names)
    for output in result.outputs:
        assert spec.output_kind in sniff_file(output.path).kinds
    # The body is laid out as the page shows it: flat, with the model where (and only where) the API has one.
    model_field = spec.transport.create.model_field
    assert "input" not in task.body
    assert (model_field in task.body) is (model_field is not None)


async def test_suno_waits_past_first_success_for_both_tracks(tmp_path: Path) -> None:
    """FIRST_SUCCESS already lists a track: a client that stopped there would download half the music."""
    config = EmulatorConfig(generation_seconds=0.6, waiting_fraction=0.1, queuing_fraction=0.1)
    async with KieEmulator(config) as emulator, fast(emulator) as kie:
        request = request_for("suno-music")
        run = asyncio.create_task(run_pipeline(request, kie, options=opts(tmp_path)))
        for _ in range(200):
            if emulator.tasks() and emulator.tasks()[0].state_at() is TaskState.GENERATING:
                break
            await asyncio.sleep(0.01)
        (task,) = emulator.tasks()
        record = await kie.get_task(task.task_id, transport=spec_transport("suno-music"))
        assert record.raw_state == "FIRST_SUCCESS" and record.state is TaskState.GENERATING
        assert len(record.output_urls) == 1 and not record.is_terminal
        result = await run
    assert result.succeeded, result.error
    assert len(result.outputs) == 2
    assert {sniff_file(o.path).format for o in result.outputs} == {"wav"}


@pytest.mark.parametrize("key", ["veo-3.1-fast", "runway-gen", "suno-music", "gpt4o-image", "flux-kontext-pro"])
async def test_provider_failure_reads_as_failed_with_its_code(key: str, tmp_path: Path) -> None:
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        emulator.fail_next(1, code="400", msg="flagged by the provider")
        result = await run_pipeline(request_for(key), kie, options=opts(tmp_path))
        record = await kie.get_task(result.task_id or "", transport=spec_transport(key))
    assert result.status == "failed" and "flagged by the provider" in (result.error or "")
    assert record.state is TaskState.FAIL and record.fail_code == "400" and not record.output_urls


# -- money safety: identical rules on every API --------------------------------------------------------------


@pytest.mark.parametrize("key", ["veo-3.1-fast", "runway-gen", "suno-music", "flux-kontext-max"])
async def test_lost_create_answer_is_never_retried_and_resumes_by_task_id(key: str, tmp_path: Path) -> None:
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator:
        async with fast(emulator) as kie:
            emulator.faults.add("createTask", "reset_after")
            first = await run_pipeline(request_for(key), kie, options=opts(tmp_path))
        assert first.status == "submit_uncertain" and not first.spent_nothing
        # One request reached the API's create route (the faulted one), and nothing was sent again.
        assert emulator.stats.tasks_created == 1 and emulator.stats.requests[f"createTask:{CASES[key][1]}"] == 1
        (task,) = emulator.tasks()
        # A fresh session (another process, after a restart) knows nothing of the task: the spec's transport does.
        async with fast(emulator) as other:
            resumed = await run_pipeline(request_for(key), other, options=opts(tmp_path), resume_task_id=task.task_id)
        assert resumed.succeeded and resumed.resumed and resumed.task_id == task.task_id, resumed.error
        assert emulator.stats.tasks_created == 1


async def test_session_create_task_on_a_separate_api_is_uncertain_not_retried() -> None:
    transport = spec_transport("veo-3.1-fast")
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        emulator.faults.add("createTask", "reset_after")
        with pytest.raises(KieSubmissionUncertainError):
            await kie.create_task(model="veo3_fast", input={"prompt": "a fox"}, transport=transport)
        emulator.faults.add("createTask", "server_error", status=503)  # Kie.ai's own "no": not retried
        with pytest.raises(KieServerError):
            await kie.create_task(model="veo3_fast", input={"prompt": "a fox"}, transport=transport)
        emulator.faults.add("createTask", "rate_limit", retry_after=0)  # refused before any work: retried
        created = await kie.create_task(model="veo3_fast", input={"prompt": "a fox"}, transport=transport)
        assert kie.stats.rate_limited == 1
        record = await kie.wait_for_task(created.task_id, timeout=10)  # remembered: no transport= needed
        assert record.state is TaskState.SUCCESS and record.output_urls
        assert emulator.stats.tasks_created == 2
        # The market's recordInfo does not know a Veo task (and a Veo task is not read there by mistake).
        with pytest.raises(KieValidationError, match="recordInfo is null"):
            await kie.get_task(created.task_id, transport=market_transport())


@pytest.mark.parametrize("key", ["veo-3.1-fast", "suno-music", "gpt4o-image", "flux-kontext-pro", "runway-aleph"])
async def test_lost_answer_is_settled_by_the_apis_own_callback(key: str, tmp_path: Path) -> None:
    hmac_key = "transport-adoption-key"
    journal = tmp_path / "journal.jsonl"
    config = EmulatorConfig(generation_seconds=0.2, webhook_hmac_key=hmac_key)
    async with KieEmulator(config) as emulator, fast(emulator) as kie:
        app = web.Application()
        receiver = add_callback_route(app, kie, "/kie/callback", hmac_key=hmac_key)
        async with serve_app(app) as base:
            emulator.faults.add("createTask", "reset_after")
            request = request_for(key).model_copy(update={"callback_url": None})
            options = opts(tmp_path / "out", callback_url=f"{base}/kie/callback")
            (result,) = await run_many([request], kie, options=options, journal_path=journal)
    assert result.succeeded, result.error
    assert emulator.stats.tasks_created == 1 and result.task_id == emulator.tasks()[0].task_id
    assert receiver.stats.accepted >= 1 and receiver.stats.rejected == 0
    records = [json.loads(line) for line in journal.read_text().splitlines() if '"sending"' not in line]
    assert [r["state"] for r in records] == ["submitting", "uncertain", "submitted", "succeeded"]
    assert records[2].get("adopted") is True


async def test_runway_lost_answer_stays_uncertain(tmp_path: Path) -> None:
    """Runway's record-detail does not echo callBackUrl, so the token cannot be confirmed: nothing is adopted."""
    hmac_key = "runway-adoption-key"
    config = EmulatorConfig(generation_seconds=0.1, webhook_hmac_key=hmac_key)
    async with KieEmulator(config) as emulator, fast(emulator) as kie:
        app = web.Application()
        receiver = add_callback_route(app, kie, "/kie/callback", hmac_key=hmac_key)
        async with serve_app(app) as base:
            emulator.faults.add("createTask", "reset_after")
            options = opts(tmp_path, callback_url=f"{base}/kie/callback", wait_timeout=1.5)
            result = await run_pipeline(request_for("runway-gen"), kie, options=options)
    assert result.status == "submit_uncertain"
    assert receiver.stats.accepted == 1 and emulator.stats.tasks_created == 1


async def test_callback_driven_wait_is_woken_by_each_apis_callback(tmp_path: Path) -> None:
    """With a 60 s safety poll, only the callbacks (in each API's shape) can finish these runs in time."""
    hmac_key = "wake-key"
    config = EmulatorConfig(generation_seconds=0.1, webhook_hmac_key=hmac_key)
    async with KieEmulator(config) as emulator, fast(emulator) as kie:
        app = web.Application()
        receiver = add_callback_route(app, kie, "/kie/callback", hmac_key=hmac_key)
        async with serve_app(app) as base:
            poll = FAST_POLL.model_copy(update={"callback_safety_interval": 60.0})
            kie.settings = kie.settings.model_copy(update={"poll": poll})
            options = opts(tmp_path, callback_url=f"{base}/kie/callback", callback_driven=True, wait_timeout=20)
            requests = [request_for(key).model_copy(update={"callback_url": None}) for key in sorted(CASES)]
            results = await asyncio.wait_for(
                asyncio.gather(*(run_pipeline(r, kie, options=options) for r in requests)), timeout=15
            )
    assert all(r.succeeded for r in results), [r.error for r in results]
    assert receiver.stats.accepted == len(CASES) and receiver.stats.rejected == 0  # staged callbacks are off


async def test_suno_calls_back_text_then_first_then_complete_and_the_run_waits_for_complete(tmp_path: Path) -> None:
    """The intermediate callbacks wake the waiter, which re-reads the status and keeps waiting: a run that
    stopped at ``first`` would have half the music."""
    hmac_key = "stage-key"
    seen: list[tuple[str, int]] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.json()
        verify_callback(dict(request.headers), json.dumps(body).encode(), hmac_key)
        seen.append((body["data"]["callbackType"], len(body["data"]["data"] or [])))
        return web.json_response({"ok": True})

    # 4 s: text at 1.2 s, first at 2.8 s, complete at 4 s, each in its own second (the signature's clock).
    config = EmulatorConfig(generation_seconds=4.0, webhook_hmac_key=hmac_key, staged_callbacks=True)
    async with KieEmulator(config) as emulator, fast(emulator) as kie:
        app = web.Application()
        app.router.add_post("/raw", record)
        receiver = add_callback_route(app, kie, "/kie/callback", hmac_key=hmac_key)
        async with serve_app(app) as base:
            raw = request_for("suno-music").model_copy(update={"callback_url": f"{base}/raw"})
            direct = await run_pipeline(raw, kie, options=opts(tmp_path / "raw"))
            await asyncio.sleep(0.2)  # the final callback is sent after the status turns
            poll = FAST_POLL.model_copy(update={"callback_safety_interval": 60.0})
            kie.settings = kie.settings.model_copy(update={"poll": poll})
            options = opts(tmp_path / "woken", callback_url=f"{base}/kie/callback", callback_driven=True)
            request = request_for("suno-music").model_copy(update={"callback_url": None})
            woken = await asyncio.wait_for(run_pipeline(request, kie, options=options), timeout=20)
    assert direct.succeeded and woken.succeeded, (direct.error, woken.error)
    assert seen == [("text", 0), ("first", 1), ("complete", 2)]
    assert len(woken.outputs) == 2 and receiver.stats.accepted == 3 and receiver.stats.rejected == 0


# -- the callback bodies and status answers, shape by shape ---------------------------------------------------


@pytest.mark.parametrize("dialect", sorted(d for d, api in DIALECTS.items() if api.source_task_field is None))
@pytest.mark.parametrize("fail", [False, True])  # a follow-up API's callbacks: tests/test_veo_extras.py
async def test_each_callback_shape_names_its_task_and_verifies(dialect: str, fail: bool) -> None:
    key = next(k for k, (_, d) in CASES.items() if d == dialect)
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator, fast(emulator) as kie:
        if fail:
            emulator.fail_next(1)
        request = request_for(key)
        spec = load_registry().get(key)
        payload = build_submission_payload(validate_request(request), callback_url=CALLBACK)
        created = await kie.create_task(payload)
        await kie.wait_for_task(created.task_id, timeout=10, raise_on_failure=False)
        task = emulator.task(created.task_id)
        assert task is not None
        body = callback_body(emulator._ctx, task)
    raw = json.dumps(body).encode()
    headers = {
        "X-Webhook-Timestamp": "1700000000",
        "X-Webhook-Signature": sign_callback(created.task_id, 1700000000, "k"),
    }
    event = verify_callback(headers, raw, "k", now=1700000000)
    assert event.task_id == created.task_id
    urls = [u for u in pick_all(body, spec.transport.callback.result_urls) if u]  # failures send "" URLs
    assert (urls == []) if fail else (len(urls) == len(task.output_names) and all(u.startswith("http") for u in urls))
    assert pick(body, spec.transport.callback.task_id) == created.task_id


def _veo() -> TransportSpec:
    return spec_transport("veo-3.1")


@pytest.mark.parametrize(
    ("data", "state", "urls"),
    [
        ({"taskId": "t", "successFlag": 0}, TaskState.GENERATING, []),
        (
            {"taskId": "t", "successFlag": 1, "response": {"resultUrls": ["https://f.test/a.mp4"]}},
            TaskState.SUCCESS,
            ["https://f.test/a.mp4"],
        ),
        (
            {"taskId": "t", "successFlag": "1", "response": {"resultUrls": ["https://f.test/a.mp4"]}},
            TaskState.SUCCESS,
            ["https://f.test/a.mp4"],
        ),
        ({"taskId": "t", "successFlag": 3, "errorCode": 501, "errorMessage": "no"}, TaskState.FAIL, []),
        ({"taskId": "t", "successFlag": 7}, TaskState.UNKNOWN, []),  # a new flag: still running, not a verdict
        ({"taskId": "t", "successFlag": None}, TaskState.UNKNOWN, []),
        ({"taskId": "t", "successFlag": True}, TaskState.UNKNOWN, []),
        ({"taskId": "t", "successFlag": 1, "response": None}, TaskState.SUCCESS, []),  # success without files
        (
            {"taskId": "t", "successFlag": 1, "response": '{"resultUrls": ["https://f.test/b.mp4"]}'},
            TaskState.SUCCESS,
            ["https://f.test/b.mp4"],
        ),  # a JSON string on the way is decoded
        ({"taskId": "t", "successFlag": 1, "response": {"resultUrls": ["ftp://x", None, 5]}}, TaskState.SUCCESS, []),
    ],
)
def test_veo_status_answers_read_tolerantly(data: dict[str, object], state: TaskState, urls: list[str]) -> None:
    record = _parse_record("t", data, _veo())
    assert record.state is state and record.output_urls == urls
    assert record.has_usable_result is bool(urls)
    if state is TaskState.FAIL:
        assert record.fail_code == "501" and record.fail_msg == "no"


def test_a_status_answer_for_another_task_is_refused() -> None:
    from kie_async.errors import KieResponseShapeError

    with pytest.raises(KieResponseShapeError, match="answered for task"):
        _parse_record("mine", {"taskId": "other", "successFlag": 1}, _veo())


def test_market_transport_reads_exactly_what_recordinfo_says() -> None:
    data = {
        "taskId": "t",
        "model": "m",
        "state": "cancelled",
        "resultJson": "",
        "failCode": None,
        "failMsg": "",
        "costTime": "12",
        "progress": "45%",
        "param": '{"model":"m"}',
        "unrelated": 1,
    }
    via_transport = _parse_record("t", data, market_transport())
    assert via_transport.state is TaskState.CANCELED and via_transport.raw_state == "cancelled"
    assert via_transport.cost_time == 12 and via_transport.progress is None and via_transport.shape_problems


def test_state_words_are_matched_case_insensitively_and_numbers_as_text() -> None:
    spec = StateSpec(fields=["status", "successFlag"], values={"SUCCESS": "success", 0: "generating"})
    assert spec.read({"status": "success"}) == ("success", "success")
    assert spec.read({"successFlag": 0}) == ("generating", "0")
    assert spec.read({"status": None, "successFlag": 0}) == ("generating", "0")
    assert spec.read({}) == (None, None)


def test_pick_walks_lists_and_alternatives() -> None:
    data = {"response": {"sunoData": [{"audioUrl": "a"}, {"audioUrl": "b"}, {"x": 1}]}, "task_id": "t"}
    assert pick_all(data, ["response.sunoData.*.audioUrl"]) == ["a", "b"]
    assert pick(data, ["taskId", "task_id"]) == "t"
    assert pick(data, "response.missing.deeper") is None
    assert pick_all({"response": "not json"}, ["response.x"]) == []


def test_transport_specs_refuse_nonsense() -> None:
    from pydantic import ValidationError

    good = market_transport().model_dump()
    for bad_path in ("api/v1/x", "/api/v1/x?y=1", "//evil.test/x", "/a b", "/a\\b", "/é"):
        with pytest.raises(ValidationError, match="absolute path"):
            TransportSpec.model_validate({**good, "create": {**good["create"], "path": bad_path}})
        with pytest.raises(ValidationError, match="absolute path"):
            TransportSpec.model_validate({**good, "status": {**good["status"], "path": bad_path}})
    with pytest.raises(ValidationError, match="result_json or result_urls"):
        TransportSpec.model_validate({**good, "status": {**good["status"], "result_json": None}})
    with pytest.raises(ValidationError, match="state"):
        TransportSpec.model_validate({**good, "status": {**good["status"], "state": {"values": {"1": "done"}}}})
    flat = market_transport().create.model_copy(update={"input_field": None})
    with pytest.raises(ValueError, match="collide"):
        flat.body("m", {"model": "x"}, None)


def test_a_spec_whose_fields_collide_with_its_transport_is_refused(tmp_path: Path) -> None:
    from kie_async.catalogue.specs import SpecError, load_spec_file

    text = (Path(__file__).parents[1] / "model_specs" / "flux-kontext-pro.yaml").read_text()
    bad = tmp_path / "flux-kontext-pro.yaml"
    bad.write_text(text.replace("  watermark:\n", "  callBackUrl:\n"))
    with pytest.raises(SpecError, match="collide"):
        load_spec_file(bad)


# -- the specs against the provider's own pages ---------------------------------------------------------------


API_FOLDERS = {
    "veo3": "veo3-api",
    "veo3-extend": "veo3-api",
    "veo3-4k": "veo3-api",
    "runway": "runway-api",
    "aleph": "runway-api",
    "runway-extend": "runway-api",
    "suno": "suno-api",
    "gpt4o-image": "4o-image-api",
    "flux-kontext": "flux-kontext-api",
}


@functools.cache
def _api_operations(kie_docs: Path, folder: str) -> tuple[PageOperation, ...]:
    """Every operation the pages of one API folder document (read once per run: parsing pages is slow)."""
    return tuple(op for page in iter_pages(kie_docs, under=folder) for op in page.operations)


def _page_ops(kie_docs: Path, folder: str) -> dict[tuple[str, str], PageOperation]:
    return {(op.method.upper(), op.path): op for op in _api_operations(kie_docs, folder)}


# Fields another page of the same API documents (the spec marks them unconfirmed, with the page).
FROM_OTHER_PAGES = {"gpt4o-image": {"nVariants"}}  # 4o-image-api/quickstart.md, not the generate page's schema


@pytest.mark.parametrize("key", [*sorted(CASES), "veo-3.1-lite", "veo-3.1-extend", "veo-3.1-4k", "runway-extend"])
def test_transport_paths_and_fields_match_the_providers_page(key: str, kie_docs: Path) -> None:
    spec = load_registry().get(key)
    folder = API_FOLDERS[spec.transport.name]
    ops = _page_ops(kie_docs, folder)
    create = ops.get(("POST", spec.transport.create.path))
    assert create is not None, f"{spec.transport.create.path} is not documented in {folder}"
    assert ("GET", spec.transport.status.path) in ops
    schema = create.request_schema or {}
    documented = set(schema.get("properties", {}))
    ours = {*spec.options, *(s.field for m in spec.task_modes for s in m.slots)}
    ours |= {spec.prompt.field} if spec.prompt.accepted else set()
    ours |= {f for f in (spec.transport.create.model_field, spec.transport.create.callback_field) if f}
    documented |= FROM_OTHER_PAGES.get(key, set())
    assert ours <= documented, f"fields the page does not document: {sorted(ours - documented)}"
    for mode in spec.task_modes:
        model_enum = schema.get("properties", {}).get(spec.transport.create.model_field or "", {}).get("enum")
        if model_enum:
            assert mode.provider_model in model_enum


def test_every_transport_in_the_specs_has_an_emulator_dialect() -> None:
    paths = {(d.create_path, d.status_path) for d in DIALECTS.values()}
    for spec in load_registry().specs.values():
        if not spec.transport.is_market:
            assert (spec.transport.create.path, spec.transport.status.path) in paths, spec.key


def test_specs_sharing_an_api_describe_it_identically() -> None:
    by_name: dict[str, TransportSpec] = {}
    for spec in load_registry().specs.values():
        seen = by_name.setdefault(spec.transport.name, spec.transport)
        assert seen == spec.transport, f"{spec.key}: transport {spec.transport.name!r} differs from another spec's"


async def test_another_process_confirms_an_adoption_on_the_right_api() -> None:
    """A worker that never sent the request finds the task on its own API; a forged token is still refused."""
    from kie_async.client.adoption import with_correlation

    settled: list[tuple[str, str]] = []

    async def sink(token: str, task_id: str) -> None:
        settled.append((token, task_id))

    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        async with fast(emulator) as sender:
            payload = build_submission_payload(
                validate_request(request_for("gpt4o-image")), callback_url=with_correlation(CALLBACK, "batch.a1")
            )
            created = await sender.create_task(payload)
        async with fast(emulator) as worker:  # knows nothing of the task or its API
            assert await worker.adopt_task("batch.a1", created.task_id, fallback=sink) is True
            assert await worker.adopt_task("batch.zz", created.task_id, fallback=sink) is False
            assert await worker.adopt_task("batch.a1", "0" * 32, fallback=sink) is False  # no such task anywhere
    assert settled == [("batch.a1", created.task_id)]


# The page's own example where it contradicts its schema (the schema is followed; the spec notes it).
EXAMPLE_CONTRADICTIONS = {"runway-gen": ["duration: must be a whole number, got '5'"]}


@pytest.mark.parametrize("key", sorted(CASES))
def test_the_pages_example_request_passes_the_wire_check(key: str, kie_docs: Path) -> None:
    from kie_async.catalogue.payload import check_wire_payload

    spec = load_registry().get(key)
    create = spec.transport.create
    examples = [
        ex
        for op in _api_operations(kie_docs, API_FOLDERS[spec.transport.name])
        if op.path == create.path and op.method.lower() == "post"
        for ex in op.request_examples
    ]
    checked = 0
    for example in examples:
        model, fields, _ = create.split(example)
        if create.model_field is not None and model not in spec.provider_models:
            continue  # the example is for the sibling model (veo3_fast on the Veo page)
        assert check_wire_payload(spec.provider_models[0], fields) == EXAMPLE_CONTRADICTIONS.get(key, [])
        checked += 1
    if key not in ("veo-3.1", "flux-kontext-max"):  # their pages' single example uses the sibling model
        assert checked, f"no example request found for {create.path}"


@pytest.mark.parametrize("key", ["veo-3.1", "suno-music", "gpt4o-image"])
async def test_status_faults_on_a_separate_api_are_ridden_out(key: str, tmp_path: Path) -> None:
    """The emulator's recordInfo faults hit each API's status route; reads are retried, nothing is bought twice."""
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        emulator.faults.add("recordInfo", "server_error", count=2, status=503)
        emulator.faults.add("recordInfo", "wrong_body", count=1)
        emulator.faults.add("recordInfo", "truncated_body", count=1)
        emulator.faults.add("createTask", "rate_limit", count=1, retry_after=0)
        result = await run_pipeline(request_for(key), kie, options=opts(tmp_path))
        fired = dict(emulator.stats.faults_fired)
    assert result.succeeded, result.error
    assert emulator.stats.tasks_created == 1
    assert fired.get("server_error") == 2 and fired.get("wrong_body") == 1 and fired.get("rate_limit") == 1


@pytest.mark.parametrize("key", ["veo-3.1-fast", "suno-music"])
async def test_run_many_resumes_an_incomplete_separate_api_task_from_its_journal(key: str, tmp_path: Path) -> None:
    """Paid, then the files would not download: the second pass reads the task on its own API, buys nothing."""
    journal = tmp_path / "journal.jsonl"
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator:
        async with fast(emulator) as kie:
            emulator.faults.add("files", "server_error", count=None, status=503)
            (first,) = await run_many([request_for(key)], kie, options=opts(tmp_path / "out"), journal_path=journal)
            emulator.faults.clear()
        assert first.status == "incomplete" and first.resumable, first.error
        async with fast(emulator) as fresh:
            (second,) = await run_many([request_for(key)], fresh, options=opts(tmp_path / "out"), journal_path=journal)
    assert second.succeeded and second.resumed and second.task_id == first.task_id, second.error
    assert emulator.stats.tasks_created == 1


@pytest.mark.parametrize("key", ["veo-3.1-fast", "suno-music"])
async def test_a_handle_buys_on_the_separate_api_and_a_new_session_reattaches_to_it(key: str) -> None:
    """``kie.submit`` sells through the model's own API; ``kie.task(id, model_key=)`` in a fresh session (another
    web request, another process) reads that API's status path, never the market's recordInfo."""
    options = PipelineOptions(allow_unknown_cost=True, callback_url=CALLBACK, wait_timeout=20)
    async with KieEmulator(EmulatorConfig(generation_seconds=0.2)) as emulator:
        async with fast(emulator) as first:
            task_id = (await first.submit(request_for(key), options=options)).task_id
        async with fast(emulator) as second:
            outcome = await second.task(task_id, model_key=key).wait()
        requests = dict(emulator.stats.requests)
    dialect = CASES[key][1]
    assert outcome.record.task_id == task_id and outcome.record.state is TaskState.SUCCESS
    assert requests.get(f"createTask:{dialect}") == 1 and "recordInfo" not in requests


async def test_a_separate_api_body_is_judged_by_that_apis_published_schema() -> None:
    """The emulator refuses what Veo's page refuses (422 with the reason), whatever the SDK's specs say."""
    async with KieEmulator() as emulator, fast(emulator) as kie:
        veo = spec_transport("veo-3.1")
        good = {"prompt": "a fox", "aspect_ratio": "16:9"}
        created = await kie.create_task(model="veo3_fast", input=good, transport=veo)
        assert created.task_id
        for model, bad, reason in (
            ("veo3_fast", {}, "prompt"),
            ("veo3_fast", {"prompt": "a fox", "aspect_ratio": "4:3"}, "aspect_ratio"),
            ("veo9", {"prompt": "a fox"}, "model"),
        ):
            with pytest.raises(KieValidationError, match=reason):
                await kie.create_task(model=model, input=bad, transport=veo)
        assert emulator.stats.tasks_created == 1


async def test_a_separate_api_body_is_judged_by_the_rules_its_page_states_in_words() -> None:
    """What a page says only in prose (Veo's image counts per generationType, Suno's prompt by mode) is a named
    emulator rule; the 422 names it, and what the prose allows (a custom instrumental without prompt) passes."""
    hook = "https://hooks.example.com/kie"
    async with KieEmulator() as emulator, fast(emulator) as kie:
        veo, suno = spec_transport("veo-3.1"), spec_transport("suno-music")
        frames = ["https://example.com/a.png", "https://example.com/b.png", "https://example.com/c.png"]
        refused = [
            (
                veo,
                "veo3_fast",
                {"prompt": "a fox", "generationType": "TEXT_2_VIDEO", "imageUrls": frames[:1]},
                "veo-images-by-generation-type",
            ),
            (veo, "veo3_fast", {"prompt": "a fox", "imageUrls": frames}, "veo-images-by-generation-type"),
            (
                veo,
                "veo3",
                {"prompt": "a fox", "generationType": "REFERENCE_2_VIDEO", "imageUrls": frames[:1]},
                "veo-reference-fast-only",
            ),
            (suno, "suno-music", {"customMode": False, "instrumental": True, "model": "V4_5"}, "suno-prompt-by-mode"),
            (
                suno,
                "suno-music",
                {"customMode": True, "instrumental": True, "model": "V4", "title": "Calm"},
                "suno-custom-style-title",
            ),
            (
                suno,
                "suno-music",
                {"customMode": False, "instrumental": False, "model": "V5", "prompt": "x" * 501},
                "suno-lengths",
            ),
        ]
        for transport, model, body, rule in refused:
            with pytest.raises(KieValidationError, match=rule):
                await kie.create_task(model=model, input=body, transport=transport, callback_url=hook)
        assert emulator.stats.tasks_created == 0
        instrumental = {"customMode": True, "instrumental": True, "model": "V4", "style": "Ambient", "title": "Calm"}
        created = await kie.create_task(model="suno-music", input=instrumental, transport=suno, callback_url=hook)
        assert created.task_id and emulator.stats.tasks_created == 1
