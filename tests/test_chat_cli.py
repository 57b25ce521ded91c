"""``kie-async chat`` (the answer to stdout, the credits to stderr, ``--json`` one object) and the blocking client."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path

import pytest

from kie_async.catalogue.chat_import import chat_facts
from kie_async.catalogue.chat_specs import load_chat_registry, load_chat_spec_file
from kie_async.emulator import KieEmulator
from kie_async.interfaces.cli import main
from kie_async.sync import KieClient


def test_chat_streams_to_stdout_and_reports_credits_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["chat", "--model", "claude-haiku-4.5", "--system", "Be brief", "--offline", "Describe the sea"])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("[claude-haiku-4-5] ") and "Describe the sea" in out
    assert err.startswith("credits: ") and "claude-haiku-4.5" in err and "INCOMPLETE" not in err


def test_chat_json_prints_one_result(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["chat", "--model", "gemini-3-flash", "--offline", "--json", "--option", 'reasoning_effort="low"', "hi"]
    )
    out, _ = capsys.readouterr()
    result = json.loads(out)
    assert code == 0 and result["wire_format"] == "openai-chat" and result["complete"] is True
    assert result["credits_consumed"] > 0 and "raw" not in result


def test_chat_refuses_what_the_page_does_not_allow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--model", "gpt-5.2", "--offline", "--option", "reasoning_effort=medium", "hi"]) == 2
    assert "not one of ['low', 'high']" in capsys.readouterr().err
    assert main(["chat", "--model", "no-such-llm", "--offline", "hi"]) == 2
    assert "unknown chat model" in capsys.readouterr().err


def test_models_import_of_a_chat_page_writes_the_chat_spec(
    kie_docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = kie_docs / "market" / "codex" / "gpt-codex.md"
    assert main(["models", "import", str(page), "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "chat" and summary["key"] == "gpt-codex" and summary["todos"]
    written = load_chat_spec_file(tmp_path / "gpt-codex.yaml")
    committed = load_chat_registry().specs["gpt-codex"]
    assert chat_facts(written) == chat_facts(committed)
    assert main(["models", "import", str(page), "--out", str(tmp_path)]) == 2  # never clobbers


async def test_the_blocking_client_chats(emulator: KieEmulator) -> None:
    def script() -> str:
        with KieClient(emulator.settings()) as kie:
            return kie.chat("gpt-5.5", "hello from a script", system="Be brief").text

    text = await asyncio.to_thread(script)
    assert text.startswith("[gpt-5-5]") and "hello from a script" in text


def test_models_lists_the_chat_models_as_kind_chat_with_their_price_basis(capsys: pytest.CaptureFixture[str]) -> None:
    chats = load_chat_registry().specs
    assert main(["models", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert {k for k, r in rows.items() if r["kind"] == "chat"} == set(chats)
    assert rows["nano-banana-2"]["kind"] == "media"
    claude = rows["claude-sonnet-4.5"]
    assert claude["wire_format"] == "anthropic-messages" and claude["endpoint"] == "/claude/v1/messages"
    assert claude["output"] == "text" and claude["price"] == "unknown" and claude["priced"] is False
    assert "credits_consumed" in claude["price_basis"] and "unknown-price rule" in claude["price_basis"]
    assert main(["models", "--kind", "chat", "--json"]) == 0
    assert {r["key"] for r in json.loads(capsys.readouterr().out)} == set(chats)
    assert main(["models", "--kind", "media", "--json"]) == 0
    assert all(r["kind"] == "media" for r in json.loads(capsys.readouterr().out))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "15 chat models (kind chat" in out and "claude (chat, 5)" in out and "gpt-codex" in out


def test_models_show_a_chat_model_by_key_or_provider_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "claude-sonnet-4-5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("claude-sonnet-4.5 — Claude Sonnet 4.5 (kind chat, family claude)")
    assert "anthropic-messages, POST /claude/v1/messages" in out and "thinkingFlag" in out
    assert "is put before the first user turn" in out and "price basis: tokens" in out
    assert "kie-async chat --offline --model claude-sonnet-4.5" in out
    assert main(["models", "gpt-5.2", "--json"]) == 0
    [spec] = json.loads(capsys.readouterr().out)
    assert spec["kind"] == "chat" and spec["stream"] == {"supported": False} and "price_basis" in spec
    assert spec["options"]["reasoning_effort"]["allowed"] == ["low", "high"]
    assert main(["models", "show", "claude-sonet-4.5"]) == 1
    assert "did you mean claude-sonnet-4.5" in capsys.readouterr().err
    assert main(["models", "show", "gpt-5.2", "--kind", "chat"]) == 2
    assert main(["models", "import", "page.md", "--kind", "chat"]) == 2
    assert "--kind is only for the listing" in capsys.readouterr().err


def test_the_example_of_a_chat_model_runs_as_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "gemini-2.5-flash"]) == 0
    line = next(x.strip() for x in capsys.readouterr().out.splitlines() if x.strip().startswith("kie-async chat"))
    assert main([*shlex.split(line)[1:], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "gemini-2.5-flash" and result["complete"] is True and result["credits_consumed"] > 0
