"""Run a batch of traits or checkpoints as independent units, in-process or on a Ray cluster.

    # pos/neg persona evaluations on the extract questions, then vectors, for each trait
    python -m eval.grid vectors --model M --traits evil optimistic \\
        --extract_dir output/eval_persona_extract/M --vector_dir output/persona_vectors/M
    # each checkpoint evaluated on each judge trait, then projected onto the trait's vector
    python -m eval.grid checkpoints --checkpoints ckpt/run/checkpoint-* --judge_traits evil \\
        --vector_dir output/persona_vectors/M --projection_dir output/evil_projection_eval --layer 20 \\
        --base_model M --ray

Files and names are those of scripts/generate_vec.sh and scripts/eval_checkpoints.sh; units
whose files exist are skipped. --ray [ADDRESS] runs the units on Ray workers (one per GPU);
see README, 'Several GPUs and nodes'.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from persona.cli import (
    add_backend_args,
    add_judge_args,
    add_model_args,
    add_ray_arg,
    eval_spec_from_args,
    finite_float,
    require_positive,
    run_cli,
    setup_logging,
    split_list,
)
from persona.evaluation import EvalSpec, Job, unsteered_job
from persona.jobs import CheckpointUnit, EvalUnit, LocalRunner, RayRunner, TraitVectorsUnit, Unit
from persona.preflight import check_output_paths
from persona.projection import PROJECTION_TYPES


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n_per_question", type=int, default=10, help="samples per question (greedy when 1)")
    parser.add_argument("--max_questions", type=int, default=None, help="use only the first N questions")
    parser.add_argument("--temperature", type=finite_float, default=None, help="override the sampling temperature")
    parser.add_argument("--max_tokens", type=int, default=1000, help="max new tokens per answer")
    parser.add_argument("--batch_size", type=int, default=16, help="generation and forward-pass batch size")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (per-row, batch-independent)")
    parser.add_argument("--overwrite", action="store_true", help="recompute units whose outputs exist")
    add_ray_arg(parser, "the units")
    add_backend_args(parser)
    add_judge_args(parser)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    vectors = commands.add_parser("vectors", help="pos/neg evaluations and persona vectors per trait")
    add_model_args(vectors, "--model")
    vectors.add_argument("--traits", nargs="+", required=True, help="trait names")
    vectors.add_argument("--extract_dir", required=True, help="folder of {trait}_{pos,neg}_instruct.csv")
    vectors.add_argument("--vector_dir", required=True, help="folder of the vector files")
    vectors.add_argument("--pos_assistant", default=None, help="assistant name under pos prompts (the trait)")
    vectors.add_argument("--neg_assistant", default="helpful", help="assistant name under neg prompts")
    vectors.add_argument("--threshold", type=finite_float, default=50, help="keep pos >= T, neg < 100-T (default 50)")
    _common(vectors)
    checkpoints = commands.add_parser("checkpoints", help="evaluation and projections per checkpoint and trait")
    add_model_args(checkpoints, "--base_model")
    checkpoints.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint-N folders")
    checkpoints.add_argument("--judge_traits", nargs="+", required=True, help="traits to evaluate and project on")
    checkpoints.add_argument("--vector_dir", required=True, help="folder of {trait}_response_avg_diff.pt")
    checkpoints.add_argument("--projection_dir", required=True, help="folder of checkpoint-N_{trait}.csv")
    checkpoints.add_argument("--layer", type=int, required=True, help="layer to project at")
    checkpoints.add_argument(
        "--projection_types",
        nargs="+",
        default=["proj"],
        help=f"one or more of {', '.join(PROJECTION_TYPES)} (default proj)",
    )
    checkpoints.add_argument("--no_shift", action="store_true", help="skip the finetuning-shift projection")
    checkpoints.add_argument("--version", choices=["eval", "extract"], default="eval", help="question set")
    _common(checkpoints)
    args = parser.parse_args(argv)
    require_positive(
        parser, args, "--n_per_question", "--max_questions", "--max_tokens", "--batch_size", "--max_concurrent_judges"
    )
    return args


def _spec(args: argparse.Namespace, model: str, trait: str, **changes) -> EvalSpec:
    flags = argparse.Namespace(
        **{
            **vars(args),
            "model": model,
            "trait": trait,
            "persona_instruction_type": None,
            "assistant_name": None,
            "version": getattr(args, "version", "extract"),
        }
    )
    return eval_spec_from_args(flags, **changes)


def _job(path: Path) -> Job:
    return unsteered_job(path.resolve())


def vector_units(args: argparse.Namespace) -> list[Unit]:
    """One unit per trait: its pos and neg evaluations, then generate_vec."""
    units: list[Unit] = []
    for trait in split_list(args.traits):
        extract = Path(args.extract_dir)
        pos = _spec(args, args.model, trait, instruction_type="pos", assistant_name=args.pos_assistant)
        neg = _spec(args, args.model, trait, instruction_type="neg", assistant_name=args.neg_assistant)
        units.append(
            TraitVectorsUnit(
                trait,
                EvalUnit(_job(extract / f"{trait}_pos_instruct.csv"), pos),
                EvalUnit(_job(extract / f"{trait}_neg_instruct.csv"), neg),
                Path(args.vector_dir).resolve(),
                args.threshold,
            )
        )
    return units


def checkpoint_units(args: argparse.Namespace) -> list[Unit]:
    """One unit per (checkpoint, judge trait): evaluation, projection, finetuning shift."""
    kinds = tuple(split_list(args.projection_types))
    bad = [kind for kind in kinds if kind not in PROJECTION_TYPES]
    if bad:
        raise ValueError(f"--projection_types {bad}: choose from {list(PROJECTION_TYPES)}")
    units: list[Unit] = []
    for checkpoint in split_list(args.checkpoints):
        for trait in split_list(args.judge_traits):
            vector = Path(args.vector_dir) / f"{trait}_response_avg_diff.pt"
            if not vector.is_file():
                raise FileNotFoundError(f"{vector} does not exist (make it with scripts/generate_vec.sh)")
            output = Path(args.projection_dir) / f"{Path(checkpoint).name}_{trait}.csv"
            units.append(
                CheckpointUnit(
                    EvalUnit(_job(output), _spec(args, checkpoint, trait)),
                    str(vector.resolve()),
                    args.layer,
                    kinds,
                    None if args.no_shift else args.base_model,
                )
            )
    return units


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_output_paths(
        folders=[args.extract_dir, args.vector_dir] if args.command == "vectors" else [args.projection_dir]
    )
    setup_logging()
    units = vector_units(args) if args.command == "vectors" else checkpoint_units(args)
    runner = LocalRunner() if args.ray is None else RayRunner(args.ray or None)
    summary = runner.run(units, overwrite=args.overwrite)
    print(summary.report())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    run_cli(main)
