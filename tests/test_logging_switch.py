"""``KIE_LOG=debug|info``: one line per request (method, path, status, attempt, ms), never a secret."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kie_async import KieSession
from kie_async.emulator import EmulatorConfig, KieEmulator

SECRET = "sk-test-9f8e7d6c5b4a3210SECRET"
LINE = re.compile(r"^(GET|POST) (/\S*) -> (\S+(?: \S+)?) \(attempt (\d+), \d+ ms\)$")


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05, api_key=SECRET)


async def test_one_line_per_request_with_attempts(
    emulator: KieEmulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="kie_async")
    async with KieSession(emulator.settings()) as kie:
        emulator.faults.add("credit", "server_error", count=1, status=503)
        await kie.get_credits()
        created = await kie.create_task(model="nano-banana-2", input={"prompt": "fox"})
        record = await kie.wait_for_task(created.task_id)
        await kie.download(record.output_urls[0] + "?sig=abc", tmp_path / "fox.png")
    lines = [r.getMessage() for r in caplog.records if r.name == "kie_async.http"]
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    first, second = parsed[0], parsed[1]
    assert first is not None and second is not None
    assert first.groups() == ("GET", "/api/v1/chat/credit", "200 code=503", "1")
    assert second.groups() == ("GET", "/api/v1/chat/credit", "200", "2")
    assert any(m is not None and m.group(2) == "/api/v1/jobs/createTask" for m in parsed)
    assert any(m is not None and m.group(2) == "/api/v1/jobs/recordInfo" for m in parsed)
    assert not any("sig=" in line or "taskId" in line for line in lines)  # paths only, never a query
    everything = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert SECRET not in everything


SCRIPT = textwrap.dedent(
    """
    import asyncio, logging
    from kie_async import KieSession
    from kie_async.emulator import EmulatorConfig, KieEmulator

    async def main() -> None:
        async with KieEmulator(EmulatorConfig(api_key={secret!r})) as emulator:
            async with KieSession(emulator.settings()) as kie:
                await kie.get_credits()
        print("level", logging.getLogger("kie_async").getEffectiveLevel())

    asyncio.run(main())
    """
).format(secret=SECRET)


def run_script(kie_log: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KIE_LOG"}
    if kie_log is not None:
        env["KIE_LOG"] = kie_log
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120, check=True
    )


@pytest.mark.parametrize(
    ("value", "level", "tail"), [("debug", logging.DEBUG, r" \[credit, direct\]$"), ("INFO", logging.INFO, r"$")]
)
def test_kie_log_variable_turns_the_loggers_on(value: str, level: int, tail: str) -> None:
    done = run_script(value)
    assert f"level {level}" in done.stdout
    line = r"kie_async\.http INFO\] GET /api/v1/chat/credit -> 200 \(attempt 1, \d+ ms\)" + tail
    assert re.search(line, done.stderr, re.M), done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_without_kie_log_the_sdk_is_quiet() -> None:
    done = run_script(None)
    assert "kie_async.http" not in done.stderr
    assert f"level {logging.WARNING}" in done.stdout
