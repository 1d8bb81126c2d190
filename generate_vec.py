"""Extract persona vectors from paired pos/neg persona evaluations.

    python generate_vec.py --pos_path output/evil_pos.csv --neg_path output/evil_neg.csv \\
        --trait evil --save_dir output/persona_vectors/smollm2-135m

Writes <trait>_{prompt_avg,response_avg,prompt_last}_diff.pt (float32 [num_layers+1, hidden])
and <trait>_vectors.json (what was kept, from which files, with which model, and the judge that
scored the inputs: their <csv>.judge.json sidecars).

--method pca_diff | probe | <registered name> extracts another direction instead of the mean
difference: files <trait>_<kind>_<suffix>.pt (pca, probe) and <trait>_<suffix>_vectors.json.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from persona.cli import (
    add_method_args,
    add_model_args,
    finite_float,
    method_options,
    require_positive,
    run_cli,
    setup_logging,
)
from persona.extraction import extract_and_save
from persona.locks import output_lock
from persona.models import load_model
from persona.preflight import check_output_path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, "--model_name")
    parser.add_argument("--pos_path", required=True, help="eval_persona CSV run with --persona_instruction_type pos")
    parser.add_argument("--neg_path", required=True, help="eval_persona CSV run with --persona_instruction_type neg")
    parser.add_argument(
        "--trait", required=True, help="trait name; variants (anxious_2) use the base trait's score column"
    )
    parser.add_argument("--save_dir", required=True, help="folder for the vector files")
    parser.add_argument(
        "--threshold",
        type=finite_float,
        default=50,
        help="keep pairs with pos score >= T and neg score < 100-T (default 50)",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="forward-pass batch size")
    add_method_args(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute vectors that exist (needed when they were made with other settings)",
    )
    args = parser.parse_args(argv)
    require_positive(parser, args, "--batch_size")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_output_path(args.save_dir, folder=True)  # before any work: a bad folder fails in a second
    with output_lock(Path(args.save_dir) / f"{args.trait}_vectors.json"):  # one writer per trait and folder
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    setup_logging()
    method, options = method_options(args)
    result = extract_and_save(
        args.pos_path,
        args.neg_path,
        args.trait,
        args.save_dir,
        model=args.model_name,
        load=lambda: load_model(args.model_name, device=args.device, dtype=args.dtype),
        threshold=args.threshold,
        method=method,
        options=options,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    if result.skipped:
        print(
            f"{args.save_dir}: the {args.trait} {method} vectors exist with these settings, skipping "
            "(use --overwrite to recompute)"
        )
        return 0
    pairs = result.pairs
    counts = ", ".join(f"{name}: {n}/{pairs.total}" for name, n in pairs.condition_counts.items())
    print(f"{args.trait}: kept {pairs.kept}/{pairs.total} pairs ({counts})")
    for path in result.paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
