"""An emulated account kept in a state folder: what one emulator (one ``--offline`` command) bought, the next
one sees, finishes and charges against, as the real service would; several processes share it safely."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kie_async import KieSession
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.emulator.persist import PersistentLedger, StateFolder
from kie_async.interfaces.cli import build_parser, main
from kie_async.interfaces.cli._emulator_cmd import _config
from tests.conftest import serve_app

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
CREDIT = "/api/v1/chat/credit"


async def _create(emu: KieEmulator, client: aiohttp.ClientSession, **body: Any) -> dict[str, Any]:
    payload = {"model": "nano-banana-2", "input": {"prompt": "a fox"}, **body}
    async with client.post(emu.base_url + CREATE, json=payload) as response:
        answer: dict[str, Any] = await response.json()
    return answer


async def _record(emu: KieEmulator, client: aiohttp.ClientSession, task_id: str) -> dict[str, Any]:
    async with client.get(emu.base_url + RECORD, params={"taskId": task_id}) as response:
        answer: dict[str, Any] = await response.json()
    return answer


async def _balance(emu: KieEmulator, client: aiohttp.ClientSession) -> float:
    async with client.get(emu.base_url + CREDIT) as response:
        return float((await response.json())["data"])


async def _until_state(emu: KieEmulator, client: aiohttp.ClientSession, task_id: str, state: str) -> dict[str, Any]:
    """Poll recordInfo until the task reaches ``state`` (the test's own timeout bounds it, not a margin here)."""
    while True:
        data: dict[str, Any] = (await _record(emu, client, task_id))["data"]
        if data["state"] == state:
            return data
        await asyncio.sleep(0.05)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer kie-emulator-key"}) as session:
        yield session


async def test_a_task_bought_by_one_emulator_finishes_in_the_next(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    state = tmp_path / "state"
    config = EmulatorConfig(generation_seconds=0.5, state_dir=state, credits=100)
    async with KieEmulator(config) as first:
        sold = await _create(first, client)
        task_id = sold["data"]["taskId"]
        assert (await _record(first, client, task_id))["data"]["state"] != "success"
        after = await _balance(first, client)
    assert after < 100
    assert (state / "tasks" / f"{task_id}.json").is_file()

    async with KieEmulator(config) as second:  # a new process: same account, same task, its clock kept
        assert await _balance(second, client) == after
        data = await asyncio.wait_for(_until_state(second, client, task_id, "success"), 30)
        urls = json.loads(data["resultJson"])["resultUrls"]
        assert urls and urls[0].startswith(second.base_url)
        async with client.get(urls[0]) as response:
            assert response.status == 200
            assert len(await response.read()) > 100
        assert await _balance(second, client) == after  # reading or finishing a task charges nothing

    async with KieEmulator(EmulatorConfig(generation_seconds=0.5, credits=100)) as fresh:  # no folder: nothing kept
        assert (await _record(fresh, client, task_id))["data"] is None
        assert await _balance(fresh, client) == 100


async def test_two_emulators_on_one_folder_never_overspend(tmp_path: Path, client: aiohttp.ClientSession) -> None:
    """Each emulator alone would sell what the balance allows; together they sell it once."""
    config = EmulatorConfig(
        generation_seconds=0.2,
        state_dir=tmp_path / "state",
        accept_unknown_models=True,
        unknown_model_cost=10,
        credits=55,
        create_rate_limit=None,
    )
    async with KieEmulator(config) as one, KieEmulator(config) as two:
        answers = await asyncio.gather(*(_create(emu, client, model="any/model") for emu in (one, two) * 5))
        sold = [a for a in answers if a["code"] == 200]
        assert len(sold) == 5
        assert {a["code"] for a in answers} - {200} == {402}
        assert await _balance(one, client) == await _balance(two, client) == 5
        for answer in sold:  # every sale is readable from either emulator
            assert (await _record(two, client, answer["data"]["taskId"]))["data"]["taskId"] == answer["data"]["taskId"]


async def test_the_terminal_callback_is_sent_once_per_folder(tmp_path: Path, client: aiohttp.ClientSession) -> None:
    received: list[str] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json())["data"]["taskId"])
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cb", hook)
    config = EmulatorConfig(generation_seconds=0.3, state_dir=tmp_path / "state")
    async with serve_app(app) as base:
        async with KieEmulator(config) as seller:
            sold = await _create(seller, client, callBackUrl=f"{base}/cb")
        # The seller stopped before the task finished; two later emulators both know of it: one calls back.
        async with KieEmulator(config) as one, KieEmulator(config) as two:
            await asyncio.wait_for(arrived.wait(), 30)
            task_id = sold["data"]["taskId"]
            for emu in (one, two):
                assert (await _until_state(emu, client, task_id, "success"))["taskId"] == task_id
        assert received == [task_id]
        assert (tmp_path / "state" / "tasks" / f"{task_id}.done").exists()


async def test_a_standing_emulator_finishes_tasks_another_one_sold(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """A long-lived emulator (``receive-callbacks --offline``) adopts tasks a batch process sold and left."""
    received = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cb", hook)
    config = EmulatorConfig(generation_seconds=0.3, state_dir=tmp_path / "state")
    async with serve_app(app) as base, KieEmulator(config):  # the standing one
        async with KieEmulator(config) as batch:
            await _create(batch, client, callBackUrl=f"{base}/cb")
        await asyncio.wait_for(received.wait(), 30)  # the batch emulator stopped first: its timer was cancelled


def test_the_ledger_is_exact_across_processes(tmp_path: Path) -> None:
    """Real processes charging one folder at once: the lock makes check-and-charge one step."""
    folder = StateFolder(tmp_path / "state")
    folder.open({"k": 1000.0})
    script = textwrap.dedent(f"""
        from pathlib import Path
        from kie_async.emulator.persist import PersistentLedger, StateFolder
        ledger = PersistentLedger(StateFolder(Path({str(tmp_path / "state")!r})))
        print(sum(ledger.try_charge("k", 1.0) for _ in range(400)))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    sold = [int(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(sold) == 1000  # 1200 attempts, 1000 credits: never more, never less
    assert PersistentLedger(folder).balance("k") == 0
    leftovers = [p.name for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_damaged_state_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    folder = StateFolder(state)
    folder.open({"k": 5.0})
    (state / "ledger.json").write_text("{not json")
    with pytest.raises(RuntimeError, match=r"ledger\.json is unreadable"):
        PersistentLedger(folder).balance("k")
    assert folder.load_task("../../etc") is None


def _run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, Any]]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_cli_resume_task_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The advice an incomplete offline run prints works: the next command finishes the task, buying nothing."""
    out = str(tmp_path / "out")
    request = ["--model", "nano-banana-2", "--prompt", "a fox", "--out", out, "--json", "--offline"]
    code, first = _run_json(capsys, ["run", *request, "--wait-timeout", "0.05"])
    assert (code, first["status"], first["resumable"]) == (1, "incomplete", True)
    code, balance = _run_json(
        capsys, ["credits", "--offline-state", str(tmp_path / "out" / "emulator-state"), "--json"]
    )
    spent = 5000 - balance["credits"]
    assert spent > 0

    code, second = _run_json(capsys, ["run", *request, "--resume-task", first["task_id"]])
    assert (code, second["status"], second["resumed"], second["task_id"]) == (0, "succeeded", True, first["task_id"])
    assert Path(second["outputs"][0]).is_file()
    code, balance = _run_json(
        capsys, ["credits", "--offline-state", str(tmp_path / "out" / "emulator-state"), "--json"]
    )
    assert 5000 - balance["credits"] == spent  # bought once


def test_cli_run_batch_rerun_offline_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = tmp_path / "b.jsonl"
    batch.write_text("".join(json.dumps({"model_key": "nano-banana-2", "prompt": f"fox {i}"}) + "\n" for i in range(2)))
    argv = ["run-batch", str(batch), "--out", str(tmp_path / "out"), "--offline", "--json"]
    code, first = _run_json(capsys, [*argv, "--wait-timeout", "0.05"])
    assert code == 1 and {r["status"] for r in first["results"]} == {"incomplete"}
    code, second = _run_json(capsys, argv)
    assert code == 0
    assert [(r["status"], r["resumed"]) for r in second["results"]] == [("succeeded", True)] * 2
    assert [r["task_id"] for r in second["results"]] == [r["task_id"] for r in first["results"]]


def test_offline_state_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["credits", "--offline-state", str(blocker)]) == 2
    assert "--offline-state" in capsys.readouterr().err


@pytest.mark.parametrize("shared", [True, False])
async def test_a_receiver_confirms_a_callback_token_against_the_shared_account(
    tmp_path: Path, client: aiohttp.ClientSession, shared: bool
) -> None:
    """``receive-callbacks --offline`` confirms a lost answer's token on its own emulator: with the batch's state
    folder it finds the task the batch bought (and settles it); a fresh emulator knows nothing of it."""
    token = "k1234abcd.1"
    buyer = EmulatorConfig(generation_seconds=0.2, state_dir=tmp_path / "state")
    async with KieEmulator(buyer) as batch:
        sold = await _create(batch, client, callBackUrl=f"http://127.0.0.1:9/kie/callback?kie_request={token}")
    task_id = sold["data"]["taskId"]
    settled: list[tuple[str, str]] = []

    async def fallback(token: str, task_id: str) -> None:
        settled.append((token, task_id))

    receiver = EmulatorConfig(generation_seconds=0.2, state_dir=(tmp_path / "state") if shared else None)
    async with KieEmulator(receiver) as emulator, KieSession(emulator.settings()) as kie:
        adopted = await kie.adopt_task(token, task_id, fallback=fallback)
    assert adopted is shared
    assert settled == ([(token, task_id)] if shared else [])


def test_the_emulator_command_takes_a_state_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``kie-async emulator --state DIR`` serves the account ``--offline-state DIR`` commands use."""
    args = build_parser().parse_args(["emulator", "--port", "0", "--state", str(tmp_path / "account")])
    assert _config(args).state_dir == tmp_path / "account"
    assert _config(build_parser().parse_args(["emulator"])).state_dir is None
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["emulator", "--port", "0", "--state", str(blocker)]) == 2
    assert "--state" in capsys.readouterr().err
