"""Held-out AUROC by layer, one line per extraction method (a panel per vector kind).

    python viz/plot_vector_quality.py --quality_csv output/persona_vectors/<model>/vector_quality.csv \\
        --trait evil --output figs/evil_vector_quality.png

`python -m eval.vector_quality` writes the CSV and draws this figure itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from persona.cli import run_cli
from persona.io import read_table
from persona.vectors import VECTOR_KINDS
from viz.common import panel_grid, save_figure


def auroc_by_layer_figure(table: pd.DataFrame, trait: str) -> Figure:
    """AUROC (with its bootstrap interval as a band) against layer, a line per method, a panel per kind."""
    rows = table[table["trait"] == trait]
    if rows.empty:
        raise ValueError(f"no rows for trait {trait!r} (traits: {sorted(table['trait'].unique())})")
    kinds = [k for k in VECTOR_KINDS if k in set(rows["kind"])]
    fig, axes = panel_grid(len(kinds), ncols=len(kinds))
    for ax, kind in zip(axes, kinds, strict=True):
        for method, group in rows[rows["kind"] == kind].groupby("method", sort=False):
            group = group.sort_values("layer")
            (line,) = ax.plot(group["layer"], group["auroc"], marker=".", label=str(method))
            ax.fill_between(group["layer"], group["auroc_low"], group["auroc_high"], color=line.get_color(), alpha=0.15)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set(title=f"{trait}: {kind}", xlabel="layer (output of block L)", ylabel="held-out AUROC", ylim=(0, 1.02))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality_csv", type=Path, required=True, help="vector_quality.csv from eval.vector_quality")
    parser.add_argument("--trait", required=True, help="the trait to draw")
    parser.add_argument("--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    save_figure(
        auroc_by_layer_figure(read_table(args.quality_csv, ("trait", "method", "kind")), args.trait), args.output
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
