"""Steering effect by layer: trait score and coherence vs layer, one line per coefficient, one panel per trait.

    python viz/plot_best_steering_layer.py [--data_dir output/eval_persona_eval/<model>] [--output_dir figs]

Reads the sweep cells `{trait}_steer_{type}_layer_{L}_coef_{c}.csv` (and `{trait}_baseline.csv`,
drawn as a dashed line in its interval band) and writes `steering_layer_plots.png` and
`steering_layer_plots_coherence.png`; every point carries its 95% interval over questions.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from persona.analysis.results import load_steering_sweep, warn_missing
from persona.cli import run_cli, setup_logging
from persona.judge.factory import is_proxy
from persona.layout import Layout
from persona.steering import POSITIONS
from viz.common import panel_grid, save_figure

METRIC_LABELS = {"score": "trait score", "coherence": "coherence"}


def axis_label(metric: str, judges: Sequence[object]) -> str:
    """The y label, naming the judge(s) from the cells' sidecars so a proxy score never passes as an LLM judge's.

    Cells without a sidecar (None/NaN) name no judge.
    """
    names = sorted({j for j in judges if isinstance(j, str) and j})
    if not names:
        return METRIC_LABELS[metric]
    kinds = [f"{n} proxy" if is_proxy(n) else n for n in names]
    return f"{METRIC_LABELS[metric]}\n(judge: {', '.join(kinds)})"


def steering_grid(cells: pd.DataFrame, trait: str, metric: str) -> pd.DataFrame:
    """layer x coef means of one trait over the full grid of the layers and coefs seen (missing = NaN)."""
    t = cells[cells["trait"] == trait]
    grid = t.pivot_table(index="layer", columns="coef", values=metric, aggfunc="mean", dropna=False)
    return grid.reindex(index=sorted(t["layer"].unique()), columns=sorted(t["coef"].unique()))


def missing_cells(cells: pd.DataFrame) -> list[str]:
    """`trait layer L coef c` for every hole in each trait's layer x coef grid."""
    missing = []
    for trait in cells["trait"].unique():
        grid = steering_grid(cells, trait, "score")
        t = cells[cells["trait"] == trait]
        present = set(zip(t["layer"], t["coef"], strict=True))
        missing += [
            f"{trait} layer {layer} coef {coef}"
            for layer in grid.index
            for coef in grid.columns
            if (layer, coef) not in present
        ]
    return missing


def steering_layer_figure(cells: pd.DataFrame, baselines: pd.DataFrame, metric: str = "score") -> Figure:
    """One panel per trait (`cells`, `baselines` from `load_steering_sweep`): `metric` vs layer, a line per coef.

    Error bars are each cell's interval over questions; the baseline's interval is a gray band.
    """
    traits = sorted(cells["trait"].unique())
    fig, axes = panel_grid(len(traits))
    for ax, trait in zip(axes, traits, strict=True):
        grid = steering_grid(cells, trait, metric)
        low, high = (steering_grid(cells, trait, f"{metric}_ci_{end}") for end in ("low", "high"))
        for i, coef in enumerate(grid.columns):
            line = ax.plot(grid.index, grid[coef], marker="o", ms=3, label=f"coef {coef:g}")[0]
            err = np.nan_to_num(np.vstack([grid[coef] - low[coef], high[coef] - grid[coef]]), nan=0.0)
            shift = (i - (len(grid.columns) - 1) / 2) * 0.06  # side by side, so the bars do not hide each other
            ax.errorbar(grid.index + shift, grid[coef], yerr=err, fmt="none", ecolor=line.get_color(), capsize=2)
        base = baselines[baselines["trait"] == trait]
        if len(base):
            row = base.iloc[0]
            ax.axhline(float(row[metric]), color="gray", ls="--", label="unsteered (band: 95% CI)")
            if np.isfinite([row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]]).all():
                ax.axhspan(float(row[f"{metric}_ci_low"]), float(row[f"{metric}_ci_high"]), color="gray", alpha=0.15)
        judges = list(cells.loc[cells["trait"] == trait, "judge"])
        ax.set(title=trait, xlabel="layer", ylabel=axis_label(metric, judges), ylim=(-2, 102))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_steering_layer_figures(data_dir: Path, output_dir: Path, steering_type: str | None = None) -> pd.DataFrame:
    """Write `steering_layer_plots.png` (trait score) and `..._coherence.png` from the sweep cells in `data_dir`.

    Only cells of `steering_type` when given; a folder mixing several types must name one.
    Returns the cells' table (the numbers behind both figures).
    """
    cells, baselines = load_steering_sweep(data_dir, steering_type)
    if cells["steering_type"].nunique() > 1:
        raise ValueError(
            f"{data_dir} holds several steering types {sorted(cells['steering_type'].unique())}; "
            "pick one with `steering_type`"
        )
    warn_missing("sweep cells", missing_cells(cells))
    save_figure(steering_layer_figure(cells, baselines, "score"), output_dir / "steering_layer_plots.png")
    save_figure(steering_layer_figure(cells, baselines, "coherence"), output_dir / "steering_layer_plots_coherence.png")
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default="smollm2-135m", help="model whose results to plot (sets the default --data_dir)"
    )
    parser.add_argument(
        "--data_dir", type=Path, default=None, help="folder of sweep CSVs (default: output/eval_persona_eval/<model>)"
    )
    parser.add_argument("--steering_type", choices=POSITIONS, default=None, help="only cells of this steering type")
    parser.add_argument("--output_dir", type=Path, default=Path("figs"), help="where the PNGs go")
    args = parser.parse_args(argv)
    setup_logging()
    cells = save_steering_layer_figures(
        args.data_dir or Layout(args.model).eval_dir, args.output_dir, args.steering_type
    )
    print(cells.to_string(index=False))
    return 0


if __name__ == "__main__":
    run_cli(main)
