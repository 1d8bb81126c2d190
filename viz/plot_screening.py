"""Figures of data screening and prompt monitoring (drawn by `eval.screen_data` and `eval.monitor`)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from viz.common import panel_grid, scatter_with_fit


def distributions_figure(samples: pd.DataFrame) -> Figure:
    """Per-sample projection differences, one box (with its points) per dataset."""
    names = list(dict.fromkeys(samples["dataset"]))
    groups = [samples.loc[samples["dataset"] == n, "projection_difference"].dropna().to_numpy() for n in names]
    fig, (ax,) = panel_grid(1, size=(max(5.0, 0.7 * len(names) + 2), 4.5))
    ax.boxplot(groups, showfliers=False)
    for i, values in enumerate(groups, start=1):
        ax.scatter([i] * len(values), values, s=8, alpha=0.5, zorder=3)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(ylabel="projection difference (data - base)", title="per-sample projection difference")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def ordering_figure(summary: pd.DataFrame, levels: list[str]) -> Figure:
    """Dataset-level projection difference by level, one line per trait, with intervals."""
    fig, (ax,) = panel_grid(1, size=(6, 4.5))
    for trait, group in summary.groupby("trait", sort=False):
        group = group.set_index("level").reindex(levels)
        y = group["projection_difference"].to_numpy(dtype=float)
        err = [y - group["ci_low"].to_numpy(dtype=float), group["ci_high"].to_numpy(dtype=float) - y]
        ax.errorbar(range(len(levels)), y, yerr=err, marker="o", capsize=3, label=str(trait))
    ax.set_xticks(range(len(levels)), levels)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(
        ylabel="projection difference along the trait's vector", title="expected: normal < misaligned_1 < misaligned_2"
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def interval_columns(table: pd.DataFrame, column: str) -> tuple[list[float], list[float]] | None:
    """`(column_ci_low, column_ci_high)` as `scatter_figure`'s `yerr`, or None when the table has no interval
    (e.g. a `--shifts` CSV measured elsewhere)."""
    low, high = f"{column}_ci_low", f"{column}_ci_high"
    if low not in table.columns or high not in table.columns:
        return None
    return table[low].astype(float).tolist(), table[high].astype(float).tolist()


def scatter_figure(
    x: list[float],
    y: list[float],
    labels: list[str],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    yerr: tuple[list[float], list[float]] | None = None,
) -> Figure:
    """One point per dataset or condition (with `yerr` = (ci_low, ci_high) error bars), the
    least-squares line and Pearson r (cross-persona style)."""
    fig, (ax,) = panel_grid(1, size=(6, 4.5))
    fit = scatter_with_fit(ax, x, y, labels, yerr=yerr)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title}\n{fit.text()}")
    fig.tight_layout()
    return fig
