"""What the operator decides when starting ``kie-async mcp``; no tool argument can change any of it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

UNKNOWN_COST_FIX = (
    "choose a model with a price (estimate shows it), or ask the server's operator to restart it with "
    "--allow-unknown-cost --unknown-cost-ceiling N"
)


class McpLimits(BaseModel):
    """The server's spending rules: a budget over its life, allowed media folders, unpriced requests."""

    model_config = ConfigDict(frozen=True)

    budget_credits: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="credits the server may spend over its life (kept across restarts); None: dry runs only",
    )
    media_roots: list[Path] = Field(default_factory=list, description="folders local media may come from")
    allow_unknown_cost: bool = False
    unknown_cost_ceiling: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="credits reserved from the budget for each request without a price",
    )
    quote_ttl_seconds: float = Field(default=600.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ceiling_with_budget(self) -> McpLimits:
        if self.unknown_cost_ceiling is not None and not self.allow_unknown_cost:
            raise ValueError("--unknown-cost-ceiling only applies with --allow-unknown-cost")
        if self.allow_unknown_cost and self.budget_credits is not None and self.unknown_cost_ceiling is None:
            raise ValueError(
                "--allow-unknown-cost with --budget needs --unknown-cost-ceiling N (credits the "
                "budget reserves for each request without a price)"
            )
        return self

    def resolved(self) -> McpLimits:
        """With every media root absolute and free of symlinks (what paths are compared against)."""
        return self.model_copy(update={"media_roots": [r.expanduser().resolve() for r in self.media_roots]})
