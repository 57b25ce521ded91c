"""One rule for requests with no known price, everywhere a credit limit is in play.

Blocked unless unknown cost is allowed; when allowed under a budget, each such request holds a stated ceiling
(never 0), and results count unpriced purchases as "credits unknown", never as 0. Tasks are counted at the
emulator.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main
from kie_async.pipeline.fanout import run_many
from kie_async.pipeline.run import PipelineOptions
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=60.0)
UNPRICED = "google-imagen4"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


def _unpriced(i: int) -> RawUserRequest:
    return RawUserRequest(model_key=UNPRICED, prompt=f"an unpriced picture {i}")


def _options(tmp_path: Path, **update: object) -> PipelineOptions:
    artifacts = ArtifactSettings(root=tmp_path / "out", derivatives=ArtifactDerivativeSettings(enabled=False))
    return PipelineOptions(artifacts=artifacts).model_copy(update=update)


async def test_a_batch_budget_blocks_an_unpriced_request_unless_unknown_cost_is_allowed(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        results = await run_many([_unpriced(1)], kie, options=_options(tmp_path), budget_credits=1)
    assert emulator.stats.tasks_created == 0
    assert results[0].status == "blocked" and "allow_unknown_cost=True" in (results[0].error or "")


async def test_a_budget_needs_a_ceiling_for_unpriced_requests(emulator: KieEmulator, tmp_path: Path) -> None:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        results = await run_many(
            [_unpriced(1)], kie, options=_options(tmp_path, allow_unknown_cost=True), budget_credits=100
        )
    assert emulator.stats.tasks_created == 0
    assert results[0].status == "blocked" and "unknown_cost_ceiling" in (results[0].error or "")


async def test_the_ceiling_is_reserved_so_the_budget_holds(emulator: KieEmulator, tmp_path: Path) -> None:
    """6 unpriced requests, a 100-credit budget, a 40-credit ceiling: at most 2 are bought (0 was reserved before)."""
    opts = _options(tmp_path, allow_unknown_cost=True, unknown_cost_ceiling=40.0)
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        results = await run_many([_unpriced(i) for i in range(6)], kie, options=opts, budget_credits=100)
    bought = [r for r in results if not r.spent_nothing]
    assert emulator.stats.tasks_created == len(bought) == 2
    assert sum(r.status == "over_budget" for r in results) == 4
    assert all(r.credits_unknown for r in bought) and results.credits_unknown == 2
    assert "2 purchases with credits unknown" in results.spend_line()


async def test_without_any_limit_an_unpriced_request_runs_and_says_its_cost_is_unknown(
    emulator: KieEmulator, tmp_path: Path
) -> None:
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        results = await run_many([_unpriced(1)], kie, options=_options(tmp_path, check_balance=False))
    assert results[0].succeeded and results[0].credits_unknown and emulator.stats.tasks_created == 1
    assert json.loads(results[0].model_dump_json())["credits_unknown"] is True  # in every written result


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


async def test_the_cli_names_its_own_flags(
    emulator: KieEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIE_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KIE_UPLOAD_BASE_URL", emulator.upload_base_url)
    monkeypatch.setenv("KIE_API_KEY", emulator.api_key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.jsonl").write_text(json.dumps({"model_key": UNPRICED, "prompt": "a batch line"}) + "\n")
    batch = ["run-batch", "b.jsonl", "--out", "out", "--no-derivatives", "--budget", "1", "--json"]
    assert await asyncio.to_thread(_cli, batch) == 1
    (first,) = json.loads(capsys.readouterr().out)["results"]
    assert first["status"] == "blocked" and "--allow-unknown-cost" in first["error"]
    assert "allow_unknown_cost=True" not in first["error"]
    assert await asyncio.to_thread(_cli, [*batch, "--allow-unknown-cost", "--journal", "j2.jsonl"]) == 1
    (second,) = json.loads(capsys.readouterr().out)["results"]
    assert "--unknown-cost-ceiling" in second["error"] and emulator.stats.tasks_created == 0


@pytest.mark.parametrize("ceiling", [float("nan"), float("inf"), -5.0, 0.0])
async def test_an_unusable_ceiling_set_past_validation_is_refused_before_any_purchase(
    emulator: KieEmulator, tmp_path: Path, ceiling: float
) -> None:
    """``model_copy(update=...)`` skips validation: a NaN ceiling would make every budget comparison false."""
    opts = _options(tmp_path, allow_unknown_cost=True, unknown_cost_ceiling=ceiling)
    async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
        results = await run_many([_unpriced(1)], kie, options=opts, budget_credits=100)
    assert emulator.stats.tasks_created == 0 and results[0].spent_nothing
    assert "unknown_cost_ceiling" in (results[0].error or "")
