"""Chat calls in run_many batches beside media requests, against the emulator: slots, budget, journal, re-runs.

The emulator counts every chat request it answers (``stats.requests`` by route), which is how these tests prove
that a chat is never asked twice: not retried after its bytes left, not asked again by a re-run of the batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kie_async import KieSession, RawUserRequest
from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.core.errors import KieInputError
from kie_async.core.settings import RetrySettings
from kie_async.emulator import KieEmulator
from kie_async.ledger.journal import BatchJournal
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.batch_chat import answer_path
from kie_async.pipeline.chat_request import ChatRequest, ChatRunResult, chat_request_key
from kie_async.pipeline.fanout import BatchProgress, run_many
from kie_async.pipeline.run_models import PipelineOptions, RunResult
from kie_async.wire.chat import ChatMessage
from tests.waiting import until

CAPTION = ChatRequest(model="claude-haiku-4.5", messages="A caption for a fox in snow", system="Be brief")
GREETING = ChatRequest(model="gpt-5.5", messages=[ChatMessage.user("Say hello")])
FOX = RawUserRequest(model_key="nano-banana-2", prompt="a fox in snow")


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(retry=RetrySettings(initial_backoff=0.01, max_backoff=0.02))) as session:
        yield session


def chat_calls(emulator: KieEmulator) -> int:
    return sum(n for route, n in emulator.stats.requests.items() if route.startswith("chat:"))


def opts(root: Path, *, ceiling: float | None = 2.0, unknown: bool = True) -> PipelineOptions:
    return PipelineOptions(
        artifacts=ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False),
        allow_unknown_cost=unknown,
        unknown_cost_ceiling=ceiling,
    )


def chat_of(result: RunResult) -> ChatRunResult:
    assert isinstance(result, ChatRunResult), result
    return result


async def test_a_mixed_batch_runs_in_input_order_and_a_rerun_asks_no_chat_again(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    journal = tmp_path / "mixed.jsonl"
    requests = [CAPTION, FOX, GREETING]
    seen: list[BatchProgress] = []
    first = await run_many(requests, kie, options=opts(tmp_path), journal_path=journal, on_progress=seen.append)
    assert [r.status for r in first] == ["succeeded"] * 3
    caption, fox, greeting = chat_of(first[0]), first[1], chat_of(first[2])
    assert not isinstance(fox, ChatRunResult) and fox.outputs and fox.credits_charged == 8
    assert caption.model_key == "claude-haiku-4.5" and caption.text is not None and "fox in snow" in caption.text
    assert caption.chat is not None and caption.chat.usage.output_tokens and caption.chat.credits_consumed
    assert caption.credits_charged == caption.chat.credits_consumed and caption.state is RequestState.SUCCEEDED
    assert greeting.text is not None and "Say hello" in greeting.text
    assert caption.request_key == chat_request_key(CAPTION)
    assert chat_calls(emulator) == 2 and emulator.stats.tasks_created == 1
    assert seen[-1].done == 3 and seen[-1].credits_spent == pytest.approx(
        8 + caption.chat.credits_consumed + (greeting.credits_charged or 0)
    )
    saved = answer_path(journal, caption.request_key)
    assert caption.outputs[0].path == saved and json.loads(saved.read_text())["text"] == caption.text

    again = await run_many(requests, kie, options=opts(tmp_path), journal_path=journal)
    assert [(r.status, r.resumed) for r in again] == [("succeeded", True)] * 3
    assert chat_of(again[0]).text == caption.text and chat_of(again[2]).text == greeting.text
    assert again[0].credits_charged == caption.credits_charged
    assert chat_calls(emulator) == 2 and emulator.stats.tasks_created == 1  # nothing asked or bought twice


async def test_an_answer_cut_off_is_uncertain_and_never_asked_again_unasked(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    journal = tmp_path / "cut.jsonl"
    emulator.faults.add("chat", "stream_cut", after_events=1)  # a whole answer: half the body, then the drop
    first = chat_of(
        (await run_many([GREETING], kie, options=opts(tmp_path), journal_path=journal, budget_credits=100))[0]
    )
    assert first.status == "submit_uncertain" and first.state is RequestState.UNCERTAIN
    assert first.chat is not None and not first.chat.complete and not first.spent_nothing
    assert chat_calls(emulator) == 1  # the call that may have reached Kie.ai was not sent again

    second = chat_of(
        (await run_many([GREETING], kie, options=opts(tmp_path), journal_path=journal, budget_credits=100))[0]
    )
    assert second.status == "submit_uncertain" and second.resumed and "resubmit_uncertain" in (second.error or "")
    assert second.credits_estimated == 2  # the ceiling held for it counts as spent on the re-run
    assert chat_calls(emulator) == 1

    third = await run_many([GREETING], kie, options=opts(tmp_path), journal_path=journal, resubmit_uncertain=True)
    assert third[0].succeeded and chat_of(third[0]).text and chat_calls(emulator) == 2


async def test_an_error_answer_spends_nothing_and_a_rerun_asks_again(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    journal = tmp_path / "refused.jsonl"
    emulator.faults.add("chat", "server_error", status=500, http_status=True)
    first = chat_of((await run_many([CAPTION], kie, options=opts(tmp_path), journal_path=journal))[0])
    assert first.status == "failed" and first.state is RequestState.REFUSED and first.spent_nothing
    assert first.error_type == "KieServerError" and chat_calls(emulator) == 1  # not retried
    again = await run_many([CAPTION], kie, options=opts(tmp_path), journal_path=journal)
    assert again[0].succeeded and not again[0].resumed and chat_calls(emulator) == 2


async def test_a_mixed_batch_under_a_budget_follows_the_unknown_price_rule(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    requests = [FOX, CAPTION, GREETING]
    # No ceiling stated: with a budget the chats cannot be held, so they stop before the wire; the image runs.
    blocked = await run_many(requests, kie, options=opts(tmp_path, ceiling=None), budget_credits=20)
    assert [r.status for r in blocked] == ["succeeded", "blocked", "blocked"]
    assert "unknown_cost_ceiling" in (blocked[1].error or "") and blocked[1].spent_nothing
    assert chat_calls(emulator) == 0
    # Without allow_unknown_cost, even the balance as the only cap blocks them (as for unpriced media).
    unallowed = await run_many([CAPTION], kie, options=opts(tmp_path, ceiling=None, unknown=False))
    assert unallowed[0].status == "blocked" and "allow_unknown_cost" in (unallowed[0].error or "")
    per_run = opts(tmp_path, ceiling=None, unknown=False).model_copy(
        update={"budget_credits": 5, "check_balance": False}
    )
    capped = await run_many([CAPTION], kie, options=per_run)  # no batch cap, but a cap on each run: the same rule
    assert capped[0].status == "blocked" and chat_calls(emulator) == 0
    free = await run_many(
        [CAPTION], kie, options=opts(tmp_path, ceiling=None, unknown=False).model_copy(update={"check_balance": False})
    )
    assert free[0].succeeded and free[0].credits_charged  # no limit in play: it runs, its credits_consumed counted
    assert chat_calls(emulator) == 1

    # A ceiling of 6, one at a time: the image takes 8, the first chat holds 6 (14 <= 14.5) and is settled on its
    # credits_consumed (a few hundredths), so the second chat fits too; held at its ceiling it would not (20).
    seen: list[BatchProgress] = []
    results = await run_many(
        requests, kie, options=opts(tmp_path, ceiling=6), budget_credits=14.5, concurrency=1, on_progress=seen.append
    )
    assert [r.status for r in results] == ["succeeded"] * 3 and chat_calls(emulator) == 3
    consumed = [chat_of(r).chat.credits_consumed for r in results[1:]]  # type: ignore[union-attr]
    assert all(c is not None and 0 < c < 1 for c in consumed)
    assert seen[-1].budget.spent == pytest.approx(8 + sum(c or 0 for c in consumed)) and seen[-1].budget.reserved == 0
    assert results.credits_charged == pytest.approx(seen[-1].budget.spent)

    # A ceiling of 7 does not fit beside the image: over budget, nothing sent.
    over = await run_many(requests, kie, options=opts(tmp_path, ceiling=7), budget_credits=14.5, concurrency=1)
    assert [r.status for r in over] == ["succeeded", "over_budget", "over_budget"]
    assert over[1].spent_nothing and chat_calls(emulator) == 3


async def test_a_paid_chat_whose_journal_stopped_before_succeeded_is_settled_from_its_saved_answer(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    journal = tmp_path / "torn.jsonl"
    first = await run_many([GREETING], kie, options=opts(tmp_path), journal_path=journal)
    key = first[0].request_key
    assert key is not None
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(line for line in lines if '"state":"succeeded"' not in line) + "\n")
    async with await BatchJournal.open(journal) as reopened:
        assert reopened.state_of(key) is RequestState.SUBMITTED  # as if the process died before its last line
    again = chat_of((await run_many([GREETING], kie, options=opts(tmp_path), journal_path=journal))[0])
    assert again.succeeded and again.resumed and again.text == chat_of(first[0]).text and chat_calls(emulator) == 1
    answer_path(journal, key).write_text("{}")  # changed since: reported, never bought again
    changed = chat_of((await run_many([GREETING], kie, options=opts(tmp_path), journal_path=journal))[0])
    assert changed.succeeded and changed.resumed and changed.text is None and "not bought again" in changed.warnings[0]
    assert chat_calls(emulator) == 1

    answer_path(journal, key).unlink()  # the answer file is gone: paid for, so reported, never bought again
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(line for line in lines if '"state":"succeeded"' not in line) + "\n")
    lost = chat_of((await run_many([GREETING], kie, options=opts(tmp_path), journal_path=journal))[0])
    assert lost.status == "incomplete" and lost.text is None and "not bought again" in (lost.error or "")
    assert chat_calls(emulator) == 1


async def test_a_batch_cancelled_while_a_chat_is_on_the_wire_never_asks_it_again(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    journal = tmp_path / "cancelled.jsonl"
    emulator.faults.add("chat", "latency", delay=30.0)  # the bytes are there; the answer is slow to come
    batch = asyncio.create_task(run_many([CAPTION], kie, options=opts(tmp_path), journal_path=journal))
    await until(lambda: chat_calls(emulator) == 1, "the chat reached the emulator")
    assert '"sending":true' in journal.read_text()
    batch.cancel()  # Ctrl-C, or a crash: for the journal the same thing
    await asyncio.gather(batch, return_exceptions=True)
    emulator.faults.clear()

    again = chat_of((await run_many([CAPTION], kie, options=opts(tmp_path), journal_path=journal))[0])
    assert again.status == "submit_uncertain" and again.state is RequestState.UNCERTAIN and again.resumed
    assert chat_calls(emulator) == 1


async def test_a_shared_batch_refuses_chat_calls_before_anything_is_sent(
    emulator: KieEmulator, redis_url: str, tmp_path: Path
) -> None:
    async with KieSession(emulator.settings(coordination_url=redis_url)) as kie:
        with pytest.raises(KieInputError, match="shared over processes"):
            await run_many([FOX, CAPTION], kie, options=opts(tmp_path), batch_id="mixed")
    assert chat_calls(emulator) == 0 and emulator.stats.tasks_created == 0


async def test_a_bad_chat_request_stops_the_batch_before_anything_is_sent(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    for bad, words in [
        (ChatRequest(model="no-such-chat", messages="hi"), "unknown chat model"),
        (ChatRequest(model="gpt-5.5", messages="hi", options={"temprature": 1}), "temprature"),
        (ChatRequest(model="gpt-5.5", messages=[ChatMessage.system("only a system turn")]), "user message"),
    ]:
        with pytest.raises(KieInputError, match=words) as caught:
            await run_many([FOX, bad], kie, options=opts(tmp_path))
        assert "requests[1]" in str(caught.value)
    assert chat_calls(emulator) == 0 and emulator.stats.tasks_created == 0
    with pytest.raises(KieInputError, match="not a RawUserRequest"):
        await run_many([{"model": "gpt-5.5", "messages": "hi"}], kie)  # type: ignore[list-item]


MIXED_LINES = [
    {"model_key": "nano-banana-2", "prompt": "a paper boat on a pond"},
    {"model": "claude-haiku-4.5", "messages": "A caption for a paper boat", "system": "Answer with the caption only"},
    {"model_key": "gpt-5.5", "messages": [{"role": "user", "content": "Three words for calm water"}]},
]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env["KIE_STATE_DIR"] = str(tmp_path / "state")
    command = [sys.executable, "-m", "kie_async", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)


def _balance(tmp_path: Path) -> float:
    done = _cli(tmp_path, "credits", "--offline", "--offline-state", "out/emulator-state", "--json")
    assert done.returncode == 0, done.stderr
    return float(json.loads(done.stdout)["credits"])


def test_run_batch_takes_chat_lines_beside_media_lines_and_a_rerun_buys_nothing(tmp_path: Path) -> None:
    (tmp_path / "mixed.jsonl").write_text("\n".join(json.dumps(line) for line in MIXED_LINES) + "\n")
    money = ["--budget", "30", "--allow-unknown-cost", "--unknown-cost-ceiling", "2"]
    first = _cli(tmp_path, "run-batch", "mixed.jsonl", "--offline", "--out", "out", "--json", *money)
    assert first.returncode == 0, first.stderr
    results = json.loads(first.stdout)["results"]
    assert [r["status"] for r in results] == ["succeeded"] * 3
    assert [r["model_key"] for r in results] == ["nano-banana-2", "claude-haiku-4.5", "gpt-5.5"]
    caption, water = results[1]["chat"], results[2]["chat"]
    assert "paper boat" in caption["text"] and "calm water" in water["text"] and "raw" not in caption
    assert results[1]["credits_charged"] == caption["credits_consumed"] > 0
    assert Path(results[1]["outputs"][0]).is_file() and results[1]["request_key"].startswith("chat-")
    after_first = _balance(tmp_path)

    again = _cli(tmp_path, "run-batch", "mixed.jsonl", "--offline", "--out", "out", "--json", *money)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)["results"]
    assert [(r["status"], r["resumed"]) for r in resumed] == [("succeeded", True)] * 3
    assert resumed[1]["chat"]["text"] == caption["text"]
    assert _balance(tmp_path) == pytest.approx(after_first)  # nothing bought again, chats included

    # Without a ceiling the budget cannot hold a chat: blocked before the wire, the exit code says so.
    (tmp_path / "more.jsonl").write_text(json.dumps({"model": "gemini-3-flash", "messages": "hi"}) + "\n")
    blocked = _cli(tmp_path, "run-batch", "more.jsonl", "--offline", "--out", "out", "--json", "--budget", "30")
    assert blocked.returncode == 1
    assert json.loads(blocked.stdout)["results"][0]["status"] == "blocked"
    assert _balance(tmp_path) == pytest.approx(after_first)


def test_run_batch_names_the_line_of_a_bad_chat_call(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text(
        '{"model_key": "nano-banana-2", "prompt": "x"}\n{"model": "gpt-5.5", "messages": "x", "sytem": "y"}\n'
    )
    done = _cli(tmp_path, "run-batch", "bad.jsonl", "--offline", "--out", "out")
    assert (
        done.returncode == 2
        and "bad.jsonl:2: unknown key 'sytem' in a chat line (did you mean 'system'?)" in done.stderr
    )
    (tmp_path / "typo.jsonl").write_text('{"model": "gpt-5.5", "mesages": "x"}\n')
    done = _cli(tmp_path, "run-batch", "typo.jsonl", "--offline", "--out", "out")
    assert done.returncode == 2 and 'a chat call is a line with "messages"' in done.stderr
    (tmp_path / "unknown.jsonl").write_text('\n{"model": "gpt-5.5", "messages": "x", "options": {"temprature": 1}}\n')
    done = _cli(tmp_path, "run-batch", "unknown.jsonl", "--offline", "--out", "out")
    assert done.returncode == 2 and "unknown.jsonl:2 (gpt-5.5): gpt-5.5 takes no option 'temprature'" in done.stderr
