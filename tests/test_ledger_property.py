"""The ledger's rules under random use (hypothesis): entry points, interruptions after a purchase, edited batches.

Each example is a sequence of steps on one account (one emulator): a request (one of three prompts) goes through a
random way in (``run_pipeline``, ``run_many`` with or without a journal whose batch is edited between steps, a
handle submitted and maybe waited on), with or without an idempotency key, and may be cancelled as soon as it has
bought its task. A model of the rules follows along and, after every step, the emulator's own task list is held
against it:

- a plain request never buys while an earlier task of it is paid for and not delivered (it resumes that task);
- a request under an idempotency key buys at most once, ever;
- a step cancelled after its purchase hands the task id to the caller (``paid_task_id``);
- at the end, after one plain run of each prompt, no paid task is left undelivered but the named ones.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kie_async import KieSession, PipelineOptions, PollSettings, RawUserRequest, run_many, run_pipeline
from kie_async.artifacts import ArtifactDerivativeSettings, ArtifactSettings
from kie_async.core.settings import RateLimitSettings, RetrySettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.errors import KieSubmissionUncertainError, paid_task_id
from tests.test_request_state import EXAMPLES, _prompt_of

PROMPTS = [f"ledger property {i}" for i in range(3)]
WAYS = ("run_pipeline", "run_many", "run_many_journal", "handle")

steps = st.lists(
    st.fixed_dictionaries(
        {
            "way": st.sampled_from(WAYS),
            "prompt": st.integers(0, len(PROMPTS) - 1),
            "interrupt": st.booleans(),
            "idempotent": st.booleans(),
            "batch_extra": st.permutations(list(range(len(PROMPTS)))),
        }
    ),
    min_size=3,
    max_size=8,
)


class Model:
    """What the rules say the account holds: paid, undelivered tasks per prompt, and the task of each key."""

    def __init__(self) -> None:
        self.outstanding: dict[str, set[str]] = {p: set() for p in PROMPTS}
        self.named: dict[str, str] = {}

    def bought(self, prompt: str, step: dict[str, Any], new: list[str], task_id: str | None) -> None:
        """Check a step's purchases against the rules, then take them in."""
        key = f"key-{prompt}" if step["idempotent"] and step["way"] in ("run_pipeline", "handle") else None
        if key is not None and key in self.named:
            assert not new, f"{step}: bought {new} again under idempotency key {key}"
        elif self.outstanding[prompt]:
            # A plain request resumes a paid, undelivered plain task; so does a new key (it takes that task over).
            assert not new, f"{step}: bought {new} while {self.outstanding[prompt]} was paid and undelivered"
        assert len(new) <= 1, f"{step}: one request bought {new}"
        if key is None:
            self.outstanding[prompt].update(new)
        elif new or task_id is not None:
            self.named[key] = new[0] if new else str(task_id)

    def delivered(self, prompt: str, task_id: str | None) -> None:
        if task_id is not None:
            self.outstanding[prompt].discard(task_id)


def _opts(root: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=root / "out", derivatives=ArtifactDerivativeSettings(enabled=False), fsync=False)
    return PipelineOptions(artifacts=artifacts)


async def _act(
    kie: KieSession, step: dict[str, Any], request: RawUserRequest, root: Path
) -> list[tuple[str, str, str | None]]:
    """One step to its end: (prompt, status, task id) of each request it ran, the step's own first."""
    key = f"key-{request.prompt}" if step["idempotent"] else None
    way = step["way"]
    if way == "run_pipeline":
        result = await run_pipeline(request, kie, options=_opts(root), idempotency_key=key)
        return [(request.prompt or "", result.status, result.task_id)]
    if way == "handle":
        try:
            handle = await kie.submit(request, idempotency_key=key)
        except KieSubmissionUncertainError:  # the ledger holds a maybe-bought attempt: reported, nothing bought
            return [(request.prompt or "", "submit_uncertain", None)]
        if step["interrupt"]:
            return [(request.prompt or "", "incomplete", handle.task_id)]  # never waited on: paid, not delivered
        outcome = await handle.wait(raise_on_failure=False)
        return [(request.prompt or "", "succeeded" if outcome.succeeded else "failed", outcome.task_id)]
    others = [RawUserRequest(model_key="nano-banana-2", prompt=PROMPTS[i]) for i in step["batch_extra"]]
    batch = [request, *[r for r in others if r.prompt != request.prompt][:1]]  # an edited batch: other items
    journal = root / "batch.jsonl" if way == "run_many_journal" else None
    results = await run_many(batch, kie, options=_opts(root), journal_path=journal)
    return [(r.prompt or "", result.status, result.task_id) for r, result in zip(batch, results, strict=True)]


async def _step(
    kie: KieSession, emulator: KieEmulator, model: Model, step: dict[str, Any], root: Path
) -> list[tuple[str, str]]:
    prompt = PROMPTS[step["prompt"]]
    request = RawUserRequest(model_key="nano-banana-2", prompt=prompt)
    before = {t.task_id for t in emulator.tasks()}
    job = asyncio.ensure_future(_act(kie, step, request, root))
    if step["interrupt"] and step["way"] != "handle":
        while not job.done() and {t.task_id for t in emulator.tasks()} == before:
            await asyncio.sleep(0.002)  # until the purchase (or the step's end)
        job.cancel()
    delivered: list[tuple[str, str]] = []
    task_id: str | None = None
    try:
        ran = await job
        task_id = ran[0][2]
        delivered.extend((p, t) for p, status, t in ran if status in ("succeeded", "failed") and t)
    except asyncio.CancelledError as stopped:
        mine = [t.task_id for t in emulator.tasks() if t.task_id not in before and _prompt_of(t) == prompt]
        single = step["way"] in ("run_pipeline", "handle")
        if mine and single:
            assert paid_task_id(stopped) == mine[0], "a cancel after the purchase lost the task id"
        elif mine:  # a batch's cancel names a task one of its requests bought or was collecting
            assert paid_task_id(stopped) in {t.task_id for t in emulator.tasks()}
        task_id = paid_task_id(stopped) if single else None
    new: dict[str, list[str]] = {}
    for task in emulator.tasks():
        if task.task_id not in before:
            new.setdefault(_prompt_of(task), []).append(task.task_id)
    model.bought(prompt, step, new.pop(prompt, []), task_id)
    for other, ids in new.items():  # an edited batch's other item: a plain purchase of its own
        model.bought(other, {"way": "run_many", "idempotent": False}, ids, None)
    return delivered


async def _scenario(scenario: list[dict[str, Any]], root: Path) -> None:
    async with KieEmulator(EmulatorConfig(generation_seconds=0.05)) as emulator:
        settings_ = emulator.settings(
            poll=PollSettings(schedule=((float("inf"), 0.02),), timeout=30.0),
            retry=RetrySettings(max_retries=2, initial_backoff=0.01, max_backoff=0.03),
            rate_limit=RateLimitSettings(create_per_window=1000, create_window_seconds=1.0, reads_per_second=5000),
        )
        model = Model()
        async with KieSession(settings_) as kie:
            for step in scenario:
                for prompt, task_id in await _step(kie, emulator, model, step, root):
                    model.delivered(prompt, task_id)
            sold = len(emulator.tasks())
            for prompt in PROMPTS:  # every undelivered plain purchase is collected, and nothing more is bought
                request = RawUserRequest(model_key="nano-banana-2", prompt=prompt)
                while model.outstanding[prompt]:
                    result = await run_pipeline(request, kie)
                    if result.status == "submit_uncertain":
                        # A cancel landed while the answer was on its way: the ledger says "maybe bought" (never
                        # buying again), and the caller holds the task id it was handed: resume on it.
                        task = sorted(model.outstanding[prompt])[0]
                        result = await run_pipeline(request, kie, resume_task_id=task)
                    assert result.task_id in model.outstanding[prompt], (prompt, result.task_id, model.outstanding)
                    model.delivered(prompt, result.task_id)
            assert len(emulator.tasks()) == sold, "collecting what was paid for bought something"
        sold = Counter(_prompt_of(t) for t in emulator.tasks())
        assert sum(sold.values()) == len(emulator.tasks())


@settings(
    max_examples=max(EXAMPLES, 10),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps)
def test_random_entry_points_interrupts_and_edited_batches_never_buy_twice(scenario: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_scenario(scenario, Path(tmp)))
