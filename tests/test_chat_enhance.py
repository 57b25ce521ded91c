"""The built-in enhancer: ``PipelineOptions(enhance="kie:<chat model>")`` and ``--enhance-with``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from kie_async import CreditBudget, KieSession, PipelineOptions, RawUserRequest, run_pipeline
from kie_async.artifacts import ArtifactSettings
from kie_async.core.settings import PollSettings
from kie_async.emulator import KieEmulator
from kie_async.interfaces.cli import main

FAST = PollSettings(schedule=((float("inf"), 0.05),))
REQUEST = RawUserRequest(
    model_key="nano-banana-2", prompt="a red fox in snow", options={"aspect_ratio": "1:1", "output_format": "png"}
)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=FAST)) as session:
        yield session


def _options(tmp_path: Path, **extra: object) -> PipelineOptions:
    return PipelineOptions(artifacts=ArtifactSettings(root=tmp_path), enhance="kie:claude-haiku-4.5", **extra)


async def test_the_prompt_is_enhanced_through_kie_chat_and_counted(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    budget = CreditBudget(100)
    result = await run_pipeline(REQUEST, kie, options=_options(tmp_path), budget=budget)
    assert result.succeeded and result.prompt_chat is not None
    chat = result.prompt_chat
    assert chat.model == "claude-haiku-4.5" and chat.complete and chat.credits_consumed
    assert chat.credits_charged == chat.credits_consumed  # settled to the answer's figure, not the hold
    assert budget.snapshot().spent == pytest.approx((result.credits_charged or 0) + chat.credits_consumed)
    manifest = json.loads((Path(result.run_dir or "") / "run.json").read_text())
    prompts = manifest["prompts"]
    assert prompts["raw"] == "a red fox in snow" and prompts["enhanced_with"] == "claude-haiku-4.5"
    assert prompts["enhanced"].startswith("[claude-haiku-4-5]") and "a red fox in snow" in prompts["enhanced"]
    assert prompts["final_used"] == prompts["enhanced"] and prompts["enhance_credits"] == chat.credits_consumed
    sent = [t for t in emulator.tasks() if t.model == "nano-banana-2"]
    assert sent[0].body["input"]["prompt"] == prompts["enhanced"]


async def test_preview_records_the_enhanced_prompt_and_sends_the_raw_one(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    result = await run_pipeline(REQUEST, kie, options=_options(tmp_path, prompt_policy="preview"))
    manifest = json.loads((Path(result.run_dir or "") / "run.json").read_text())
    assert manifest["prompts"]["enhanced"].startswith("[claude-haiku-4-5]")
    assert manifest["prompts"]["final_used"] == "a red fox in snow"
    assert emulator.tasks()[0].body["input"]["prompt"] == "a red fox in snow"


async def test_a_failed_enhancement_stops_the_run_before_anything_is_bought(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    emulator.faults.add("chat", "server_error", status=500, http_status=True)
    budget = CreditBudget(100)
    result = await run_pipeline(REQUEST, kie, options=_options(tmp_path), budget=budget)
    assert result.status == "blocked" and result.spent_nothing and "prompt enhancement failed" in (result.error or "")
    assert result.stage("enhance") is not None and emulator.tasks() == []
    assert budget.snapshot().spent == 0 and budget.snapshot().reserved == 0


def test_a_string_enhancer_must_name_a_kie_chat_model() -> None:
    with pytest.raises(ValidationError, match="kie:<chat model>"):
        PipelineOptions(enhance="openai:gpt-4")
    assert PipelineOptions(enhance="kie: gpt-5.2 ").enhance == "kie:gpt-5.2"


def test_cli_enhance_with(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            "--model",
            "nano-banana-2",
            "--prompt",
            "a quiet harbour",
            "--offline",
            "--json",
            "--enhance-with",
            "gemini-3-flash",
            "--out",
            str(tmp_path),
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["prompt_chat"]["model"] == "gemini-3-flash"
    assert summary["prompt_chat"]["credits_consumed"] > 0
