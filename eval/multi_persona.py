"""Multi-persona experiments: steer with several persona vectors, judge several traits.

    python -m eval.multi_persona linearity --traits evil optimistic --layer 20 --coefs_a 0 1 2 --coefs_b 0 1 2
    python -m eval.multi_persona interference --traits evil optimistic humorous sycophantic --layer 20 --coef 2

linearity: cells a*v_A + b*v_B over the (a, b) grid (0 is always added to both axes), every
answer judged for both traits and coherence; the additivity residual of each joint cell,
S(a,b) - S(a,0) - S(0,b) + S(0,0), goes to linearity.csv (summary: linearity_summary.csv)
and linearity_residuals.png.
interference: the unsteered cell and each v_A alone at --coef; every answer judged for every
trait; the change in B against cos(v_A, v_B) goes to interference.csv, interference_matrix.csv
(rows: steered A, columns: judged B), interference_fit.csv and interference_vs_cos.png
(Pearson r with a bootstrap interval and a permutation p-value). Residuals and deltas are
computed per question and carry 95% question-clustered intervals (docs/statistics.md).

Questions: the first --max_questions eval questions of every listed trait. Vectors:
--vector_path (one per trait) or <vector_dir>/{trait}_{vector_type}.pt. All cells run packed in
one process; each judged cell is written as <output_dir>/cells/<cell>.csv and skipped on a rerun
(generated answers wait in <cell>.answers.csv while judging). The folder's settings.json must
match a rerun's settings (--overwrite recomputes). --no_run tabulates and plots the cells on
disk only (missing cells are listed and drawn as gaps).

This is a thin command over `persona.experiments.run_experiment` (flags -> `Experiment`), plus
the figure (`viz.plot_multi_persona.save_experiment_figure`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from persona.cli import (
    add_backend_args,
    add_judge_args,
    add_model_args,
    add_seed_args,
    add_vector_folder_args,
    finite_float,
    judge_settings,
    layer_arg,
    require_positive,
    run_cli,
    seeds_from_args,
    setup_logging,
    split_list,
)
from persona.evaluation import EvalSpec
from persona.experiments import Experiment, experiment_vectors, run_experiment
from persona.steering import POSITIONS
from viz.plot_multi_persona import save_experiment_figure


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    add_model_args(common, "--model")
    common.add_argument("--traits", nargs="+", required=True, help="trait names (linearity: exactly two, A then B)")
    common.add_argument("--vector_path", nargs="+", default=None, help="one vector file per trait, in --traits order")
    add_vector_folder_args(common, None, "output/persona_vectors/<model>")
    common.add_argument(
        "--layer", type=layer_arg, default=20, help="steering layer (hidden_states[L]), or auto (best held-out AUROC)"
    )
    common.add_argument("--steering_type", choices=POSITIONS, default="response", help="positions to steer")
    common.add_argument("--n_per_question", type=int, default=5, help="samples per question (greedy when 1)")
    common.add_argument("--max_questions", type=int, default=5, help="eval questions per trait")
    common.add_argument("--max_tokens", type=int, default=300, help="max new tokens per answer")
    common.add_argument(
        "--temperature", type=finite_float, default=None, help="default 1.0, or 0 (greedy) when n_per_question is 1"
    )
    common.add_argument("--batch_size", type=int, default=16, help="generation batch size")
    add_seed_args(common)
    common.add_argument(
        "--output_dir",
        type=Path,
        default=None,
        help="experiment folder (default: output/multi_persona/<model>/<experiment>)",
    )
    common.add_argument("--overwrite", action="store_true", help="recompute every cell")
    common.add_argument("--no_run", action="store_true", help="only tabulate and plot the cells already on disk")
    add_backend_args(common)
    add_judge_args(common)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    lin = sub.add_parser("linearity", parents=[common], help="a*v_A + b*v_B grid: additivity residuals")
    lin.add_argument("--coefs_a", nargs="+", default=["0", "1", "2"], help="coefficients of v_A")
    lin.add_argument("--coefs_b", nargs="+", default=["0", "1", "2"], help="coefficients of v_B")
    inter = sub.add_parser("interference", parents=[common], help="each v_A alone: change in every trait B")
    inter.add_argument("--coef", type=finite_float, default=2.0, help="steering coefficient of each vector")
    args = parser.parse_args(argv)
    require_positive(
        parser, args, "--n_per_question", "--max_questions", "--max_tokens", "--batch_size", "--max_concurrent_judges"
    )
    return args


def _spec(args: argparse.Namespace) -> EvalSpec:
    """Every trait's first --max_questions eval questions, each answer judged for every trait."""
    names = split_list(args.traits)
    return EvalSpec(
        model=args.model,
        trait=names[0],
        extra_traits=tuple(names[1:]),
        version="eval",
        n_per_question=args.n_per_question,
        max_questions=args.max_questions,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seeds=seeds_from_args(args),
        batch_size=args.batch_size,
        backend=args.backend,
        gpu_memory_utilization=args.gpu_memory_utilization,
        device=args.device,
        dtype=args.dtype,
        judge=judge_settings(args),
    )


def experiment_from_args(args: argparse.Namespace) -> Experiment:
    """The `Experiment` the flags describe."""
    names = split_list(args.traits)
    if args.experiment == "linearity":
        grid = {"coefs_a": split_list(args.coefs_a, finite_float), "coefs_b": split_list(args.coefs_b, finite_float)}
    else:
        grid = {"coef": args.coef}
    return Experiment(
        kind=args.experiment,
        spec=_spec(args),
        vectors=experiment_vectors(
            names, split_list(args.vector_path), args.vector_dir, suffix=args.vector_type, model=args.model
        ),
        layer=args.layer,
        steering_type=args.steering_type,
        output_dir=args.output_dir,
        **grid,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    result = run_experiment(
        experiment_from_args(args),
        overwrite=args.overwrite,
        no_run=args.no_run,
        on_finished=lambda job, _scored: print(f"{job.output} [{job.cell.name}]"),
    )
    if result.run is not None and not result.run.written:
        print("every cell is on disk; nothing to run")
    print("\n".join(result.lines))
    save_experiment_figure(result)
    return 0


if __name__ == "__main__":
    run_cli(main)
