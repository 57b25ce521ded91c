"""Preflight's warn and require_confirmation tiers (credits and USD, settings and env), against the emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactSettings
from kie_async.catalogue.preflight import PreflightResult, PreflightThresholds, run_preflight
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieConfigError
from kie_async.interfaces.cli import main
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)
FOX = RawUserRequest(model_key="nano-banana-2", prompt="a red fox", options={"resolution": "1K"})


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1)


@pytest.fixture
async def kie(emulator: KieEmulator) -> AsyncIterator[KieSession]:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as session:
        yield session


@pytest.fixture(autouse=True)
def _no_env_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KIE_WARN_CREDIT_THRESHOLD",
        "KIE_CONFIRM_CREDIT_THRESHOLD",
        "KIE_WARN_COST_USD_THRESHOLD",
        "KIE_CONFIRM_COST_USD_THRESHOLD",
    ):
        monkeypatch.delenv(name, raising=False)


async def cost_of(request: RawUserRequest) -> tuple[float, float]:
    result = await run_preflight(request, check_files=False, thresholds=PreflightThresholds())
    assert result.estimate.credits is not None and result.estimate.usd is not None
    return result.estimate.credits, result.estimate.usd


async def test_tiers_by_credits_and_by_usd() -> None:
    credits, usd = await cost_of(FOX)
    none = await run_preflight(FOX, check_files=False, thresholds=PreflightThresholds(warn_credits=credits + 1))
    assert none.decision == "allow" and none.allowed
    warn = await run_preflight(FOX, check_files=False, thresholds=PreflightThresholds(warn_credits=credits))
    assert warn.decision == "warn" and warn.allowed
    assert any(r.code == "cost_warning" and not r.blocking for r in warn.reasons)
    held = await run_preflight(FOX, check_files=False, thresholds=PreflightThresholds(confirm_usd=usd))
    assert held.decision == "require_confirmation" and not held.allowed and held.requires_confirmation
    ok = await run_preflight(FOX, check_files=False, thresholds=PreflightThresholds(confirm_usd=usd), confirmed=True)
    assert ok.allowed and ok.decision == "require_confirmation"
    # a real block still wins over the tier
    blocked = await run_preflight(
        FOX, check_files=False, budget_credits=0.0, thresholds=PreflightThresholds(confirm_credits=0), confirmed=True
    )
    assert blocked.decision == "block" and not blocked.allowed


async def test_thresholds_from_the_toolkit_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    credits, _ = await cost_of(FOX)
    monkeypatch.setenv("KIE_CONFIRM_CREDIT_THRESHOLD", str(credits))
    result = await run_preflight(FOX, check_files=False)
    assert result.decision == "require_confirmation" and not result.allowed
    monkeypatch.setenv("KIE_CONFIRM_CREDIT_THRESHOLD", "nan")
    with pytest.raises(KieConfigError, match="KIE_CONFIRM_CREDIT_THRESHOLD"):
        await run_preflight(FOX, check_files=False)
    monkeypatch.setenv("KIE_CONFIRM_CREDIT_THRESHOLD", "lots")
    with pytest.raises(KieConfigError, match="not a number"):
        PreflightThresholds.from_env()
    with pytest.raises(ValueError):
        PreflightThresholds(warn_usd=-1)


async def test_pipeline_held_buys_nothing_and_a_callback_can_confirm(
    kie: KieSession, emulator: KieEmulator, tmp_path: Path
) -> None:
    credits, _ = await cost_of(FOX)
    tiers = PreflightThresholds(confirm_credits=credits)
    opts = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path), thresholds=tiers)
    held = await run_pipeline(FOX, kie, options=opts)
    assert held.status == "blocked" and held.spent_nothing and held.task_id is None
    assert "confirmation threshold" in (held.error or "")

    asked: list[PreflightResult] = []

    async def no(p: PreflightResult) -> bool:
        asked.append(p)
        return False

    refused = await run_pipeline(FOX, kie, options=opts.model_copy(update={"confirm": no}))
    assert refused.status == "blocked" and refused.task_id is None and len(asked) == 1
    assert asked[0].estimate.credits == credits

    ran = await run_pipeline(FOX, kie, options=opts.model_copy(update={"confirm": lambda p: True}))
    assert ran.status == "succeeded", ran.error
    confirmed = await run_pipeline(FOX, kie, options=opts.model_copy(update={"confirmed": True}))
    assert confirmed.status == "succeeded", confirmed.error


async def test_run_many_asks_the_callback_per_request(kie: KieSession, tmp_path: Path) -> None:
    credits, _ = await cost_of(FOX)
    cheap = RawUserRequest(model_key="nano-banana-2", prompt="a cheap owl", options={"resolution": "1K"})
    dear = RawUserRequest(model_key="nano-banana-2", prompt="a dear owl", options={"resolution": "4K"})
    dear_credits, _ = await cost_of(dear)
    assert dear_credits > credits
    seen: list[str | None] = []

    def only_cheap(p: PreflightResult) -> bool:
        seen.append(p.validation.normalized.raw_prompt)
        return False

    opts = PipelineOptions(
        artifacts=ArtifactSettings(root=tmp_path), thresholds=PreflightThresholds(confirm_credits=dear_credits)
    )
    results = await run_many([cheap, dear], kie, options=opts, confirm=only_cheap)
    assert [r.status for r in results] == ["succeeded", "blocked"]
    assert seen == ["a dear owl"]


def test_cli_refuses_without_a_terminal_and_yes_confirms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIE_CONFIRM_CREDIT_THRESHOLD", "0")
    base = ["run", "--offline", "--model", "nano-banana-2", "--prompt", "a fox", "--out", str(tmp_path), "--json"]
    assert main(base) == 1  # pytest's stdin is not a terminal: refused, nothing bought
    refused = json.loads(capsys.readouterr().out)
    assert refused["status"] == "blocked" and refused["task_id"] is None and refused["spent_nothing"]
    assert main([*base, "--yes"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"


@pytest.mark.parametrize(("answer", "status"), [(b"y\n", "succeeded"), (b"n\n", "blocked")])
def test_cli_asks_on_a_terminal(tmp_path: Path, answer: bytes, status: str) -> None:
    import os
    import pty
    import select
    import subprocess
    import sys

    master, slave = pty.openpty()
    env = {**os.environ, "KIE_CONFIRM_CREDIT_THRESHOLD": "0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kie_async",
            "run",
            "--offline",
            "--model",
            "nano-banana-2",
            "--prompt",
            "a fox",
            "--out",
            str(tmp_path),
            "--json",
        ],
        stdin=slave,
        stderr=slave,
        stdout=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    seen = b""
    while b"[y/N]" not in seen:
        ready, _, _ = select.select([master], [], [], 60)
        assert ready, f"no question asked; saw {seen!r}"
        seen += os.read(master, 1024)
    assert b"confirmation threshold" in seen
    os.write(master, answer)
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    assert json.loads(out)["status"] == status


def test_cli_estimate_names_the_tier(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KIE_CONFIRM_COST_USD_THRESHOLD", "0.08")
    assert main(["estimate", "--model", "nano-banana-2", "--prompt", "a fox", "--option", "resolution=4K"]) == 1
    assert "needs confirmation" in capsys.readouterr().out
    assert main(["estimate", "--model", "nano-banana-2", "--prompt", "a fox", "--option", "resolution=1K"]) == 0
    assert "allowed" in capsys.readouterr().out
