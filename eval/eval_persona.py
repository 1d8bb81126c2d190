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
import itertools
from pathlib import Path

from persona.cli import add_model_args, run_cli, setup_logging, split_list
from persona.evaluation import Cell, build_samples, generate_cells, judge_frame, summarize, sweep_filename
from persona.generation import HFBackend, SamplingParams
from persona.io import read_table, write_csv
from persona.judge import add_judge_args, judges_from_args
from persona.models import load_model
from persona.cli import load_steers
from persona.steering import POSITIONS, Steer, check_steers
from persona.traits import load_trait
from persona.vectors import load_vector


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, "--model")
    parser.add_argument("--trait", required=True, help="trait name (e.g. evil, anxious_2) or a trait .json path")
    parser.add_argument("--output_path", help="CSV to write (single evaluation)")
    parser.add_argument("--output_dir", help="folder for sweep CSVs (default: the folder of --output_path)")
    parser.add_argument("--version", choices=["eval", "extract"], default="eval",
                        help="question set: eval (held out) or extract (for vector extraction)")
    parser.add_argument("--persona_instruction_type", choices=["pos", "neg"], default=None,
                        help="ask every question under each of the trait's pos/neg system prompts")
    parser.add_argument("--assistant_name", default=None,
                        help="name in 'You are a/an <name> assistant.' (default: the trait for pos, helpful for neg)")
    parser.add_argument("--n_per_question", type=int, default=10,
                        help="samples per question (temperature 1.0; greedy when 1)")
    parser.add_argument("--max_questions", type=int, default=None,
                        help="use only the first N questions of the trait (quick runs)")
    parser.add_argument("--temperature", type=float, default=None, help="override the sampling temperature")
    parser.add_argument("--max_tokens", type=int, default=1000, help="max new tokens per answer")
    parser.add_argument("--coef", nargs="+", default=None, help="steering coefficient(s)")
    parser.add_argument("--vector_path", nargs="+", default=None, help="persona vector file(s) [L+1, hidden]")
    parser.add_argument("--layer", nargs="+", default=None, help="layer(s): output of decoder block L")
    parser.add_argument("--steering_type", choices=POSITIONS, default="response",
                        help="positions to steer: response (last prompt token + generated), prompt, all")
    parser.add_argument("--sweep", action="store_true", help="evaluate the layer x coef grid of one vector")
    parser.add_argument("--batch_size", type=int, default=16, help="generation batch size")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (per-row, batch-independent)")
    add_judge_args(parser)
    return parser.parse_args(argv)


def _cells(args: argparse.Namespace) -> tuple[list[Cell], list[Path], bool]:
    """The evaluation cells and their output paths; True when this is a sweep."""
    paths = split_list(args.vector_path)
    layers = split_list(args.layer, int)
    coefs = split_list(args.coef, float)
    if not paths:
        if layers or coefs:
            raise ValueError("--layer/--coef need --vector_path")
        return [Cell("unsteered")], [Path(args.output_path)], False
    layers, coefs = layers or [20], coefs or [1.0]
    is_sweep = args.sweep or (len(paths) == 1 and (len(layers) > 1 or len(coefs) > 1))
    if not is_sweep:
        steers = load_steers(paths, layers, coefs, positions=args.steering_type)
        return [Cell("steered", steers)], [Path(args.output_path)], False
    if len(paths) > 1:
        raise ValueError("a sweep takes one --vector_path (several vectors pair with --layer/--coef instead)")
    out_dir = Path(args.output_dir or (Path(args.output_path).parent if args.output_path else "output"))
    vector = load_vector(paths[0])
    cells, outs = [], []
    for layer, coef in itertools.product(layers, coefs):
        name = sweep_filename(args.trait_name, args.steering_type, layer, coef)
        cells.append(Cell(name, [Steer(vector, layer, coef, args.steering_type)]))
        outs.append(out_dir / name)
    return cells, outs, True


def answers_path(out: Path) -> Path:
    """Where generated answers wait for judging, so an interrupted run never regenerates them."""
    return out.with_name(out.stem + ".answers.csv")


def answers_with_resume(cells: list[Cell], outs: list[Path], samples, lm, params: SamplingParams,
                        args: argparse.Namespace) -> list:
    """Generate the cells whose answers are not on disk yet; reuse saved answers of the others."""
    frames: dict[int, object] = {}
    for i, out in enumerate(outs):
        saved = answers_path(out)
        if saved.exists() and not args.overwrite:
            frame = read_table(saved, required=("question", "prompt", "answer", "question_id"))
            if frame["question_id"].tolist() == [s.question_id for s in samples]:
                frame["answer"] = frame["answer"].fillna("")
                frames[i] = frame
                print(f"reusing generated answers from {saved}")
    missing = [i for i in range(len(cells)) if i not in frames]
    if missing:
        new = generate_cells(HFBackend(lm, args.batch_size), lm.tokenizer, samples, [cells[i] for i in missing],
                             params, args.seed)
        for i, frame in zip(missing, new):
            write_csv(answers_path(outs[i]), frame)
            frames[i] = frame
    return [frames[i] for i in range(len(cells))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    trait = load_trait(args.trait, version=args.version)
    args.trait_name = trait.name
    if args.max_questions is not None:
        trait.questions = trait.questions[:args.max_questions]
    if not args.output_path and not args.output_dir:
        raise ValueError("give --output_path (or --output_dir for a sweep)")
    cells, outputs, is_sweep = _cells(args)
    todo = []
    for cell, out in zip(cells, outputs):
        if out.exists() and not args.overwrite:
            print(f"{out} exists, skipping (use --overwrite to recompute)")
        else:
            todo.append((cell, out))
    if not todo:
        return 0

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    for cell in (c for c, _ in todo):  # fail fast on a bad vector or layer, before generating
        check_steers(lm.model, cell.steers)
    samples = build_samples(trait, n_per_question=args.n_per_question,
                            instruction_type=args.persona_instruction_type, assistant_name=args.assistant_name)
    temperature = args.temperature if args.temperature is not None else (0.0 if args.n_per_question == 1 else 1.0)
    params = SamplingParams(max_new_tokens=args.max_tokens, temperature=temperature)
    frames = answers_with_resume([c for c, _ in todo], [o for _, o in todo], samples, lm, params, args)
    judges = judges_from_args(args, trait=trait, eval_model=lm)
    for (cell, out), frame in zip(todo, frames):
        scored = judge_frame(frame, judges, max_concurrent=args.max_concurrent_judges)
        write_csv(out, scored)
        answers_path(out).unlink(missing_ok=True)
        print(f"\n{out} ({len(scored)} rows)" + (f" [{cell.name}]" if is_sweep else ""))
        print(summarize(scored, [trait.judge_column, "coherence"]))
    return 0


if __name__ == "__main__":
    run_cli(main)
