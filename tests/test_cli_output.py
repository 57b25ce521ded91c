"""Output for pipes and logs: whole plain lines, nothing cut or redrawn; rich tables only on a terminal."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


@pytest.fixture
def live_env(emulator: KieEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("KIE_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KIE_UPLOAD_BASE_URL", emulator.upload_base_url)
    monkeypatch.setenv("KIE_API_KEY", emulator.api_key)
    monkeypatch.chdir(tmp_path)
    # a deep output folder: in an 80-column table its paths were cut to `/tmp/…`
    return tmp_path / ("a-rather-long-folder-name-" * 4) / "out"


def _batch(tmp_path: Path) -> Path:
    lines = [
        {"model_key": "nano-banana-2", "prompt": "first"},
        {"model_key": "nano-banana-2", "prompt": "second", "options": {"resolution": "8K"}},
        {"model_key": "nano-banana-2", "prompt": "third " + "very long prompt " * 20},
    ]
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


async def test_piped_run_batch_prints_one_whole_line_per_request_and_a_summary(
    live_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run-batch", str(_batch(tmp_path)), "--out", str(live_env), "--no-derivatives"]
    assert await asyncio.to_thread(main, argv) == 1  # one request is invalid
    out = capsys.readouterr().out
    lines = out.splitlines()
    per_request = [line for line in lines if line.startswith("[")]
    assert sorted(line.split()[1] for line in per_request) == ["#0", "#1", "#2"]
    assert [line.split()[0] for line in per_request] == ["[1/3]", "[2/3]", "[3/3]"]  # numbered as they end
    for line in per_request:
        if " succeeded " in line:
            assert "credits=8 " in line
            path = Path(line.split("output=", 1)[1])
            assert path.is_file() and path.is_relative_to(live_env)
        else:
            assert " blocked " in line and "error=invalid: resolution" in line and "'4K'" in line
    assert lines[-1].startswith("3 requests: 1 blocked, 2 succeeded; credits 16; journal: ")
    assert "…" not in out and "━" not in out and "\r" not in out  # nothing cut, no table, no redraws


async def test_run_batch_json_has_a_summary(live_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run-batch", str(_batch(tmp_path)), "--out", str(live_env), "--no-derivatives", "--json"]
    assert await asyncio.to_thread(main, argv) == 1
    document = json.loads(capsys.readouterr().out)  # nothing but the JSON document on stdout
    assert document["summary"] == {
        "requests": 3,
        "statuses": {"blocked": 1, "succeeded": 2},
        "succeeded": 2,
        "credits_charged": 16.0,
    }


def test_piped_models_lists_every_cell_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "┃" not in out
    assert any("bytedance/v1-pro-fast-image-to-video" in line for line in out.splitlines())


def test_piped_models_show_and_estimate_do_not_wrap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "nano-banana-2"]) == 0
    assert main(["estimate", "--model", "nano-banana-2", "--prompt", "a lighthouse"]) == 0
    out = capsys.readouterr().out
    assert "│" not in out and "┃" not in out  # no table borders: aligned columns
    assert "aspect_ratio   enum" in out
    assert any(len(line) > 100 and "fix: pass aspect_ratio" in line for line in out.splitlines())


def _on_terminal(argv: list[str], columns: int) -> str:
    """Run the CLI with a pseudo-terminal as stdout (as a person at a terminal would); its output."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kie_async", *argv], stdout=follower, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_on_a_terminal_tables_are_rich_at_the_terminal_width() -> None:
    out = _on_terminal(["models", "show", "nano-banana-2"], 100)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines()  # without the colour codes
    assert any("┃" in line or "│" in line for line in lines)  # a rich table
    assert max(len(line) for line in lines if "│" in line or "┃" in line) <= 100


def test_demo_and_guides_take_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)  # nothing but the document: no tour lines around it
    assert document["status"] == "succeeded" and Path(document["outputs"][0]).is_file()
    assert document["credits_before"] - document["credits_after"] > 0
    assert main(["guides", "--out", str(tmp_path / "guides"), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert written and all(Path(path).is_file() for path in written)
    assert main(["guides", "--out", str(tmp_path / "guides"), "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stale"] == []
