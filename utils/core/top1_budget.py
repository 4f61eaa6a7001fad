"""A top-1 budget (--max_top1_drop) and its judgement: a drop in points or a share of the reference's top-1 (MLPerf's
rule), judged as non-inferiority on the paired interval of the change where there is one (utils/core/confidence.py
gives the interval; docs/confidence.md the method). The gate, the tables and the mixed-precision search judge alike.

Usage:
    budget = Top1Budget.parse("1%").check()       # 1 % of the reference's top-1
    non_inferiority(0.4, budget.points(76.1), low=-0.9, high=0.1)   # "inconclusive"
"""
from __future__ import annotations

import math
from typing import Any, Optional

from utils.core.errors import ArtTRTError


class Top1Budget(float):
    """--max_top1_drop: a drop of top-1 in points ("1"), or a share of the reference's top-1 ("1%": MLPerf's rule, a
    submission keeping at least 99 % of the reference's accuracy; "0.1%" its high-accuracy target). A float (the
    number given) that knows which; points(ref_top1) is the drop it allows below a reference of that top-1."""

    relative: bool

    def __new__(cls, value: float, relative: bool = False) -> "Top1Budget":
        budget = super().__new__(cls, value)
        budget.relative = relative
        return budget

    @classmethod
    def parse(cls, text: str) -> "Top1Budget":
        """"1" (points) or "1%" (of the reference's top-1); ValueError where it is neither (check() judges the
        value)."""
        s = str(text).strip()
        relative = s.endswith("%")
        return cls(float(s[:-1] if relative else s), relative)

    def check(self) -> "Top1Budget":
        """Itself, or ArtTRTError with one sentence: points at least 0, a share from 0 % to below 100 %."""
        if self.relative and not 0 <= self < 100:
            raise ArtTRTError(f"--max_top1_drop {self}: a share of Vanilla's top-1 is from 0% to below 100%")
        if not 0 <= self < math.inf:
            raise ArtTRTError(f"--max_top1_drop is a number of points, at least 0, not {self}")
        return self

    def points(self, ref_top1: Optional[float]) -> float:
        """The drop (points) allowed below a reference of top-1 ref_top1 (%); a share of an unknown reference: 0."""
        if not self.relative:
            return float(self)
        return float(self) * float(ref_top1) / 100.0 if ref_top1 is not None else 0.0

    def __str__(self) -> str:
        return f"{float(self):g}%" if self.relative else f"{float(self):g}"

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return str(self) if spec in ("", "g") else format(float(self), spec)

    def __reduce__(self) -> Any:
        return (Top1Budget, (float(self), self.relative))


def budget_points(budget: float, ref_top1: Optional[float]) -> float:
    """The points a --max_top1_drop budget allows below a reference (a plain number: points)."""
    return budget.points(ref_top1) if isinstance(budget, Top1Budget) else float(budget)


OVER, INCONCLUSIVE, WITHIN = "OVER", "inconclusive", "ok"


def non_inferiority(drop: float, budget_pts: float, low: Optional[float] = None, high: Optional[float] = None) -> str:
    """A top-1 budget as a non-inferiority judgement. With the paired interval of the change (low..high, points,
    other minus reference): ok where the whole interval of the drop is within budget_pts, OVER where all of it is
    beyond, inconclusive in between. Without one: the point drop against the budget."""
    if low is not None and high is not None:
        drop_low, drop_high = -high, -low
        if drop_high <= budget_pts + 1e-9:
            return WITHIN
        return OVER if drop_low > budget_pts + 1e-9 else INCONCLUSIVE
    return OVER if drop > budget_pts + 1e-9 else WITHIN
