"""The one request state machine: where a request stands, what that means for money, and what may follow.

Every layer that decides whether to buy (``run_pipeline``, ``run_many``, the journal, the CLI) reads the
same table, so "may I submit this again?" has one answer. The rule that shapes it: a state is **final** only
when the provider said so (``succeeded``, ``failed``) or nothing was spent (``blocked``, ``refused``). Once a
task id exists every later state keeps it, and every failure after that point is resumable on that id; it is
never a reason to buy again.

The table in ``docs/batches-and-resuming.md`` is generated from :data:`STATE_FACTS` and :data:`TRANSITIONS`
(``tests/test_request_state.py`` fails when they drift apart).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Money(StrEnum):
    """What a state means for the account."""

    NOTHING = "spent nothing"
    MAYBE = "maybe spent"
    SPENT = "spent"


class RequestState(StrEnum):
    PENDING = "pending"
    """Nothing has happened yet (no journal record)."""
    BLOCKED = "blocked"
    """Stopped before ``createTask`` went on the wire: validation, preflight, budget, an upload, a cancel."""
    SUBMITTING = "submitting"
    """``createTask`` is about to go on the wire (journaled after the rate limiter granted a slot)."""
    REFUSED = "refused"
    """``createTask`` got a definite "no" (an error envelope, 402, 429 after retries) or provably never arrived."""
    UNCERTAIN = "uncertain"
    """``createTask`` may have arrived but its answer was lost; a task may exist and may be billed."""
    SUBMITTED = "submitted"
    """A task id exists (from the answer, or adopted from a correlated callback)."""
    INCOMPLETE = "incomplete"
    """Paid for, but the last attempt stopped on a transient error (wait, download, disk); resume on the id."""
    SUCCEEDED = "succeeded"
    """The provider said success and every output is on disk, size and sha256 recorded."""
    FAILED = "failed"
    """The provider said ``fail`` (or canceled the task): final, whatever the provider charged."""


class StateFacts(BaseModel):
    """One row of the table."""

    model_config = ConfigDict(frozen=True)

    money: Money
    final: bool
    resumable: bool
    has_task: bool
    meaning: str


STATE_FACTS: dict[RequestState, StateFacts] = {
    RequestState.PENDING: StateFacts(
        money=Money.NOTHING, final=False, resumable=False, has_task=False, meaning="not started: run it"
    ),
    RequestState.BLOCKED: StateFacts(
        money=Money.NOTHING,
        final=True,
        resumable=False,
        has_task=False,
        meaning="stopped before createTask (checks, budget, upload, cancel); a re-run starts afresh",
    ),
    RequestState.SUBMITTING: StateFacts(
        money=Money.MAYBE,
        final=False,
        resumable=False,
        has_task=False,
        meaning="createTask going out; a process that died here reads as uncertain, or refused when the journal "
        "proves the request never left",
    ),
    RequestState.REFUSED: StateFacts(
        money=Money.NOTHING,
        final=True,
        resumable=False,
        has_task=False,
        meaning="Kie.ai said no (or the request never arrived); a re-run submits again",
    ),
    RequestState.UNCERTAIN: StateFacts(
        money=Money.MAYBE,
        final=False,
        resumable=False,
        has_task=False,
        meaning="a task may exist: never resubmitted unless asked; a correlated callback settles it",
    ),
    RequestState.SUBMITTED: StateFacts(
        money=Money.SPENT, final=False, resumable=True, has_task=True, meaning="task id known: wait on it"
    ),
    RequestState.INCOMPLETE: StateFacts(
        money=Money.SPENT,
        final=False,
        resumable=True,
        has_task=True,
        meaning="paid, interrupted (timeout, outage, download, disk): a re-run waits/downloads again",
    ),
    RequestState.SUCCEEDED: StateFacts(
        money=Money.SPENT,
        final=True,
        resumable=False,
        has_task=True,
        meaning="provider said success, outputs verified; a re-run re-checks the files and refetches lost ones",
    ),
    RequestState.FAILED: StateFacts(
        money=Money.SPENT,
        final=True,
        resumable=False,
        has_task=True,
        meaning="provider said fail; only retry_failed buys a new task",
    ),
}

_S = RequestState
TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    _S.PENDING: frozenset({_S.BLOCKED, _S.SUBMITTING}),
    _S.BLOCKED: frozenset({_S.BLOCKED, _S.SUBMITTING}),
    # A provably unsent attempt (connect failure, 429) is closed as refused before the next attempt opens.
    _S.SUBMITTING: frozenset({_S.SUBMITTED, _S.REFUSED, _S.UNCERTAIN}),
    _S.REFUSED: frozenset({_S.BLOCKED, _S.SUBMITTING}),
    # Settled by a correlated callback (adopted), or re-bought only when the caller accepts the risk.
    _S.UNCERTAIN: frozenset({_S.SUBMITTED, _S.SUBMITTING}),
    _S.SUBMITTED: frozenset({_S.SUCCEEDED, _S.FAILED, _S.INCOMPLETE}),
    _S.INCOMPLETE: frozenset({_S.SUCCEEDED, _S.FAILED, _S.INCOMPLETE}),
    # Outputs deleted since: refetched from the same task (succeeded again) or stuck trying (incomplete); a
    # provider that now says "fail" has the last word (the money was spent either way).
    _S.SUCCEEDED: frozenset({_S.SUCCEEDED, _S.INCOMPLETE, _S.FAILED}),
    # retry_failed: the one deliberate second purchase, after the provider itself said fail.
    _S.FAILED: frozenset({_S.SUBMITTING}),
}


class IllegalTransitionError(RuntimeError):
    """A programming error: the SDK tried a move the state machine forbids (never caused by user input)."""


def facts(state: RequestState) -> StateFacts:
    return STATE_FACTS[state]


def can_move(old: RequestState, new: RequestState) -> bool:
    return new in TRANSITIONS[old]


def check_move(old: RequestState, new: RequestState, *, key: str = "") -> None:
    """Raise :class:`IllegalTransitionError` unless ``old -> new`` is in the table."""
    if not can_move(old, new):
        where = f" for {key}" if key else ""
        raise IllegalTransitionError(f"illegal request state change{where}: {old.value} -> {new.value}")


def states_table_markdown() -> str:
    """The table of states as it appears in the docs (generated, so it cannot drift from the code)."""
    lines = [
        "| state | money | final | a re-run | may become |",
        "|---|---|---|---|---|",
    ]
    for state, row in STATE_FACTS.items():
        nexts = ", ".join(f"`{s.value}`" for s in RequestState if s in TRANSITIONS[state])
        final = "yes" if row.final else "no"
        lines.append(f"| `{state.value}` | {row.money.value} | {final} | {row.meaning} | {nexts} |")
    return "\n".join(lines)
