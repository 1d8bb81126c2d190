"""Split checkpoint files projected onto a trait's variant vectors into one run folder per variant.

    python viz/split_confident_csvs.py output/confident_projection_eval output
    python viz/split_confident_csvs.py output/evil_projection_eval output --trait evil --variants evil evil_2

Reads `INPUT_DIR/checkpoint-{N}_{trait}.csv` (with the columns of `scripts/eval_projection_variants.sh`)
and writes `OUTPUT_BASE_DIR/{variant}_projection_eval/checkpoint-{N}_{variant}.csv`: the answers,
the variant's score and coherence, its `proj` column and its finetuning-shift column, so
`viz/plot_projection_eval.py OUTPUT_BASE_DIR/confident_2_projection_eval` plots one variant. As
the original study's script (trait `confident` by default); a variant without its own score
column gets the trait's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from persona.analysis.variant_files import split_variant_files
from persona.cli import run_cli, setup_logging
from persona.projection import PROJECTION_TYPES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_dir", type=Path, help="folder of checkpoint-{N}_{trait}.csv files")
    parser.add_argument("output_base_dir", type=Path, help="where the {variant}_projection_eval/ folders go")
    parser.add_argument("--trait", default="confident", help="the trait whose variants to split (default confident)")
    parser.add_argument("--variants", nargs="+", default=None, help="variants to split (default: every one present)")
    parser.add_argument("--layer", type=int, default=None, help="layer of the columns (default: the one present)")
    parser.add_argument("--shift_type", choices=list(PROJECTION_TYPES), default="prompt_last_proj")
    args = parser.parse_args(argv)
    setup_logging()
    written = split_variant_files(
        args.input_dir,
        args.output_base_dir,
        args.trait,
        variants=args.variants,
        layer=args.layer,
        shift_type=args.shift_type,
    )
    if not written:
        raise ValueError(
            f"{args.input_dir}: no checkpoint-{{N}}_{args.trait}.csv file has the projection and shift columns "
            "of a variant (make them with scripts/eval_projection_variants.sh)"
        )
    for folder in sorted({p.parent for p in written}):
        print(f"wrote {sum(p.parent == folder for p in written)} file(s) to {folder}")
    return 0


if __name__ == "__main__":
    run_cli(main)
