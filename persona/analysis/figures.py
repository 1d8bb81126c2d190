"""Drawing: the panel and heatmap primitives and the vector-geometry figures the explorer and `viz/` share.

Figures are built as bare `matplotlib.figure.Figure` objects, not through pyplot, so the
library picks no GUI backend and keeps no global figure registry: a web server (the
explorer) or a notebook can draw from any thread, and a figure is freed with its last
reference. `viz.common.save_figure` writes one to a PNG.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def panel_grid(n: int, *, ncols: int = 3, size: tuple[float, float] = (4.5, 3.5)) -> tuple[Figure, list[Axes]]:
    """A figure with `n` panels in rows of `ncols`; unused panels are hidden."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
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


def similarity_figure(cos: pd.DataFrame, title: str) -> Figure:
    """A cosine-similarity heatmap on the fixed scale [-1, 1]."""
    fig, (ax,) = panel_grid(1, size=(1.2 * len(cos) + 3, 1.0 * len(cos) + 2))
    heatmap(ax, cos, vmin=-1, vmax=1, label="cosine similarity")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def lines_figure(table: pd.DataFrame, title: str, ylabel: str) -> Figure:
    """One line per column against the index (layer): norms or cosines by layer."""
    fig, (ax,) = panel_grid(1, size=(8, 4.5))
    for column in table.columns:
        ax.plot(table.index, table[column], label=column, lw=1.2)
    ax.set(title=title, xlabel="layer", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2 if table.shape[1] > 8 else 1, loc="best")
    fig.tight_layout()
    return fig
