"""The command line under money trouble: a paid task that cannot finish is resumed, never bought again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from kie_async.core.settings import KieSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main

FAST_RETRY = RetrySettings(initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


@pytest.fixture
def cli_env(emulator: KieEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> KieEmulator:
    monkeypatch.setenv("KIE_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KIE_UPLOAD_BASE_URL", emulator.upload_base_url)
    monkeypatch.setenv("KIE_API_KEY", emulator.api_key)
    monkeypatch.setenv("KIE_WAIT_POLL_INTERVAL_SECONDS", "0.05")  # the emulator is done in 0.05 s: poll as fast
    monkeypatch.delenv("KIE_ALLOW_LIVE", raising=False)
    from_env = KieSettings.from_env  # the broken downloads are retried with millisecond backoff, not seconds
    monkeypatch.setattr(KieSettings, "from_env", staticmethod(lambda **kw: from_env(**{"retry": FAST_RETRY, **kw})))
    monkeypatch.chdir(tmp_path)
    return emulator


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


RUN = ["run", "--model", "nano-banana-2", "--prompt", "a lighthouse", "--out", "out", "--no-derivatives"]


async def test_run_that_cannot_download_says_how_to_resume_and_resume_buys_nothing(
    cli_env: KieEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env.faults.add("files", "server_error", count=None)
    assert await asyncio.to_thread(_cli, [*RUN, "--json"]) == 1
    first = json.loads(capsys.readouterr().out)
    assert first["status"] == "incomplete" and first["resumable"] and not first["spent_nothing"]
    task_id = first["task_id"]
    assert await asyncio.to_thread(_cli, RUN) == 1  # the same command again resumes the paid task (it keeps a
    shown = capsys.readouterr().out  # journal under --out), and the human form names --resume-task too
    assert f"task {task_id} is paid for" in shown and f"--resume-task {task_id}" in shown
    assert cli_env.stats.tasks_created == 1
    cli_env.faults.clear()
    assert await asyncio.to_thread(_cli, [*RUN, "--resume-task", task_id, "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["status"] == "succeeded" and resumed["task_id"] == task_id and resumed["resumed"]
    assert Path(resumed["outputs"][0]).is_file() and cli_env.stats.tasks_created == 1
    assert await asyncio.to_thread(_cli, [*RUN, "--json"]) == 0  # delivered: the same command buys a new variation
    again = json.loads(capsys.readouterr().out)
    assert again["task_id"] != task_id and not again["resumed"] and cli_env.stats.tasks_created == 2


async def test_run_batch_reports_incomplete_and_the_rerun_finishes_it(
    cli_env: KieEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [json.dumps({"model_key": "nano-banana-2", "prompt": f"batch {i}"}) for i in range(3)]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    batch = ["run-batch", "b.jsonl", "--out", "out", "--no-derivatives"]
    cli_env.faults.add("files", "wrong_body", count=None, wrong_body="empty")
    assert await asyncio.to_thread(_cli, batch) == 1
    shown = capsys.readouterr().out
    assert shown.count("incomplete") >= 3 and "Run the same command again to resume" in shown
    cli_env.faults.clear()
    assert await asyncio.to_thread(_cli, [*batch, "--retry-failed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in report["results"]] == ["succeeded"] * 3
    assert all(r["resumed"] and r["state"] == "succeeded" for r in report["results"])
    assert cli_env.stats.tasks_created == 3
