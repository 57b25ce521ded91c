"""``kie-async --version`` (``--details``: what a bug report needs) and ``run-batch --callback-url``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from kie_async._version import __version__
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main
from kie_async.interfaces.cli._version_info import version_report


def test_version_names_sdk_and_python_and_details_add_aiohttp_and_libvips() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kie_async", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"kie-async {__version__}"
    assert lines[1].startswith(f"Python {sys.version_info.major}.{sys.version_info.minor}.") and len(lines) == 2
    assert done.stderr == ""
    done = subprocess.run(
        [sys.executable, "-m", "kie_async", "--version", "--details"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    assert lines[:2] == [f"kie-async {__version__}", lines[1]] and lines[1].startswith("Python ")
    assert lines[2] == f"aiohttp {aiohttp.__version__}"
    assert lines[3].startswith("libvips ") and len(lines) == 4
    assert done.stderr == ""


def test_version_says_when_libvips_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyvips", None)  # `import pyvips` now raises ImportError
    assert "libvips not available (ModuleNotFoundError" in version_report()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


async def test_run_batch_puts_the_callback_url_on_every_task(
    emulator: KieEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIE_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KIE_UPLOAD_BASE_URL", emulator.upload_base_url)
    monkeypatch.setenv("KIE_API_KEY", emulator.api_key)
    monkeypatch.chdir(tmp_path)
    lines = [json.dumps({"model_key": "nano-banana-2", "prompt": f"batch {i}"}) for i in range(3)]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    hook = "http://127.0.0.1:9/kie/callback?team=a"
    argv = ["run-batch", "b.jsonl", "--out", "out", "--no-derivatives", "--callback-url", hook, "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in report["results"]] == ["succeeded"] * 3
    urls = [task.callback_url for task in emulator.tasks()]
    assert len(urls) == 3
    assert all(url is not None and url.startswith("http://127.0.0.1:9/kie/callback?") for url in urls)
    queries = [parse_qs(urlsplit(url).query) for url in urls if url]
    assert all(q["team"] == ["a"] for q in queries)
    assert len({q["kie_request"][0] for q in queries}) == 3  # one correlation token per request
