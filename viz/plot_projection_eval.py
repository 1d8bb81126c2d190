"""Trait scores, coherence and the finetuning shift across a run's checkpoints (x = training step).

    python viz/plot_projection_eval.py output/evil_projection_eval [--save figs/evil.png] [--combine] \\
        [--sequential-dir output/evil_optimistic_projection_eval] [--personas evil optimistic]

Reads `checkpoint-{N}_{persona}.csv` (judge score, coherence and the finetuning-shift column
`checkpoint-{N}_{persona}_response_avg_diff_prompt_last_proj_layer{L}_finetuning_shift`, as
`scripts/eval_checkpoints.sh` writes them). As the original study's figure: left, each persona's
mean score and the coherence averaged over personas; right, each persona's mean finetuning shift
(`--combine`: all in one panel). `--sequential-dir DIR` appends a second run (finetune on A, then
on B) after the first, offset by its last checkpoint, personas restricted to the second run's.
The project's layouts: `--per_trait` (one panel per judged trait, every projection on a twin axis)
and `--combined` (all scores, all projections). Every line carries its 95% interval over questions
as a band of its colour. Writes `figs/projection_eval_<folder>.png`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from persona.analysis.checkpoint_summary import summarize_projection_eval
from persona.analysis.results import load_projection_eval
from persona.cli import run_cli, setup_logging
from persona.projection import PROJECTION_TYPES
from viz.common import line_with_band, panel_grid, save_figure, show_requested


def chain_runs(first: pd.DataFrame, second: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A sequential run: the second run's steps continue after the first's last step (returned too)."""
    switch = int(first["step"].max())
    second = second.assign(step=second["step"] + switch, phase="second")
    return pd.concat([first.assign(phase="first"), second], ignore_index=True), switch


def step_means(data: pd.DataFrame) -> pd.DataFrame:
    """One series' rows by step: the mean and its interval; a step holding several evaluations (a sequential
    run's switch step) shows their mean without a band (their answers are not pooled here)."""
    grouped = data.groupby("step", as_index=False)
    out = grouped.agg(value=("value", "mean"), ci_low=("ci_low", "first"), ci_high=("ci_high", "first"))
    several = grouped.size()["size"] > 1
    out.loc[several.to_numpy(), ["ci_low", "ci_high"]] = float("nan")
    return out.sort_values("step")


def _lines(ax: Axes, data: pd.DataFrame, label_prefix: str = "", **style) -> None:
    for series, t in data.groupby("series", sort=True):
        t = step_means(t)
        label = f"{label_prefix}{series}"
        line_with_band(ax, t["step"], t["value"], t["ci_low"], t["ci_high"], label=label, marker="o", ms=3, **style)


def projection_eval_figure(data: pd.DataFrame, *, combined: bool = False, switch_step: int | None = None) -> Figure:
    """Scores and projections vs step (each with its interval over questions as a band); per judged trait,
    or `combined` in two panels."""
    scores, projections = data[data["kind"] == "score"], data[data["kind"] == "projection"]
    if combined:
        fig, axes = panel_grid(2, ncols=2, size=(6, 4))
        for judge, t in scores.groupby("judge_trait"):
            _lines(axes[0], t, f"{judge}: ")
        _lines(axes[1], projections)
        axes[0].set(title="judge scores", xlabel="step", ylabel="score (0-100)")
        axes[1].set(title="projections", xlabel="step", ylabel="mean projection")
        twins = list(axes)
    else:
        judges = sorted(data["judge_trait"].unique())
        fig, axes = panel_grid(len(judges), ncols=2, size=(6, 4))
        twins = []
        for ax, judge in zip(axes, judges, strict=True):
            _lines(ax, scores[scores["judge_trait"] == judge])
            ax.set(title=f"judged: {judge}", xlabel="step", ylabel="score (0-100)")
            proj = projections[projections["judge_trait"] == judge]
            if len(proj):
                twin = ax.twinx()
                _lines(twin, proj, ls="--")
                twin.set_ylabel("mean projection (dashed)")
                twin.legend(fontsize=6, loc="lower right")
            twins.append(ax)
    for ax in twins:
        if switch_step is not None:
            ax.axvline(switch_step, color="gray", ls=":", label="switch to second run")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def _persona_lines(ax: Axes, summary: pd.DataFrame, metric: str, colors: dict[str, str], ls: str) -> None:
    for persona, t in summary.groupby("persona", sort=False):
        line_with_band(
            ax,
            t["checkpoint"],
            t[metric],
            t[f"{metric}_ci_low"],
            t[f"{metric}_ci_high"],
            label=f"{persona} ({metric})",
            color=colors[persona],
            ls=ls,
            marker="o",
        )


def _mark_switch(ax: Axes, offset: int) -> None:
    if offset:
        ax.axvline(offset, color="gray", ls="-.", alpha=0.6)


def original_projection_figure(
    summary: pd.DataFrame, *, combine: bool = False, offset: int = 0, title: str = ""
) -> Figure:
    """The original study's figure of `summarize_projection_eval`'s table: scores + coherence, then shifts.

    Each line carries its 95% interval over questions as a band of its colour (the original drew bare means).
    """
    personas = list(dict.fromkeys(summary["persona"]))
    colors = {p: f"C{i % 10}" for i, p in enumerate(personas)}
    fig, axes = panel_grid(1 if combine else 2, ncols=2, size=(9, 6) if not combine else (9, 5))
    scores = axes[0]
    _persona_lines(scores, summary, "persona_score", colors, "-")
    steps = summary.drop_duplicates("checkpoint")
    line_with_band(
        scores,
        steps["checkpoint"],
        steps["coherence_avg"],
        steps["coherence_avg_ci_low"],
        steps["coherence_avg_ci_high"],
        label="coherence (avg all personas)",
        color="black",
        ls="--",
        marker="s",
    )
    scores.set(xlabel="Checkpoint", ylabel="Average score", title="Trait Expression Score")
    shifts = scores if combine else axes[1]
    _persona_lines(shifts, summary, "finetuning_shift", colors, ":")
    if not combine:
        shifts.set(xlabel="Checkpoint", ylabel="Finetuning shift", title="Finetuning Shift")
    for ax in axes:
        _mark_switch(ax, offset)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, ncol=2, loc="best", framealpha=0.9)
    if title:
        fig.suptitle(title, fontsize=16, fontweight="bold")
    fig.tight_layout()
    return fig


def run_title(data_dir: Path, sequential: Path | None) -> str:
    """`Evil`, or `Evil-Optimistic Finetuning` for a sequential run, from the folder names."""
    name = (sequential or data_dir).name.replace("_projection_eval", "").replace("_", "-").title()
    return f"{name} Finetuning" if sequential else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "data_dir_pos", nargs="?", type=Path, metavar="DATA_DIR", help="folder of checkpoint-{N}_{persona}.csv files"
    )
    parser.add_argument("--data_dir", type=Path, default=None, help="same as DATA_DIR")
    parser.add_argument(
        "--sequential-dir",
        "--sequential_dir",
        "--then",
        dest="sequential_dir",
        type=Path,
        default=None,
        help="a second run that continued from the first (old spelling: --then)",
    )
    parser.add_argument("--personas", nargs="+", default=None, help="only these personas (judged traits)")
    parser.add_argument("--combine", action="store_true", help="the original's single panel (scores and shifts)")
    parser.add_argument("--layer", type=int, default=None, help="layer of the shift columns (default: the one present)")
    parser.add_argument(
        "--shift_type",
        choices=list(PROJECTION_TYPES),
        default="prompt_last_proj",
        help="projection type of the finetuning-shift columns (default prompt_last_proj, the original's)",
    )
    parser.add_argument("--per_trait", action="store_true", help="the project's layout: one panel per judged trait")
    parser.add_argument("--combined", action="store_true", help="the project's layout: all scores, all projections")
    parser.add_argument(
        "--save",
        "--output",
        dest="save",
        type=Path,
        default=None,
        help="PNG to write (default: figs/projection_eval_<DATA_DIR name>.png; old spelling: --output)",
    )
    parser.add_argument("--show", action="store_true", help="also display the figure (needs an interactive backend)")
    args = parser.parse_args(argv)
    setup_logging()
    data_dir = args.data_dir or args.data_dir_pos
    if data_dir is None:
        raise ValueError("give DATA_DIR (or --data_dir), e.g. output/evil_projection_eval")
    output = args.save or Path("figs") / f"projection_eval_{Path(data_dir).name}.png"
    if args.per_trait or args.combined:
        data, switch = load_projection_eval(data_dir), None
        if args.sequential_dir is not None:
            data, switch = chain_runs(data, load_projection_eval(args.sequential_dir))
        if args.personas:
            data = data[data["judge_trait"].isin(args.personas)]
        print(data.pivot_table(index=["judge_trait", "series"], columns="step", values="value").round(3).to_string())
        fig = projection_eval_figure(data, combined=args.combined, switch_step=switch)
    else:
        summary, offset = summarize_projection_eval(
            data_dir, args.sequential_dir, personas=args.personas, projection_type=args.shift_type, layer=args.layer
        )
        print(summary.drop(columns="path").round(3).to_string(index=False))
        title = run_title(Path(data_dir), args.sequential_dir)
        fig = original_projection_figure(summary, combine=args.combine, offset=offset, title=title)
    show_requested(args.show)
    save_figure(fig, output)
    return 0


if __name__ == "__main__":
    run_cli(main)
