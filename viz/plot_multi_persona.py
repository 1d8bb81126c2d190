"""Figures of the multi-persona experiments (`save_experiment_figure`: what `eval.multi_persona` and the demo draw).

- `linearity_figure`: the additivity residual S(a,b) - S(a,0) - S(0,b) + S(0,0) over the (a, b)
  grid, one heatmap per judged score; missing cells are gaps, and a `*` marks a residual whose
  interval over questions excludes 0.
- `interference_figure`: the change in trait B when steering with v_A alone against cos(v_A, v_B),
  over all pairs A != B, with each change's interval, a fit line and Pearson r (bootstrap
  interval, permutation p; "r undefined" with fewer than 3 points).
- `save_experiment_figure`: the figure of a `persona.experiments.run_experiment` result, written
  beside its tables (`linearity_residuals.png` or `interference_vs_cos.png`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from persona.analysis.stats import Correlation
from persona.experiments import ExperimentResult
from viz.common import heatmap, panel_grid, save_figure, scatter_with_fit


def linearity_figure(table: pd.DataFrame, trait_a: str, trait_b: str, layer: int) -> Figure:
    """One residual heatmap per metric (rows = a on v_A, columns = b on v_B)."""
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = panel_grid(len(metrics), ncols=len(metrics), size=(5, 4))
    span = float(table["residual"].abs().max()) if table["residual"].notna().any() else 1.0
    for ax, metric in zip(axes, metrics, strict=True):
        grid = table[table["metric"] == metric].pivot_table(index="a", columns="b", values="residual", dropna=False)
        heatmap(ax, grid, vmin=-span or -1, vmax=span or 1, fmt="{:+.1f}", label="additivity residual")
        _mark_nonzero(ax, table[table["metric"] == metric], grid)
        ax.set(
            title=f"{metric}: joint - sum of singles", xlabel=f"b (coef of {trait_b})", ylabel=f"a (coef of {trait_a})"
        )
    fig.suptitle(f"linearity of a*{trait_a} + b*{trait_b} at layer {layer} (* = residual interval excludes 0)")
    fig.tight_layout()
    return fig


def _mark_nonzero(ax: Axes, rows: pd.DataFrame, grid: pd.DataFrame) -> None:
    """A `*` above each heatmap cell whose residual interval excludes 0."""
    if "residual_ci_low" not in rows.columns:
        return
    for r in rows.itertuples():
        if r.residual_ci_low > 0 or r.residual_ci_high < 0:
            i, j = list(grid.index).index(r.a), list(grid.columns).index(r.b)
            ax.text(j, i - 0.3, "*", ha="center", va="center", fontsize=12, fontweight="bold")


def interference_figure(table: pd.DataFrame, layer: int, coef: float) -> tuple[Figure, Correlation]:
    """Change in B vs cos(v_A, v_B) over the off-diagonal pairs, with intervals; returns the figure and the fit."""
    off = table[table["steered"] != table["judged"]]
    fig, (ax,) = panel_grid(1, size=(6, 4.5))
    yerr = (off["delta_ci_low"].tolist(), off["delta_ci_high"].tolist()) if "delta_ci_low" in off.columns else None
    fit = scatter_with_fit(
        ax,
        off["cos"].tolist(),
        off["delta"].tolist(),
        [f"{a}->{b}" for a, b in zip(off["steered"], off["judged"], strict=True)],
        yerr=yerr,
    )
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(
        xlabel="cos(v_A, v_B)",
        ylabel="change in B's score (steered A - unsteered)",
        title=f"interference: steer v_A (coef {coef:g}, layer {layer}), judge B\n{fit.text()}",
    )
    fig.tight_layout()
    return fig, fit


def save_experiment_figure(result: ExperimentResult) -> Path:
    """Draw a finished experiment's figure from its tables and write it into its folder."""
    exp = result.experiment
    layer = int(exp.layer)
    if exp.kind == "linearity":
        names = [t.name for t in result.traits]
        fig = linearity_figure(result.tables["linearity"], names[0], names[1], layer)
        return save_figure(fig, result.out / "linearity_residuals.png")
    fig, _ = interference_figure(result.tables["interference"], layer, exp.coef)
    return save_figure(fig, result.out / "interference_vs_cos.png")
