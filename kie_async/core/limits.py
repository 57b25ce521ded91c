"""One place that says which numbers are usable: credits, budgets, timeouts and concurrency.

The money gates compare numbers (``cost > budget``, ``spent + reserved > cap``), and every comparison with
NaN is false, so a NaN budget or balance silently switched a gate off; an infinite one does the same in a
less obvious way, and a negative timeout "waits" for no time after the task is already bought. Every public
entry point that takes such a number checks it here first, before anything is sent. The CLI's argparse
types use the same rules (:func:`number_problem`), so the command line and the library cannot drift apart.
"""

from __future__ import annotations

import math

from kie_async.core.errors import KieInputError

_CREDITS_FIX = "pass a finite number of credits >= 0, or None for no limit"
_TIMEOUT_FIX = "pass a finite number of seconds > 0, or None for the default"


def number_problem(
    value: object,
    *,
    minimum: float,
    strict: bool = False,
    maximum: float | None = None,
    integer: bool = False,
    shown: str | None = None,
) -> str | None:
    """Why ``value`` is not a usable number in range (a phrase such as ``must be ... (got nan)``), or None.

    ``bool`` is refused although it is an ``int``: ``concurrency=True`` is a mistake, not a 1. ``shown`` is
    how the value reads in the message (the CLI passes the text the user typed).
    """
    kind = "a whole number" if integer else "a finite number"
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    want = f"{kind} {bound}" + (f" and <= {maximum:g}" if maximum is not None else "")
    usable_type = int if integer else (int, float)
    got = shown if shown is not None else repr(value)
    if isinstance(value, bool) or not isinstance(value, usable_type):
        return f"must be {want} (got {type(value).__name__} {got})"
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        number = math.inf
    if (
        not math.isfinite(number)
        or number < minimum
        or (strict and number == minimum)
        or (maximum is not None and number > maximum)
    ):
        return f"must be {want} (got {got})"
    return None


def _checked(
    name: str,
    value: object,
    fix: str,
    *,
    minimum: float,
    strict: bool = False,
    maximum: float | None = None,
    integer: bool = False,
) -> float:
    problem = number_problem(value, minimum=minimum, strict=strict, maximum=maximum, integer=integer)
    if problem is not None or not isinstance(value, int | float):
        raise KieInputError(f"{name} {problem}", hint=fix)
    return float(value)


def check_credits(name: str, value: object, *, optional: bool = True) -> float | None:
    """A credit amount (budget, balance, reservation): finite and >= 0; None passes when ``optional``."""
    if value is None and optional:
        return None
    return require_credits(name, value, fix=_CREDITS_FIX if optional else None)


def require_credits(name: str, value: object, *, fix: str | None = None) -> float:
    """A credit amount that must be given: finite and >= 0."""
    return _checked(name, value, fix or "pass a finite number of credits >= 0", minimum=0.0)


def check_timeout(name: str, value: object) -> float | None:
    """A per-call timeout in seconds: finite and > 0; None means "use the configured default"."""
    if value is None:
        return None
    return _checked(name, value, _TIMEOUT_FIX, minimum=0.0, strict=True)


def check_concurrency(name: str, value: object) -> int:
    """How many things run at once: an ``int`` >= 1 (not a float, not a bool)."""
    _checked(name, value, f"pass {name}=1 or more (a plain int)", minimum=1, integer=True)
    assert isinstance(value, int)  # _checked refused everything else
    return value


def check_run_many_args(concurrency: object, budget_credits: object) -> None:
    """``run_many``'s own numbers, checked before the balance is read or anything is sent."""
    check_concurrency("concurrency", concurrency)
    check_credits("budget_credits", budget_credits)
