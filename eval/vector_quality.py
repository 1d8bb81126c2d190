"""How well each extraction method's vectors separate held-out pos from neg answers, by layer.

    python -m eval.vector_quality --trait evil --vector_dir output/persona_vectors/smollm2-135m \\
        [--methods mean_diff pca_diff probe] [--layers 5 10 15] \\
        [--pos_path evil_pos_eval.csv --neg_path evil_neg_eval.csv]

The held-out answers are eval_persona's pos and neg runs on the eval questions (--version eval),
which extraction never saw; by default {trait}_{pos,neg}_eval.csv beside the extraction CSVs
the vectors' metadata names. Writes (merging with other traits and methods) vector_quality.csv
(AUROC with a 95% bootstrap interval, Cohen's d, cosine to mean_diff, per method, kind and
layer) and {trait}_vector_quality.png (AUROC by layer, one line per method).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from persona.cli import add_model_args, run_cli, setup_logging, split_list
from persona.layer_choice import default_heldout
from persona.models import load_model
from persona.vector_quality import QUALITY_FILE, find_vectors, vector_quality
from viz.common import save_figure
from viz.plot_vector_quality import auroc_by_layer_figure


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, "--model")
    parser.add_argument("--trait", required=True, help="the trait whose vectors to measure")
    parser.add_argument("--vector_dir", type=Path, required=True, help="folder of the trait's vector files")
    parser.add_argument("--methods", nargs="+", default=None, help="methods to measure (default: all found)")
    parser.add_argument("--layers", nargs="+", default=None, help="layers to measure (default: all)")
    parser.add_argument("--pos_path", default=None, help="held-out pos answers (eval_persona --version eval)")
    parser.add_argument("--neg_path", default=None, help="held-out neg answers (same questions and samples)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="keep only pairs extraction would keep (default: all answers)"
    )
    parser.add_argument("--n_boot", type=int, default=1000, help="bootstrap resamples for the AUROC interval")
    parser.add_argument("--batch_size", type=int, default=16, help="forward-pass batch size")
    parser.add_argument("--output", type=Path, default=None, help=f"CSV (default: <vector_dir>/{QUALITY_FILE})")
    parser.add_argument("--method_module", default=None, help="a module to import that registers more methods")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.method_module:
        import importlib

        importlib.import_module(args.method_module)
    methods = split_list(args.methods) or None
    if (args.pos_path is None) != (args.neg_path is None):
        raise ValueError("give both --pos_path and --neg_path (or neither, for the default held-out files)")
    if args.pos_path is None:
        first = next(iter(find_vectors(args.vector_dir, args.trait, methods).values()))
        args.pos_path, args.neg_path = default_heldout(first, args.trait)
    output = args.output or args.vector_dir / QUALITY_FILE
    table = vector_quality(
        args.trait,
        args.vector_dir,
        args.pos_path,
        args.neg_path,
        load=lambda: load_model(args.model, device=args.device, dtype=args.dtype),
        methods=methods,
        layers=split_list(args.layers, int, "--layers") or None,
        threshold=args.threshold,
        batch_size=args.batch_size,
        n_boot=args.n_boot,
        output=output,
    )
    mine = table[table["trait"] == args.trait]
    print(f"wrote {output} ({len(mine)} rows for {args.trait})")
    best = mine.sort_values("auroc", ascending=False).groupby(["method", "kind"], sort=False).head(1)
    print(
        best[["method", "kind", "layer", "auroc", "auroc_low", "auroc_high", "cohens_d", "cos_mean_diff"]].to_string(
            index=False
        )
    )
    save_figure(auroc_by_layer_figure(table, args.trait), output.parent / f"{args.trait}_vector_quality.png")
    return 0


if __name__ == "__main__":
    run_cli(main)
