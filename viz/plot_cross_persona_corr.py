"""Cross-persona correlations: models finetuned on trait A and judged on trait B.

    python viz/plot_cross_persona_corr.py [--results_dir output] [--vector_dir output/persona_vectors/<model>] \\
        [--layer 20] [--output_dir figs]

Reads `<results_dir>/{A}_projection_eval/checkpoint-{N}_{B}.csv` (the change in B is the last
checkpoint minus checkpoint 0, or minus `<baseline_dir>/{B}_baseline.csv`; the finetuning shift
is the mean `..._{B}_{vector_type}_{projection_type}_layer{L}_finetuning_shift` column) and the
vectors `{trait}_{vector_type}.pt`. Plots cos(v_A, v_B) against the relative trait score
(change in B / change in A) and against the relative finetuning shift (along v_B / along v_A),
each with a fit line and Pearson r (bootstrap interval, permutation p; "r undefined" below 3
points): `cos_sim_vs_relative_trait_score.png`, `cos_sim_vs_finetuning_shift.png`; the table
(with question-clustered intervals of every change) is printed and saved as
`cross_persona_corr.csv`, the fits as `cross_persona_fit.csv`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from persona.analysis.cross_persona import cross_persona_fits, cross_persona_table, load_finetuning_effects
from persona.analysis.geometry import cosine_table
from persona.analysis.results import load_vectors, no_files_error, vector_files
from persona.analysis.stats import Correlation
from persona.cli import run_cli, setup_logging
from persona.io import write_csv
from persona.layout import Layout
from persona.projection import PROJECTION_TYPES
from viz.common import panel_grid, save_figure, scatter_with_fit

log = logging.getLogger(__name__)

FIGURES = {
    "relative_trait_score": ("cos_sim_vs_relative_trait_score.png", "relative trait score (change in B / change in A)"),
    "relative_shift": ("cos_sim_vs_finetuning_shift.png", "relative finetuning shift (along v_B / along v_A)"),
}


def cross_persona_figure(table: pd.DataFrame, y: str, ylabel: str) -> tuple[Figure, Correlation]:
    """cos(v_A, v_B) against one column of the cross-persona table, with fit line and Pearson r (with its interval)."""
    fig, (ax,) = panel_grid(1, size=(6, 4.5))
    fit = scatter_with_fit(
        ax,
        table["cos"].tolist(),
        table[y].tolist(),
        [f"{a}->{b}" for a, b in zip(table["finetuned"], table["judged"], strict=True)],
    )
    ax.set(xlabel="cos(v_A, v_B)", ylabel=ylabel, title=f"finetuned on A, judged on B\n{fit.text()}")
    fig.tight_layout()
    return fig, fit


def projection_folders(results_dir: Path) -> dict[str, Path]:
    """`{trait}_projection_eval` folders of the results dir, by the trait finetuned on."""
    suffix = "_projection_eval"
    folders = {p.name[: -len(suffix)]: p for p in sorted(results_dir.glob(f"*{suffix}")) if p.is_dir()}
    if not folders:
        raise no_files_error(results_dir, "{trait}_projection_eval/checkpoint-{N}_{judge_trait}.csv")
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="base model (sets the default folders)")
    parser.add_argument(
        "--results_dir", type=Path, default=Path("output"), help="folder holding {trait}_projection_eval/ folders"
    )
    parser.add_argument(
        "--vector_dir", type=Path, default=None, help="vector files (default: output/persona_vectors/<model>)"
    )
    parser.add_argument(
        "--baseline_dir",
        type=Path,
        default=None,
        help="base-model {trait}_baseline.csv files (default: output/eval_persona_eval/<model>)",
    )
    parser.add_argument("--layer", type=int, default=20, help="layer of the cosines and of the shift columns")
    parser.add_argument("--vector_type", default="response_avg_diff", help="vector file suffix")
    parser.add_argument(
        "--projection_type",
        choices=list(PROJECTION_TYPES),
        default="proj",
        help="projection type of the finetuning-shift columns",
    )
    parser.add_argument("--output_dir", type=Path, default=Path("figs"), help="where the PNGs and the CSV go")
    args = parser.parse_args(argv)
    setup_logging()
    vector_dir = args.vector_dir or Layout(args.model).vectors_dir
    baseline_dir = args.baseline_dir or Layout(args.model).eval_dir
    effects = load_finetuning_effects(
        projection_folders(args.results_dir),
        layer=args.layer,
        projection_type=args.projection_type,
        vector_type=args.vector_type,
        baseline_dir=baseline_dir,
    )
    cos = cosine_table(load_vectors(vector_files(vector_dir, args.vector_type)), args.layer)
    table = cross_persona_table(effects, cos)
    if table.empty:
        raise ValueError(
            f"{args.results_dir}: no pair of a finetuned trait A and another judged trait B "
            "with scores for both and vectors for both"
        )
    print(table.to_string(index=False))
    write_csv(args.output_dir / "cross_persona_corr.csv", table)
    write_csv(args.output_dir / "cross_persona_fit.csv", cross_persona_fits(table, tuple(FIGURES)))
    for column, (name, label) in FIGURES.items():
        if table[column].notna().sum() < 2:
            log.warning(
                "%s: fewer than two pairs have a %s; %s not drawn (finetuning shifts come from "
                "`eval.cal_projection --base_model`)",
                args.results_dir,
                column,
                name,
            )
            continue
        fig, fit = cross_persona_figure(table, column, label)
        print(f"Pearson r(cos, {column}): {fit.text()}")
        save_figure(fig, args.output_dir / name)
    return 0


if __name__ == "__main__":
    run_cli(main)
