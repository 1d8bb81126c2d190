"""Means with their question-clustered intervals, as the report prints them (`persona.analysis.stats`).

Every mean in the report goes through here, so it is rounded to what its interval justifies
(`Interval.text`); a file without `question_id` (no questions to cluster by) shows its mean alone.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from persona.analysis.stats import SCORE_SCALE, Interval, mean_interval
from viz.report.html import number


def row_interval(row: pd.Series, prefix: str) -> Interval:
    """The interval a table row holds as `{prefix}`, `{prefix}_ci_low`, `{prefix}_ci_high` (NaN bounds if absent)."""
    n_questions = row.get("n_questions", 0)
    return Interval(
        int(n_questions) if pd.notna(n_questions) else 0,
        int(row.get("n", 0) or 0),
        float(row.get(prefix, math.nan)),
        float(row.get(f"{prefix}_ci_low", math.nan)),
        float(row.get(f"{prefix}_ci_high", math.nan)),
    )


SCORE_DECIMALS = 1  # judge scores are 0-100: a tenth is the finest difference worth printing


def interval_text(interval: Interval, *, signed: bool = False, max_decimals: int | None = None) -> str:
    """`45.2 [38.1, 52.0]`; a mean without bounds (too few questions, or none recorded) shows alone."""
    if not interval.defined:
        return ""
    if not (math.isfinite(interval.ci_low) and math.isfinite(interval.ci_high)):
        return ("+" if signed and interval.mean > 0 else "") + number(interval.mean)
    digits = interval.decimals() if max_decimals is None else min(interval.decimals(), max_decimals)
    zeroed = {k: 0.0 for k in ("mean", "ci_low", "ci_high") if round(getattr(interval, k), digits) == 0}
    return dataclasses.replace(interval, **zeroed).text(digits, signed=signed)  # no "-0.0" for a rounded -0.04


def score_text(interval: Interval, *, signed: bool = False) -> str:
    """A judge score's interval text (at most `SCORE_DECIMALS` decimals, rounded by the interval's full width).

    A mean's bounds are cut to the 0-100 scale (`Interval.within`); a `signed` difference is shown as it is.
    """
    digits = min(interval.decimals(), SCORE_DECIMALS)
    return interval_text(interval if signed else interval.within(*SCORE_SCALE), signed=signed, max_decimals=digits)


def with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """A table whose `x`, `x_ci_low`, `x_ci_high` columns become one `x` column of `mean [low, high]` text."""
    out = df.copy()
    for c in [c for c in df.columns if f"{c}_ci_low" in df.columns and f"{c}_ci_high" in df.columns]:
        out[c] = [
            interval_text(Interval(0, 0, float(m), float(lo), float(hi)))
            for m, lo, hi in zip(df[c], df[f"{c}_ci_low"], df[f"{c}_ci_high"], strict=True)
        ]
        out = out.drop(columns=[f"{c}_ci_low", f"{c}_ci_high"])
    return out


def mean_text(frame: pd.DataFrame, column: str, *, signed: bool = False) -> str:
    """The mean of `column` with its interval over questions (mean alone without a `question_id` column)."""
    if "question_id" in frame.columns:
        return interval_text(mean_interval(frame, column), signed=signed)
    mean = float(pd.to_numeric(frame[column], errors="coerce").mean())
    return interval_text(Interval(0, len(frame), mean, math.nan, math.nan), signed=signed)
