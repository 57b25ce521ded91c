"""Optional smoke tests against the real Kie.ai. They never run in CI: they need a key *and* an explicit opt-in.

KIE_API_KEY=... KIE_RUN_LIVE=1 python -m pytest tests/test_live_smoke.py -m live -rs
# additionally spend ~8 credits on one Nano Banana 2 image:
KIE_SMOKE_ALLOW_SUBMIT=1 ...
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kie_async import KieSession, KieSettings, PipelineOptions, RawUserRequest, run_pipeline
from kie_async.artifacts import ArtifactSettings

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (os.environ.get("KIE_API_KEY") and os.environ.get("KIE_RUN_LIVE") == "1"),
        reason="live smoke tests need KIE_API_KEY and KIE_RUN_LIVE=1",
    ),
]


def live_settings() -> KieSettings:
    return KieSettings.from_env(allow_live=True)


async def test_live_credit_balance() -> None:
    async with KieSession(live_settings()) as kie:
        balance = await kie.get_credits()
    assert balance.credits >= 0


@pytest.mark.skipif(os.environ.get("KIE_SMOKE_ALLOW_SUBMIT") != "1", reason="set KIE_SMOKE_ALLOW_SUBMIT=1 to spend")
async def test_live_nano_banana_2_run(tmp_path: Path) -> None:
    options = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path), budget_credits=20, wait_timeout=900)
    async with KieSession(live_settings()) as kie:
        result = await run_pipeline(
            RawUserRequest(model_key="nano-banana-2", prompt="a small red cube on a white table"), kie, options=options
        )
    assert result.succeeded, result.error
    assert result.outputs and result.outputs[0].path.stat().st_size > 0
