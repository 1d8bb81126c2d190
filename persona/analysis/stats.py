"""Numeric helpers shared by the tables and figures: cosines, lines, and the uncertainty of every score.

The intervals are question-clustered (docs/statistics.md says how and why): `mean_interval`
for a cell's mean score, `paired_delta` for a cell against its baseline on the same questions,
`correlation` for a fit over a handful of points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypedDict, Unpack

import numpy as np
import pandas as pd
import torch
from scipy import stats as scipy_stats

Points = Sequence[float] | np.ndarray


def cosine_matrix(rows: torch.Tensor) -> np.ndarray:
    """Pairwise cosine similarities of the rows of `rows` `[n, d]` (float64, exact unit diagonal)."""
    x = rows.detach().to(torch.float64)
    norms = x.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("cosine similarity of a zero vector is undefined (is a layer row all zeros?)")
    unit = x / norms
    sim = (unit @ unit.T).clamp(-1.0, 1.0).numpy()
    sim = (sim + sim.T) / 2  # exactly symmetric (a float matmul need not be)
    np.fill_diagonal(sim, 1.0)
    return sim


def _finite_pairs(x: Points, y: Points) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length: {xa.shape} vs {ya.shape}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    return xa[keep], ya[keep]


def pearson_r(x: Points, y: Points) -> float:
    """Pearson correlation over the pairs where both values are finite; NaN if undefined (< 2 points, no spread)."""
    xa, ya = _finite_pairs(x, y)
    if len(xa) < 2:
        return float("nan")
    dx, dy = xa - xa.mean(), ya - ya.mean()
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")


def fit_line(x: Points, y: Points) -> tuple[float, float]:
    """Least-squares (slope, intercept) over the finite pairs; NaNs when fewer than 2 distinct x."""
    xa, ya = _finite_pairs(x, y)
    if len(np.unique(xa)) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(xa, ya, 1)
    return float(slope), float(intercept)


# --- uncertainty ------------------------------------------------------------------------------------
#
# Answers to one question are not independent (several samples, several seeds, and the same
# questions in every cell), so every interval here treats the question as the unit: it is a
# cluster interval over questions, and differences between cells that share questions are taken
# per question first (paired), so the questions' own difficulty cancels.

Method = Literal["t", "normal", "bootstrap"]
METHODS: tuple[str, ...] = ("t", "normal", "bootstrap")
N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval, and how many questions and answers it rests on."""

    n_questions: int
    n_answers: int
    mean: float
    ci_low: float
    ci_high: float

    @property
    def defined(self) -> bool:
        return math.isfinite(self.mean)

    def excludes(self, value: float = 0.0) -> bool:
        """True when `value` lies outside the interval (False when the interval is undefined)."""
        return bool(self.ci_low > value or self.ci_high < value)

    def decimals(self) -> int:
        """Decimals that show the half-width to two significant figures (1 for a zero or undefined width)."""
        half = (self.ci_high - self.ci_low) / 2
        if not (math.isfinite(half) and half > 0):
            return 1
        return max(0, min(6, 1 - math.floor(math.log10(half))))

    def text(self, digits: int | None = None, *, signed: bool = False) -> str:
        """`52.7 [41.0, 63.1]`, rounded to what the interval's width justifies unless `digits` is given."""
        if not self.defined:
            return f"n/a ({self.n_questions} questions)"
        d = self.decimals() if digits is None else digits
        sign = "+" if signed else ""
        if not (math.isfinite(self.ci_low) and math.isfinite(self.ci_high)):
            return f"{self.mean:{sign}.{d}f} [no interval: {self.n_questions} question(s)]"
        return f"{self.mean:{sign}.{d}f} [{self.ci_low:{sign}.{d}f}, {self.ci_high:{sign}.{d}f}]"

    def within(self, low: float, high: float) -> Interval:
        """The interval cut to the range `[low, high]` the mean cannot leave (judge scores: 0-100): a t
        interval over a few questions reaches past a bounded scale's ends, where no mean can lie."""

        def cut(v: float) -> float:
            return min(max(v, low), high) if math.isfinite(v) else v

        return replace(self, ci_low=cut(self.ci_low), ci_high=cut(self.ci_high))

    def columns(self, prefix: str) -> dict[str, float]:
        """`{prefix}`, `{prefix}_ci_low`, `{prefix}_ci_high`: the interval as table columns."""
        return {prefix: self.mean, f"{prefix}_ci_low": self.ci_low, f"{prefix}_ci_high": self.ci_high}


NAN_INTERVAL = Interval(0, 0, math.nan, math.nan, math.nan)
SCORE_SCALE = (0.0, 100.0)  # a judge score's range: mean-score intervals are cut to it (`Interval.within`)


class IntervalOptions(TypedDict, total=False):
    """The settings `mean_interval` and `paired_delta` pass on to `cluster_interval` (defaults there)."""

    ci: float
    method: Method
    seed: int
    n_boot: int


class QuestionMismatch(ValueError):
    """Two cells compared question by question do not hold the same questions."""

    def __init__(self, only_cell: Sequence[str], only_baseline: Sequence[str]):
        self.only_cell, self.only_baseline = list(only_cell), list(only_baseline)
        parts = [f"only in the cell: {_ids(self.only_cell)}"] if self.only_cell else []
        parts += [f"only in the baseline: {_ids(self.only_baseline)}"] if self.only_baseline else []
        super().__init__(f"the cell and its baseline hold different questions ({'; '.join(parts)})")


def _ids(ids: Sequence[str], shown: int = 10) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(map(str, ids[:shown])) + more


def _check_level(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci={ci}: the confidence level must lie strictly between 0 and 1, e.g. 0.95")


def resampled(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, n_draws: int, rng: np.random.Generator, *, replace: bool
) -> tuple[np.ndarray, bool]:
    """`statistic` of resamplings of range(n), one per row of an index matrix `[draws, n]`; and whether exact.

    With `replace`: `n_draws` bootstrap draws. Without: permutations, every one of them when
    n! <= `n_draws` (then the second value is True: the distribution is exact), else `n_draws`
    random ones. `statistic` maps the index matrix to one value per row.
    """
    if replace:
        return statistic(rng.integers(0, n, size=(n_draws, n))), False
    if math.factorial(n) <= n_draws:
        return statistic(np.array(list(itertools.permutations(range(n))))), True
    return statistic(rng.permuted(np.tile(np.arange(n), (n_draws, 1)), axis=1)), False


def percentile_bounds(draws: np.ndarray, ci: float) -> tuple[float, float]:
    """The central `ci` percentile interval of resampled statistics (undefined draws, NaN, left out)."""
    low, high = np.nanquantile(draws, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(low), float(high)


def cluster_interval(
    values: np.ndarray,
    clusters: np.ndarray,
    *,
    ci: float = 0.95,
    method: Method = "t",
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> Interval:
    """Interval for the mean of `values` (the plain mean over answers), clustered by `clusters`.

    - "t" (the default): the cluster-robust (CR1) standard error with a Student t quantile on
      G - 1 degrees of freedom, G the number of questions. The t quantile matters at the
      study's sizes: with 5 questions the 95% quantile is 2.78, not 1.96, and the normal or
      bootstrap interval would claim more certainty than 5 questions give.
    - "normal": the same standard error with the normal quantile (mean +- 1.96 se).
    - "bootstrap": a percentile bootstrap that resamples whole questions (`n_boot` draws,
      generator seeded by `seed`, so a rerun prints the same interval).
    With one question there is no interval (the bounds are NaN).
    """
    _check_level(ci)
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values)
    values, clusters = values[keep], np.asarray(clusters)[keep]
    if len(values) == 0:
        return NAN_INTERVAL
    _, group = np.unique(clusters, return_inverse=True)
    sums = np.bincount(group, weights=values)
    counts = np.bincount(group).astype(float)
    n_q, n = len(sums), len(values)
    mean = float(sums.sum() / counts.sum())
    if n_q < 2:
        return Interval(n_q, n, mean, math.nan, math.nan)
    alpha = 1 - ci
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        boot, _ = resampled(lambda d: sums[d].sum(axis=1) / counts[d].sum(axis=1), n_q, n_boot, rng, replace=True)
        return Interval(n_q, n, mean, *percentile_bounds(boot, ci))
    residual_sums = sums - counts * mean  # per question: sum of (y - mean) over its answers
    se = math.sqrt(n_q / (n_q - 1) * float((residual_sums**2).sum())) / counts.sum()
    q = float(scipy_stats.t.ppf(1 - alpha / 2, n_q - 1) if method == "t" else scipy_stats.norm.ppf(1 - alpha / 2))
    return Interval(n_q, n, mean, mean - q * se, mean + q * se)


def _column(frame: pd.DataFrame, column: str, cluster: str) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in (column, cluster) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame has no column {missing} (columns: {', '.join(map(str, frame.columns))})")
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float), frame[cluster].astype(str).to_numpy()


def mean_interval(
    frame: pd.DataFrame, column: str, *, cluster: str = "question_id", **options: Unpack[IntervalOptions]
) -> Interval:
    """Mean of a score column over the scored answers, with a question-clustered interval.

    Unscored answers (NaN) are dropped. Several samples or seeds of one question share its
    cluster, so duplicating answers adds no certainty. `options` (ci, method, seed, n_boot)
    and their defaults are `cluster_interval`'s.
    """
    values, clusters = _column(frame, column, cluster)
    return cluster_interval(values, clusters, **options)


def score_interval(
    frame: pd.DataFrame, column: str, *, cluster: str = "question_id", **options: Unpack[IntervalOptions]
) -> Interval:
    """`mean_interval` of a judge score column (trait, coherence), cut to the 0-100 scale (`Interval.within`):
    a t interval over a few questions reaches past the scale's ends, where no mean score can lie."""
    return mean_interval(frame, column, cluster=cluster, **options).within(*SCORE_SCALE)


def question_means(frame: pd.DataFrame, column: str, cluster: str = "question_id") -> pd.Series:
    """Mean score per question (over its samples and seeds), NaN for a question without a scored answer."""
    values, clusters = _column(frame, column, cluster)
    return pd.Series(values).groupby(clusters, sort=True).mean()


def check_same_questions(frame: pd.DataFrame, baseline: pd.DataFrame, cluster: str = "question_id") -> None:
    """Raise `QuestionMismatch` naming the ids held by only one of two frames."""
    a, b = set(frame[cluster].astype(str)), set(baseline[cluster].astype(str))
    if a != b:
        raise QuestionMismatch(sorted(a - b), sorted(b - a))


def paired_delta(
    frame: pd.DataFrame,
    baseline: pd.DataFrame,
    column: str,
    *,
    cluster: str = "question_id",
    **options: Unpack[IntervalOptions],
) -> Interval:
    """Mean over questions of (cell's question mean - baseline's question mean), with its interval.

    The interval is computed on the per-question differences, so what makes a question hard
    or easy for both cells cancels (the same questions are asked in every cell). Questions
    unscored in either frame are left out; `n_answers` counts the cell's scored answers.
    Raises `QuestionMismatch` when the frames hold different questions.
    """
    for f in (frame, baseline):
        _column(f, column, cluster)
    check_same_questions(frame, baseline, cluster)
    diff = (question_means(frame, column, cluster) - question_means(baseline, column, cluster)).dropna()
    values, _ = _column(frame, column, cluster)
    found = cluster_interval(diff.to_numpy(), diff.index.to_numpy(), **options)
    return replace(found, n_answers=int(np.isfinite(values).sum()))


# --- correlation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correlation:
    """Pearson r with a bootstrap interval over the points and a permutation p-value (two-sided)."""

    r: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    @property
    def defined(self) -> bool:
        return math.isfinite(self.r)

    def text(self) -> str:
        if not self.defined:
            return f"r undefined ({self.n} points)"
        return f"r = {self.r:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}], p = {self.p_value:.2g} ({self.n} points)"

    def columns(self) -> dict[str, float]:
        return {"r": self.r, "r_ci_low": self.ci_low, "r_ci_high": self.ci_high, "p_value": self.p_value, "n": self.n}


def _rows_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of every row pair of `x`, `y` `[k, n]`; NaN where a row has no spread (up to rounding)."""
    dx = x - x.mean(axis=1, keepdims=True)
    dy = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    scale = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    spread = denom > 1e-12 * scale
    return np.where(spread, (dx * dy).sum(axis=1) / np.where(spread, denom, 1.0), np.nan)


def correlation(
    x: Points,
    y: Points,
    *,
    ci: float = 0.95,
    seed: int = 0,
    n_perm: int = 10_000,
    n_boot: int = N_BOOT,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
) -> Correlation:
    """Pearson r over the finite pairs, a percentile bootstrap interval and a permutation p-value.

    The p-value is the share of pairings of y with x whose r is at least as extreme as the
    observed one: exact (every permutation) when n! <= `n_perm`, else `n_perm` random
    permutations with the observed pairing counted in. Fewer than 3 points, or no spread,
    leave r undefined (NaN): two points always lie on a line.
    """
    _check_level(ci)
    xa, ya = _finite_pairs(x, y)
    n = len(xa)
    r = pearson_r(xa, ya) if n >= 3 else math.nan
    if not math.isfinite(r):
        return Correlation(math.nan, math.nan, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    boot, _ = resampled(lambda d: _rows_r(xa[d], ya[d]), n, n_boot, rng, replace=True)
    low, high = percentile_bounds(boot, ci)
    perm_r, exact = resampled(lambda p: _rows_r(np.broadcast_to(xa, p.shape), ya[p]), n, n_perm, rng, replace=False)
    tol = 1e-12
    if alternative == "greater":
        hits = perm_r >= r - tol
    elif alternative == "less":
        hits = perm_r <= r + tol
    else:
        hits = np.abs(perm_r) >= abs(r) - tol
    p = hits.mean() if exact else (hits.sum() + 1) / (len(perm_r) + 1)
    return Correlation(r, low, high, float(p), n)
