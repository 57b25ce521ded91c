"""Veo 3.1's other documented models and endpoints (Lite, extend, 4K) bought against the emulator, whose Veo
routes judge each body by the schema on the provider's page."""

from __future__ import annotations

from pathlib import Path

from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import load_registry
from kie_async.core.settings import PollSettings, RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession

FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=30.0)
FAST_RETRY = RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.05)
OPEN_LIMITS = RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000)


def opts(root: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root, derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts, allow_unknown_cost=True, wait_timeout=20)


def fast(emulator: KieEmulator) -> KieSession:
    return KieSession(emulator.settings(poll=FAST_POLL, retry=FAST_RETRY, rate_limit=OPEN_LIMITS))


async def test_veo_lite_is_bought_on_the_veo_api_as_veo3_lite(tmp_path: Path) -> None:
    spec = load_registry().get("veo-3.1-lite")
    assert spec.provider_models == ["veo3_lite"] and spec.transport.name == "veo3"
    request = RawUserRequest(model_key="veo3-lite", prompt="a red fox crossing a snowy field at dawn")
    async with KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator, fast(emulator) as kie:
        result = await run_pipeline(request, kie, options=opts(tmp_path))
        requests = dict(emulator.stats.requests)
    assert result.succeeded, result.error
    (task,) = emulator.tasks()
    assert task.dialect == "veo3" and task.body["model"] == "veo3_lite" and requests.get("createTask:veo3") == 1
