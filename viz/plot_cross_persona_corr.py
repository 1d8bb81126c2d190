"""Cross-persona correlations: models finetuned on trait A and judged on trait B.

    python viz/plot_cross_persona_corr.py [--results_dir output] [--vector_dir output/persona_vectors/<model>] \\
        [--layer 20] [--output_dir figs]

Reads `<results_dir>/{A}_projection_eval/checkpoint-{N}_{B}.csv` (the change in B is the last
checkpoint minus `<baseline_dir>/{B}_baseline.csv`, or minus checkpoint 0 without one; the
finetuning shift is the mean `..._{B}_{vector_type}_{projection_type}_layer{L}_finetuning_shift`
column, `prompt_last_proj` by default) and the vectors `{trait}_{vector_type}.pt`. As the original
study, plots cos(v_A, v_B) against the relative trait score (change in B / change in A) and
against the finetuning shift along v_B, each with a fit line and Pearson r (bootstrap interval,
permutation p; "r undefined" below 3 points): `cos_sim_vs_relative_trait_score.png`,
`cos_sim_vs_finetuning_shift.png`. `--relative_shift` plots the project's variant instead (shift
along v_B / along v_A); `--reference checkpoint0` measures the changes from checkpoint 0. The table
(with question-clustered intervals of every change) is printed and saved as `cross_persona_corr.csv`,
the fits as `cross_persona_fit.csv`.
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

SCORE_FIGURE = (
    "relative_trait_score",
    "cos_sim_vs_relative_trait_score.png",
    "Relative Trait Score (change in B / in A)",
)
SHIFT_FIGURES = {
    False: ("shift_judged", "cos_sim_vs_finetuning_shift.png", "Finetuning Shift (along v_B)"),
    True: ("relative_shift", "cos_sim_vs_finetuning_shift.png", "relative finetuning shift (along v_B / along v_A)"),
}


def cross_persona_figure(table: pd.DataFrame, y: str, ylabel: str) -> tuple[Figure, Correlation]:
    """cos(v_A, v_B) against one column of the cross-persona table, with fit line and Pearson r (with its interval).

    A mean column with interval columns (`shift_judged`) gets error bars: each point's 95% interval
    over questions. The ratios (`relative_trait_score`, `relative_shift`) are drawn bare: a ratio of
    two uncertain changes has no question-clustered interval here.
    """
    fig, (ax,) = panel_grid(1, size=(6, 4.5))
    bounds = [f"{y}_ci_low", f"{y}_ci_high"]
    fit = scatter_with_fit(
        ax,
        table["cos"].tolist(),
        table[y].tolist(),
        [f"{a}->{b}" for a, b in zip(table["finetuned"], table["judged"], strict=True)],
        yerr=(table[bounds[0]].tolist(), table[bounds[1]].tolist()) if set(bounds) <= set(table.columns) else None,
    )
    ax.axvline(0, color="gray", ls="--", lw=1, alpha=0.5)
    ax.axhline(0, color="gray", ls="--", lw=1, alpha=0.5)
    ax.set(xlabel="Cosine Similarity cos(v_A, v_B)", ylabel=ylabel, title=f"finetuned on A, judged on B\n{fit.text()}")
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
        default="prompt_last_proj",
        help="projection type of the finetuning-shift columns (default prompt_last_proj, the original's)",
    )
    parser.add_argument("--personas", nargs="+", default=None, help="only these traits, as A and as B")
    parser.add_argument(
        "--relative_shift", action="store_true", help="the project's variant: shift along v_B / along v_A"
    )
    parser.add_argument(
        "--reference",
        choices=["baseline", "checkpoint0"],
        default="baseline",
        help="what the score changes are measured from (default: the base model's baseline, the original's)",
    )
    parser.add_argument("--output_dir", type=Path, default=Path("figs"), help="where the PNGs and the CSV go")
    args = parser.parse_args(argv)
    setup_logging()
    vector_dir = args.vector_dir or Layout(args.model).vectors_dir
    baseline_dir = args.baseline_dir or Layout(args.model).eval_dir
    folders = projection_folders(args.results_dir)
    if args.personas:
        folders = {trait: folder for trait, folder in folders.items() if trait in args.personas}
    effects = load_finetuning_effects(
        folders,
        layer=args.layer,
        projection_type=args.projection_type,
        vector_type=args.vector_type,
        baseline_dir=baseline_dir,
        prefer_baseline=args.reference == "baseline",
    )
    if args.personas:
        effects = effects[effects["judged"].isin(args.personas)]
    cos = cosine_table(load_vectors(vector_files(vector_dir, args.vector_type)), args.layer)
    table = cross_persona_table(effects, cos)
    if table.empty:
        raise ValueError(
            f"{args.results_dir}: no pair of a finetuned trait A and another judged trait B "
            "with scores for both and vectors for both"
        )
    print(table.to_string(index=False))
    write_csv(args.output_dir / "cross_persona_corr.csv", table)
    drawn = (SCORE_FIGURE, SHIFT_FIGURES[args.relative_shift])
    write_csv(args.output_dir / "cross_persona_fit.csv", cross_persona_fits(table, tuple(c for c, _, _ in drawn)))
    for column, name, label in drawn:
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
