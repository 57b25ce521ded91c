"""A credit budget shared by concurrent runs: reserve the estimate before submit, settle to the actual cost.

Reservation happens under a lock so that N concurrent pipelines cannot each see "room left" and together
overshoot the cap; the cap is checked against spent + reserved. Every amount is checked to be finite and
>= 0: one NaN in the running total would make every later ``> cap`` comparison false, i.e. no cap at all.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel

from kie_async.core.limits import check_credits, number_problem, require_credits

log = logging.getLogger("kie_async.ledger.budget")


class BudgetSnapshot(BaseModel):
    cap: float | None
    spent: float
    reserved: float

    @property
    def remaining(self) -> float | None:
        return None if self.cap is None else max(0.0, self.cap - self.spent - self.reserved)


class CreditBudget:
    """A cap on credits for a batch (``None`` = unlimited, still tracked).

    ``spending_limit``: the cap is a limit the caller set (a budget), so a request with no known price must
    state how much of it it may take (``unknown_cost_ceiling``). False when the cap is only the balance read for
    the batch: the provider itself refuses a purchase the balance cannot pay.
    """

    spending_limit: bool = True

    def __init__(self, cap: float | None = None, *, already_spent: float = 0.0) -> None:
        self.cap = check_credits("budget cap", cap)
        self._spent = require_credits("already_spent", already_spent)
        self._reserved = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"CreditBudget(cap={self.cap}, spent={self._spent:g}, reserved={self._reserved:g})"

    async def reserve(self, credits: float) -> bool:
        """Hold ``credits`` for one submission; False (and nothing held) if that would pass the cap."""
        credits = require_credits("reserved credits", credits)
        async with self._lock:
            if self.cap is not None and self._spent + self._reserved + credits > self.cap + 1e-9:
                return False
            self._reserved += credits
            return True

    async def settle(self, reserved: float, actual: float | None) -> None:
        """Replace a reservation by what the task really cost (the estimate if the provider did not say).

        A provider figure that is not a finite number >= 0 counts as "did not say": raising here, after a
        task was paid for, would lose the accounting; trusting it would poison the total.
        """
        reserved = require_credits("reserved credits", reserved)
        if actual is not None and number_problem(actual, minimum=0.0) is not None:
            log.warning("ignoring unusable charged amount %r; counting the reservation %g instead", actual, reserved)
            actual = None
        async with self._lock:
            self._reserved = max(0.0, self._reserved - reserved)
            self._spent += reserved if actual is None else actual

    async def release(self, reserved: float) -> None:
        """Drop a reservation whose submission never happened (or provably did not charge)."""
        reserved = require_credits("reserved credits", reserved)
        async with self._lock:
            self._reserved = max(0.0, self._reserved - reserved)

    def snapshot(self) -> BudgetSnapshot:
        return BudgetSnapshot(cap=self.cap, spent=self._spent, reserved=self._reserved)
