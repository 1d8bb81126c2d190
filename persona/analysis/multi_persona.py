"""Multi-persona experiments: does steering with several persona vectors add up, and does one leak into others?

- Linearity: cells `a*v_A + b*v_B` over a grid of (a, b) at one layer. A cell's effect on a
  score is its mean minus the unsteered cell's; additivity predicts the joint effect as the
  sum of the single-vector effects, so the residual is S(a,b) - S(a,0) - S(0,b) + S(0,0).
- Interference: each v_A alone; the change of every other trait B's score against cos(v_A, v_B).

All cells ask the same questions, so residuals and deltas are computed per question and their
intervals are question-clustered (`persona.analysis.stats`): a residual or a delta is a
finding only when its interval excludes 0.

Both are sweeps of `persona.evaluation.Cell`s (several steers per cell add up), so they run
packed in one process; the frames here turn the judged cells into the tables behind the figures.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from persona.analysis.stats import Correlation, Interval, cluster_interval, correlation, paired_delta, question_means
from persona.evaluation import Cell
from persona.fingerprint import SettingsMismatch, describe, differences
from persona.io import write_json
from persona.steering import Positions, Steer

log = logging.getLogger(__name__)

BASELINE = "baseline"
ADDITIVITY_COLUMNS = [
    "a",
    "b",
    "metric",
    "score",
    "effect",
    "predicted",
    "residual",
    "residual_ci_low",
    "residual_ci_high",
    "n_questions",
]
INTERFERENCE_COLUMNS = [
    "steered",
    "judged",
    "cos",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "n_questions",
    "self_delta",
    "relative",
]


def _coef_label(coef: float) -> str:
    return repr(float(coef))


def linearity_cell_name(a: float, b: float) -> str:
    return f"a_{_coef_label(a)}_b_{_coef_label(b)}"


def linearity_cells(
    vector_a: torch.Tensor,
    vector_b: torch.Tensor,
    layer: int,
    coefs_a: Sequence[float],
    coefs_b: Sequence[float],
    positions: Positions = "response",
) -> list[tuple[float, float, Cell]]:
    """The (a, b) grid, 0 added to both axes (the single-vector and unsteered cells additivity needs)."""
    axis_a = sorted({0.0, *map(float, coefs_a)})
    axis_b = sorted({0.0, *map(float, coefs_b)})
    cells = []
    for a in axis_a:
        for b in axis_b:
            steers = [Steer(v, layer, c, positions) for v, c in ((vector_a, a), (vector_b, b)) if c != 0]
            cells.append((a, b, Cell(linearity_cell_name(a, b), steers)))
    return cells


def interference_cells(
    vectors: Mapping[str, torch.Tensor], layer: int, coef: float, positions: Positions = "response"
) -> list[Cell]:
    """The unsteered cell, then one cell per vector steering alone."""
    return [Cell(BASELINE)] + [Cell(f"steer_{name}", [Steer(v, layer, coef, positions)]) for name, v in vectors.items()]


def question_grid(frames: Mapping[tuple[float, float], pd.DataFrame], metrics: Sequence[str]) -> pd.DataFrame:
    """Per (a, b) cell and question: the mean of each metric over that question's answers (and seeds)."""
    rows = []
    for (a, b), frame in frames.items():
        means = pd.DataFrame({m: question_means(frame, m) for m in metrics})
        rows.append(means.rename_axis("question_id").reset_index().assign(a=a, b=b))
    columns = ["a", "b", "question_id", *metrics]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


def additivity(grid: pd.DataFrame, metrics: Sequence[str], *, ci: float = 0.95) -> pd.DataFrame:
    """Additivity residual of every joint cell (a != 0, b != 0) for every metric.

    `grid` has columns a, b and one mean score per metric: one row per cell (means only; the
    interval columns stay NaN) or, from `question_grid`, one row per cell and question. Per
    question, S(a,b) - S(a,0) - S(0,b) + S(0,0) is computed question by question and its mean
    gets a question-clustered interval (`ci`); `score` is the cell's mean over its questions.
    A missing cell (or one of the cells it is compared with) leaves NaN in its row (a gap).
    """
    per_question = "question_id" in grid.columns
    keys = ["a", "b", "question_id"] if per_question else ["a", "b"]
    means = grid.set_index(keys)
    rows = []
    for a in sorted(set(grid["a"]) - {0.0}):
        for b in sorted(set(grid["b"]) - {0.0}):
            for metric in metrics:

                def s(x: float, y: float, metric: str = metric) -> pd.Series:
                    if not per_question:
                        return pd.Series([float(means[metric].get((x, y), float("nan")))])
                    cell = grid[(grid["a"] == x) & (grid["b"] == y)]
                    return cell.set_index("question_id")[metric].astype(float)

                effect = s(a, b) - s(0.0, 0.0)
                predicted = (s(a, 0.0) - s(0.0, 0.0)) + (s(0.0, b) - s(0.0, 0.0))
                residual = effect - predicted
                found = (
                    cluster_interval(residual.to_numpy(), residual.index.to_numpy(), ci=ci)
                    if per_question and residual.notna().any()
                    else Interval(0, 0, float(residual.mean()), float("nan"), float("nan"))
                )
                rows.append(
                    {
                        "a": a,
                        "b": b,
                        "metric": metric,
                        "score": float(s(a, b).mean()) if len(s(a, b)) else float("nan"),
                        "effect": float(effect.mean()),
                        "predicted": float(predicted.mean()),
                        "residual": found.mean,
                        "residual_ci_low": found.ci_low,
                        "residual_ci_high": found.ci_high,
                        "n_questions": found.n_questions,
                    }
                )
    return pd.DataFrame(rows, columns=ADDITIVITY_COLUMNS)


def additivity_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per metric: joint cells, mean |residual|, RMS residual, mean |effect|, sum|residual| / sum|effect|,
    and whether the residuals are consistent with zero (every joint cell's interval includes 0).

    `cells_nonzero` counts the joint cells whose residual interval excludes 0 (no correction
    for the number of cells: with many cells, some exclude 0 by chance); both are empty when
    the table has no intervals.
    """
    rows = []
    for metric, t in table.groupby("metric", sort=False):
        t = t[t["residual"].notna()]
        res, eff = t["residual"], t["effect"]
        has_ci = "residual_ci_low" in t.columns and t["residual_ci_low"].notna().any()
        nonzero = int(((t["residual_ci_low"] > 0) | (t["residual_ci_high"] < 0)).sum()) if has_ci else None
        rows.append(
            {
                "metric": metric,
                "cells": len(res),
                "mean_abs_residual": res.abs().mean(),
                "rms_residual": (res**2).mean() ** 0.5,
                "mean_abs_effect": eff.abs().mean(),
                "relative_residual": res.abs().sum() / eff.abs().sum() if eff.abs().sum() else float("nan"),
                "cells_nonzero": nonzero,
                "consistent_with_zero": None if nonzero is None else nonzero == 0,
            }
        )
    return pd.DataFrame(rows)


def interference(
    means: Mapping[str, Mapping[str, float]],
    cos: pd.DataFrame,
    judge_columns: Mapping[str, str],
    *,
    frames: Mapping[str, pd.DataFrame] | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Change of every judged trait B under each steered vector A, against cos(v_A, v_B).

    `means[cell][column]` are mean scores with cells `baseline` and `steer_{A}`; `judge_columns`
    maps each trait to its score column. `relative` = delta / self_delta (the change in A itself).
    With the cells' `frames`, delta is the paired per-question delta with its interval.
    """
    base = means[BASELINE]
    rows = []
    for a in judge_columns:
        cell = means.get(f"steer_{a}")
        if cell is None:
            continue

        def change(column: str, a: str = a, cell: Mapping[str, float] = cell) -> Interval:
            if frames is None:
                return Interval(0, 0, cell[column] - base[column], float("nan"), float("nan"))
            return paired_delta(frames[f"steer_{a}"], frames[BASELINE], column, ci=ci)

        self_delta = change(judge_columns[a]).mean
        for b, column in judge_columns.items():
            delta = change(column)
            rows.append(
                {
                    "steered": a,
                    "judged": b,
                    "cos": float(cos.loc[a, b]),
                    **delta.columns("delta"),
                    "n_questions": delta.n_questions,
                    "self_delta": self_delta,
                    "relative": delta.mean / self_delta if self_delta else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=INTERFERENCE_COLUMNS)


def interference_fit(table: pd.DataFrame, *, ci: float = 0.95) -> Correlation:
    """Pearson r of the change in B against cos(v_A, v_B) over all pairs A != B (bootstrap CI, permutation p)."""
    off = table[table["steered"] != table["judged"]]
    return correlation(off["cos"], off["delta"], ci=ci)


def check_settings(out_dir: Path, settings: dict, *, overwrite: bool) -> None:
    """Record the settings of an experiment folder; refuse to resume one made with other settings."""
    path = Path(out_dir) / "settings.json"
    if path.is_file() and not overwrite:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if differences(recorded, settings):
            raise SettingsMismatch(
                f"{out_dir} holds results made with other settings "
                f"({describe(recorded, settings)}); pass --overwrite to recompute or choose "
                "another --output_dir"
            )
    write_json(path, settings)
