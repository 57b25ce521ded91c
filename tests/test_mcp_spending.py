"""MCP spending is the operator's, not the agent's (issue 20, item 3): ``kie-async mcp`` driven for real by the
MCP SDK's client over stdio against the emulator, by an agent that does everything a hostile one would.

Task counts are read from the emulator, never from what the server reports.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kie_async.emulator import EmulatorConfig, KieEmulator

mcp = pytest.importorskip("mcp")
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

FOX = {"model_key": "nano-banana-2", "prompt": "a red fox", "options": {"resolution": "1K"}}  # 8 credits
UNPRICED = {"model_key": "google-imagen4", "prompt": "a lighthouse at dusk"}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1)


def _env(emulator: KieEmulator, tmp_path: Path, **over: str) -> dict[str, str]:
    return {
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_API_KEY": emulator.api_key,
        "KIE_OUTPUT_DIR": str(tmp_path / "out"),
        "PATH": os.environ.get("PATH", ""),
        "KIE_STATE_DIR": os.environ["KIE_STATE_DIR"],  # this test's own ledger, not the user's
        **over,
    }


@contextlib.asynccontextmanager
async def serve(emulator: KieEmulator, tmp_path: Path, *flags: str, **env: str) -> AsyncIterator[ClientSession]:
    """``kie-async mcp FLAGS`` as an agent's client sees it (a context manager: anyio scopes stay in one task)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kie_async", "mcp", *flags],
        env=_env(emulator, tmp_path, **env),
        cwd=str(tmp_path),
    )
    with (tmp_path / "server.log").open("a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    data: dict[str, Any] = json.loads(result.content[0].text)
    return data


def refused(result: Any) -> str:
    assert result.is_error, result.content[0].text
    text: str = result.content[0].text
    assert "Traceback" not in text and "validation error" not in text and "Input should" not in text, text
    return text


async def quote_for(client: ClientSession, request: dict[str, Any]) -> str:
    dry = ok(await client.call_tool("run_request", request))
    assert dry["dry_run"] and "quote_id" in dry, dry
    quote: str = dry["quote_id"]
    return quote


async def confirm_all(client: ClientSession, requests: list[dict[str, Any]], quotes: list[str]) -> list[Any]:
    """Every request confirmed with its quote, all at once (an agent firing calls in parallel)."""
    calls = [
        client.call_tool("run_request", {**r, "confirm": True, "quote_id": q})
        for r, q in zip(requests, quotes, strict=True)
    ]
    return list(await asyncio.gather(*calls))


def png(path: Path) -> Path:
    """A real 16x16 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x80\x20\x20" * 16 for _ in range(16))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


async def test_twelve_confirmed_calls_buy_only_what_fits_the_budget(emulator: KieEmulator, tmp_path: Path) -> None:
    async with serve(emulator, tmp_path, "--budget", "50") as client:
        requests = [{**FOX, "prompt": f"a red fox, take {i}"} for i in range(12)]
        quotes = await asyncio.gather(*(quote_for(client, r) for r in requests))
        results = await confirm_all(client, requests, quotes)
        bought = [ok(r) for r in results if not r.is_error]
        over = [refused(r) for r in results if r.is_error]
        assert len(bought) == 6 and all(b["status"] == "succeeded" for b in bought)
        assert len(over) == 6 and all(t.split(": ", 1)[1].startswith("budget:") and "--budget" in t for t in over)
        limits = ok(await client.call_tool("server_limits", {}))["budget"]
        assert limits["spent_credits"] <= 50 and limits["remaining_credits"] < 8
    assert emulator.stats.tasks_created == 6


async def test_without_a_budget_the_server_only_dry_runs(emulator: KieEmulator, tmp_path: Path) -> None:
    async with serve(emulator, tmp_path) as client:
        dry = ok(await client.call_tool("run_request", FOX))
        assert dry["dry_run"] and "quote_id" not in dry and "--budget" in dry["next"]
        text = refused(await client.call_tool("run_request", {**FOX, "confirm": True}))
        assert "--budget" in text and "confirm:" in text
        # the agent cannot give itself a budget
        text = refused(await client.call_tool("run_request", {**FOX, "confirm": True, "budget_credits": 100}))
        assert "budget_credits: not an argument of run_request" in text and "(fix:" in text
        assert "--budget" in refused(await client.call_tool("resume_run", {"task_id": "t1"}))
    assert emulator.stats.tasks_created == 0


def _tampered(quote: str, **fields: Any) -> str:
    """The quote with its body changed and its signature kept (what a forging agent would try)."""
    tag, body, mac = quote.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(fields)
    forged = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{tag}.{forged}.{mac}"


async def test_a_purchase_needs_the_quote_of_its_own_dry_run(emulator: KieEmulator, tmp_path: Path) -> None:
    async with serve(emulator, tmp_path, "--budget", "100", "--quote-ttl", "1") as client:
        confirm = {**FOX, "confirm": True}
        assert "quote_id: missing" in refused(await client.call_tool("run_request", confirm))
        quote = await quote_for(client, FOX)
        other = {**FOX, "prompt": "a grey wolf"}
        assert "another request" in refused(
            await client.call_tool("run_request", {**other, "confirm": True, "quote_id": quote})
        )
        for forged in (_tampered(quote, c=0.5), _tampered(quote, e=9e12), quote[:-1] + "0", "q1.e30.abc", "free"):
            text = refused(await client.call_tool("run_request", {**confirm, "quote_id": forged}))
            assert "quote_id: not a quote this server issued" in text and "(fix:" in text
        await asyncio.sleep(1.2)
        assert "quote_id: expired" in refused(await client.call_tool("run_request", {**confirm, "quote_id": quote}))
        assert emulator.stats.tasks_created == 0

        fresh = await quote_for(client, FOX)
        assert ok(await client.call_tool("run_request", {**confirm, "quote_id": fresh}))["status"] == "succeeded"
        again = refused(await client.call_tool("run_request", {**confirm, "quote_id": fresh}))
        assert "quote_id: already used" in again
    assert emulator.stats.tasks_created == 1


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=1.5)])
async def test_an_identical_retry_after_incomplete_buys_nothing(emulator: KieEmulator, tmp_path: Path) -> None:
    # The server waits 0.3 s for a task that takes 1.5 s: the run ends `incomplete` with the task paid for.
    async with serve(emulator, tmp_path, "--budget", "100", KIE_WAIT_TIMEOUT_SECONDS="0.3") as client:
        quote = await quote_for(client, FOX)
        first = ok(await client.call_tool("run_request", {**FOX, "confirm": True, "quote_id": quote}))
        assert first["status"] == "incomplete" and first["task_id"], first
        assert "resume_run" in first["resume"] and first["task_id"] in first["resume"]
        dry = ok(await client.call_tool("run_request", FOX))
        assert "quote_id" not in dry and "resume_run" in dry["next"]
        await asyncio.sleep(1.6)
        retry = ok(await client.call_tool("run_request", {**FOX, "confirm": True, "quote_id": quote}))
        assert retry["status"] == "succeeded" and retry["task_id"] == first["task_id"], retry
        assert retry["run_id"] == first["run_id"] and retry["outputs"]
        assert emulator.stats.tasks_created == 1

        # resume_run, by task id, after another incomplete purchase
        wolf = {**FOX, "prompt": "a grey wolf"}
        second = ok(
            await client.call_tool("run_request", {**wolf, "confirm": True, "quote_id": await quote_for(client, wolf)})
        )
        assert second["status"] == "incomplete"
        await asyncio.sleep(1.6)
        resumed = ok(await client.call_tool("resume_run", {"task_id": second["task_id"]}))
        assert resumed["status"] == "succeeded" and resumed["task_id"] == second["task_id"]
        assert "resume_run" in refused(await client.call_tool("resume_run", {"task_id": second["task_id"]}))
        assert "run_id: missing" in refused(await client.call_tool("resume_run", {}))
        assert "run_id: 'nope' is not a paid" in refused(await client.call_tool("resume_run", {"run_id": "nope"}))
        spent = ok(await client.call_tool("server_limits", {}))["budget"]
        assert spent["reserved_credits"] == 0 and spent["spent_credits"] == pytest.approx(16, abs=8)
    assert emulator.stats.tasks_created == 2


async def test_media_must_lie_under_an_allowed_folder(emulator: KieEmulator, tmp_path: Path) -> None:
    allowed = tmp_path / "media"
    allowed.mkdir()
    inside = png(allowed / "cat.png")
    secret = png(tmp_path / "secret.png")
    (allowed / "link.png").symlink_to(secret)
    edit = {"model_key": "nano-banana-2", "prompt": "make it blue", "options": {"resolution": "1K"}}

    async with serve(emulator, tmp_path) as client:  # no --media-root: no local file at all
        text = refused(await client.call_tool("validate", {**edit, "images": [str(inside)]}))
        assert "images[0]: local files are not allowed" in text and "--media-root" in text
        ok(await client.call_tool("validate", {**edit, "images": ["https://example.com/cat.png"]}))

    async with serve(emulator, tmp_path, "--budget", "50", "--media-root", str(allowed)) as client:
        assert ok(await client.call_tool("validate", {**edit, "images": [str(inside)]}))["submittable"]
        for bad in (
            str(secret),
            str(allowed / "link.png"),
            str(allowed / ".." / "secret.png"),
            "file://" + str(secret),
            "~/../../etc/passwd",
        ):
            for tool in ("validate", "estimate", "run_request"):
                text = refused(
                    await client.call_tool(
                        tool,
                        {**edit, "images": [bad], "confirm": True}
                        if tool == "run_request"
                        else {**edit, "images": [bad]},
                    )
                )
                assert text.split(": ", 1)[1].startswith("images[0]:"), text
    assert emulator.stats.tasks_created == 0 and emulator.stats.uploads == 0


async def test_unknown_prices_are_the_operators_call(emulator: KieEmulator, tmp_path: Path) -> None:
    async with serve(emulator, tmp_path, "--budget", "100") as client:
        dry = ok(await client.call_tool("run_request", UNPRICED))
        assert "quote_id" not in dry and "--allow-unknown-cost" in dry["next"]
        shown = json.dumps(dry)
        assert "allow_unknown_cost" not in shown
        text = refused(await client.call_tool("run_request", {**UNPRICED, "allow_unknown_cost": True}))
        assert "allow_unknown_cost: not an argument" in text
        text = refused(await client.call_tool("run_request", {**UNPRICED, "confirm": True, "quote_id": "x"}))
        assert "allow_unknown_cost=" not in text
        text = json.dumps(ok(await client.call_tool("estimate", {**UNPRICED, "budget_credits": 50})))
        assert "allow_unknown_cost=" not in text and "--allow-unknown-cost" in text
    assert emulator.stats.tasks_created == 0

    # The operator allows unpriced requests: each reserves the ceiling, so 30 credits hold one at a time.
    (tmp_path / "b").mkdir()
    flags = ("--budget", "30", "--allow-unknown-cost", "--unknown-cost-ceiling", "20")
    async with serve(emulator, tmp_path / "b", *flags) as client:
        requests = [{**UNPRICED, "prompt": f"a lighthouse, take {i}"} for i in range(2)]
        quotes = await asyncio.gather(*(quote_for(client, r) for r in requests))
        results = await confirm_all(client, requests, quotes)
        assert sorted(r.is_error for r in results) == [False, True]
        assert "budget:" in next(refused(r) for r in results if r.is_error)
    assert emulator.stats.tasks_created == 1


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--budget", "30", "--allow-unknown-cost"], "--unknown-cost-ceiling"),
        (["--unknown-cost-ceiling", "5"], "--allow-unknown-cost"),
        (["--budget", "-1"], "--budget"),
        (["--budget", "nan"], "--budget"),
        (["--media-root", "no-such-folder"], "--media-root"),
    ],
)
def test_bad_operator_flags_stop_the_server_before_it_serves(tmp_path: Path, flags: list[str], named: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "kie_async", "mcp", "--offline", "--out", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and named in run.stderr and "Traceback" not in run.stderr, run.stderr


async def test_the_budget_survives_a_restart(emulator: KieEmulator, tmp_path: Path) -> None:
    async with serve(emulator, tmp_path, "--budget", "20") as client:
        for prompt in ("one", "two"):
            request = {**FOX, "prompt": prompt}
            bought = await client.call_tool(
                "run_request", {**request, "confirm": True, "quote_id": await quote_for(client, request)}
            )
            assert ok(bought)["status"] == "succeeded"
        # a second server on the same state refuses to start rather than spend the same budget again
        second = subprocess.run(
            [sys.executable, "-m", "kie_async", "mcp", "--budget", "20"],
            env=_env(emulator, tmp_path),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert second.returncode != 0 and "in use" in second.stderr
    async with serve(emulator, tmp_path, "--budget", "20") as client:
        left = ok(await client.call_tool("server_limits", {}))["budget"]
        assert left["spent_credits"] == 16 and left["remaining_credits"] == 4
        dry = ok(await client.call_tool("run_request", {**FOX, "prompt": "three"}))
        assert "quote_id" not in dry and "budget" in dry["next"]
    assert emulator.stats.tasks_created == 2


async def test_argument_errors_name_the_field_and_the_fix(emulator: KieEmulator, tmp_path: Path) -> None:
    async with serve(emulator, tmp_path) as client:
        for tool in ("describe_model", "validate", "run_request"):
            text = refused(
                await client.call_tool(
                    tool,
                    {**FOX, "model_key": "nano-banan-2"} if tool != "describe_model" else {"model_key": "nano-banan-2"},
                )
            )
            assert "model_key: 'nano-banan-2' is not a known model" in text and "did you mean 'nano-banana-2'" in text
            assert "kling" not in text  # not the list of every key
        text = refused(await client.call_tool("validate", {**FOX, "prompt": 5}))
        assert "prompt: must be text (fix:" in text
        text = refused(await client.call_tool("validate", {**FOX, "optons": {}}))
        assert "optons: not an argument of validate (fix: did you mean 'options'" in text
        text = refused(await client.call_tool("run_request", {**FOX, "confirm": "maybe"}))
        assert "confirm: must be true or false" in text


def _holder_pid(out: Path) -> int:
    holder = json.loads((out / ".kie-mcp" / "spending.jsonl.owner").read_text())
    pid: int = holder["pid"]
    return pid


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(generation_seconds=2.0)])
async def test_a_server_killed_after_buying_resumes_the_task_after_restart(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    async with serve(emulator, tmp_path, "--budget", "20") as client:
        quote = await quote_for(client, FOX)
        buying = asyncio.ensure_future(client.call_tool("run_request", {**FOX, "confirm": True, "quote_id": quote}))
        for _ in range(600):  # until the task id is on disk (bounds the wait; not a timed assertion)
            state = out / ".kie-mcp" / "spending.jsonl"
            if state.exists() and b'"op":"paid"' in state.read_bytes():
                break
            await asyncio.sleep(0.02)
        os.kill(_holder_pid(out), 9)  # SIGKILL: no cleanup, no last write
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(buying, 10)
    assert emulator.stats.tasks_created == 1

    async with serve(emulator, tmp_path, "--budget", "20") as client:
        left = ok(await client.call_tool("server_limits", {}))["budget"]
        assert left["reserved_credits"] == 8 and left["remaining_credits"] == 12  # the paid task stays counted
        dry = ok(await client.call_tool("run_request", FOX))
        assert "resume_run" in dry["next"] and "quote_id" not in dry
        await asyncio.sleep(2.0)
        # the identical call of the agent that never saw an answer: the old quote died with the server
        again = ok(await client.call_tool("run_request", {**FOX, "confirm": True, "quote_id": quote}))
        assert again["status"] == "succeeded" and again["outputs"], again
        left = ok(await client.call_tool("server_limits", {}))["budget"]
        assert left["reserved_credits"] == 0 and left["spent_credits"] <= 8
    assert emulator.stats.tasks_created == 1


def test_the_spending_state_fails_closed(tmp_path: Path) -> None:
    from kie_async.core.errors import KieError, KieJournalBusyError
    from kie_async.interfaces.mcp.spending import FileSpendingStore

    path = tmp_path / "spending.jsonl"
    store = FileSpendingStore.open(path)
    assert store.reserve("a", 8, 20) and store.reserve("b", 8, 20) and not store.reserve("c", 8, 20)
    store.paid("a", "task-a", "run-a", {"model_key": "nano-banana-2"})
    store.settle("a", 6)
    store.release("b")
    with pytest.raises(KieJournalBusyError):
        FileSpendingStore.open(path)  # one owner at a time
    store.close()

    with path.open("ab") as f:
        f.write(b'{"op":"reserve","key":"c","cred')  # a crash mid-write: the torn last line is skipped
    reopened = FileSpendingStore.open(path)
    view = reopened.view()
    assert (view.spent, view.reserved) == (6, 0) and reopened.reserve("c", 14, 20) and not reopened.reserve("d", 1, 20)
    reopened.close()

    path.write_bytes(path.read_text().encode("utf-16"))  # re-encoded by an editor: never read as empty
    with pytest.raises(KieError, match="unreadable lines"):
        FileSpendingStore.open(path)


async def test_a_lost_answer_is_counted_and_never_bought_again(emulator: KieEmulator, tmp_path: Path) -> None:
    async with serve(emulator, tmp_path, "--budget", "20") as client:
        quote = await quote_for(client, FOX)
        emulator.faults.add("createTask", "reset_after", count=5)  # the task is created, the answer is lost
        lost = ok(await client.call_tool("run_request", {**FOX, "confirm": True, "quote_id": quote}))
        assert lost["status"] == "submit_uncertain" and lost["task_id"] is None, lost
        emulator.faults.clear()
        left = ok(await client.call_tool("server_limits", {}))["budget"]
        assert left["remaining_credits"] == 12  # the money may be gone: it stays counted
        dry = ok(await client.call_tool("run_request", FOX))
        assert "quote_id" not in dry and "an earlier purchase" in dry["next"]
        text = refused(await client.call_tool("run_request", {**FOX, "confirm": True, "quote_id": quote}))
        assert text.split(": ", 1)[1].startswith("request: an earlier purchase")
    assert emulator.stats.tasks_created == 1
