"""Figures of the multi-persona experiments (run by `python -m eval.multi_persona`, which calls these).

- `linearity_figure`: the additivity residual S(a,b) - S(a,0) - S(0,b) + S(0,0) over the (a, b)
  grid, one heatmap per judged score; missing cells are gaps.
- `interference_figure`: the change in trait B when steering with v_A alone against cos(v_A, v_B),
  over all pairs A != B, with a fit line and Pearson r.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from viz.common import heatmap, panel_grid, scatter_with_fit


def linearity_figure(table: pd.DataFrame, trait_a: str, trait_b: str, layer: int) -> Figure:
    """One residual heatmap per metric (rows = a on v_A, columns = b on v_B)."""
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = panel_grid(len(metrics), ncols=len(metrics), size=(5, 4))
    span = float(table["residual"].abs().max()) if table["residual"].notna().any() else 1.0
    for ax, metric in zip(axes, metrics, strict=True):
        grid = table[table["metric"] == metric].pivot_table(index="a", columns="b", values="residual", dropna=False)
        heatmap(ax, grid, vmin=-span or -1, vmax=span or 1, fmt="{:+.1f}", label="additivity residual")
        ax.set(
            title=f"{metric}: joint - sum of singles", xlabel=f"b (coef of {trait_b})", ylabel=f"a (coef of {trait_a})"
        )
    fig.suptitle(f"linearity of a*{trait_a} + b*{trait_b} at layer {layer}")
    fig.tight_layout()
    return fig


def interference_figure(table: pd.DataFrame, layer: int, coef: float) -> tuple[Figure, float]:
    """Change in B vs cos(v_A, v_B) over the off-diagonal pairs; returns the figure and Pearson r."""
    off = table[table["steered"] != table["judged"]]
    fig, (ax,) = panel_grid(1, size=(6, 4.5))
    r = scatter_with_fit(
        ax,
        off["cos"].tolist(),
        off["delta"].tolist(),
        [f"{a}->{b}" for a, b in zip(off["steered"], off["judged"], strict=True)],
    )
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(
        xlabel="cos(v_A, v_B)",
        ylabel="change in B's score (steered A - unsteered)",
        title=f"interference: steer v_A (coef {coef:g}, layer {layer}), judge B; "
        + (f"r = {r:.2f}" if math.isfinite(r) else "r undefined (needs 3+ traits)"),
    )
    fig.tight_layout()
    return fig, r
