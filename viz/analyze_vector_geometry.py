"""Geometry of a folder of persona vectors: cosines, their evolution over layers, norms, PCA, two claims.

    python viz/analyze_vector_geometry.py --vector_dir output/persona_vectors/<model> --layer 20 \\
        [--output_dir figs/vector_geometry] [--vector_type response_avg_diff] [--all_layers] \\
        [--orthogonal evil humorous optimistic] [--antonym optimistic:pessimistic]

Traits come from the file names `{trait}_{vector_type}.pt`. Writes the original study's files:
`similarity_heatmap_layer{L}.png`, `pca_layer{L}.png`, `similarity_across_layers.png` (each pair
across layers), `hypothesis_tests_layer{L}.csv` (the two claims), `similarities_all_layers.csv`
(one `{a}_vs_{b}` column per pair, one row per layer); with `--all_layers` also the cosines averaged
over all layers: `average_similarities_all_layers.csv`, `hypothesis_tests_average_all_layers.csv`,
`similarity_heatmap_average_all_layers.png`. Plus `geometry_norms.png`. `--project_names` writes
the project's earlier PNG names instead (`geometry_cosine_layer{L}.png`, `geometry_cosine_by_layer.png`,
`geometry_pca_layer{L}.png`; default folder `figs`). Prints the matrix and the norms; checks
whether the `--orthogonal` traits are near-orthogonal (every |cos| < --orthogonal_threshold) and
whether each `--antonym A:B` pair points roughly opposite (cos < --antonym_threshold).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from persona.analysis.figures import lines_figure, similarity_figure
from persona.analysis.geometry import (
    average_cosine_table,
    check_antonyms,
    check_orthogonal,
    cosine_by_layer,
    cosine_table,
    hypothesis_table,
    layer_rows,
    norms_by_layer,
    pca_2d,
)
from persona.analysis.results import load_vectors, vector_files
from persona.cli import add_vector_folder_args, finite_float, run_cli, setup_logging, split_list
from persona.io import write_csv
from viz.common import panel_grid, save_figure


def pca_figure(vectors: Mapping[str, torch.Tensor], layer: int) -> Figure:
    """The vectors' rows at `layer` on their first two principal components."""
    coords, ratio = pca_2d(layer_rows(vectors, layer))
    fig, (ax,) = panel_grid(1, size=(5.5, 4.5))
    ax.scatter(coords[:, 0], coords[:, 1], s=30)
    for (x, y), name in zip(coords, vectors, strict=True):
        ax.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
    ax.set(
        title=f"PCA of persona vectors, layer {layer}",
        xlabel=f"PC1 ({ratio[0]:.0%} of variance)",
        ylabel=f"PC2 ({ratio[1]:.0%} of variance)",
    )
    fig.tight_layout()
    return fig


ORIGINAL_NAMES = {
    "heatmap": "similarity_heatmap_layer{layer}.png",
    "pca": "pca_layer{layer}.png",
    "by_layer": "similarity_across_layers.png",
}
PROJECT_NAMES = {
    "heatmap": "geometry_cosine_layer{layer}.png",
    "pca": "geometry_pca_layer{layer}.png",
    "by_layer": "geometry_cosine_by_layer.png",
}


def geometry_figures(
    vectors: Mapping[str, torch.Tensor], layer: int, names: Mapping[str, str] = ORIGINAL_NAMES
) -> dict[str, Figure]:
    """Every geometry figure, by file name (the original study's `names`, or `PROJECT_NAMES`)."""
    figures = {
        names["heatmap"].format(layer=layer): similarity_figure(
            cosine_table(vectors, layer), f"Persona Vector Cosine Similarities (Layer {layer})"
        ),
        "geometry_norms.png": lines_figure(norms_by_layer(vectors), "vector norm by layer", "L2 norm"),
        names["pca"].format(layer=layer): pca_figure(vectors, layer),
    }
    if len(vectors) > 1:
        figures[names["by_layer"]] = lines_figure(
            cosine_by_layer(vectors), "Persona Vector Similarities Across Layers", "cosine similarity"
        )
    return figures


def antonym_pairs(antonyms: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for pair in antonyms:
        a, sep, b = pair.partition(":")
        if not sep:
            raise ValueError(f"--antonym {pair!r}: write it as TRAIT:ANTONYM, e.g. optimistic:pessimistic")
        pairs.append((a, b))
    return pairs


def write_tables(
    vectors: Mapping[str, torch.Tensor], layer: int, output_dir: Path, *, all_layers: bool, **claims
) -> list[Path]:
    """The original study's CSVs (and, with `all_layers`, its average heatmap); returns the paths written."""
    written = [output_dir / f"hypothesis_tests_layer{layer}.csv", output_dir / "similarities_all_layers.csv"]
    write_csv(written[0], hypothesis_table(cosine_table(vectors, layer), **claims))
    by_layer = cosine_by_layer(vectors)
    by_layer.columns = [c.replace(" vs ", "_vs_") for c in by_layer.columns]
    write_csv(written[1], by_layer.reset_index(drop=True))
    if all_layers:
        average = average_cosine_table(vectors)
        print(f"\naverage cosine similarity over all {next(iter(vectors.values())).shape[0]} rows:")
        print(average.round(3).to_string())
        written += [
            output_dir / "average_similarities_all_layers.csv",
            output_dir / "hypothesis_tests_average_all_layers.csv",
        ]
        write_csv(written[-2], average.rename_axis("").reset_index())  # trait names as the first column
        write_csv(written[-1], hypothesis_table(average, **claims))
        save_figure(
            similarity_figure(average, "Persona Vector Cosine Similarities (Layer average)"),
            output_dir / "similarity_heatmap_average_all_layers.png",
        )
    for path in written:
        print(f"wrote {path}")
    return written


def report_claims(
    cos: pd.DataFrame,
    orthogonal: Sequence[str],
    antonyms: Sequence[str],
    *,
    orthogonal_threshold: float,
    antonym_threshold: float,
) -> list[str]:
    """The two claims as printable lines; a claim whose traits have no vector says so."""
    lines = []
    missing = [t for t in orthogonal if t not in cos.index]
    if len(orthogonal) >= 2 and not missing:
        lines.append("orthogonality: " + str(check_orthogonal(cos, orthogonal, orthogonal_threshold)))
    elif orthogonal:
        lines.append(f"orthogonality: not checked, no vector for {missing or orthogonal}")
    for a, b in antonym_pairs(antonyms):
        absent = [t for t in (a, b) if t not in cos.index]
        lines.append(
            f"antonyms: not checked, no vector for {absent}"
            if absent
            else "antonyms: " + str(check_antonyms(cos, a, b, antonym_threshold))
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_vector_folder_args(parser, Path("output/persona_vectors/smollm2-135m"), "output/persona_vectors/smollm2-135m")
    parser.add_argument("--layer", type=int, default=20, help="layer of the heatmap and PCA (hidden_states[L])")
    parser.add_argument(
        "--output_dir",
        type=Path,
        default=None,
        help="where the files go (default figs/vector_geometry, the original's)",
    )
    parser.add_argument("--all_layers", action="store_true", help="also the cosines averaged over all layers")
    parser.add_argument(
        "--project_names", action="store_true", help="the project's earlier PNG names (default folder figs)"
    )
    parser.add_argument(
        "--orthogonal",
        nargs="*",
        default=["evil", "humorous", "optimistic"],
        help="traits expected to be near-orthogonal (default: evil humorous optimistic)",
    )
    parser.add_argument(
        "--orthogonal_threshold", type=finite_float, default=0.3, help="near-orthogonal: every |cos| below"
    )
    parser.add_argument(
        "--antonym",
        nargs="*",
        default=["optimistic:pessimistic"],
        help="TRAIT:ANTONYM pairs expected to point roughly opposite",
    )
    parser.add_argument("--antonym_threshold", type=finite_float, default=-0.5, help="roughly opposite: cos below")
    args = parser.parse_args(argv)
    setup_logging()
    vectors = load_vectors(vector_files(args.vector_dir, args.vector_type))
    cos = cosine_table(vectors, args.layer)
    print(f"{len(vectors)} vectors {tuple(next(iter(vectors.values())).shape)} from {args.vector_dir}")
    print(f"\ncosine similarity at layer {args.layer}:\n{cos.round(3).to_string()}")
    norms = norms_by_layer(vectors)
    print(f"\nL2 norms by layer:\n{norms.round(2).to_string()}\n")
    for line in report_claims(
        cos,
        split_list(args.orthogonal),
        split_list(args.antonym),
        orthogonal_threshold=args.orthogonal_threshold,
        antonym_threshold=args.antonym_threshold,
    ):
        print(line)
    names = PROJECT_NAMES if args.project_names else ORIGINAL_NAMES
    output_dir = args.output_dir or Path("figs" if args.project_names else "figs/vector_geometry")
    for name, fig in geometry_figures(vectors, args.layer, names).items():
        save_figure(fig, output_dir / name)
    write_tables(
        vectors,
        args.layer,
        output_dir,
        all_layers=args.all_layers,
        orthogonal=split_list(args.orthogonal),
        antonyms=antonym_pairs(split_list(args.antonym)),
        orthogonal_threshold=args.orthogonal_threshold,
        antonym_threshold=args.antonym_threshold,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
