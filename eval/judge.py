"""Score, or re-score with another judge, the answers of an existing CSV.

    python -m eval.judge --file_path output/eval_persona_eval/smollm2-135m/evil_baseline.csv --trait evil \\
        --judge_model gpt-4.1-mini-2025-04-14 --output_path output/evil_baseline.gpt.csv

For comparing judges on the same answers: the trait column and `coherence` are (re)computed
for every row and written to --output_path (default: the input file, in place), with a
`<csv>.judge.json` sidecar naming the judge. Every judgment goes through the judge cache, so
an interrupted run, rerun, resumes where it stopped. The likelihood proxy judge scores with
the model that wrote the answers: give it as --model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from persona.cli import add_scoring_args, judge_settings, judges_from_args, require_positive, run_cli, setup_logging
from persona.evaluation import judge_frame, summarize
from persona.io import read_table, write_csv
from persona.judge.factory import LIKELIHOOD
from persona.judge.sidecar import judge_record, write_sidecar
from persona.models import load_model
from persona.preflight import check_output_path
from persona.traits import load_trait


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file_path", required=True, help="CSV with question and answer columns (eval_persona output)")
    parser.add_argument("--output_path", default=None, help="where to write the scored CSV (default: --file_path)")
    add_scoring_args(parser, "trait name (e.g. evil, anxious_2) or a trait .json path")
    args = parser.parse_args(argv)
    require_positive(parser, args, "--max_concurrent_judges")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_output_path(args.output_path or args.file_path)
    setup_logging()
    trait = load_trait(args.trait)
    frame = read_table(args.file_path, required=("question", "answer"))
    frame["answer"] = frame["answer"].fillna("")
    record = judge_record(judge_settings(args), trait=trait)  # resolves (and announces) the judge before any work
    eval_model = None
    if record["judge"] == LIKELIHOOD:  # the proxy scores with the answering model itself
        eval_model = load_model(args.model, device=args.device, dtype=args.dtype)
    judges = judges_from_args(args, trait=trait, eval_model=eval_model)
    scored = judge_frame(frame, judges, max_concurrent=args.max_concurrent_judges)
    out = args.output_path or args.file_path
    write_csv(out, scored)
    write_sidecar(out, record)
    print(f"\n{out} ({len(scored)} rows, judge {record['judge']})")
    print(summarize(scored, list(judges)))
    return 0


if __name__ == "__main__":
    run_cli(main)
