"""Multi-persona experiments: does steering with several persona vectors add up, and does one leak into others?

- Linearity: cells `a*v_A + b*v_B` over a grid of (a, b) at one layer. A cell's effect on a
  score is its mean minus the unsteered cell's; additivity predicts the joint effect as the
  sum of the single-vector effects, so the residual is S(a,b) - S(a,0) - S(0,b) + S(0,0).
- Interference: each v_A alone; the change of every other trait B's score against cos(v_A, v_B).

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

from persona.analysis.stats import pearson_r
from persona.evaluation import Cell
from persona.fingerprint import SettingsMismatch, describe, differences
from persona.io import write_json
from persona.steering import Positions, Steer

log = logging.getLogger(__name__)

BASELINE = "baseline"
ADDITIVITY_COLUMNS = ["a", "b", "metric", "score", "effect", "predicted", "residual"]
INTERFERENCE_COLUMNS = ["steered", "judged", "cos", "delta", "self_delta", "relative"]


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


def additivity(grid: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Additivity residual of every joint cell (a != 0, b != 0) for every metric.

    `grid` has columns a, b and one mean score per metric. A missing cell (or one of the cells
    it is compared with) leaves NaN in its row, so a figure shows a gap.
    """
    means = grid.set_index(["a", "b"])
    rows = []
    for a in sorted(set(grid["a"]) - {0.0}):
        for b in sorted(set(grid["b"]) - {0.0}):
            for metric in metrics:

                def s(x: float, y: float, metric: str = metric) -> float:
                    return float(means[metric].get((x, y), float("nan")))

                effect = s(a, b) - s(0.0, 0.0)
                predicted = (s(a, 0.0) - s(0.0, 0.0)) + (s(0.0, b) - s(0.0, 0.0))
                rows.append(
                    {
                        "a": a,
                        "b": b,
                        "metric": metric,
                        "score": s(a, b),
                        "effect": effect,
                        "predicted": predicted,
                        "residual": effect - predicted,
                    }
                )
    return pd.DataFrame(rows, columns=ADDITIVITY_COLUMNS)


def additivity_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per metric: joint cells, mean |residual|, RMS residual, mean |effect| and sum|residual| / sum|effect|."""
    rows = []
    for metric, t in table.groupby("metric", sort=False):
        res, eff = t["residual"].dropna(), t.loc[t["residual"].notna(), "effect"]
        rows.append(
            {
                "metric": metric,
                "cells": len(res),
                "mean_abs_residual": res.abs().mean(),
                "rms_residual": (res**2).mean() ** 0.5,
                "mean_abs_effect": eff.abs().mean(),
                "relative_residual": res.abs().sum() / eff.abs().sum() if eff.abs().sum() else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def interference(
    means: Mapping[str, Mapping[str, float]], cos: pd.DataFrame, judge_columns: Mapping[str, str]
) -> pd.DataFrame:
    """Change of every judged trait B under each steered vector A, against cos(v_A, v_B).

    `means[cell][column]` are mean scores with cells `baseline` and `steer_{A}`; `judge_columns`
    maps each trait to its score column. `relative` = delta / self_delta (the change in A itself).
    """
    base = means[BASELINE]
    rows = []
    for a in judge_columns:
        cell = means.get(f"steer_{a}")
        if cell is None:
            continue
        self_delta = cell[judge_columns[a]] - base[judge_columns[a]]
        for b, column in judge_columns.items():
            delta = cell[column] - base[column]
            rows.append(
                {
                    "steered": a,
                    "judged": b,
                    "cos": float(cos.loc[a, b]),
                    "delta": delta,
                    "self_delta": self_delta,
                    "relative": delta / self_delta if self_delta else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=INTERFERENCE_COLUMNS)


def interference_r(table: pd.DataFrame) -> float:
    """Pearson r of the change in B against cos(v_A, v_B) over all pairs A != B."""
    off = table[table["steered"] != table["judged"]]
    return pearson_r(off["cos"], off["delta"])


def check_settings(out_dir: Path, settings: dict, *, overwrite: bool) -> None:
    """Record the settings of an experiment folder; refuse to resume one made with other settings."""
    path = Path(out_dir) / "settings.json"
    if path.is_file() and not overwrite:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if differences(recorded, settings):
            raise SettingsMismatch(
                f"{out_dir} holds results made with other settings "
                f"({describe(recorded, settings)}); pass `overwrite` to recompute or choose "
                "another `output_dir`"
            )
    write_json(path, settings)
