"""A credit budget shared by concurrent runs: reserve the estimate before submit, settle to the actual cost.

Reservation happens under a lock so that N concurrent pipelines cannot each see "room left" and together
overshoot the cap; the cap is checked against spent + reserved.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel


class BudgetSnapshot(BaseModel):
    cap: float | None
    spent: float
    reserved: float

    @property
    def remaining(self) -> float | None:
        return None if self.cap is None else max(0.0, self.cap - self.spent - self.reserved)


class CreditBudget:
    """A cap on credits for a batch (``None`` = unlimited, still tracked)."""

    def __init__(self, cap: float | None = None, *, already_spent: float = 0.0) -> None:
        if cap is not None and cap < 0:
            raise ValueError("budget cap must be >= 0")
        self.cap = cap
        self._spent = already_spent
        self._reserved = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"CreditBudget(cap={self.cap}, spent={self._spent:g}, reserved={self._reserved:g})"

    async def reserve(self, credits: float) -> bool:
        """Hold ``credits`` for one submission; False (and nothing held) if that would pass the cap."""
        async with self._lock:
            if self.cap is not None and self._spent + self._reserved + credits > self.cap + 1e-9:
                return False
            self._reserved += credits
            return True

    async def settle(self, reserved: float, actual: float | None) -> None:
        """Replace a reservation by what the task really cost (the estimate if the provider did not say)."""
        async with self._lock:
            self._reserved = max(0.0, self._reserved - reserved)
            self._spent += reserved if actual is None else actual

    async def release(self, reserved: float) -> None:
        """Drop a reservation whose submission never happened (or provably did not charge)."""
        async with self._lock:
            self._reserved = max(0.0, self._reserved - reserved)

    def snapshot(self) -> BudgetSnapshot:
        return BudgetSnapshot(cap=self.cap, spent=self._spent, reserved=self._reserved)
