"""One trait's variant vectors (`confident`, `confident_2`, ...) projected across finetuning checkpoints.

    python viz/plot_variant_projections.py output/confident_projection_eval --trait confident [--judge_trait confident]

Reads `checkpoint-{N}_{judge_trait}.csv` and its projection columns onto the trait's variant
vectors (`..._{trait}[_N]_{vector_type}_{type}_layer{L}`, as `eval.cal_projection` names them).
Left: mean projection per variant vs step; right: the judge score. Writes
`figs/variant_projections_{trait}.png`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from persona.analysis.results import CHECKPOINT_PATTERN, load_projection_eval
from persona.cli import run_cli, setup_logging
from viz.common import panel_grid, save_figure


def variant_series(data: pd.DataFrame, trait: str, judge_trait: str) -> pd.DataFrame:
    """Rows of `judge_trait`'s files: the projections onto `trait`'s variants, and the scores."""
    pattern = re.compile(rf"{re.escape(trait)}(?:_\d+)?_.+")
    rows = data[data["judge_trait"] == judge_trait]
    keep = (rows["kind"] == "score") | rows["series"].map(lambda s: bool(pattern.fullmatch(s)))
    return rows[keep]


def variant_projection_figure(series: pd.DataFrame, trait: str) -> Figure:
    """Mean projection per variant vs step (left) and the judge scores (right)."""
    fig, axes = panel_grid(2, ncols=2, size=(6, 4))
    for ax, kind, ylabel in ((axes[0], "projection", "mean projection"), (axes[1], "score", "score (0-100)")):
        for name, t in series[series["kind"] == kind].groupby("series", sort=True):
            t = t.sort_values("step")
            ax.plot(t["step"], t["value"], marker="o", ms=3, label=name)
        ax.set(xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0].set_title(f"{trait} variants: projections")
    axes[1].set_title("judge scores")
    fig.tight_layout()
    return fig


def run(data_dir: Path, trait: str, judge_trait: str | None, output: Path | None) -> pd.DataFrame:
    """Load, select, print and plot; shared by this script and plot_confident_projections."""
    judge_trait = judge_trait or trait
    series = variant_series(load_projection_eval(data_dir), trait, judge_trait)
    if not (series["kind"] == "projection").any():
        raise FileNotFoundError(
            f"{data_dir}: no {CHECKPOINT_PATTERN.replace('{judge_trait}', judge_trait)} file "
            f"with projection columns onto {trait} or {trait}_N vectors"
        )
    print(series.pivot_table(index="series", columns="step", values="value").round(3).to_string())
    save_figure(variant_projection_figure(series, trait), output or Path("figs") / f"variant_projections_{trait}.png")
    return series


def parser_for(trait_default: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "data_dir_pos",
        nargs="?",
        type=Path,
        metavar="DATA_DIR",
        help="folder of checkpoint-{N}_{judge_trait}.csv files",
    )
    parser.add_argument("--data_dir", type=Path, default=None, help="same as DATA_DIR")
    parser.add_argument(
        "--trait", default=trait_default, required=trait_default is None, help="base trait whose variants to plot"
    )
    parser.add_argument("--judge_trait", default=None, help="which judged files to read (default: the trait)")
    parser.add_argument("--output", type=Path, default=None, help="PNG (default: figs/variant_projections_<trait>.png)")
    return parser


def main(argv: list[str] | None = None, trait_default: str | None = None) -> int:
    args = parser_for(trait_default).parse_args(argv)
    setup_logging()
    data_dir = args.data_dir or args.data_dir_pos or (Path("output") / f"{args.trait}_projection_eval")
    run(data_dir, args.trait, args.judge_trait, args.output)
    return 0


if __name__ == "__main__":
    run_cli(main)
