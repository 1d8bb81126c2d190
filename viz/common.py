"""Shared figure plumbing: atomic PNG writes, fit-line scatters and banded lines.

The drawing primitives (`panel_grid`, `heatmap`) and the geometry figures live in the library
(`persona.analysis.figures`), which the explorer draws with too; they are re-exported here for
the scripts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from persona.analysis.figures import heatmap, panel_grid
from persona.analysis.stats import Correlation, correlation, fit_line
from persona.io import atomic_path

__all__ = ["heatmap", "line_with_band", "panel_grid", "save_figure", "scatter_with_fit", "show_requested"]

log = logging.getLogger(__name__)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a PNG atomically and say where it went."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    print(f"wrote {path}")
    return path


def show_requested(show: bool) -> None:
    """`--show`: figures render with the file backend (Agg) so every run writes the same PNG; say so."""
    if show:
        log.warning("--show: figures are written to PNG files (non-interactive backend); open the file to view it")


def scatter_with_fit(
    ax: Axes,
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str] = (),
    *,
    yerr: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Correlation:
    """Points (with `yerr` = (ci_low, ci_high) error bars), their least-squares line and the fit's
    Pearson r with its bootstrap interval and permutation p in the legend; returns the fit.

    With fewer than 3 points (or no spread) no line is drawn and the legend says r is undefined.
    """
    fit = correlation(x, y)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ax.scatter(xa, ya, s=25, zorder=3, label=None if fit.defined else fit.text())
    if yerr is not None:
        low, high = np.asarray(yerr[0], dtype=float), np.asarray(yerr[1], dtype=float)
        err = np.nan_to_num(np.vstack([ya - low, high - ya]), nan=0.0)
        ax.errorbar(xa, ya, yerr=err, fmt="none", ecolor="gray", elinewidth=1, capsize=2, zorder=2)
    for xi, yi, text in zip(x, y, labels, strict=False):
        ax.annotate(text, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    slope, intercept = fit_line(x, y)
    if fit.defined and math.isfinite(slope):
        xs = np.linspace(np.nanmin(xa), np.nanmax(xa), 50)
        ax.plot(xs, slope * xs + intercept, color="C3", label=f"fit: y = {slope:.2f}x + {intercept:.2f}\n{fit.text()}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fit


def line_with_band(
    ax: Axes,
    x: Sequence[float] | pd.Series,
    y: Sequence[float] | pd.Series,
    low: Sequence[float] | pd.Series,
    high: Sequence[float] | pd.Series,
    *,
    label: str,
    **style,
) -> Line2D:
    """A line of means with their intervals as a band of the line's colour (NaN bounds leave a gap).

    The band is labelled `_ci <label>`: kept out of the legend, and found again by tests.
    """
    (line,) = ax.plot(x, y, label=label, **style)
    xs, lows, highs = (np.asarray(v, dtype=float) for v in (x, low, high))
    ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15, lw=0, label=f"_ci {label}")
    return line
