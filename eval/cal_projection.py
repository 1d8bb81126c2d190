"""Add projections onto persona vectors as columns of an eval CSV (or chat JSONL), in place.

    python -m eval.cal_projection --file_path output/evil.csv \\
        --vector_path_list output/persona_vectors/m/evil_response_avg_diff.pt --layer_list 20 \\
        --projection_type proj

Lists take separate arguments or one quoted string: --layer_list 16 20 or --layer_list "16 20".
Columns: {model folder name}_{vector file stem}_{type}_layer{L}, as the original code names them
(checkpoint-250_evil_response_avg_diff_proj_layer20 for a checkpoint); with --base_model the
projection of (model - base) activations, column suffix _finetuning_shift.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from persona.cli import add_model_args, layer_arg, run_cli, setup_logging, split_list
from persona.layer_choice import resolve_layer_list
from persona.models import load_model
from persona.projection import PROJECTION_TYPES, add_projection_columns


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--file_path",
        required=True,
        help="CSV with prompt and answer columns (eval_persona output) or JSONL with messages",
    )
    parser.add_argument("--vector_path_list", nargs="+", required=True, help="persona vector file(s)")
    parser.add_argument(
        "--layer_list",
        nargs="+",
        required=True,
        help="layer(s): L = output of decoder block L, or auto (each vector's best held-out layer)",
    )
    parser.add_argument(
        "--projection_type",
        nargs="+",
        default=["proj"],
        help=f"one or more of {', '.join(PROJECTION_TYPES)} (default proj)",
    )
    add_model_args(parser, "--model_name")
    parser.add_argument(
        "--base_model", default=None, help="also project (model - base_model) activations: the finetuning shift"
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute columns that already exist")
    parser.add_argument("--batch_size", type=int, default=16, help="forward-pass batch size")
    args = parser.parse_args(argv)
    try:
        args.vector_path_list = split_list(args.vector_path_list)
        args.layer_list = split_list(args.layer_list, layer_arg, "--layer_list")  # main resolves auto
        args.projection_type = split_list(args.projection_type)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    bad = [t for t in args.projection_type if t not in PROJECTION_TYPES]
    if bad:
        parser.error(f"--projection_type {bad}: choose from {list(PROJECTION_TYPES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    layers, _ = resolve_layer_list(
        args.layer_list, args.vector_path_list, pair=False, load=lambda: load_model(args.model_name)
    )  # auto
    args.layer_list = split_list(layers, int, "--layer_list")
    written = add_projection_columns(
        args.file_path,
        args.vector_path_list,
        args.layer_list,
        args.projection_type,
        model_name=args.model_name,
        base_model=args.base_model,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
    )
    if written:
        print(f"{args.file_path}: wrote {len(written)} column(s): {', '.join(written)}")
    else:
        print(f"{args.file_path}: all columns exist (pass --overwrite to recompute)")
    return 0


if __name__ == "__main__":
    run_cli(main)
