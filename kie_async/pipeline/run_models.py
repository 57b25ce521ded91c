"""The pipeline's public models: options, hooks, stage outcomes, outputs and the result of one run."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from kie_async.artifacts.manifest import clean_tags
from kie_async.artifacts.settings import ArtifactSettings
from kie_async.catalogue.preflight import PreflightResult, PreflightThresholds
from kie_async.catalogue.presets import PromptContext
from kie_async.catalogue.request_models import MediaInput, ValidationResult
from kie_async.core.spelling import PYTHON, Spelling
from kie_async.ledger.journal import JournalRecord
from kie_async.ledger.request_state import Money, RequestState, facts
from kie_async.pipeline.enhance import KIE_PREFIX, PromptChat, kie_model
from kie_async.pipeline.prepared import PreparedRequest
from kie_async.pipeline.result_html import run_result_html, run_results_html

StageName = Literal[
    "normalize", "prompt", "enhance", "validate", "preflight", "prepare", "submit", "wait", "download", "artifact"
]
StageStatus = Literal["running", "ok", "skipped", "blocked", "failed", "cancelled"]
PipelineStatus = Literal["succeeded", "failed", "blocked", "over_budget", "submit_uncertain", "incomplete"]
"""How a run ended, for people. ``incomplete``: the task is paid for but the run stopped on a transient error
(outage, timeout, download, disk); a re-run with the same journal resumes it and never buys it again.
Cancellation is not a status: it propagates as ``asyncio.CancelledError`` after cleaning up. The precise
money meaning is :attr:`RunResult.state` (see :mod:`kie_async.ledger.request_state`)."""

PromptPolicy = Literal["off", "ask", "auto", "preview"]
"""The seed toolkit's prompt policies; see ``PipelineOptions.prompt_policy``."""

PromptReviewer = Callable[[PromptContext, str | None], Awaitable[str | None]]
"""For ``prompt_policy="ask"``: gets the context and the enhanced prompt, returns the prompt to send (the
enhanced one, an edit, or the raw one), or None to stop the run before anything is bought."""

ConfirmCallback = Callable[[PreflightResult], Awaitable[bool] | bool]
"""Asked when a run's estimate reaches the confirmation threshold; return True to buy it. May be sync or async."""

Enhancer = Callable[[PromptContext], Awaitable[str | None]]
"""An async prompt enhancer (e.g. an LLM call): gets the rendered preset context, returns the new prompt."""


class StageOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: StageName
    status: StageStatus
    seconds: float
    detail: str | None = None


class RunOutput(MediaInput):
    """A downloaded output; pass it as media to another request to chain runs (lineage is recorded)."""

    run_id: str | None = None
    url: str | None = None

    @property
    def path(self) -> Path:
        return Path(str(self.source))

    def as_media(self, role: Literal["first_frame", "last_frame", "reference"] | None = None) -> RunOutput:
        """This output as an input with a role, e.g. ``run.outputs[0].as_media("first_frame")``."""
        return self.model_copy(update={"role": role})


class RunResult(BaseModel):
    """Everything that happened to one request, stage by stage."""

    model_config = ConfigDict(frozen=True)

    status: PipelineStatus
    state: RequestState = Field(
        default=RequestState.PENDING, description="where the request stands in the state machine (money meaning)"
    )
    model_key: str
    request_key: str | None = Field(default=None, description="journal key when run inside run_many")
    task_id: str | None = None
    run_id: str | None = None
    run_dir: str | None = None
    outputs: list[RunOutput] = Field(default_factory=list)
    output_urls: list[str] = Field(default_factory=list)
    credits_estimated: float | None = None
    credits_charged: float | None = Field(default=None, description="reconciled: provider figure, else estimate")
    parent_run_ids: list[str] = Field(default_factory=list)
    validation: ValidationResult | None = None
    preflight: PreflightResult | None = None
    prepared: PreparedRequest | None = None
    error: str | None = None
    error_type: str | None = None
    stages: list[StageOutcome] = Field(default_factory=list)
    resumed: bool = False
    prompt_chat: PromptChat | None = Field(default=None, description="the built-in enhancer's chat call, if any")
    warnings: list[str] = Field(
        default_factory=list, description="what went wrong besides the run itself (a user callback that raised)"
    )

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def spent_nothing(self) -> bool:
        """True when nothing was bought: stopped before createTask, or Kie.ai definitely refused it."""
        return facts(self.state).money is Money.NOTHING and self.task_id is None

    @property
    def resumable(self) -> bool:
        """Paid for and not finished: a re-run (same journal, or ``resume_task_id``) continues the same task."""
        return facts(self.state).resumable

    @computed_field  # type: ignore[prop-decorator]
    @property
    def credits_unknown(self) -> bool:
        """Bought (or maybe bought) with no price known and no charge reported: its cost is unknown, not 0."""
        return not self.spent_nothing and self.credits_charged is None and self.credits_estimated is None

    @property
    def total_seconds(self) -> float:
        return round(sum(s.seconds for s in self.stages), 4)

    def stage(self, name: StageName) -> StageOutcome | None:
        return next((s for s in self.stages if s.name == name), None)

    def _repr_html_(self) -> str:
        """Jupyter's view: the thumbnail (or video poster) inline, status, model, credits, run folder."""
        return run_result_html(self)


class RunResults(list[RunResult]):
    """What ``run_many`` returns: a plain list of results, in input order, that also renders as a table in Jupyter."""

    @property
    def succeeded(self) -> list[RunResult]:
        return [r for r in self if r.succeeded]

    @property
    def credits_charged(self) -> float:
        """Total reconciled spend of the batch's priced purchases (see :attr:`credits_unknown` for the rest)."""
        return sum(r.credits_charged or 0.0 for r in self)

    @property
    def credits_unknown(self) -> int:
        """How many purchases have no known cost: a total that left them out would read as all the spend."""
        return sum(1 for r in self if r.credits_unknown)

    def spend_line(self) -> str:
        """``"credits 270"`` or ``"credits 100 + 3 purchases with credits unknown"``."""
        line = f"credits {self.credits_charged:g}"
        unknown = self.credits_unknown
        if unknown:
            line += f" + {unknown} purchase{'s' if unknown > 1 else ''} with credits unknown"
        return line

    def _repr_html_(self) -> str:
        return run_results_html(self)


class PipelineOptions(BaseModel):
    """Knobs for :func:`run_pipeline`; defaults are what a careful user wants."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    preset_key: str | None = Field(default=None, description="a preset key, or the seed toolkit's key for it")
    preset_dirs: list[Path] | None = None
    enhance: Enhancer | str | None = Field(
        default=None,
        description="an async enhancer, or 'kie:<chat model>' for the built-in one (Kie chat with the "
        "preset's system prompt; see kie_async.pipeline.enhance)",
    )
    enhance_reserve_credits: float = Field(
        default=2.0,
        ge=0,
        allow_inf_nan=False,
        description="with a budget: credits held while the built-in enhancer's chat runs (no token price is known); "
        "the answer's credits_consumed settles it",
    )
    prompt_policy: PromptPolicy = Field(
        default="auto",
        description="off: never enhance; auto: send the enhanced prompt; preview: enhance and record it, send the "
        "raw one; ask: enhance, then review_prompt decides what is sent (without it the run stops, buying nothing)",
    )
    review_prompt: PromptReviewer | None = None
    system_prompt_override: str | None = Field(
        default=None, description="replaces the preset's system prompt (same {{placeholders}})"
    )
    allow_unknown_placeholders: bool = Field(
        default=False, description="leave unknown {{names}} in a preset as written instead of failing"
    )
    check_balance: bool = Field(default=True, description="read the live balance in preflight")
    # Finite and in range, checked at construction: NaN passes every `cost > limit` test (no gate at all), and a
    # bad wait_timeout found at wait time is found after the task was bought.
    available_credits: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="use this balance instead of reading it"
    )
    budget_credits: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="refuse a single run estimated above this"
    )
    allow_unknown_cost: bool = Field(
        default=False, description="let a request with no known price run where a credit limit is in play"
    )
    unknown_cost_ceiling: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="credits a budget holds for one request with no known price (required with a budget); the "
        "provider's charge settles it when reported, else the ceiling is counted",
    )
    spelling: Spelling = Field(
        default=PYTHON, description="how refusals name options: the caller's own spelling (the CLI passes its flags)"
    )
    rehost_urls: bool = False
    callback_url: str | None = None
    callback_driven: bool = False
    wait_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="seconds; None = settings")
    write_artifact: bool = True
    tags: list[str] = Field(default_factory=list, description="recorded in run.json and the index; query_runs(tag=)")
    source_context: dict[str, Any] = Field(
        default_factory=dict,
        description="the caller's context (web request id, user, ticket), stored verbatim in run.json",
    )
    thresholds: PreflightThresholds | None = Field(
        default=None, description="warn / require_confirmation cost tiers; None reads KIE_*_THRESHOLD variables"
    )
    confirmed: bool = Field(
        default=False,
        description="the caller already confirmed the cost: a require_confirmation preflight tier lets it through",
    )
    confirm: ConfirmCallback | None = Field(
        default=None,
        description="asked (with the preflight result) when a run needs confirmation; True lets it through",
    )

    @field_validator("enhance")
    @classmethod
    def _kie_enhancer(cls, value: Enhancer | str | None) -> Enhancer | str | None:
        if isinstance(value, str):
            return f"{KIE_PREFIX}{kie_model(value)}"
        return value

    @field_validator("tags")
    @classmethod
    def _clean_tags(cls, value: list[str]) -> list[str]:
        return clean_tags(value)

    @field_validator("source_context")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Checked now: found when run.json is written, it would fail every run after the task was bought.
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"source_context must be plain JSON (strings, finite numbers, lists, objects): {exc}"
            ) from None
        return value


class PipelineHooks(BaseModel):
    """Seams for run_many's journal: every state change, and just before / just after createTask goes out."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    on_submitting: Callable[[float | None], Awaitable[None]] | None = None
    on_submitted: Callable[[str, float | None], Awaitable[None]] | None = None
    on_stage: Callable[[StageOutcome], None] | None = Field(
        default=None, description="called with status 'running' when a stage starts and again when it ends"
    )
    on_state: Callable[[JournalRecord], Awaitable[None]] | None = Field(
        default=None, description="every state change, before the step it announces (run_many's journal)"
    )
    on_late_adoption: Callable[[str, str], Awaitable[None]] | None = Field(
        default=None,
        description="(token, task_id) of a correlated callback that arrived after the run ended uncertain",
    )
    journal_scope: str | None = Field(
        default=None, description="the journal's tag carried in correlation tokens (a shared batch's)"
    )
