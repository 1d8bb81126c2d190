"""Evaluate a trait: generate answers (under persona prompts and/or steering) and judge them.

    python -m eval.eval_persona --trait evil --output_path output/evil_pos.csv \\
        --persona_instruction_type pos --n_per_question 1 --max_tokens 64

Steering: --vector_path v.pt --layer 20 --coef 1.5 [--steering_type response|prompt|all].
Several vectors at once: --vector_path a.pt b.pt --layer 20 16 --coef 1.5 -1.0 (lists pair up).
Sweep: one vector with several layers and/or coefs (or --sweep) evaluates the whole grid in
one process and writes {trait}_steer_{type}_layer_{L}_coef_{c}.csv per cell to --output_dir.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from persona.cli import (
    add_backend_args,
    add_bool_flag,
    add_judge_args,
    add_model_args,
    add_ray_arg,
    add_seed_args,
    eval_spec_from_args,
    finite_float,
    load_steers,
    require_positive,
    run_cli,
    setup_logging,
    split_list,
)
from persona.evaluation import Cell, Job, run_evaluation, summarize, sweep_jobs, unsteered_job
from persona.layer_choice import resolve_layer_list
from persona.models import load_model
from persona.preflight import check_output_paths
from persona.steering import POSITIONS
from persona.vectors import PersonaVector, VectorShapeError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, "--model")
    parser.add_argument("--trait", required=True, help="trait name (e.g. evil, anxious_2) or a trait .json path")
    parser.add_argument("--output_path", help="CSV to write (single evaluation)")
    parser.add_argument("--output_dir", help="folder for sweep CSVs (default: the folder of --output_path)")
    parser.add_argument(
        "--version",
        choices=["eval", "extract"],
        default="extract",
        help="question set: extract (default, as in the original code; for vector extraction) "
        "or eval (held out: use it for baselines, steering and checkpoints)",
    )
    parser.add_argument(
        "--persona_instruction_type",
        choices=["pos", "neg"],
        default=None,
        help="ask every question under each of the trait's pos/neg system prompts",
    )
    parser.add_argument(
        "--assistant_name",
        default=None,
        help="name in 'You are a/an <name> assistant.' (default: the trait for pos, helpful for neg)",
    )
    parser.add_argument(
        "--n_per_question", type=int, default=10, help="samples per question (temperature 1.0; greedy when 1)"
    )
    parser.add_argument(
        "--max_questions", type=int, default=None, help="use only the first N questions of the trait (quick runs)"
    )
    parser.add_argument("--temperature", type=finite_float, default=None, help="override the sampling temperature")
    parser.add_argument("--max_tokens", type=int, default=1000, help="max new tokens per answer")
    parser.add_argument(
        "--top_p",
        type=finite_float,
        default=1.0,
        help="nucleus sampling mass (default 1.0 = off: both original paths, vLLM and steered HF, pass top_p=1)",
    )
    parser.add_argument(
        "--top_k",
        type=int,
        default=0,
        help="sample from the k best tokens only (default 0 = off, as the original's unsteered vLLM "
        "path; its steered HF path silently took the model's generation_config top_k, e.g. 20 "
        "for Qwen3-4B-Instruct-2507 or transformers' 50)",
    )
    parser.add_argument(
        "--min_new_tokens",
        type=int,
        default=1,
        help="stop tokens are held back until this many answer tokens exist (default 1: both "
        "original paths pass min_new_tokens / min_tokens = 1)",
    )
    parser.add_argument("--coef", nargs="+", default=None, help="steering coefficient(s)")
    parser.add_argument("--vector_path", nargs="+", default=None, help="persona vector file(s) [L+1, hidden]")
    parser.add_argument(
        "--layer", nargs="+", default=None, help="layer(s): output of decoder block L, or auto (best held-out AUROC)"
    )
    parser.add_argument(
        "--steering_type",
        choices=POSITIONS,
        default="response",
        help="positions to steer: response (last prompt token + generated), prompt, all",
    )
    parser.add_argument("--sweep", action="store_true", help="evaluate the layer x coef grid of one vector")
    parser.add_argument("--batch_size", type=int, default=16, help="generation batch size")
    add_bool_flag(
        parser, "--batch_process", "accepted for the original scripts (bare, =True or =False); a no-op: always batched"
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    add_seed_args(parser)
    add_ray_arg(parser, "a sweep's cells")
    add_backend_args(parser)
    add_judge_args(parser)
    args = parser.parse_args(argv)
    require_positive(
        parser, args, "--n_per_question", "--max_tokens", "--batch_size", "--max_questions", "--max_concurrent_judges"
    )
    return args


def _jobs(args: argparse.Namespace, trait_name: str) -> tuple[list[Job], bool]:
    """The evaluation jobs the flags ask for; True when this is a sweep."""
    paths = split_list(args.vector_path)
    layers = split_list(args.layer, int, "--layer")
    coefs = split_list(args.coef, finite_float, "--coef")
    if not paths:
        if layers or coefs:
            raise ValueError("--layer/--coef need --vector_path")
        return [unsteered_job(args.output_path)], False
    layers, coefs = layers or [20], coefs or [1.0]
    is_sweep = args.sweep or (len(paths) == 1 and (len(layers) > 1 or len(coefs) > 1))
    if not is_sweep:
        steers = load_steers(paths, layers, coefs, positions=args.steering_type)
        return [Job(Cell("steered", steers), Path(args.output_path))], False
    if len(paths) > 1:
        raise ValueError("a sweep takes one --vector_path (several vectors pair with --layer/--coef instead)")
    out_dir = Path(args.output_dir or (Path(args.output_path).parent if args.output_path else "output"))
    return sweep_jobs(trait_name, PersonaVector.load(paths[0]), layers, coefs, args.steering_type, out_dir), True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output_paths(files=[args.output_path], folders=[args.output_dir])  # before any model loads
    setup_logging()
    if not args.output_path and not args.output_dir:
        raise ValueError("give --output_path (or --output_dir for a sweep)")
    args.layer, layer_choices = resolve_layer_list(  # --layer auto: the best held-out layer of each vector
        split_list(args.layer), split_list(args.vector_path), load=lambda: load_model(args.model, device=args.device)
    )
    spec = eval_spec_from_args(args, choices={"layer_choice": layer_choices} if layer_choices else {})
    jobs, is_sweep = _jobs(args, spec.load_traits()[0].name)
    if args.ray is not None:  # the sweep's cells as units on Ray workers (persona.jobs), resumable the same way
        from persona.jobs import RayRunner, sweep_units

        if not is_sweep:
            raise ValueError("--ray runs sweeps: give one --vector_path with several --layer/--coef (or --sweep)")
        summary = RayRunner(args.ray or None).run(sweep_units(jobs, spec), overwrite=args.overwrite)
        print(summary.report())
        return 1 if summary.failed else 0
    judge_column = spec.load_traits()[0].judge_column

    def skipped(job: Job) -> None:
        print(f"{job.output} exists, skipping (use --overwrite to recompute)")

    def finished(job: Job, scored) -> None:
        print(f"\n{job.output} ({len(scored)} rows)" + (f" [{job.cell.name}]" if is_sweep else ""))
        print(summarize(scored, [judge_column, "coherence"]))

    try:
        run_evaluation(spec, jobs, overwrite=args.overwrite, on_skipped=skipped, on_finished=finished)
    except VectorShapeError as err:  # a bad vector or layer, found before generating: name the flags
        raise VectorShapeError(
            f"--vector_path {' '.join(split_list(args.vector_path))} with --layer "
            f"{' '.join(split_list(args.layer)) or 20}: {err}; use a vector extracted from "
            f"{args.model} and a layer it has"
        ) from None
    return 0


if __name__ == "__main__":
    run_cli(main)
