"""The request state machine: its table, its journal fold, and random faults, kills and re-runs (hypothesis).

The property: whatever happens, no request ever has two live tasks, every request ends in a defined state,
and no state is final unless the provider said so or nothing was spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.callback_receiver import add_callback_route
from kie_async.ledger.journal import BatchJournal, JournalEntry, JournalRecord
from kie_async.ledger.request_state import (
    STATE_FACTS,
    TRANSITIONS,
    IllegalTransitionError,
    Money,
    RequestState,
    check_move,
    states_table_markdown,
)
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions, outputs_intact
from kie_async.session import KieSession
from kie_async.wire.api_models import TaskState
from tests.conftest import serve_app

DOCS = Path(__file__).resolve().parents[1] / "docs" / "batches-and-resuming.md"
PROVIDER_SAID = {RequestState.SUCCEEDED, RequestState.FAILED}


# -- the table ----------------------------------------------------------------------------------------------------


def test_every_state_has_facts_and_moves() -> None:
    assert set(STATE_FACTS) == set(RequestState) == set(TRANSITIONS)


def test_final_only_when_the_provider_said_so_or_nothing_was_spent() -> None:
    for state, facts in STATE_FACTS.items():
        if facts.final:
            assert state in PROVIDER_SAID or facts.money is Money.NOTHING, state
        if facts.resumable:
            assert facts.has_task and facts.money is Money.SPENT and not facts.final


def test_a_task_id_is_never_dropped_except_to_retry_a_provider_failure() -> None:
    for old, news in TRANSITIONS.items():
        for new in news:
            if STATE_FACTS[old].has_task and not STATE_FACTS[new].has_task:
                assert (old, new) == (RequestState.FAILED, RequestState.SUBMITTING)


def test_maybe_spent_never_becomes_spent_nothing() -> None:
    for old, news in TRANSITIONS.items():
        if STATE_FACTS[old].money is Money.MAYBE:
            # an attempt on the wire is closed as refused only when it provably did no work (by the session)
            assert all(STATE_FACTS[n].money is not Money.NOTHING for n in news) or old is RequestState.SUBMITTING


def test_illegal_moves_are_refused() -> None:
    check_move(RequestState.SUBMITTED, RequestState.INCOMPLETE)
    for old, new in [
        (RequestState.UNCERTAIN, RequestState.REFUSED),
        (RequestState.INCOMPLETE, RequestState.SUBMITTING),
        (RequestState.SUBMITTED, RequestState.BLOCKED),
        (RequestState.PENDING, RequestState.SUCCEEDED),
    ]:
        try:
            check_move(old, new, key="k")
        except IllegalTransitionError as exc:
            assert old.value in str(exc) and new.value in str(exc)
        else:
            raise AssertionError(f"{old} -> {new} was allowed")


def test_docs_table_is_generated_from_the_code() -> None:
    assert states_table_markdown() in DOCS.read_text(encoding="utf-8")


# -- the fold -----------------------------------------------------------------------------------------------------

records = st.builds(
    JournalRecord,
    key=st.just("k"),
    state=st.sampled_from(list(RequestState)),
    task_id=st.one_of(st.none(), st.sampled_from(["t1", "t2"])),
    adopted=st.booleans(),
)


@given(st.lists(records, max_size=12))
def test_fold_never_forgets_a_task_unless_a_failure_is_retried(sequence: list[JournalRecord]) -> None:
    entry = JournalEntry(key="k")
    for record in sequence:
        had = entry.task_id
        before = entry.state
        entry.apply(record)
        if had is not None and entry.task_id is None:
            assert before is RequestState.FAILED and entry.state is RequestState.SUBMITTING
        assert entry.state in RequestState


def test_legacy_journal_lines_keep_their_meaning() -> None:
    paid_then_outage = JournalRecord.model_validate(
        {"key": "k", "event": "finished", "status": "failed", "task_id": "t", "error": "download: HTTP 500"}
    )
    provider = JournalRecord.model_validate(
        {"key": "k", "event": "finished", "status": "failed", "task_id": "t", "error": "task failed: 500 x"}
    )
    assert paid_then_outage.state is RequestState.INCOMPLETE and provider.state is RequestState.FAILED
    assert JournalRecord.model_validate({"key": "k", "event": "submitting"}).state is RequestState.SUBMITTING


# -- random faults, kills and re-runs against the emulator ------------------------------------------------------

FAULTS: list[tuple[str, str, dict[str, Any]]] = [
    ("createTask", "rate_limit", {"retry_after": 0}),
    ("createTask", "server_error", {"status": 500}),
    ("createTask", "reset_before", {}),
    ("createTask", "reset_after", {}),
    ("createTask", "task_fail", {}),
    ("recordInfo", "server_error", {"status": 502}),
    ("recordInfo", "truncated_body", {}),
    ("files", "server_error", {"status": 500}),
    ("files", "truncated_body", {}),
    ("files", "wrong_body", {"wrong_body": "html"}),
]
UNCERTAINTY = {"reset_before", "reset_after"}

rounds = st.fixed_dictionaries(
    {
        "faults": st.lists(st.tuples(st.sampled_from(FAULTS), st.integers(1, 5)), max_size=4),
        "kill_after_lines": st.one_of(st.none(), st.integers(1, 10)),
        "retry_failed": st.booleans(),
    }
)
scenarios = st.fixed_dictionaries(
    {"rounds": st.lists(rounds, min_size=1, max_size=3), "callbacks": st.booleans(), "size": st.integers(2, 4)}
)
EXAMPLES = int(os.environ.get("KIE_PROPERTY_EXAMPLES", "20"))
HMAC = "property-test-key"


def _prompt_of(task: Any) -> str:
    return str(json.loads(json.loads(task.param_json())["input"])["prompt"])


class _World:
    """One emulator, one journal, one batch of requests; checks the money invariants after every round."""

    def __init__(self, emulator: KieEmulator, root: Path, size: int, callback_url: str | None) -> None:
        self.emulator = emulator
        self.root = root
        self.journal = root / "journal.jsonl"
        self.requests = [RawUserRequest(model_key="nano-banana-2", prompt=f"property {i}") for i in range(size)]
        artifacts = ArtifactSettings(root=root / "out", derivatives=ArtifactDerivativeSettings(enabled=False))
        self.options = PipelineOptions(
            artifacts=artifacts.model_copy(update={"fsync": False}), callback_url=callback_url, wait_timeout=3.0
        )
        self.uncertainty_injected = False

    def settings(self) -> Any:
        return self.emulator.settings(
            poll=PollSettings(schedule=((float("inf"), 0.03),), timeout=5.0),
            retry=RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.03),
            rate_limit=RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000),
        )

    async def play(self, kie: KieSession, round_: dict[str, Any]) -> None:
        self.emulator.faults.clear()
        for (endpoint, kind, params), count in round_["faults"]:
            self.emulator.faults.add(endpoint, kind, count=count, **params)
            self.uncertainty_injected |= endpoint == "createTask" and kind in UNCERTAINTY
        job = asyncio.create_task(
            run_many(
                self.requests, kie, options=self.options, journal_path=self.journal, retry_failed=round_["retry_failed"]
            )
        )
        kill_after = round_["kill_after_lines"]
        if kill_after is not None:
            start = self._lines()
            while not job.done() and self._lines() - start < kill_after:
                await asyncio.sleep(0.005)
            if not job.done():
                job.cancel()
                self.uncertainty_injected = True  # a kill can land while createTask is on the wire
        await asyncio.gather(job, return_exceptions=True)
        self.emulator.faults.clear()

    def _lines(self) -> int:
        try:
            return self.journal.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    async def entries(self) -> dict[str, JournalEntry]:
        async with await BatchJournal.open(self.journal) as journal:
            by_key = dict(journal.entries)
        return by_key

    async def check(self, *, settled: bool) -> None:
        tasks = self.emulator.tasks()
        live = Counter(_prompt_of(t) for t in tasks if t.state_at() is not TaskState.FAIL)
        assert not live or max(live.values()) == 1, f"a request has two live tasks: {live}"
        by_id = {t.task_id: t for t in tasks}
        entries = await self.entries()
        prompts = {e.key: e for e in entries.values()}
        for entry in prompts.values():
            state = entry.state
            assert state in RequestState
            if state is RequestState.SUCCEEDED:
                task = by_id[entry.task_id or ""]
                assert task.state_at() is TaskState.SUCCESS
                record = entry.result
                assert record is not None
                paths = [Path(p) for p in record.outputs]
                assert outputs_intact(paths, record.output_sha256, record.output_bytes)
            elif state is RequestState.FAILED:
                assert by_id[entry.task_id or ""].state_at() is TaskState.FAIL  # the provider said so
            elif state in (RequestState.REFUSED, RequestState.BLOCKED):
                prompt = entry.intent.prompt if entry.intent else None
                assert prompt is None or live[prompt] == 0, f"{state} but a task exists for {prompt!r}"
            if settled:
                allowed = PROVIDER_SAID | ({RequestState.UNCERTAIN} if self.uncertainty_injected else set())
                assert state in allowed, (state, entry.last)
        if settled:
            finished = {e.task_id for e in prompts.values() if e.state in PROVIDER_SAID}
            unsettled = [t for t in tasks if t.task_id not in finished and t.state_at() is not TaskState.FAIL]
            uncertain = sum(e.state is RequestState.UNCERTAIN for e in prompts.values())
            assert len(unsettled) <= uncertain, "a paid task ended neither succeeded nor provider-failed"


async def _scenario(scenario: dict[str, Any], root: Path) -> None:
    config = EmulatorConfig(generation_seconds=0.03, webhook_hmac_key=HMAC, seed=len(str(scenario)))
    async with KieEmulator(config) as emulator:
        world = _World(emulator, root, scenario["size"], None)
        async with KieSession(world.settings()) as kie, contextlib.AsyncExitStack() as stack:
            if scenario["callbacks"]:
                app = web.Application()
                add_callback_route(app, kie, "/cb", hmac_key=HMAC)
                base = await stack.enter_async_context(serve_app(app))
                world.options = world.options.model_copy(update={"callback_url": f"{base}/cb"})
            for round_ in scenario["rounds"]:
                await world.play(kie, round_)
                await world.check(settled=False)
            clean = {"faults": [], "kill_after_lines": None, "retry_failed": False}
            settled_states = PROVIDER_SAID | {RequestState.UNCERTAIN}
            for _ in range(6):
                await world.play(kie, clean)
                await asyncio.sleep(0.2)  # callbacks still in flight land (an adoption makes a key resumable)
                if all(e.state in settled_states for e in (await world.entries()).values()):
                    break
            await world.check(settled=True)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios)
def test_random_faults_kills_and_reruns_never_buy_twice(scenario: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_scenario(scenario, Path(tmp)))


def test_states_table_mentions_every_state() -> None:
    table = states_table_markdown()
    assert all(re.search(rf"`{s.value}`", table) for s in RequestState)
