"""How well each extraction method's vectors separate held-out pos from neg answers, by layer.

    python -m eval.vector_quality --trait evil --vector_dir output/persona_vectors/smollm2-135m \\
        [--methods mean_diff pca_diff probe] [--layers 5 10 15] \\
        [--pos_path evil_pos_eval.csv --neg_path evil_neg_eval.csv]

The held-out answers are eval_persona's pos and neg runs on the eval questions (--version eval),
which extraction never saw; by default {trait}_{pos,neg}_eval.csv beside the extraction CSVs
the vectors' metadata names. Writes (merging with other traits and methods) vector_quality.csv
(AUROC with a 95% bootstrap interval, Cohen's d, cosine to mean_diff, per method, kind and
layer) and {trait}_vector_quality.png (AUROC by layer, one line per method).

--steer then runs a small steering sweep per method: its response_avg vector at its
--steer_layers best held-out layers (never row 0, the embeddings) x --steer_coefs, plus an
unsteered baseline, on the eval questions (--max_questions, --n_per_question, --max_tokens),
judged as eval_persona judges. It writes the cells under <output folder>/steer/ and
vector_quality_steer.csv: per cell the trait mean and its paired delta against the baseline,
each with a 95% question-clustered interval, the coherence, whether it clears the coherence
floor (80), and per method the best cell that does.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from persona.analysis.selection import COHERENCE_FLOOR
from persona.cli import (
    add_backend_args,
    add_judge_args,
    add_model_args,
    eval_spec_from_args,
    finite_float,
    require_positive,
    run_cli,
    setup_logging,
    split_list,
)
from persona.layer_choice import default_heldout
from persona.models import LoadedModel, load_model
from persona.steering import POSITIONS
from persona.vector_quality import QUALITY_FILE, find_vectors, vector_quality
from persona.vector_steering import DEFAULT_COEFS, STEER_FILE, steering_check
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
    steer = parser.add_argument_group("steering check (--steer)")
    steer.add_argument("--steer", action="store_true", help="also steer with each method's vector at its best layers")
    steer.add_argument(
        "--steer_coefs",
        nargs="+",
        default=[str(c) for c in DEFAULT_COEFS],
        help=f"coefficients per layer (default {' '.join(map(str, DEFAULT_COEFS))})",
    )
    steer.add_argument("--steer_layers", type=int, default=1, help="best held-out layers per method (default 1)")
    steer.add_argument("--steering_type", choices=POSITIONS, default="response", help="positions to steer")
    steer.add_argument("--max_questions", type=int, default=5, help="eval questions to ask (default 5)")
    steer.add_argument("--n_per_question", type=int, default=1, help="samples per question (default 1: greedy)")
    steer.add_argument("--max_tokens", type=int, default=64, help="max new tokens per answer (default 64)")
    steer.add_argument("--temperature", type=finite_float, default=None, help="override the sampling temperature")
    steer.add_argument("--seed", type=int, default=0, help="sampling seed")
    steer.add_argument("--overwrite", action="store_true", help="re-evaluate steering cells that exist")
    add_backend_args(parser)
    add_judge_args(parser)
    args = parser.parse_args(argv)
    require_positive(parser, args, "--steer_layers", "--max_questions", "--n_per_question", "--max_tokens")
    return args


def steer(args: argparse.Namespace, table: pd.DataFrame, output: Path, load: Callable[[], LoadedModel]) -> None:
    """--steer: the sweep per method at its best layers, and the printed effect at the coherence floor."""
    found = find_vectors(args.vector_dir, args.trait, split_list(args.methods) or None)
    vectors = {key.split("/")[0]: path for key, path in found.items() if key.endswith("/response_avg")}
    eval_args = argparse.Namespace(**vars(args), version="eval", persona_instruction_type=None, assistant_name=None)
    rows = steering_check(
        eval_spec_from_args(eval_args),
        vectors,
        table[table["trait"] == args.trait],
        output.parent,
        coefs=split_list(args.steer_coefs, finite_float, "--steer_coefs"),
        top=args.steer_layers,
        positions=args.steering_type,
        lm=load(),
        overwrite=args.overwrite,
    )
    floor = f"coherence >= {COHERENCE_FLOOR:g}"
    print(f"\nwrote {output.parent / STEER_FILE}; steering effect at {floor} (best cell per method, chosen here):")
    base = rows[rows["method"] == "baseline"].iloc[0]
    print(f"  baseline: {base['trait_score']:.1f} [{base['trait_ci_low']:.1f}, {base['trait_ci_high']:.1f}]")
    for method, cells in rows[rows["method"] != "baseline"].groupby("method", sort=False):
        best = cells[cells["best"]]
        if best.empty:
            print(f"  {method}: no cell kept mean {floor} ({len(cells)} cells), so no steering effect")
            continue
        b = best.iloc[0]
        print(
            f"  {method}: layer {int(b['layer'])} coef {b['coef']:g}: {b['trait_score']:.1f} "
            f"[{b['trait_ci_low']:.1f}, {b['trait_ci_high']:.1f}], delta {b['delta']:+.1f} "
            f"[{b['delta_ci_low']:+.1f}, {b['delta_ci_high']:+.1f}], coherence {b['coherence']:.1f}"
        )


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
    load = functools.cache(lambda: load_model(args.model, device=args.device, dtype=args.dtype))  # one model for both
    table = vector_quality(
        args.trait,
        args.vector_dir,
        args.pos_path,
        args.neg_path,
        load=load,
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
    if args.steer:
        steer(args, table, output, load)
    return 0


if __name__ == "__main__":
    run_cli(main)
