"""``kie-async chat``: the answer streams to stdout, the credits go to stderr, ``--json`` prints one object."""

from __future__ import annotations

import json

import pytest

from kie_async.interfaces.cli import main


def test_chat_streams_to_stdout_and_reports_credits_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["chat", "--model", "claude-haiku-4.5", "--system", "Be brief", "--offline", "Describe the sea"])
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("[claude-haiku-4-5] ") and "Describe the sea" in out
    assert err.startswith("credits: ") and "claude-haiku-4.5" in err and "INCOMPLETE" not in err


def test_chat_json_prints_one_result(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["chat", "--model", "gemini-3-flash", "--offline", "--json", "--option",
                 'reasoning_effort="low"', "hi"])
    out, _ = capsys.readouterr()
    result = json.loads(out)
    assert code == 0 and result["wire_format"] == "openai-chat" and result["complete"] is True
    assert result["credits_consumed"] > 0 and "raw" not in result


def test_chat_refuses_what_the_page_does_not_allow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--model", "gpt-5.2", "--offline", "--option", "reasoning_effort=medium", "hi"]) == 2
    assert "not one of ['low', 'high']" in capsys.readouterr().err
    assert main(["chat", "--model", "no-such-llm", "--offline", "hi"]) == 2
    assert "unknown chat model" in capsys.readouterr().err
