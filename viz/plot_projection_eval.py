"""Projections and judge scores across finetuning checkpoints (x = training step).

    python viz/plot_projection_eval.py output/evil_projection_eval [--combined] \\
        [--then output/evil_then_x_projection_eval]

Reads `checkpoint-{N}_{judge_trait}.csv` (judge score, coherence and every projection column, as
`eval.cal_projection` adds them). One panel per judged trait (scores left axis, projections right
axis, dashed); `--combined` draws all scores in one panel and all projections in another;
`--then DIR` appends a second run (finetune on A, then on B) after the first, its steps offset by
the first run's last step, with the switch marked. Writes `figs/projection_eval_<folder>.png`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from persona.analysis.results import load_projection_eval
from persona.cli import run_cli, setup_logging
from viz.common import panel_grid, save_figure


def chain_runs(first: pd.DataFrame, second: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A sequential run: the second run's steps continue after the first's last step (returned too)."""
    switch = int(first["step"].max())
    second = second.assign(step=second["step"] + switch, phase="second")
    return pd.concat([first.assign(phase="first"), second], ignore_index=True), switch


def _lines(ax: Axes, data: pd.DataFrame, label_prefix: str = "", **style) -> None:
    for series, t in data.groupby("series", sort=True):
        t = t.groupby("step", as_index=False)["value"].mean().sort_values("step")
        ax.plot(t["step"], t["value"], marker="o", ms=3, label=f"{label_prefix}{series}", **style)


def projection_eval_figure(data: pd.DataFrame, *, combined: bool = False, switch_step: int | None = None) -> Figure:
    """Scores and projections vs step; per judged trait, or `combined` in two panels."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "data_dir_pos",
        nargs="?",
        type=Path,
        metavar="DATA_DIR",
        help="folder of checkpoint-{N}_{judge_trait}.csv files",
    )
    parser.add_argument("--data_dir", type=Path, default=None, help="same as DATA_DIR")
    parser.add_argument("--then", type=Path, default=None, help="a second run that continued from the first")
    parser.add_argument("--combined", action="store_true", help="all judged traits in one score panel")
    parser.add_argument(
        "--output", type=Path, default=None, help="PNG to write (default: figs/projection_eval_<DATA_DIR name>.png)"
    )
    args = parser.parse_args(argv)
    setup_logging()
    data_dir = args.data_dir or args.data_dir_pos
    if data_dir is None:
        raise ValueError("give DATA_DIR (or --data_dir), e.g. output/evil_projection_eval")
    data, switch = load_projection_eval(data_dir), None
    if args.then is not None:
        data, switch = chain_runs(data, load_projection_eval(args.then))
    print(data.pivot_table(index=["judge_trait", "series"], columns="step", values="value").round(3).to_string())
    output = args.output or Path("figs") / f"projection_eval_{Path(data_dir).name}.png"
    save_figure(projection_eval_figure(data, combined=args.combined, switch_step=switch), output)
    return 0


if __name__ == "__main__":
    run_cli(main)
