"""Shared figure plumbing: the Agg backend, atomic PNG writes, heatmaps with gaps, fit-line scatters, banded lines."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from persona.analysis.stats import Correlation, correlation, fit_line  # noqa: E402
from persona.io import atomic_path  # noqa: E402

log = logging.getLogger(__name__)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a PNG atomically, close the figure and say where it went."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")
    return path


def show_requested(show: bool) -> None:
    """`--show`: figures render with the file backend (Agg) so every run writes the same PNG; say so."""
    if show:
        log.warning("--show: figures are written to PNG files (non-interactive backend); open the file to view it")


def panel_grid(n: int, *, ncols: int = 3, size: tuple[float, float] = (4.5, 3.5)) -> tuple[Figure, list[Axes]]:
    """A figure with `n` panels in rows of `ncols`; unused panels are hidden."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def heatmap(
    ax: Axes,
    matrix: pd.DataFrame,
    *,
    cmap: str = "RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = "{:.2f}",
    label: str = "",
) -> None:
    """A labelled heatmap; NaN cells stay blank (gaps), others carry their value."""
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(matrix.shape[0]), [str(i) for i in matrix.index])
    if matrix.size <= 400:
        span = float(np.nanmax(np.abs(image.get_clim()))) or 1.0
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    fmt.format(v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if abs(v) > 0.6 * span else "black",
                )
    ax.figure.colorbar(image, ax=ax, label=label)


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


def warn_missing(what: str, missing: Sequence[str]) -> None:
    """One warning listing the grid cells without a result file (drawn as gaps)."""
    if missing:
        log.warning("%d missing %s drawn as gaps: %s", len(missing), what, ", ".join(missing))
