"""Means with their confidence intervals, as the report prints them.

The intervals come from `persona.analysis.stats` (issue 22: bootstrap over questions);
this module is the report's one call site for them, so every table rounds a mean to
what its interval justifies and a mean without one says only its n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from viz.report.html import number


@dataclass(frozen=True)
class Estimate:
    """A mean over answers with its n and, when known, its interval."""

    mean: float
    n: int
    low: float | None = None
    high: float | None = None

    @property
    def half_width(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2

    def text(self) -> str:
        """`45.2 [38.1, 52.0]`, rounded to the interval; just the mean without one."""
        if not math.isfinite(self.mean):
            return ""
        h = self.half_width
        if self.low is None or self.high is None:
            return number(self.mean)
        return f"{number(self.mean, h)} [{number(self.low, h)}, {number(self.high, h)}]"


def estimate(frame: pd.DataFrame, column: str) -> Estimate:
    """The mean of `column` over its scored rows, with its interval across questions."""
    values = pd.to_numeric(frame[column], errors="coerce")
    # ISSUE-22 CALL SITE: replace with persona.analysis.stats.mean_interval(frame, column) once it lands
    return Estimate(float(values.mean()), int(values.notna().sum()))
