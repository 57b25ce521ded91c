"""One batch split over processes through the shared journal in a real Redis: claims, takeovers, no double buys.

Sessions in this process stand for processes (each has its own coordinator and Redis connections). A death is
simulated two ways: a journal that stops renewing its claims without giving them back (``abandon``), and a real
``kie-async run-batch --coordination`` subprocess killed with SIGKILL. The emulator's own task list is the proof:
no prompt may ever have two tasks. The 3-process, 300-request figures are benchmarks/bench_shared_batch.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from kie_async import KieSession, RawUserRequest, run_many
from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.normalize import normalize_request
from kie_async.coordination.redis_coordinator import RedisCoordinator
from kie_async.coordination.redis_journal import ClaimLostError, JournalLostError, RedisJournal
from kie_async.core.settings import PollSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieInputError
from kie_async.interfaces.cli import main
from kie_async.interfaces.cli._run_cmd import default_batch_id, load_batch_file
from kie_async.ledger.journal import JournalRecord, request_key
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.run import PipelineOptions, RunResult
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
FAST = {
    "poll": PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0, callback_safety_interval=60.0),
    "retry": RetrySettings(max_retries=4, initial_backoff=0.02, max_backoff=0.1),
    "coordination_lease_seconds": 1.0,
}
MODEL = "nano-banana-2"


def session(emulator: KieEmulator, redis_url: str) -> KieSession:
    return KieSession(emulator.settings(coordination_url=redis_url, **FAST))


def opts(root: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts)


def batch(prefix: str, n: int) -> list[RawUserRequest]:
    return [RawUserRequest(model_key=MODEL, prompt=f"{prefix} {i}") for i in range(n)]


def key_of(request: RawUserRequest) -> str:
    return request_key(normalize_request(request))


def tasks_per_prompt(emulator: KieEmulator) -> Counter[str]:
    return Counter(str(t.body.get("input", {}).get("prompt")) for t in emulator.tasks())


def coordinator_of(kie: KieSession) -> RedisCoordinator:
    assert isinstance(kie.coordinator, RedisCoordinator)
    return kie.coordinator


async def meta(kie: KieSession, batch_id: str) -> dict[str, str]:
    c = coordinator_of(kie)
    return dict(await c.client.hgetall(c.key("batch", batch_id, "meta")))


# -- splitting -----------------------------------------------------------------------------------------------


async def test_two_sessions_split_one_batch_and_both_return_all_results(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    requests = batch("split", 12)
    async with session(emulator, redis_url) as a, session(emulator, redis_url) as b:
        ra, rb = await asyncio.gather(
            run_many(requests, a, concurrency=3, options=opts(tmp_path / "a"), batch_id="split-batch"),
            run_many(requests, b, concurrency=3, options=opts(tmp_path / "b"), batch_id="split-batch"),
        )
    assert all(r.succeeded for r in ra + rb)
    assert [r.task_id for r in ra] == [r.task_id for r in rb]  # one task per request, reported by both
    assert tasks_per_prompt(emulator) == Counter(r.prompt for r in requests)  # every prompt exactly once
    ran_by_a = [not r.resumed for r in ra]
    ran_by_b = [not r.resumed for r in rb]
    assert [x ^ y for x, y in zip(ran_by_a, ran_by_b, strict=True)] == [True] * 12  # each ran by exactly one
    assert 0 < sum(ran_by_a) < 12  # and really split


async def test_two_calls_in_one_process_split_a_batch_too(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    requests = batch("one process", 6)
    async with session(emulator, redis_url) as kie:  # e.g. two web requests starting the same batch
        first, second = await asyncio.gather(
            run_many(requests, kie, concurrency=2, options=opts(tmp_path), batch_id="same-process"),
            run_many(requests, kie, concurrency=2, options=opts(tmp_path), batch_id="same-process"),
        )
    assert all(r.succeeded for r in first + second)
    assert sum(not r.resumed for r in first + second) == 6
    assert tasks_per_prompt(emulator) == Counter(r.prompt for r in requests)


async def test_a_file_journal_and_a_shared_batch_are_refused_together(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    async with session(emulator, redis_url) as kie:
        with pytest.raises(KieInputError, match="journal_path"):
            await run_many(batch("both", 1), kie, journal_path=tmp_path / "j.jsonl", batch_id="both")
    assert emulator.stats.requests.get("createTask", 0) == 0


# -- takeovers -----------------------------------------------------------------------------------------------


async def _dead_owner(
    kie: KieSession, batch_id: str, requests: list[RawUserRequest], emulator: KieEmulator
) -> dict[str, str]:
    """A process that claimed four requests, got as far as each one's state below, then stopped renewing.

    ``maybe``: intent and sending marker (it may have sent); ``never``: intent without the marker;
    ``paid``: a task bought and journaled; ``idle``: claimed, nothing written. Returns {label: key}.
    """
    journal = await RedisJournal.open(coordinator_of(kie), batch_id, lease_seconds=1.0)
    labels = dict(zip(("maybe", "never", "paid", "idle"), (key_of(r) for r in requests), strict=False))
    for label, key in list(labels.items()):
        assert (await journal.try_claim(key)).claimed
        if label == "idle":
            continue
        intent = JournalRecord(key=key, state=RequestState.SUBMITTING, attempt=f"dead-{label}", model_key=MODEL)
        await journal.record(intent)
        if label == "never":
            continue
        await journal.record(intent.model_copy(update={"sending": True}))
        if label == "paid":
            prompt = requests[2].prompt
            created = await kie.create_task(model="nano-banana-2", input={"prompt": prompt})
            await journal.record(
                JournalRecord(
                    key=key, state=RequestState.SUBMITTED, attempt="dead-paid", task_id=created.task_id, model_key=MODEL
                )
            )
            labels["paid_task"] = created.task_id
    await journal.abandon()  # killed: no renewals, nothing given back
    return labels


async def test_a_dead_owners_claims_are_taken_over_by_the_rules_of_the_journal(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    requests = batch("takeover", 5)  # the fifth was never claimed by anyone
    async with session(emulator, redis_url) as dead, session(emulator, redis_url) as taker:
        labels = await _dead_owner(dead, "takeover", requests, emulator)
        # resubmit_uncertain does not reach a claim that died maybe-sent: the taker never buys it again
        results = await run_many(requests, taker, options=opts(tmp_path), batch_id="takeover", resubmit_uncertain=True)
        counters = await meta(taker, "takeover")
    maybe, never, paid, idle, free = results
    assert maybe.status == "submit_uncertain" and maybe.state is RequestState.UNCERTAIN
    assert "on the wire" in str(maybe.error) or maybe.error_type == "KieSubmissionUncertainError"
    assert never.succeeded and idle.succeeded and free.succeeded
    assert paid.succeeded and paid.task_id == labels["paid_task"]  # resumed on the dead one's task
    sold = tasks_per_prompt(emulator)
    assert sold[requests[0].prompt] == 0  # maybe-sent: left uncertain, not resubmitted
    assert all(sold[r.prompt] == 1 for r in requests[1:])  # never-sent bought once, paid not bought again
    assert counters["takeovers"] == "4" and counters["takeover_uncertain"] == "1"
    assert counters["takeover_refused"] == "1"


async def test_a_later_process_rebuys_nothing_after_a_takeover(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    requests = batch("after", 4)
    async with session(emulator, redis_url) as dead, session(emulator, redis_url) as taker:
        await _dead_owner(dead, "after", requests, emulator)
        await run_many(requests, taker, options=opts(tmp_path / "t"), batch_id="after")
        sold_after_takeover = emulator.stats.tasks_created
        async with session(emulator, redis_url) as later:
            again = await run_many(
                requests, later, options=opts(tmp_path / "t"), batch_id="after", resubmit_uncertain=False
            )
    assert emulator.stats.tasks_created == sold_after_takeover == 3  # never, paid (the dead one's), idle
    assert [r.status for r in again] == ["submit_uncertain", "succeeded", "succeeded", "succeeded"]
    assert all(r.resumed for r in again[1:])  # read back from the shared journal, nothing run


async def test_a_process_whose_claim_was_taken_over_can_no_longer_send(emulator: KieEmulator, redis_url: str) -> None:
    async with session(emulator, redis_url) as slow, session(emulator, redis_url) as taker:
        key = "fenced-key"
        stalled = await RedisJournal.open(coordinator_of(slow), "fence", lease_seconds=0.5)
        assert (await stalled.try_claim(key)).claimed
        intent = JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="a1", model_key=MODEL)
        await stalled.record(intent)
        await stalled.abandon()  # stalls past its lease (a long GC pause, a frozen VM)
        await asyncio.sleep(0.7)
        other = await RedisJournal.open(coordinator_of(taker), "fence", lease_seconds=5.0)
        claim = await other.try_claim(key)
        assert claim.claimed and claim.closed is RequestState.REFUSED  # it never left: the taker may buy it
        with pytest.raises(ClaimLostError):  # ... and the stalled one wakes up: its marker cannot land
            await stalled.record(intent.model_copy(update={"sending": True}))
        await other.close()
        await stalled.close()


async def test_a_succeeded_run_on_another_machine_is_reported_without_downloading(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    request = RawUserRequest(model_key=MODEL, prompt="rendered elsewhere")
    key = key_of(request)
    async with session(emulator, redis_url) as there, session(emulator, redis_url) as here:
        created = await there.create_task(model="nano-banana-2", input={"prompt": request.prompt})
        journal = await RedisJournal.open(coordinator_of(there), "machines", host="render-02")
        assert (await journal.try_claim(key)).claimed
        await journal.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="x", model_key=MODEL))
        await journal.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="x", sending=True))
        for state in (RequestState.SUBMITTED, RequestState.SUCCEEDED):
            await journal.record(
                JournalRecord(
                    key=key,
                    state=state,
                    attempt="x",
                    task_id=created.task_id,
                    model_key=MODEL,
                    run_id="r-1",
                    run_dir="/srv/render-02/runs/r-1" if state is RequestState.SUCCEEDED else None,
                    outputs=["/srv/render-02/runs/r-1/output_0.png"] if state is RequestState.SUCCEEDED else [],
                    output_sha256=["0" * 64] if state is RequestState.SUCCEEDED else [],
                    output_bytes=[1234] if state is RequestState.SUCCEEDED else [],
                )
            )
        assert journal.get(key) is not None and journal.get(key).result.host == "render-02"  # type: ignore[union-attr]
        await journal.finish(
            key,
            RunResult(
                status="succeeded",
                state=RequestState.SUCCEEDED,
                model_key=MODEL,
                request_key=key,
                task_id=created.task_id,
            ),
        )
        await journal.close()
        served_before = emulator.stats.files_served
        [result] = await run_many([request], here, options=opts(tmp_path), batch_id="machines")
    assert result.succeeded and result.resumed and result.task_id == created.task_id
    assert result.run_dir == "/srv/render-02/runs/r-1"
    assert [str(o.path) for o in result.outputs] == ["/srv/render-02/runs/r-1/output_0.png"]
    assert emulator.stats.files_served == served_before and emulator.stats.tasks_created == 1


# -- Redis faults --------------------------------------------------------------------------------------------


async def test_a_batch_that_redis_lost_buys_nothing_more(emulator: KieEmulator, redis_url: str) -> None:
    async with session(emulator, redis_url) as kie:
        journal = await RedisJournal.open(coordinator_of(kie), "lost")
        assert (await journal.try_claim("k")).claimed
        client: aioredis.Redis = aioredis.from_url(redis_url)
        await client.flushall()  # a restart without persistence
        await client.aclose()
        with pytest.raises(JournalLostError):
            await journal.record(JournalRecord(key="k", state=RequestState.SUBMITTING, attempt="a", model_key=MODEL))
        await journal.close()


async def test_an_intent_waits_for_redis_and_is_never_assumed(
    emulator: KieEmulator, redis_server: RedisServer, redis_url: str
) -> None:
    async with session(emulator, redis_url) as kie:
        journal = await RedisJournal.open(coordinator_of(kie), "outage")
        assert (await journal.try_claim("k")).claimed
        redis_server.stop()
        try:
            intent = asyncio.create_task(
                journal.record(JournalRecord(key="k", state=RequestState.SUBMITTING, attempt="a", model_key=MODEL))
            )
            await asyncio.sleep(1.0)
            assert not intent.done()  # fail closed: no acknowledged intent, no send
        finally:
            redis_server.start()
        with pytest.raises(JournalLostError):  # this test server keeps no data: the batch is gone, stop
            await asyncio.wait_for(intent, timeout=30)
        await journal.close()


# -- the command line ----------------------------------------------------------------------------------------


def _cli_env(emulator: KieEmulator, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_API_KEY": emulator.api_key,
        "KIE_COORDINATION_LEASE_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _batch_file(path: Path, prefix: str, n: int) -> Path:
    path.write_text("".join(json.dumps({"model_key": MODEL, "prompt": f"{prefix} {i}"}) + "\n" for i in range(n)))
    return path


async def _run_batch_process(file: Path, out: Path, env: dict[str, str], redis_url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kie_async",
        "run-batch",
        str(file),
        "--coordination",
        redis_url,
        "--out",
        str(out),
        "--no-derivatives",
        "--json",
        "--concurrency",
        "3",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.5)


async def test_two_run_batch_processes_on_one_file_buy_one_task_per_request(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    file = _batch_file(tmp_path / "batch.jsonl", "cli", 10)
    env = _cli_env(emulator, redis_url)
    procs = [await _run_batch_process(file, tmp_path / f"out{n}", env, redis_url) for n in range(2)]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=120)
    reports: list[dict[str, Any]] = []
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr.decode()[-2000:]
        reports.append(json.loads(stdout))
    assert reports[0]["batch_id"] == reports[1]["batch_id"] == default_batch_id(file)
    a, b = (report["results"] for report in reports)
    assert len(a) == len(b) == 10 and all(r["status"] == "succeeded" for r in a + b)
    assert [r["task_id"] for r in a] == [r["task_id"] for r in b]
    assert sum(not r["resumed"] for r in a + b) == 10  # each request run by one process
    assert tasks_per_prompt(emulator) == Counter(f"cli {i}" for i in range(10))


async def test_a_sigkilled_run_batch_process_is_taken_over_and_nothing_is_bought_twice(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    emulator.config.generation_seconds = 1.5  # tasks still generating when the kill lands
    file = _batch_file(tmp_path / "batch.jsonl", "killed", 9)
    victim = await _run_batch_process(file, tmp_path / "victim", _cli_env(emulator, redis_url), redis_url)
    while emulator.stats.tasks_created < 3 and victim.returncode is None:
        await asyncio.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    assert victim.returncode == -signal.SIGKILL
    requests = load_batch_file(file)
    batch_id = default_batch_id(file)
    async with session(emulator, redis_url) as survivor:
        results = await run_many(requests, survivor, options=opts(tmp_path / "survivor"), batch_id=batch_id)
        counters = await meta(survivor, batch_id)
    sold = tasks_per_prompt(emulator)
    assert max(sold.values()) == 1  # no request has two tasks
    assert int(counters.get("takeovers", 0)) >= 1  # the survivor finished the dead one's claims
    for request, result in zip(requests, results, strict=True):
        if result.status == "submit_uncertain":  # died maybe-sent: left alone, never bought by the survivor
            assert result.state is RequestState.UNCERTAIN
        else:
            assert result.succeeded and sold[request.prompt] == 1, result
    assert sum(r.succeeded for r in results) >= 9 - int(counters.get("takeover_uncertain", 0))


def test_run_batch_refuses_a_shared_batch_it_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _batch_file(tmp_path / "b.jsonl", "refused", 1)
    assert main(["run-batch", str(file), "--coordination", "redis://127.0.0.1:1/0", "--offline"]) == 2
    assert "--offline" in capsys.readouterr().err
    assert (
        main(
            ["run-batch", str(file), "--coordination", "redis://127.0.0.1:1/0", "--journal", str(tmp_path / "j.jsonl")]
        )
        == 2
    )
    assert "--journal" in capsys.readouterr().err
    env_had = os.environ.pop("KIE_COORDINATION_URL", None)
    try:
        assert main(["run-batch", str(file), "--batch-id", "x", "--offline"]) == 2
        assert "--coordination" in capsys.readouterr().err
    finally:
        if env_had is not None:
            os.environ["KIE_COORDINATION_URL"] = env_had


# -- the benchmark, reduced ----------------------------------------------------------------------------------

BENCH_ZERO = (
    "requests_with_two_tasks",
    "not_settled",
    "dead_claims_unfinished",
    "dead_maybe_sent_not_left_uncertain",
    "survivors_disagree",
    "uncertain_not_from_the_kill",
)


def test_quick_shared_batch_benchmark_buys_nothing_twice(redis_server: RedisServer, tmp_path: Path) -> None:
    """``bench_shared_batch.py --quick``: 3 run-batch processes on 30 requests, one SIGKILLed while it holds some.

    (``redis_server`` only for its skip-or-fail rule: the benchmark starts its own.)
    """
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_shared_batch.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = tmp_path / "bench_shared_batch.quick.json"
    assert results.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(results.read_text())["figures"]
    assert {k: figures[k] for k in BENCH_ZERO} == dict.fromkeys(BENCH_ZERO, 0), json.dumps(figures, indent=1)
    assert done.returncode == 0
    # the kill really landed on a process holding requests, and the survivors took them over
    assert figures["dead_claims_at_kill"] >= 1 and figures["claims_taken_over"] >= figures["dead_claims_at_kill"]
    assert figures["requests"] == 30 and figures["statuses"].get("succeeded", 0) >= 25
    maybe_sent = figures["dead_states_at_kill"].get("submitting+sending", 0)
    assert figures["dead_maybe_sent_left_uncertain"] == maybe_sent == figures["statuses"].get("submit_uncertain", 0)
