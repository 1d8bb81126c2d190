"""Monitoring experiment: does the last-prompt-token projection forecast the trait of the answers?

    python -m eval.monitor --trait evil --vector_path output/persona_vectors/smollm2-135m/evil_response_avg_diff.pt \\
        --layer 20 [--shots_file dataset/evil/misaligned_2.jsonl --shots 1 2 4 8] [--max_questions 5]

Conditions: no system prompt, the trait's 5 pos and 5 neg system prompts, and (with
--shots_file) k-shot prefixes of its user/assistant examples. Per condition: the mean
projection of the last prompt token (before any answer) and the mean judged trait score of
the answers (generated with --backend: vllm, hf or auto, as eval_persona); Pearson r over
conditions with a bootstrap interval. Writes monitor_samples.csv
(eval columns + condition, prompt_last_proj), monitor_conditions.csv and
monitor_projection_vs_score.png to --output_dir; a rerun with the same settings reads them back.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from persona.cli import (
    add_backend_args,
    add_scoring_args,
    judge_settings,
    judges_from_args,
    require_positive,
    run_cli,
    setup_logging,
    split_list,
)
from persona.fingerprint import check_finished, code_version, file_sha256, model_ref, read_record, record_path
from persona.io import read_table, write_csv, write_json
from persona.layout import Layout
from persona.models import load_model
from persona.monitoring import condition_table, conditions, monitoring_run, projection_score_correlation, shot_examples
from persona.traits import load_trait
from persona.vectors import PersonaVector
from viz.common import save_figure
from viz.plot_screening import interval_columns, scatter_figure


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scoring_args(parser, "trait name (e.g. evil) or a trait .json path")
    parser.add_argument("--vector_path", required=True, help="persona vector .pt ([num_layers+1, hidden])")
    parser.add_argument("--layer", type=int, required=True, help="layer L = output of decoder block L")
    parser.add_argument("--version", choices=["eval", "extract"], default="eval", help="question set (default eval)")
    parser.add_argument("--max_questions", type=int, default=None, help="use only the first N questions")
    parser.add_argument("--shots_file", default=None, help="chat JSONL of trait-eliciting examples (many-shot)")
    parser.add_argument("--shots", nargs="+", default=["1", "2", "4", "8"], help="many-shot k values (default 1 2 4 8)")
    parser.add_argument("--n_per_question", type=int, default=1, help="answers per prompt (greedy when 1)")
    parser.add_argument("--max_tokens", type=int, default=64, help="max new tokens per answer (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--batch_size", type=int, default=16, help="generation and forward-pass batch size")
    parser.add_argument(
        "--output_dir", default=None, help="output folder (default output/monitor/<model>/<trait>_layer<L>)"
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute finished outputs made otherwise")
    add_backend_args(parser)
    args = parser.parse_args(argv)
    require_positive(parser, args, "--max_questions", "--n_per_question", "--max_tokens", "--batch_size")
    args.shots = split_list(args.shots, int, "--shots")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    trait = load_trait(args.trait, version=args.version)
    questions = trait.questions[: args.max_questions]
    vector = PersonaVector.load(args.vector_path)
    shots = shot_examples(args.shots_file) if args.shots_file else []
    plan = conditions(trait, shots=shots, shot_counts=args.shots)
    layout = Layout(args.model)
    out = Path(args.output_dir or Path(layout.root) / "monitor" / layout.name / f"{trait.name}_layer{args.layer}")
    samples_path = out / "monitor_samples.csv"
    settings = {
        "trait": trait.name,
        "version": args.version,
        "questions": questions,
        "conditions": [c.name for c in plan],
        "shots_file": args.shots_file and file_sha256(args.shots_file),
        "vector_sha256": file_sha256(args.vector_path),
        "layer": args.layer,
        "model": model_ref(args.model),
        "n_per_question": args.n_per_question,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
        "judge": dataclasses.asdict(judge_settings(args)),
        "code_version": code_version(),
    }
    if not args.overwrite and check_finished(str(samples_path), read_record(samples_path), settings):
        print(f"{samples_path} is finished with these settings; reading it back")
        samples = read_table(samples_path)
    else:
        lm = load_model(args.model, device=args.device, dtype=args.dtype)
        samples = monitoring_run(
            lm,
            trait,
            vector,
            args.layer,
            judges_from_args(args, trait=trait, eval_model=lm),
            conditions_=plan,
            questions=questions,
            n_per_question=args.n_per_question,
            max_tokens=args.max_tokens,
            seed=args.seed,
            batch_size=args.batch_size,
            max_concurrent=args.max_concurrent_judges,
            backend=args.backend,
            gpu_memory_utilization=args.gpu_memory_utilization,
        )
        write_csv(samples_path, samples)
        write_json(record_path(samples_path), settings)
    table = condition_table(samples, trait.judge_column)
    write_csv(out / "monitor_conditions.csv", table)
    c = projection_score_correlation(table, trait.judge_column)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"Pearson r(last-prompt projection, {trait.judge_column} score) over {len(table)} conditions: {c.text()}")
    fig = scatter_figure(
        table["prompt_last_proj"].tolist(),
        table[trait.judge_column].tolist(),
        table["condition"].tolist(),
        xlabel=f"mean last-prompt-token projection (layer {args.layer})",
        ylabel=f"mean {trait.judge_column} score of the answers",
        title=f"{trait.name}: prompt projection vs trait expression",
        yerr=interval_columns(table, trait.judge_column),
    )
    save_figure(fig, out / "monitor_projection_vs_score.png")
    print(f"wrote {samples_path} and {out / 'monitor_conditions.csv'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
