"""The shared ledger under hostile conditions, against a real Redis and the emulator (tasks counted there).

- **Loss fails closed.** Redis restarted empty (no persistence) or flushed mid-batch: every process stops with
  ``JournalLostError``, no request is bought twice, a process started afterwards refuses too, and only
  ``kie-async ledger recover`` (a new epoch, tasks put back from run folders and the provider) lets buying on.
- **Identity by request.** A request paid in one batch and not delivered is resumed by any other batch of the
  account running it (an edited batch file is a new batch id), never bought again.
- **Adoption is confirmed.** A forged ``adopt:<token> <task>`` on the Redis channel is not taken.
- **Replays run once per account.** One replayed callback over two receivers (two workers) runs the handler once.
- **A receiver settles only its batch.** A token names its batch (scope) and attempt; another batch's callback
  for the same request is not written into this journal.

Sessions in this process stand for processes (each has its own coordinator and Redis connections).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from kie_async import KieSession, RawUserRequest, run_many
from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.normalize import normalize_request
from kie_async.client.adoption import with_correlation
from kie_async.coordination.redis_coordinator import RedisCoordinator
from kie_async.coordination.redis_journal import JournalLostError, RedisJournal
from kie_async.core.settings import PollSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.callback_receiver import CallbackReceiver
from kie_async.interfaces.cli._run_cmd import default_batch_id
from kie_async.ledger.journal import (
    BatchJournal,
    JournalRecord,
    correlation_token,
    journal_scope,
    parse_correlation_token,
    parse_token,
    request_key,
)
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.batch_shared import SharedJournalStrategy
from kie_async.pipeline.run import PipelineOptions
from kie_async.wire.api_models import CallbackEvent
from kie_async.wire.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_callback
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
MODEL = "nano-banana-2"
HMAC = "whk-ledger"
DEAD_CALLBACK = "http://127.0.0.1:9/kie/callback"  # nothing listens: only the token in it matters here
FAST = {
    "poll": PollSettings(schedule=((float("inf"), 0.05),), timeout=60.0, callback_safety_interval=60.0),
    "retry": RetrySettings(max_retries=4, initial_backoff=0.02, max_backoff=0.1),
    "coordination_lease_seconds": 1.0,
}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.5, webhook_hmac_key=HMAC)


def session(emulator: KieEmulator, redis_url: str) -> KieSession:
    return KieSession(emulator.settings(coordination_url=redis_url, **FAST))


def opts(root: Path, *, callback_url: str | None = None) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts, callback_url=callback_url)


def batch(prefix: str, n: int) -> list[RawUserRequest]:
    return [RawUserRequest(model_key=MODEL, prompt=f"{prefix} {i}") for i in range(n)]


def key_of(request: RawUserRequest) -> str:
    return request_key(normalize_request(request))


def tasks_per_prompt(emulator: KieEmulator) -> Counter[str]:
    return Counter(str(t.body.get("input", {}).get("prompt")) for t in emulator.tasks())


def coordinator_of(kie: KieSession) -> RedisCoordinator:
    assert isinstance(kie.coordinator, RedisCoordinator)
    return kie.coordinator


async def until(check: object, what: str, timeout: float = 60.0) -> None:
    """Wait for an observable event (a count at the emulator, a subscription), not for a wall-clock margin."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def restart(server: RedisServer) -> None:
    server.stop()
    server.start()


async def recover_cli(emulator: KieEmulator, redis_url: str, *roots: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_API_KEY": emulator.api_key,
    }
    args = ["ledger", "recover", "--coordination", redis_url, "--json"]
    for root in roots:
        args += ["--out", str(root)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kie_async",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    report: dict[str, object] = json.loads(out)
    return report


# -- item 5: a lost ledger fails closed ----------------------------------------------------------------------


async def _three_processes_lose_redis(
    emulator: KieEmulator, redis_url: str, tmp_path: Path, lose: object, requests: list[RawUserRequest]
) -> list[object]:
    async with session(emulator, redis_url) as a, session(emulator, redis_url) as b, session(emulator, redis_url) as c:
        runs = [
            asyncio.create_task(
                run_many(
                    requests,
                    kie,
                    concurrency=3,
                    batch_id="lost-batch",
                    options=opts(tmp_path / name, callback_url=DEAD_CALLBACK),
                )
            )
            for name, kie in (("a", a), ("b", b), ("c", c))
        ]
        await until(lambda: emulator.stats.tasks_created >= 6, "the first purchases")
        lose()  # type: ignore[operator]
        return list(await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), timeout=180))


async def test_a_redis_restart_without_data_mid_batch_stops_buying_until_recovered(
    emulator: KieEmulator, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    emulator.config.generation_seconds = 1.0
    requests = batch("restart", 24)
    outcomes = await _three_processes_lose_redis(emulator, redis_url, tmp_path, lambda: restart(redis_server), requests)
    sold = tasks_per_prompt(emulator)
    assert max(sold.values()) == 1, sold  # before: 33 tasks for 24 requests
    assert all(isinstance(o, JournalLostError) for o in outcomes), outcomes
    bought = emulator.stats.tasks_created
    assert bought < 24

    # A process started after the loss refuses too (this machine remembers the ledger it was on).
    async with session(emulator, redis_url) as late:
        with pytest.raises(JournalLostError):
            await run_many(requests, late, batch_id="lost-batch", options=opts(tmp_path / "late"))
    assert emulator.stats.tasks_created == bought

    # An operator re-seeds it from the run folders and the provider's records; then the batch finishes.
    roots = [tmp_path / name for name in "abc" if (tmp_path / name).is_dir()]  # a process may have bought none
    report = await recover_cli(emulator, redis_url, *roots)
    assert report["epoch"] and not report["cannot"], report
    assert len(report["recovered"]) == bought  # type: ignore[arg-type]
    async with session(emulator, redis_url) as again:
        results = await run_many(
            requests, again, batch_id="lost-batch", options=opts(tmp_path / "again", callback_url=DEAD_CALLBACK)
        )
    assert all(r.succeeded for r in results), [r.status for r in results]
    assert tasks_per_prompt(emulator) == Counter(r.prompt for r in requests)  # 24 tasks, one per request
    assert sum(r.resumed for r in results) >= bought


async def test_a_flushall_mid_batch_buys_nothing_twice(
    emulator: KieEmulator, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    emulator.config.generation_seconds = 1.0
    outcomes = await _three_processes_lose_redis(
        emulator, redis_url, tmp_path, redis_server.flush, batch("flushed", 24)
    )
    sold = tasks_per_prompt(emulator)
    assert max(sold.values()) == 1, sold  # before: 25-27 tasks
    assert all(isinstance(o, JournalLostError) for o in outcomes), outcomes


async def test_no_script_recreates_a_lost_batch(emulator: KieEmulator, redis_url: str) -> None:
    async with session(emulator, redis_url) as kie:
        journal = await RedisJournal.open(coordinator_of(kie), "gone")
        assert (await journal.try_claim("k1")).claimed
        client = coordinator_of(kie).client
        await client.flushall()
        with pytest.raises(JournalLostError):
            await journal.try_claim("k2")
        assert await journal.finish("k1", "{}")  # the run's own result stands; nothing more is claimed
        assert await client.dbsize() == 0  # neither the claim nor the finish recreated anything
        await journal.close()


# -- item 4: identity by request, across batches of the account ---------------------------------------------


async def _paid_not_delivered(kie: KieSession, batch_id: str, requests: list[RawUserRequest]) -> list[str]:
    """Batch ``batch_id`` bought these (real tasks) and died before delivering them."""
    journal = await RedisJournal.open(coordinator_of(kie), batch_id)
    task_ids = []
    for n, request in enumerate(requests):
        key = key_of(request)
        assert (await journal.try_claim(key)).claimed
        await journal.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt=f"a{n}", model_key=MODEL))
        await journal.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt=f"a{n}", sending=True))
        created = await kie.create_task(model=MODEL, input={"prompt": request.prompt})
        await journal.record(
            JournalRecord(
                key=key, state=RequestState.SUBMITTED, attempt=f"a{n}", task_id=created.task_id, model_key=MODEL
            )
        )
        task_ids.append(created.task_id)
    await journal.abandon()
    return task_ids


async def test_an_edited_batch_file_resumes_paid_requests_instead_of_buying_them(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    requests = batch("edited", 6)
    async with session(emulator, redis_url) as kie:
        paid = await _paid_not_delivered(kie, "file-v1", requests[:3])
        # The file gained a comment, CRLF endings, and its order changed: another default batch id.
        edited = list(reversed(requests))
        results = await run_many(edited, kie, batch_id="file-v2", options=opts(tmp_path))
    assert all(r.succeeded for r in results)
    assert tasks_per_prompt(emulator) == Counter(r.prompt for r in requests)  # before: 9 tasks for 6 requests
    assert sorted(r.task_id for r in results if r.task_id in paid) == sorted(paid)


def test_the_default_batch_id_is_the_requests_not_the_bytes(tmp_path: Path) -> None:
    lines = [json.dumps({"model_key": MODEL, "prompt": f"line {i}"}) for i in range(4)]
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(lines) + "\n")
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(("# re-run after the outage\r\n\r\n" + "\r\n".join(reversed(lines)) + "\r\n").encode())
    assert default_batch_id(plain) == default_batch_id(edited)  # comment, CRLF, blank line, order: same batch
    trimmed = tmp_path / "trimmed.jsonl"
    trimmed.write_text("\n".join(lines[2:]) + "\n")
    assert default_batch_id(trimmed) != default_batch_id(plain)  # fewer requests: another batch (see above)


async def test_a_request_maybe_paid_in_another_batch_is_not_bought(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    request = RawUserRequest(model_key=MODEL, prompt="in flight elsewhere")
    async with session(emulator, redis_url) as kie:
        other = await RedisJournal.open(coordinator_of(kie), "batch-a")
        key = key_of(request)
        assert (await other.try_claim(key)).claimed
        await other.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="x", model_key=MODEL))
        await other.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="x", sending=True))
        [result] = await run_many([request], kie, batch_id="batch-b", options=opts(tmp_path))
        await other.abandon()
    assert not result.succeeded and "batch-a" in (result.error or ""), result
    assert emulator.stats.tasks_created == 0


# -- item 8: a forged adoption on the channel ----------------------------------------------------------------


async def test_a_forged_adoption_published_on_redis_is_not_taken(emulator: KieEmulator, redis_url: str) -> None:
    async with session(emulator, redis_url) as waiter:
        c = coordinator_of(waiter)
        token = correlation_token("k" * 16, "a1", journal_scope("b"))
        mine = await waiter.create_task(
            model=MODEL, input={"prompt": "mine"}, callback_url=with_correlation(DEAD_CALLBACK, token)
        )
        theirs = await waiter.create_task(model=MODEL, input={"prompt": "someone else's"})
        adopted = waiter.expect_adoption(token)
        attacker = aioredis.from_url(redis_url, decode_responses=True)
        try:
            await until(lambda: c._channel_connected, "the callback channel")
            channel = c.key("tasks")
            while not dict(await attacker.pubsub_numsub(channel)).get(channel):
                await asyncio.sleep(0.01)
            await attacker.publish(channel, f"adopt:{token} {theirs.task_id}")  # any Redis client can do this
            await attacker.publish(channel, f"adopt:{token} {mine.task_id}")  # a real relay, after it
            assert await asyncio.wait_for(adopted, timeout=30) == mine.task_id  # before: theirs
        finally:
            await attacker.aclose()


# -- item 9: one replay over two workers ---------------------------------------------------------------------


async def test_a_replayed_callback_runs_the_handler_once_over_two_receivers(
    emulator: KieEmulator, redis_url: str
) -> None:
    events: list[CallbackEvent] = []
    async with session(emulator, redis_url) as w1, session(emulator, redis_url) as w2:
        created = await w1.create_task(model=MODEL, input={"prompt": "replayed"})
        ts = int(time.time())
        headers = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign_callback(created.task_id, ts, HMAC)}
        body = json.dumps({"code": 200, "data": {"task_id": created.task_id}}).encode()
        one = CallbackReceiver(w1, hmac_key=HMAC, on_event=events.append)
        two = CallbackReceiver(w2, hmac_key=HMAC, on_event=events.append)
        first = await one.receive(headers, body)
        replay = await two.receive(headers, body)  # captured and sent to another worker
    assert (first.status, replay.status) == (200, 409)
    assert len(events) == 1  # before: once per worker


# -- item 10: a receiver settles only the batch its token names ----------------------------------------------


def test_tokens_carry_their_batch_and_old_tokens_still_read() -> None:
    token = correlation_token("abc#2", "f00d", journal_scope("batch one"))
    assert parse_token(token) == ("abc#2", "f00d", journal_scope("batch one"))
    assert parse_correlation_token(token) == ("abc#2", "f00d")
    assert parse_token(correlation_token("abc", "f00d")) == ("abc", "f00d", None)  # a token from before
    assert parse_token("abc.f00d") == ("abc", "f00d", None)


async def test_one_receiver_for_two_batches_settles_each_callback_in_its_own_journal(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    key = "same-request-in-both-batches"
    first = tmp_path / "batch1.jsonl"
    async with await BatchJournal.open(first) as journal:  # batch 1's answer was lost: uncertain
        await journal.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="a1", model_key=MODEL))
        await journal.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="a1", sending=True))
    async with KieSession(emulator.settings(**FAST)) as kie:
        receiver = CallbackReceiver(kie, hmac_key=HMAC, journal=first)
        other = correlation_token(key, "b7")  # batch 2 runs the same request
        theirs = await kie.create_task(
            model=MODEL, input={"prompt": "batch 2"}, callback_url=with_correlation(DEAD_CALLBACK, other)
        )
        own = correlation_token(key, "a1")
        mine = await kie.create_task(
            model=MODEL, input={"prompt": "batch 1"}, callback_url=with_correlation(DEAD_CALLBACK, own)
        )
        for task_id, token in ((theirs.task_id, other), (mine.task_id, own)):
            ts = int(time.time())
            headers = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign_callback(task_id, ts, HMAC)}
            body = json.dumps({"code": 200, "data": {"task_id": task_id}}).encode()
            reply = await receiver.receive(headers, body, request_url=with_correlation("/kie/callback", token))
            assert reply.status == 200
    entry = (await BatchJournal.open(first, exclusive=False)).get(key)
    assert entry is not None and entry.task_id == mine.task_id  # before: batch 2's task
    assert entry.extra_task_ids == [] and receiver.stats.settled == 1


async def test_a_shared_batch_ignores_a_late_adoption_for_another_batch(emulator: KieEmulator, redis_url: str) -> None:
    async with session(emulator, redis_url) as kie:
        journal = await RedisJournal.open(coordinator_of(kie), "batch-one")
        assert (await journal.try_claim("k")).claimed
        await journal.record(JournalRecord(key="k", state=RequestState.SUBMITTING, attempt="a1", model_key=MODEL))
        strategy = SharedJournalStrategy(journal, stall_timeout=5)
        await strategy.adopt_late(correlation_token("k", "a1", journal_scope("batch-two")), "t-other")
        assert journal.get("k").task_id is None  # type: ignore[union-attr]
        await strategy.adopt_late(correlation_token("k", "a1", journal.scope), "t-own")
        assert journal.get("k").task_id == "t-own"  # type: ignore[union-attr]
        await journal.close()


async def test_a_receiver_apart_from_a_shared_batch_settles_only_the_batch_its_token_names(
    emulator: KieEmulator, redis_url: str
) -> None:
    key = "same-request-in-two-shared-batches"
    async with session(emulator, redis_url) as runner, session(emulator, redis_url) as web_worker:
        one = await RedisJournal.open(coordinator_of(runner), "shared-1")  # lost the answer, then ended
        assert (await one.try_claim(key)).claimed
        await one.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="a1", model_key=MODEL))
        await one.record(JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="a1", sending=True))
        await one.close()
        await (await RedisJournal.open(coordinator_of(runner), "shared-2")).close()  # another batch, same account
        receiver = CallbackReceiver(web_worker, hmac_key=HMAC)  # no journal=: the token names the batch
        for batch_id, prompt in (("shared-2", "claims batch 2"), ("shared-1", "batch 1's own")):
            token = correlation_token(key, "a1", journal_scope(batch_id))
            created = await web_worker.create_task(
                model=MODEL, input={"prompt": prompt}, callback_url=with_correlation(DEAD_CALLBACK, token)
            )
            ts = int(time.time())
            headers = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign_callback(created.task_id, ts, HMAC)}
            body = json.dumps({"code": 200, "data": {"task_id": created.task_id}}).encode()
            reply = await receiver.receive(headers, body, request_url=with_correlation("/kie/callback", token))
            assert reply.status == 200
        assert receiver.stats.settled == 1
        one = await RedisJournal.open(coordinator_of(runner), "shared-1")
        two = await RedisJournal.open(coordinator_of(runner), "shared-2")
        assert one.get(key).task_id == created.task_id  # type: ignore[union-attr]  # batch 1's own task only
        assert two.get(key) is None
        await one.close()
        await two.close()
