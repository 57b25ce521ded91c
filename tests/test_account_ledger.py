"""The account's purchase ledger under every way to buy: its rules, checked against the emulator's own task count.

The rules: a paid task that was not delivered is resumed by an identical request (never bought again); a delivered
one leads to a new purchase (a new variation) unless an ``idempotency_key`` asks for the earlier result; paying
again for an undelivered task needs ``resubmit``. Every entry point (``run_pipeline``, ``run_many``, handles, the
blocking client, the CLI) reads and writes the same ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import KieSettings, PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieInputError, KieJournalBusyError, KieJournalUnreadableError
from kie_async.interfaces.callback_receiver import add_callback_route
from kie_async.ledger.account import AccountLedger, account_name, ledger_folder
from kie_async.ledger.journal import BatchJournal, JournalRecord, request_key
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession
from kie_async.sync import KieClient

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=60.0)
FAST_RETRY = RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)


def fox(tag: str = "") -> RawUserRequest:
    return RawUserRequest(model_key="nano-banana-2", prompt=f"a red fox {tag}".strip())


def opts(root: Path, **extra: object) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts, **extra)  # type: ignore[arg-type]


def fast(emulator: KieEmulator, **extra: object) -> KieSession:
    return KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS, **extra))


async def entries(settings: KieSettings, request: RawUserRequest) -> dict[str, RequestState]:
    """What the ledger holds for ``request``: state per variation."""
    path = AccountLedger.for_settings(settings).book_path(request_key(normalize_request(request)))
    async with await BatchJournal.open(path, exclusive=False) as view:
        return {key: entry.state for key, entry in view.entries.items()}


# -- where the ledger is ----------------------------------------------------------------------------------------------


def test_the_ledger_lives_in_the_state_folder_unless_a_setting_or_kie_ledger_names_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("KIE_LEDGER", raising=False)
    settings = KieSettings(api_key="sk-secret-value")
    assert ledger_folder(settings) == tmp_path / "state" / "ledger"
    monkeypatch.setenv("KIE_LEDGER", str(tmp_path / "env-ledger"))
    assert ledger_folder(settings) == tmp_path / "env-ledger"
    assert KieSettings.from_env().ledger_dir == str(tmp_path / "env-ledger")
    assert ledger_folder(settings.model_copy(update={"ledger_dir": str(tmp_path / "set")})) == tmp_path / "set"
    # The account folder is a hash of the key: the key never reaches a path, and two keys are two ledgers.
    name = account_name(settings)
    assert "secret" not in name and name != account_name(KieSettings(api_key="sk-other"))


async def test_an_emulated_account_keeps_its_own_ledger(tmp_path: Path) -> None:
    async with KieEmulator() as first, KieEmulator() as second:
        assert first.ledger_dir is not None and second.ledger_dir is not None
        assert first.ledger_dir != second.ledger_dir  # a task of one emulator is never "resumed" on another
        assert first.settings().ledger_dir == str(first.ledger_dir)
    async with KieEmulator(EmulatorConfig(state_dir=tmp_path / "acct")) as kept:
        assert kept.ledger_dir == tmp_path / "acct" / "ledger"


# -- the rules, through run_pipeline -----------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=2.0)])
async def test_a_timed_out_run_is_resumed_by_the_identical_run_not_bought_again(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with fast(emulator) as kie:
        first = await run_pipeline(fox(), kie, options=opts(tmp_path, wait_timeout=0.1))
        assert first.status == "incomplete" and first.task_id
        again = await run_pipeline(fox(), kie, options=opts(tmp_path))
    assert again.succeeded and again.task_id == first.task_id and again.run_id == first.run_id
    assert emulator.stats.tasks_created == 1
    assert await entries(kie.settings, fox()) == {first.request_key: RequestState.SUCCEEDED}


async def test_a_delivered_request_run_again_buys_a_new_variation(emulator: KieEmulator, tmp_path: Path) -> None:
    async with fast(emulator) as kie:
        one = await run_pipeline(fox(), kie, options=opts(tmp_path))
        two = await run_pipeline(fox(), kie, options=opts(tmp_path))
    assert one.succeeded and two.succeeded and one.task_id != two.task_id
    assert emulator.stats.tasks_created == 2
    base = one.request_key
    assert base and two.request_key == f"{base}#2"
    assert await entries(kie.settings, fox()) == {base: RequestState.SUCCEEDED, f"{base}#2": RequestState.SUCCEEDED}
    # Each run folder names the ledger entry that bought it (what `ledger recover` and a reader need).
    for result in (one, two):
        manifest = json.loads((Path(result.run_dir or "") / "run.json").read_text())
        assert manifest["request_key"] == result.request_key


async def test_an_idempotency_key_returns_the_earlier_result_and_refuses_another_request(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with fast(emulator) as kie:
        first = await run_pipeline(fox(), kie, options=opts(tmp_path), idempotency_key="order-17")
        again = await run_pipeline(fox(), kie, options=opts(tmp_path), idempotency_key="order-17")
        assert again.succeeded and again.resumed and again.task_id == first.task_id
        assert [o.path for o in again.outputs] == [o.path for o in first.outputs]
        with pytest.raises(KieInputError, match="idempotency_key was already used for a different request"):
            await run_pipeline(fox("wolf"), kie, options=opts(tmp_path), idempotency_key="order-17")
        other = await run_pipeline(fox(), kie, options=opts(tmp_path), idempotency_key="order-18")
        for bad in ("", "   ", "x" * 256):
            with pytest.raises(KieInputError, match="idempotency_key"):
                await run_pipeline(fox(), kie, options=opts(tmp_path), idempotency_key=bad)
    assert other.task_id not in (None, first.task_id)
    assert emulator.stats.tasks_created == 2


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=2.0)])
async def test_resubmit_pays_again_on_purpose_and_the_first_task_stays_resumable(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with fast(emulator) as kie:
        first = await run_pipeline(fox(), kie, options=opts(tmp_path, wait_timeout=0.1))
        assert first.status == "incomplete"
        second = await run_pipeline(fox(), kie, options=opts(tmp_path), resubmit=True)
        assert second.succeeded and second.task_id != first.task_id
        third = await run_pipeline(fox(), kie, options=opts(tmp_path))  # the first, still undelivered, is resumed
    assert third.succeeded and third.task_id == first.task_id
    assert emulator.stats.tasks_created == 2


async def test_two_identical_runs_at_once_in_one_process_buy_two_variations(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with fast(emulator) as kie:
        one, two = await asyncio.gather(*(run_pipeline(fox(), kie, options=opts(tmp_path)) for _ in range(2)))
    assert one.succeeded and two.succeeded and one.task_id != two.task_id
    assert {one.request_key, two.request_key} == {one.request_key, f"{one.request_key}#2"} or {
        one.request_key,
        two.request_key,
    } == {two.request_key, f"{two.request_key}#2"}
    assert emulator.stats.tasks_created == 2


# -- every entry point reads the same ledger -----------------------------------------------------------------------


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=2.0)])
async def test_a_batch_without_a_journal_resumes_a_task_a_single_run_left_paid(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with fast(emulator) as kie:
        first = await run_pipeline(fox(), kie, options=opts(tmp_path, wait_timeout=0.1))
        assert first.status == "incomplete"
        batch = await run_many([fox(), fox("wolf")], kie, options=opts(tmp_path))
    assert [r.status for r in batch] == ["succeeded", "succeeded"]
    assert batch[0].task_id == first.task_id  # resumed from the ledger, though the batch has no journal
    assert emulator.stats.tasks_created == 2


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=2.0)])
async def test_a_batch_journal_learns_the_task_the_ledger_resumes(emulator: KieEmulator, tmp_path: Path) -> None:
    journal = tmp_path / "batch.jsonl"
    async with fast(emulator) as kie:
        first = await run_pipeline(fox(), kie, options=opts(tmp_path, wait_timeout=0.1))
        batch = await run_many([fox()], kie, options=opts(tmp_path), journal_path=journal)
        again = await run_many([fox()], kie, options=opts(tmp_path), journal_path=journal)
    assert batch[0].succeeded and batch[0].task_id == first.task_id
    assert again[0].resumed and again[0].task_id == first.task_id  # read back from the batch journal: no purchase
    assert emulator.stats.tasks_created == 1


async def test_handles_hand_back_an_undelivered_task_and_record_delivery(emulator: KieEmulator, tmp_path: Path) -> None:
    async with fast(emulator) as kie:
        handle = await kie.submit(fox())
        same = await kie.submit(fox())  # not waited on yet: the same paid task, nothing bought
        assert same.task_id == handle.task_id and emulator.stats.tasks_created == 1
        outcome = await handle.wait()
        assert outcome.succeeded
        fresh = await kie.submit(fox())  # delivered: a new variation
        assert fresh.task_id != handle.task_id
        keyed = await kie.create_and_wait(fox("keyed"), idempotency_key="job-1")
        keyed_again = await kie.create_and_wait(fox("keyed"), idempotency_key="job-1")
        assert keyed_again.task_id == keyed.task_id
        run = await run_pipeline(fox(), kie, options=opts(tmp_path))  # the handle's undelivered task, collected
    assert run.task_id == fresh.task_id
    assert emulator.stats.tasks_created == 3


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=2.0)])
async def test_the_blocking_client_resumes_what_an_earlier_run_left_paid(emulator: KieEmulator, tmp_path: Path) -> None:
    settings = emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS)

    def script() -> tuple[str | None, str | None, str, bool]:
        with KieClient(settings) as client:
            first = client.run(fox(), options=opts(tmp_path, wait_timeout=0.1))
            again = client.run(fox(), options=opts(tmp_path))
        return first.task_id, again.task_id, first.status, again.succeeded

    first_id, again_id, first_status, succeeded = await asyncio.to_thread(script)
    assert first_status == "incomplete" and succeeded and again_id == first_id
    assert emulator.stats.tasks_created == 1


# -- the ledger refuses to guess -----------------------------------------------------------------------------------


async def test_a_ledger_with_an_unreadable_middle_line_stops_before_anything_is_bought(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with fast(emulator) as kie:
        await run_pipeline(fox(), kie, options=opts(tmp_path, wait_timeout=0.05))
        path = AccountLedger.for_settings(kie.settings).book_path(request_key(normalize_request(fox())))
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(lines[0] + "not json at all\n".encode("utf-16") + b"\n" + b"".join(lines[1:]))
        before = emulator.stats.tasks_created
        with pytest.raises(KieJournalUnreadableError, match="cannot be read"):
            await run_pipeline(fox(), kie, options=opts(tmp_path))
    assert emulator.stats.tasks_created == before


_HOLD = """
import asyncio, sys
from kie_async.core.settings import KieSettings
from kie_async.ledger.account import AccountLedger

async def main() -> None:
    ledger = AccountLedger.for_settings(KieSettings(api_key=sys.argv[1], ledger_dir=sys.argv[2]))
    claim = await ledger.claim(sys.argv[3])
    print("held", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await claim.release()

asyncio.run(main())
"""


async def test_the_same_request_in_another_process_at_the_same_time_is_refused(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with fast(emulator) as kie:
        key = request_key(normalize_request(fox()))
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD, emulator.api_key, str(kie.settings.ledger_dir), key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        try:
            assert holder.stdout is not None
            assert await asyncio.to_thread(holder.stdout.readline) == "held\n"
            with pytest.raises(KieJournalBusyError, match=f"pid {holder.pid}"):
                await run_pipeline(fox(), kie, options=opts(tmp_path))
            with pytest.raises(KieJournalBusyError, match=f"pid {holder.pid}"):  # a new key checks the request too
                await run_pipeline(fox(), kie, options=opts(tmp_path), idempotency_key="job-1")
            other = await run_pipeline(fox("wolf"), kie, options=opts(tmp_path))  # other requests never wait
        finally:
            holder.communicate("\n", timeout=60)
        # Refused, the named run let go of its own key too: once the other process is done, it runs.
        named = await run_pipeline(fox(), kie, options=opts(tmp_path), idempotency_key="job-1")
    assert other.succeeded and named.succeeded and emulator.stats.tasks_created == 2


async def test_a_run_journal_of_an_earlier_version_is_read_once_into_the_ledger(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    """``kie-async run`` kept its journals under OUT/.kie/run-journal: a task paid there is resumed, not rebought."""
    async with fast(emulator) as kie:
        bought = await kie.create_task(model="nano-banana-2", input={"prompt": "a red fox"})
        key = request_key(normalize_request(fox()))
        legacy = tmp_path / ".kie" / "run-journal" / f"{key}.jsonl"
        legacy.parent.mkdir(parents=True)
        record = JournalRecord(key=key, state=RequestState.SUBMITTED, task_id=bought.task_id, adopted=True)
        legacy.write_bytes(record.to_line())
        result = await run_pipeline(fox(), kie, options=opts(tmp_path))
    assert result.succeeded and result.task_id == bought.task_id
    assert emulator.stats.tasks_created == 1


def test_cli_run_with_an_idempotency_key_returns_the_earlier_purchase(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "kie_async", "run", "--offline", "--out", str(out), "--json", "--yes"]
    command += ["--model", "nano-banana-2", "--prompt", "a red fox", "--idempotency-key", "cli-1"]
    first = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout)
    again = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout)
    assert first["status"] == again["status"] == "succeeded"
    assert again["task_id"] == first["task_id"] and again["resumed"] is True


async def test_a_callback_settles_the_ledger_of_a_run_whose_answer_was_lost(tmp_path: Path) -> None:
    """A single run's lost createTask answer leaves the ledger uncertain; the task's callback, received after the
    run ended, settles it, and the identical run then collects that task instead of reporting it uncertain."""
    config = EmulatorConfig(generation_seconds=0.1, webhook_hmac_key="whk-ledger")
    async with KieEmulator(config) as emulator, fast(emulator) as kie, fast(emulator) as elsewhere:
        app = web.Application()  # the receiver runs apart from the run (another process would do the same)
        receiver = add_callback_route(app, elsewhere, "/cb", hmac_key="whk-ledger")
        runner = web.AppRunner(app, shutdown_timeout=1.0)  # the emulator's keep-alive callback connections
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        hook = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
        try:
            emulator.faults.add("createTask", "reset_after")
            lost = await run_pipeline(fox(), kie, options=opts(tmp_path, callback_url=hook))
            assert lost.status == "submit_uncertain" and emulator.stats.tasks_created == 1
            while RequestState.SUBMITTED not in (await entries(kie.settings, fox())).values():
                await asyncio.sleep(0.02)  # until the task's callback, confirmed by the receiver, settles the ledger
            assert receiver.stats.accepted >= 1
            again = await run_pipeline(fox(), kie, options=opts(tmp_path, callback_url=hook))
        finally:
            await runner.cleanup()
    assert again.succeeded and again.task_id == emulator.tasks()[0].task_id
    assert emulator.stats.tasks_created == 1


async def test_a_paid_variation_is_resumed_even_behind_one_that_was_refused(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    """Variation 1 was refused (nothing bought), variation 2 holds a paid, undelivered task: an identical request,
    plain or under a new idempotency key, resumes that task; it does not buy on variation 1."""
    async with fast(emulator) as kie:
        bought = await kie.create_task(model="nano-banana-2", input={"prompt": "a red fox"})
        key = request_key(normalize_request(fox()))
        path = AccountLedger.for_settings(kie.settings).book_path(key)
        path.parent.mkdir(parents=True)
        lines = [
            JournalRecord(key=key, state=RequestState.SUBMITTING, attempt="a1"),
            JournalRecord(key=key, state=RequestState.REFUSED, attempt="a1", error="429"),
            JournalRecord(key=f"{key}#2", state=RequestState.SUBMITTED, task_id=bought.task_id, adopted=True),
        ]
        path.write_bytes(b"".join(r.to_line() for r in lines))
        named = await run_pipeline(fox(), kie, options=opts(tmp_path), idempotency_key="after-refusal")
        assert named.succeeded and named.task_id == bought.task_id
        plain = await run_pipeline(fox(), kie, options=opts(tmp_path))  # delivered through the key: a new one
    assert plain.succeeded and plain.task_id != bought.task_id
    assert emulator.stats.tasks_created == 2
