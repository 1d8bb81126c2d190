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
import json
from pathlib import Path

from persona.cli import (
    add_judge_args,
    add_model_args,
    add_ray_arg,
    finite_float,
    judge_settings,
    judges_from_args,
    load_steers,
    require_positive,
    run_cli,
    setup_logging,
    split_list,
)
from persona.evaluation import (
    Cell,
    Job,
    answers_with_resume,
    build_samples,
    finish_job,
    generation_fingerprint,
    judge_frame,
    split_done,
    summarize,
    sweep_jobs,
)
from persona.fingerprint import check_finished, model_ref, read_record
from persona.judge.cache import model_identity
from persona.judge.sidecar import judge_record
from persona.models import load_model
from persona.preflight import check_output_paths
from persona.sampling import study_sampling
from persona.steering import POSITIONS, check_steers
from persona.traits import load_trait
from persona.vectors import PersonaVector, VectorShapeError
from persona.vllm_backend import add_backend_args, backend_from_args


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
    parser.add_argument("--layer", nargs="+", default=None, help="layer(s): output of decoder block L")
    parser.add_argument(
        "--steering_type",
        choices=POSITIONS,
        default="response",
        help="positions to steer: response (last prompt token + generated), prompt, all",
    )
    parser.add_argument("--sweep", action="store_true", help="evaluate the layer x coef grid of one vector")
    parser.add_argument("--batch_size", type=int, default=16, help="generation batch size")
    parser.add_argument(
        "--batch_process",
        action="store_true",
        help="accepted for the original scripts; a no-op: generation is always batched (--batch_size)",
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (per-row, batch-independent)")
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
        return [Job(Cell("unsteered"), Path(args.output_path))], False
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
    trait = load_trait(args.trait, version=args.version)
    if args.max_questions is not None:
        trait.questions = trait.questions[: args.max_questions]
    if not args.output_path and not args.output_dir:
        raise ValueError("give --output_path (or --output_dir for a sweep)")
    jobs, is_sweep = _jobs(args, trait.name)
    if args.ray is not None:  # the sweep's cells as units on Ray workers (persona.jobs), resumable the same way
        from persona.jobs import EvalSpec, RayRunner, sweep_units

        if not is_sweep:
            raise ValueError("--ray runs sweeps: give one --vector_path with several --layer/--coef (or --sweep)")
        summary = RayRunner(args.ray or None).run(sweep_units(jobs, EvalSpec.from_args(args)), overwrite=args.overwrite)
        print(summary.report())
        return 1 if summary.failed else 0
    samples = build_samples(
        trait,
        n_per_question=args.n_per_question,
        instruction_type=args.persona_instruction_type,
        assistant_name=args.assistant_name,
    )
    params = study_sampling(
        args.n_per_question,
        args.max_tokens,
        args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_new_tokens=args.min_new_tokens,
    )
    judged_by = judge_record(judge_settings(args), trait=trait)
    model_key = json.dumps(model_ref(args.model), sort_keys=True)  # known without loading the model
    made_with = {
        job.output: {
            **generation_fingerprint(model_key, samples, params, args.seed, job.cell),
            # the judge, whether named or the default
            "judge": {k: v for k, v in judged_by.items() if k != "default_judge"},
        }
        for job in jobs
    }
    todo, done = split_done(jobs, args.overwrite)
    for job in done:  # a finished CSV made with other settings stops the run: SettingsMismatch says what differs
        check_finished(str(job.output), read_record(job.output), made_with[job.output])
        print(f"{job.output} exists, skipping (use --overwrite to recompute)")
    if not todo:
        return 0

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    try:  # fail fast on a bad vector or layer, before generating
        for job in todo:
            check_steers(lm.model, job.cell.steers)
    except VectorShapeError as err:
        raise VectorShapeError(
            f"--vector_path {' '.join(split_list(args.vector_path))} with --layer "
            f"{' '.join(split_list(args.layer)) or 20}: {err}; use a vector extracted from "
            f"{args.model} and a layer it has"
        ) from None
    frames = answers_with_resume(
        todo, samples, backend_from_args(args, lm), lm.tokenizer, params, args.seed, model_identity(lm)
    )
    judges = judges_from_args(args, trait=trait, eval_model=lm)
    for job, frame in zip(todo, frames):
        scored = judge_frame(frame, judges, max_concurrent=args.max_concurrent_judges)
        finish_job(job, scored, judged_by, made_with[job.output])
        print(f"\n{job.output} ({len(scored)} rows)" + (f" [{job.cell.name}]" if is_sweep else ""))
        print(summarize(scored, [trait.judge_column, "coherence"]))
    return 0


if __name__ == "__main__":
    run_cli(main)
