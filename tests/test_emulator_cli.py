"""``kie-async emulator``: argument mapping, and a real process driven from outside until Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp

from kie_async.interfaces.cli import build_parser
from kie_async.interfaces.cli._emulator_cmd import _config


def test_arguments_map_onto_the_config() -> None:
    args = build_parser().parse_args(
        [
            "emulator",
            "--port",
            "9000",
            "--generation-seconds",
            "1.5",
            "--credits",
            "42",
            "--api-key",
            "k",
            "--rate-limit",
            "200",
            "--rate-window",
            "1",
            "--webhook-hmac-key",
            "h",
            "--http-errors",
        ]
    )
    config = _config(args)
    assert (config.port, config.upload_port) == (9000, 9001)
    assert config.generation_seconds == 1.5 and config.credits == 42 and config.api_key == "k"
    assert (config.create_rate_limit, config.create_rate_window) == (200, 1.0)
    assert config.webhook_hmac_key == "h" and config.http_errors
    ephemeral = _config(build_parser().parse_args(["emulator", "--port", "0"]))
    assert (ephemeral.port, ephemeral.upload_port) == (0, 0)


async def test_cli_process_serves_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kie_async",
        "emulator",
        "--port",
        "0",
        "--credits",
        "77",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner = ""
        while "KIE_API_KEY" not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line, f"emulator exited early: {banner}"
            banner += line.decode()
        market = re.search(r"market API : (\S+)", banner)
        upload = re.search(r"upload API : (\S+)", banner)
        assert market and upload and market[1] != upload[1]
        assert "API key    : kie-emulator-key" in banner
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer kie-emulator-key"}) as client:
            async with client.get(market[1] + "/api/v1/chat/credit") as response:
                assert (await response.json())["data"] == 77
            async with client.post(
                market[1] + "/_emulator/faults", json={"endpoint": "credit", "kind": "server_error"}
            ) as response:
                assert response.status == 200
            async with client.get(market[1] + "/api/v1/chat/credit") as response:
                assert (await response.json())["code"] == 500
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
