"""Sora 2's progress callbacks: the page's top-level ``progressCallBackUrl`` gets the run's callback URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.payload import build_submission_payload
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

HOOK = "https://hooks.example.com/kie?kie_request=r1"


def _payload(key: str, callback: str | None) -> dict[str, Any]:
    request = RawUserRequest(model_key=key, prompt="a paper boat drifting down a rainy street")
    return build_submission_payload(validate_request(request, check_files=False), callback_url=callback).to_wire()


@pytest.mark.parametrize("key", ["sora-2-t2v", "sora-2-pro-t2v"])
def test_the_run_callback_is_also_the_progress_callback_where_the_page_has_one(key: str) -> None:
    body = _payload(key, HOOK)
    assert body["callBackUrl"] == body["progressCallBackUrl"] == HOOK and "progressCallBackUrl" not in body["input"]
    assert "progressCallBackUrl" not in _payload(key, None)


def test_models_without_progress_callbacks_send_none() -> None:
    assert "progressCallBackUrl" not in _payload("kling-2.6-t2v", HOOK)
    documented = {k for k, s in load_registry().specs.items() if s.progress_callback_field}
    assert documented == {"sora-2-t2v", "sora-2-i2v", "sora-2-pro-t2v", "sora-2-pro-i2v"}


async def test_the_emulator_takes_the_progress_url_and_refuses_a_bad_one(tmp_path: Path) -> None:
    artifacts = ArtifactSettings(root=tmp_path, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    options = PipelineOptions(
        artifacts=artifacts, allow_unknown_cost=True, wait_timeout=20, callback_url="http://127.0.0.1:9/kie/callback"
    )
    request = RawUserRequest(model_key="sora-2-t2v", prompt="a paper boat drifting down a rainy street")
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        async with KieSession(emulator.settings()) as kie:
            result = await run_pipeline(request, kie, options=options)
        assert result.succeeded, result.error
        bad = {**_payload("sora-2-t2v", HOOK), "progressCallBackUrl": "not a url"}
        headers = {"Authorization": f"Bearer {emulator.api_key}"}
        async with (
            aiohttp.ClientSession(headers=headers) as client,
            client.post(emulator.base_url + "/api/v1/jobs/createTask", json=bad) as response,
        ):
            answer = await response.json()
    assert answer["code"] == 422 and "progressCallBackUrl" in answer["msg"]
