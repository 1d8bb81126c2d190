"""One trait's variant vectors (`confident`, `confident_2`, ...) across finetuning checkpoints.

    python viz/plot_variant_projections.py output/confident_projection_eval --trait confident \\
        [--judge_trait confident] [--save figs/confident.png] [--title TITLE] [--scores]

Reads `checkpoint-{N}_{judge_trait}.csv` and its columns onto the trait's variant vectors
(`checkpoint-{N}_{variant}_{vector_type}_proj_layer{L}` and
`..._prompt_last_proj_layer{L}_finetuning_shift`, as `scripts/eval_projection_variants.sh` adds
them). As the original study's figure: left, the mean projection of each variant; right, its mean
finetuning shift (0 at checkpoint 0, the base model). `--scores` puts the project's variant on the
right instead: the judge scores. Every line carries its 95% interval over questions as a band of
its colour (the base model's shift of 0 at checkpoint 0 is exact: no band). Writes
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
from persona.projection import PROJECTION_TYPES, SHIFT_SUFFIX
from viz.common import line_with_band, panel_grid, save_figure, show_requested

PANELS = {
    "projection": ("Projection Values", "Mean Projection Value"),
    "finetuning_shift": ("Finetuning Shift", "Mean Finetuning Shift"),
    "score": ("judge scores", "score (0-100)"),
}


def variant_table(
    data: pd.DataFrame,
    trait: str,
    judge_trait: str,
    *,
    projection_type: str = "proj",
    shift_type: str = "prompt_last_proj",
    vector_type: str = "response_avg_diff",
    layer: int | None = None,
) -> pd.DataFrame:
    """step, variant, metric (projection | finetuning_shift | score), value, ci_low, ci_high for `judge_trait`'s files.

    Projections are of `projection_type`, shifts of `shift_type`, at `layer` (None: the only one
    present); ci_low/ci_high are each mean's interval over questions (`load_projection_eval`). A
    checkpoint 0 without a shift column gets shift 0 (the base model), as the original, with
    bounds 0 (no uncertainty: it is not measured).
    """
    at = str(layer) if layer is not None else r"\d+"
    pattern = re.compile(
        rf"(?P<variant>{re.escape(trait)}(?:_\d+)?)_{re.escape(vector_type)}_(?P<type>\w+?)_layer(?P<layer>{at})"
        rf"(?P<shift>{SHIFT_SUFFIX})?"
    )
    rows = data[data["judge_trait"] == judge_trait]
    out, layers = [], set()
    for r in rows.itertuples():
        interval = {"value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high}
        if r.kind == "score":
            out.append({"step": r.step, "variant": r.series, "metric": "score", **interval})
            continue
        m = pattern.fullmatch(r.series)
        if not m or m["type"] != (shift_type if m["shift"] else projection_type):
            continue
        layers.add(int(m["layer"]))
        metric = "finetuning_shift" if m["shift"] else "projection"
        out.append({"step": r.step, "variant": m["variant"], "metric": metric, **interval})
    if len(layers) > 1:
        raise ValueError(f"projections at layers {sorted(layers)}: choose one with layer")
    table = pd.DataFrame(out, columns=["step", "variant", "metric", "value", "ci_low", "ci_high"])
    shifted = set(table.loc[table["metric"] == "finetuning_shift", ["step", "variant"]].itertuples(index=False))
    zero = table[
        (table["metric"] == "projection") & (table["step"] == 0) & ~table["variant"].map(lambda v: (0, v) in shifted)
    ]
    zero = zero.assign(metric="finetuning_shift", value=0.0, ci_low=0.0, ci_high=0.0)
    return pd.concat([table, zero], ignore_index=True)


def variant_projection_figure(
    table: pd.DataFrame, trait: str, *, right: str = "finetuning_shift", title: str = ""
) -> Figure:
    """Mean projection per variant vs checkpoint (left) and its shift, or the judge scores (right), each line
    with its interval over questions as a band."""
    fig, axes = panel_grid(2, ncols=2, size=(9, 6))
    for ax, metric in zip(axes, ("projection", right), strict=True):
        t = table[table["metric"] == metric]
        names = sorted(t["variant"].unique(), key=lambda v: (v != trait, v))
        for name in names:
            line = t[t["variant"] == name].sort_values("step")
            line_with_band(
                ax, line["step"], line["value"], line["ci_low"], line["ci_high"], label=name, marker="o", lw=2, ms=6
            )
        panel_title, ylabel = PANELS[metric]
        ax.set(xlabel="Checkpoint", ylabel=ylabel, title=panel_title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=10, loc="best")
    fig.suptitle(title or f"{trait.title()} Vector Analysis Across Checkpoints", fontsize=16, fontweight="bold")
    fig.tight_layout()
    return fig


def run(data_dir: Path, trait: str, judge_trait: str | None, output: Path | None, **options) -> pd.DataFrame:
    """Load, select, print and plot; shared by this script and plot_confident_projections."""
    judge_trait = judge_trait or trait
    right = "score" if options.pop("scores", False) else "finetuning_shift"
    title = options.pop("title", None) or ""
    table = variant_table(load_projection_eval(data_dir), trait, judge_trait, **options)
    if not (table["metric"] == "projection").any():
        raise FileNotFoundError(
            f"{data_dir}: no {CHECKPOINT_PATTERN.replace('{judge_trait}', judge_trait)} file "
            f"with projection columns onto {trait} or {trait}_N vectors"
        )
    print(table.pivot_table(index=["metric", "variant"], columns="step", values="value").round(3).to_string())
    fig = variant_projection_figure(table, trait, right=right, title=title)
    save_figure(fig, output or Path("figs") / f"variant_projections_{trait}.png")
    return table


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
    parser.add_argument("--layer", type=int, default=None, help="layer of the columns (default: the one present)")
    parser.add_argument("--projection_type", choices=list(PROJECTION_TYPES), default="proj", help="left panel")
    parser.add_argument(
        "--shift_type", choices=list(PROJECTION_TYPES), default="prompt_last_proj", help="right panel's shift"
    )
    parser.add_argument("--scores", action="store_true", help="the project's variant: judge scores on the right")
    parser.add_argument("--title", default=None, help="the figure's main title")
    parser.add_argument(
        "--save",
        "--output",
        dest="save",
        type=Path,
        default=None,
        help="PNG (default: figs/variant_projections_<trait>.png; old spelling: --output)",
    )
    parser.add_argument("--show", action="store_true", help="also display the figure (needs an interactive backend)")
    return parser


def main(argv: list[str] | None = None, trait_default: str | None = None) -> int:
    args = parser_for(trait_default).parse_args(argv)
    setup_logging()
    data_dir = args.data_dir or args.data_dir_pos or (Path("output") / f"{args.trait}_projection_eval")
    show_requested(args.show)
    run(
        data_dir,
        args.trait,
        args.judge_trait,
        args.save,
        layer=args.layer,
        projection_type=args.projection_type,
        shift_type=args.shift_type,
        scores=args.scores,
        title=args.title,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
