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
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from persona.analysis.geometry import cosine_table
from persona.analysis.multi_persona import (
    BASELINE,
    additivity,
    additivity_summary,
    check_settings,
    interference,
    interference_cells,
    interference_fit,
    linearity_cells,
    question_grid,
)
from persona.analysis.results import load_vectors, score_means, vector_files
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
from persona.evaluation import Cell, EvalSpec, Job, run_evaluation
from persona.fingerprint import model_ref, tensor_sha256
from persona.io import read_table, write_csv
from persona.judge import COHERENCE
from persona.layer_choice import resolve_layer
from persona.layout import Layout
from persona.models import load_model
from persona.preflight import check_output_path
from persona.steering import POSITIONS
from persona.traits import Trait, load_trait
from viz.common import save_figure, warn_missing
from viz.plot_multi_persona import interference_figure, linearity_figure

log = logging.getLogger(__name__)


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


def _traits(args: argparse.Namespace) -> list[Trait]:
    traits = [load_trait(name, version="eval") for name in split_list(args.traits)]
    if args.experiment == "linearity" and len(traits) != 2:
        raise ValueError(f"linearity takes exactly two --traits (A B), got {[t.name for t in traits]}")
    if args.experiment == "interference" and len(traits) < 2:
        raise ValueError(f"interference needs at least two --traits, got {[t.name for t in traits]}")
    columns = [t.judge_column for t in traits]
    if len(set(columns)) != len(columns):
        raise ValueError(
            f"--traits {[t.name for t in traits]} share judge columns {columns}: each trait needs its own score column"
        )
    for t in traits:
        t.questions = t.questions[: args.max_questions]
    return traits


def _vector_paths(args: argparse.Namespace, traits: list[Trait]) -> dict[str, Path]:
    if args.vector_path:
        paths = [Path(p) for p in split_list(args.vector_path)]
        if len(paths) != len(traits):
            raise ValueError(f"--vector_path gives {len(paths)} files for {len(traits)} --traits; give one per trait")
        return {t.name: p for t, p in zip(traits, paths, strict=True)}
    return vector_files(args.vector_dir or Layout(args.model).vectors_dir, args.vector_type, [t.name for t in traits])


def _plan(args: argparse.Namespace, traits: list[Trait], vectors: dict) -> tuple[list[Cell], list, dict]:
    """The cells, their (a, b) grid points (linearity) and the settings a rerun must share.

    Grid coefficients only name cells, so a rerun may grow the grid; everything else must match.
    """
    names = [t.name for t in traits]
    if args.experiment == "linearity":
        grid = linearity_cells(
            vectors[names[0]],
            vectors[names[1]],
            args.layer,
            split_list(args.coefs_a, finite_float),
            split_list(args.coefs_b, finite_float),
            args.steering_type,
        )
        cells, points, extra = [c for _, _, c in grid], [(a, b) for a, b, _ in grid], {}
    else:
        cells, points = interference_cells(vectors, args.layer, args.coef, args.steering_type), []
        extra = {"coef": args.coef}
    settings = {
        "experiment": args.experiment,
        "model": args.model,
        "traits": names,
        "layer": args.layer,
        "vectors": {n: str(p) for n, p in _vector_paths(args, traits).items()},
        "vector_sha256": {n: tensor_sha256(v) for n, v in vectors.items()},
        "model_ref": model_ref(args.model),
        "steering_type": args.steering_type,
        "n_per_question": args.n_per_question,
        "max_questions": args.max_questions,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": _spec(args).seed,
        "judge_model": args.judge_model,
        **extra,
    }
    return cells, points, settings


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


def run_jobs(args: argparse.Namespace, jobs: list[Job]) -> None:
    """Generate the missing cells in one packed sweep, then judge every trait and coherence, cell by cell."""
    run = run_evaluation(
        _spec(args),
        jobs,
        overwrite=args.overwrite,
        on_finished=lambda job, _scored: print(f"{job.output} [{job.cell.name}]"),
    )
    if not run.written:
        print("every cell is on disk; nothing to run")


def cell_means(jobs: list[Job], columns: list[str]) -> dict[str, dict[str, float]]:
    """Mean scores of every cell on disk; missing cells are listed in one warning."""
    means = {
        j.cell.name: score_means(read_table(j.output, required=tuple(columns)), columns)
        for j in jobs
        if j.output.exists()
    }
    warn_missing("cells", [j.cell.name for j in jobs if j.cell.name not in means])
    return means


def _cell_frames(out: Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """The judged cells on disk, by name (per-question scores for the intervals)."""
    paths = {n: out / "cells" / f"{n}.csv" for n in names}
    return {n: read_table(p) for n, p in paths.items() if p.exists()}


def report_linearity(
    args: argparse.Namespace, traits: list[Trait], cells: list[Cell], points: list, means: dict, out: Path
) -> None:
    metrics = [t.judge_column for t in traits] + [COHERENCE]
    rows = [{"a": a, "b": b, **means[c.name]} for (a, b), c in zip(points, cells, strict=True) if c.name in means]
    grid = pd.DataFrame(rows, columns=["a", "b", *metrics])
    frames = _cell_frames(out, [c.name for c in cells])
    by_point = {point: frames[c.name] for point, c in zip(points, cells, strict=True) if c.name in frames}
    table = additivity(question_grid(by_point, metrics), metrics)
    summary = additivity_summary(table)
    write_csv(out / "linearity_grid.csv", grid)
    write_csv(out / "linearity.csv", table)
    write_csv(out / "linearity_summary.csv", summary)
    print(f"mean scores per cell:\n{grid.round(2).to_string(index=False)}\n")
    print(
        "additivity (residual = S(a,b) - S(a,0) - S(0,b) + S(0,0), per question; 95% intervals over questions):\n"
        f"{summary.round(3).to_string(index=False)}"
    )
    for r in summary.itertuples():
        if r.consistent_with_zero is not None:
            verdict = "consistent with zero" if r.consistent_with_zero else "not consistent with zero"
            print(f"{r.metric}: residuals {verdict} ({r.cells_nonzero}/{r.cells} joint cells exclude 0)")
    save_figure(linearity_figure(table, traits[0].name, traits[1].name, args.layer), out / "linearity_residuals.png")


def report_interference(args: argparse.Namespace, traits: list[Trait], vectors: dict, means: dict, out: Path) -> None:
    if BASELINE not in means:
        raise FileNotFoundError(
            f"{out / 'cells' / (BASELINE + '.csv')}: the unsteered cell is missing; run without --no_run"
        )
    frames = _cell_frames(out, list(means))
    table = interference(
        means, cosine_table(vectors, args.layer), {t.name: t.judge_column for t in traits}, frames=frames
    )
    matrix = table.pivot(index="steered", columns="judged", values="delta")
    fit = interference_fit(table)
    write_csv(out / "interference.csv", table)
    write_csv(out / "interference_matrix.csv", matrix.reset_index())
    write_csv(out / "interference_fit.csv", pd.DataFrame([fit.columns()]))
    print(f"change in judged B when steering with v_A (rows A, columns B):\n{matrix.round(2).to_string()}")
    fig, _ = interference_figure(table, args.layer, args.coef)
    print(
        f"Pearson r(cos(v_A, v_B), change in B) over A != B: {fit.r:.3f} ({fit.text()})"
        if fit.defined
        else f"Pearson r(cos(v_A, v_B), change in B): {fit.text()} (too few distinct cosines; use 3+ traits)"
    )
    save_figure(fig, out / "interference_vs_cos.png")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output_path(args.output_dir, folder=True)  # before any model loads
    setup_logging()
    traits = _traits(args)
    vectors = load_vectors(_vector_paths(args, traits))
    args.layer, choice = resolve_layer(
        args.layer, list(_vector_paths(args, traits).values()), load=lambda: load_model(args.model, device=args.device)
    )  # --layer auto
    cells, points, settings = _plan(args, traits, vectors)
    settings.update({"layer_choice": choice.record()} if choice else {})
    default = (
        f"linearity_{traits[0].name}_{traits[1].name}_layer{args.layer}"
        if args.experiment == "linearity"
        else f"interference_layer{args.layer}_coef{args.coef:g}"
    )
    out = args.output_dir or Path(Layout(args.model).root) / "multi_persona" / Layout(args.model).name / default
    jobs = [Job(c, out / "cells" / f"{c.name}.csv") for c in cells]
    if not args.no_run:
        check_settings(out, settings, overwrite=args.overwrite)
        run_jobs(args, jobs)
    means = cell_means(jobs, [t.judge_column for t in traits] + [COHERENCE])
    if not means:
        raise FileNotFoundError(f"{out / 'cells'}: no cell files (<cell>.csv); run without --no_run first")
    if args.experiment == "linearity":
        report_linearity(args, traits, cells, points, means, out)
    else:
        report_interference(args, traits, vectors, means, out)
    return 0


if __name__ == "__main__":
    run_cli(main)
