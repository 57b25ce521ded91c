"""A new task's first status read waits until it may be done; the session learns each model's time.

Against the emulator: the first task of a model is read after the schedule's first interval (never at once),
later ones after the learned provider-reported time, so each costs one status request; a resumed task is read
at once; the cap and the jitter never shorten or stretch the wait beyond the settings.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kie_async import KieSession, PipelineOptions, PollSettings, RawUserRequest, run_pipeline
from kie_async.artifacts import ArtifactSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.wire.api_models import TaskRecord, TaskState
from kie_async.wire.polling import first_poll_delay, provider_generation_seconds

POLL = PollSettings(schedule=((30.0, 0.4), (float("inf"), 1.0)), first_poll_max=5.0, timeout=30)
REQUEST = RawUserRequest(model_key="nano-banana-2", prompt="a lighthouse", options={"resolution": "1K"})


def test_first_poll_delay_margin_cap_and_fallback() -> None:
    rng = random.Random(1)
    for _ in range(50):
        assert 0.4 <= first_poll_delay(None, POLL, rng) <= 0.44  # the schedule's first interval, jitter only later
        assert 2 * 1.1 + 0.25 <= first_poll_delay(2.0, POLL, rng) <= (2 * 1.1 + 0.25) * 1.1
        assert first_poll_delay(1000.0, POLL, rng) == 5.0  # capped
    for bad in (float("nan"), float("inf"), -3.0, 0.0):
        assert first_poll_delay(bad, POLL, rng) <= 0.44


def test_generation_time_is_read_only_from_sane_success_records() -> None:
    ok = TaskRecord(task_id="t", state=TaskState.SUCCESS, create_time=1_000, complete_time=4_500)
    assert provider_generation_seconds(ok) == 3.5
    assert provider_generation_seconds(ok.model_copy(update={"state": TaskState.FAIL})) is None
    assert provider_generation_seconds(ok.model_copy(update={"complete_time": 500})) is None
    assert provider_generation_seconds(ok.model_copy(update={"complete_time": None})) is None


async def test_each_task_costs_one_status_read_once_learned(tmp_path: Path) -> None:
    options = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path, fsync=False))
    config = EmulatorConfig(generation_seconds=1.0, create_rate_limit=400)
    async with KieEmulator(config) as emulator, KieSession(emulator.settings(poll=POLL)) as kie:
        first = await run_pipeline(REQUEST, kie, options=options)
        learned = kie.first_poll_delay("nano-banana-2")  # the provider model id the specs send
        results = [await run_pipeline(REQUEST, kie, options=options) for _ in range(3)]
        resumed = await run_pipeline(REQUEST, kie, options=options, resume_task_id=results[0].task_id)
    assert first.succeeded and all(r.succeeded for r in results) and resumed.succeeded
    per_task = emulator.stats.status_requests
    # The first task: read after 0.4 s (not at 0), then every 0.4 s until done at 1.0 s.
    assert 2 <= per_task[first.task_id] <= 3
    assert 1.0 * 1.1 + 0.25 <= learned <= (1.0 * 1.1 + 0.25) * 1.1
    assert [per_task[r.task_id] for r in results[1:]] == [1, 1]
    assert resumed.task_id == results[0].task_id
    assert per_task[results[0].task_id] == 1 + 1  # its own read, then one at once on resume


def test_a_running_task_is_not_read_again_before_its_model_is_expected_done() -> None:
    from kie_async.wire.polling import wait_for_expected

    assert wait_for_expected(0.4, 0.4, None, POLL) == 0.4  # nothing learned: the schedule
    assert wait_for_expected(0.4, 0.4, 2.0, POLL) == 2.0 * 1.1 + 0.25 - 0.4  # until the learned time
    assert wait_for_expected(0.4, 3.0, 2.0, POLL) == 0.4  # already past it: the schedule again
    assert wait_for_expected(0.4, 0.4, 1000.0, POLL) == 5.0  # never beyond first_poll_max
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        assert wait_for_expected(0.4, 0.4, bad, POLL) == 0.4


async def test_tasks_bought_before_any_finished_stop_polling_fast_once_one_has(tmp_path: Path) -> None:
    """A burst bought before the model's time was known: once the first task reports how long it took, the
    others wait for that time instead of reading on the fast schedule until they are done."""
    import asyncio

    from kie_async import RateLimitSettings, run_many

    options = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path, fsync=False))
    slow_poll = PollSettings(schedule=((30.0, 0.2), (float("inf"), 1.0)), first_poll_max=5.0, timeout=30)
    config = EmulatorConfig(generation_seconds=3.0, create_rate_limit=400)
    reads_free = RateLimitSettings(reads_per_second=1000)  # the read limiter must not be what spaces the reads
    settings = {"poll": slow_poll, "rate_limit": reads_free}
    async with KieEmulator(config) as emulator, KieSession(emulator.settings(**settings)) as kie:
        first = asyncio.create_task(run_pipeline(REQUEST, kie, options=options))
        while sum(emulator.stats.status_requests.values()) < 5:  # the first task is ~1 s into its 3 s
            await asyncio.sleep(0.01)
        rest_job = asyncio.create_task(run_many([REQUEST] * 4, kie, options=options))
        while emulator.stats.tasks_created < 5:  # the others are bought while the first still runs: nothing learned
            await asyncio.sleep(0.01)
        assert (await first).succeeded
        learned = dict(emulator.stats.status_requests)  # the first task's time is known from here on
        rest = await rest_job
        assert all(r.succeeded for r in rest)
    after = [emulator.stats.status_requests[r.task_id] - learned.get(r.task_id or "", 0) for r in rest]
    # The others were bought five reads (~1 s) after the first, so they end ~1 s after it. Once the first has reported
    # its time, they wait for that time instead of reading every 0.2 s: a read or two each, not five or more. A busy
    # machine only makes reads rarer, never more frequent, so this holds under load.
    assert max(after) <= 3, after


async def test_a_spec_typical_time_seeds_the_first_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing learned yet, a spec's ``typical_generation_seconds`` decides when a new task is first read."""
    from kie_async.catalogue.specs import SPEC_DIR_ENV, clear_registry_cache
    from kie_async.core.data import data_dir

    specs = tmp_path / "specs"
    specs.mkdir()
    text = (data_dir("model_specs") / "nano-banana-2.yaml").read_text(encoding="utf-8")
    (specs / "nano-banana-2.yaml").write_text(
        text.replace("output_kind: image\n", "output_kind: image\ntypical_generation_seconds: 1.0\n", 1),
        encoding="utf-8",
    )
    monkeypatch.setenv(SPEC_DIR_ENV, str(specs))
    clear_registry_cache()
    try:
        options = PipelineOptions(artifacts=ArtifactSettings(root=tmp_path / "out", fsync=False))
        config = EmulatorConfig(generation_seconds=1.0, create_rate_limit=400)
        async with KieEmulator(config) as emulator, KieSession(emulator.settings(poll=POLL)) as kie:
            result = await run_pipeline(REQUEST, kie, options=options)
        assert result.succeeded
        # Seeded at 1.0 s (+10% and 0.25 s): one read. The schedule alone (0.4 s steps) would take 3.
        assert emulator.stats.status_requests[result.task_id] == 1
    finally:
        monkeypatch.delenv(SPEC_DIR_ENV)
        clear_registry_cache()
