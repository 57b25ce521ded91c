"""How the caller writes an option that a message tells them to set: the fix in their own spelling.

The same gate speaks to a Python caller (``allow_unknown_cost=True``), a shell user (``--allow-unknown-cost``)
and an agent behind the MCP server (for whom it is the operator's server flag, not an argument it can pass).
The interfaces hand their spelling down with the options; the gate words its refusals with it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Spelling(BaseModel):
    """The words for each option a refusal may name, as the caller's interface writes it."""

    model_config = ConfigDict(frozen=True)

    allow_unknown_cost: str = "allow_unknown_cost=True"
    unknown_cost_ceiling: str = "unknown_cost_ceiling=CREDITS"


PYTHON = Spelling()
CLI = Spelling(allow_unknown_cost="--allow-unknown-cost", unknown_cost_ceiling="--unknown-cost-ceiling CREDITS")
MCP = Spelling(
    allow_unknown_cost="the operator's `kie-async mcp --allow-unknown-cost` (not a tool argument)",
    unknown_cost_ceiling="the operator's `kie-async mcp --unknown-cost-ceiling CREDITS`",
)
