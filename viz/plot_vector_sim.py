"""Cosine similarity of a trait's persona vector and its variants (`anxious`, `anxious_2`, ...) at one layer.

    python viz/plot_vector_sim.py --trait anxious --layer 20 [--base-dir output/persona_vectors/<model>] \\
        [--output_dir figs]

Reads `{trait}_{vector_type}.pt` and `{trait}_N_{vector_type}.pt`; writes `vector_sim_{trait}.png`
and prints the matrix. From Python: `plot_vector_similarity("anxious", layer=20, output_dir="figs/")`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from persona.analysis.figures import similarity_figure
from persona.analysis.geometry import cosine_table
from persona.analysis.results import load_vectors, variant_names, vector_files
from persona.cli import run_cli, setup_logging
from persona.layout import Layout
from viz.common import save_figure


def variant_similarity(
    trait: str, layer: int, base_dir: str | Path, vector_type: str = "response_avg_diff"
) -> pd.DataFrame:
    """The cosine matrix of `trait` and its variants found in `base_dir`."""
    files = vector_files(base_dir, vector_type)
    names = variant_names(trait, list(files))
    if not names:
        raise FileNotFoundError(
            f"{base_dir}: no files matching {trait}_{vector_type}.pt or "
            f"{trait}_N_{vector_type}.pt (found vectors for {sorted(files)})"
        )
    return cosine_table(load_vectors({n: files[n] for n in names}), layer)


def plot_vector_similarity(
    trait: str,
    layer: int = 20,
    output_dir: str | Path = "figs",
    base_dir: str | Path | None = None,
    vector_type: str = "response_avg_diff",
    model: str = "smollm2-135m",
) -> pd.DataFrame:
    """The original study's entry point: compute, print, save `vector_sim_{trait}.png`; returns the matrix."""
    base_dir = base_dir or Layout(model).vectors_dir
    cos = variant_similarity(trait, layer, base_dir, vector_type)
    print(f"cosine similarity at layer {layer} ({vector_type}):\n{cos.round(3).to_string()}")
    fig = similarity_figure(cos, f"{trait} variants, layer {layer}")
    save_figure(fig, Path(output_dir) / f"vector_sim_{trait}.png")
    return cos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trait", required=True, help="base trait; its variants trait_2, trait_3, ... are included")
    parser.add_argument("--layer", type=int, default=20, help="vector row (layer convention: hidden_states[L])")
    parser.add_argument("--model", default="smollm2-135m", help="model whose vectors to compare (default --base-dir)")
    parser.add_argument(
        "--base-dir",
        "--base_dir",
        dest="base_dir",
        type=Path,
        default=None,
        help="folder of vector files (default: output/persona_vectors/<model>)",
    )
    parser.add_argument(
        "--vector_type",
        default="response_avg_diff",
        help="file suffix: response_avg_diff, prompt_avg_diff or prompt_last_diff",
    )
    parser.add_argument("--output_dir", type=Path, default=Path("figs"), help="where the PNG goes")
    args = parser.parse_args(argv)
    setup_logging()
    plot_vector_similarity(args.trait, args.layer, args.output_dir, args.base_dir, args.vector_type, args.model)
    return 0


if __name__ == "__main__":
    run_cli(main)
