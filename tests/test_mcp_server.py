"""``kie-async mcp`` driven by the official MCP SDK's own client over stdio, against the emulator."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kie_async.emulator import EmulatorConfig, KieEmulator

mcp = pytest.importorskip("mcp")
from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

FOX = {"model_key": "nano-banana-2", "prompt": "a red fox", "options": {"resolution": "1K"}}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1)


@contextlib.asynccontextmanager
async def connect(emulator: KieEmulator, tmp_path: Path, *flags: str, **env_over: str) -> AsyncIterator[ClientSession]:
    """One server process per test; a context manager, not a fixture: anyio's scopes must open and close in one
    task, and pytest-asyncio may run a fixture's setup and teardown in different ones."""
    env = {
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_API_KEY": emulator.api_key,
        "KIE_OUTPUT_DIR": str(tmp_path / "out"),
        **env_over,
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "kie_async", "mcp", *flags], env=env, cwd=str(tmp_path)
    )
    with (tmp_path / "server.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    data: dict[str, Any] = json.loads(result.content[0].text)
    return data


def error_text(result: Any) -> str:
    assert result.is_error, result.content
    text: str = result.content[0].text
    return text


async def test_tools_and_resources_are_listed(emulator: KieEmulator, tmp_path: Path) -> None:
    async with connect(emulator, tmp_path) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {
            "list_models",
            "describe_model",
            "validate",
            "estimate",
            "run_request",
            "resume_run",
            "get_run",
            "query_runs",
            "credits",
            "server_limits",
        } <= set(tools)
        assert "budget_credits" not in tools["run_request"].input_schema["properties"]
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "kie://models/nano-banana-2" in uris
        assert "kie://docs/README.md" in uris
        spec = await client.read_resource("kie://models/nano-banana-2")
        assert "nano-banana-2" in spec.contents[0].text  # type: ignore[union-attr]


async def test_models_validate_estimate_credits(emulator: KieEmulator, tmp_path: Path) -> None:
    async with connect(emulator, tmp_path) as client:
        keys = [m["key"] for m in payload(await client.call_tool("list_models", {}))["models"]]
        assert "nano-banana-2" in keys and "kling-3.0-motion" in keys
        described = payload(await client.call_tool("describe_model", {"model_key": "nano-banana-2"}))
        assert "resolution" in described["options"]
        assert "model_key" in error_text(await client.call_tool("describe_model", {"model_key": "nope"}))
        typo = error_text(await client.call_tool("describe_model", {"model_key": "nano-banan"}))
        assert "did you mean" in typo and "'nano-banana-2'" in typo and "seedream" not in typo

        checked = payload(await client.call_tool("validate", FOX))
        assert checked["submittable"] and checked["problems"] == []
        bad = payload(await client.call_tool("validate", {**FOX, "options": {"resolution": "9K"}}))
        assert not bad["submittable"] and bad["problems"][0]["field"] == "resolution" and bad["problems"][0]["fix"]

        priced = payload(await client.call_tool("estimate", FOX))
        assert priced["preflight"]["estimated_credits"] > 0 and priced["preflight"]["estimated_usd"] > 0
        over = error_text(await client.call_tool("estimate", {**FOX, "options": {"resolution": "9K"}}))
        assert "resolution" in over and "fix:" in over

        balance = payload(await client.call_tool("credits", {}))
        assert balance["credits"] == emulator.credits()


async def test_run_is_a_dry_run_until_confirmed(emulator: KieEmulator, tmp_path: Path) -> None:
    async with connect(emulator, tmp_path, "--budget", "100") as client:
        before = emulator.credits()
        dry = payload(await client.call_tool("run_request", dict(FOX)))
        assert dry["dry_run"] and dry["preflight"]["allowed"] and "confirm=true" in dry["next"] and dry["quote_id"]
        assert emulator.credits() == before  # nothing bought
        unquoted = error_text(await client.call_tool("run_request", {**FOX, "confirm": True}))
        assert "quote_id" in unquoted
        assert emulator.credits() == before

        ran = payload(
            await client.call_tool(
                "run_request", {**FOX, "confirm": True, "quote_id": dry["quote_id"], "tags": ["agent"]}
            )
        )
        assert ran["status"] == "succeeded", ran["error"]
        assert emulator.credits() < before
        run = payload(await client.call_tool("get_run", {"run_id": ran["run_id"]}))
        assert run["tags"] == ["agent"] and run["prompts"]["raw"] == "a red fox"
        found = payload(await client.call_tool("query_runs", {"tag": "agent"}))
        assert [r["run_id"] for r in found["runs"]] == [ran["run_id"]]
        assert "no run" in error_text(await client.call_tool("get_run", {"run_id": "missing"}))
        assert "limit" in error_text(await client.call_tool("query_runs", {"limit": 0}))


async def test_bad_request_shapes_name_the_field(emulator: KieEmulator, tmp_path: Path) -> None:
    async with connect(emulator, tmp_path) as client:
        text = error_text(await client.call_tool("validate", {"model_key": "nano-banana-2", "prompt": 5}))
        assert "prompt" in text
        text = error_text(await client.call_tool("estimate", {**FOX, "budget_credits": -1}))
        assert "budget_credits" in text


async def test_live_kie_needs_the_opt_in_but_offline_tools_work(emulator: KieEmulator, tmp_path: Path) -> None:
    # A non-loopback host without KIE_ALLOW_LIVE: the session refuses before any connection is made.
    async with connect(emulator, tmp_path, KIE_BASE_URL="https://api.kie.ai") as client:
        assert payload(await client.call_tool("validate", FOX))["submittable"]
        assert "KIE_ALLOW_LIVE" in error_text(await client.call_tool("credits", {}))
        refused = error_text(await client.call_tool("run_request", {**FOX, "confirm": True}))
        assert "KIE_ALLOW_LIVE" in refused
        assert "kie-async mcp --offline" in refused and "KieSettings" not in refused  # this interface's spelling
    assert emulator.stats.tasks_created == 0


async def test_traversal_run_ids_are_refused(emulator: KieEmulator, tmp_path: Path) -> None:
    async with connect(emulator, tmp_path) as client:
        for bad in ("../../etc", "a/b", ".hidden", " "):
            assert "run_id" in error_text(await client.call_tool("get_run", {"run_id": bad}))


async def test_streamable_http_transport(emulator: KieEmulator, tmp_path: Path) -> None:
    import asyncio
    import os
    import socket

    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_API_KEY": emulator.api_key,
        "KIE_OUTPUT_DIR": str(tmp_path / "out"),
    }
    with (tmp_path / "http.log").open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kie_async",
            "mcp",
            "--transport",
            "streamable-http",
            "--port",
            str(port),
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            for _ in range(1200):  # wait until it listens (not a timed assertion: it only bounds the wait)
                assert proc.returncode is None, (tmp_path / "http.log").read_text()
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the server never listened: " + (tmp_path / "http.log").read_text())
            async with (
                streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                assert payload(await client.call_tool("credits", {}))["credits"] == emulator.credits()
        finally:
            proc.terminate()
            await proc.wait()
