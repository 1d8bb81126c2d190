"""analyze_vector_geometry on the real Qwen3-4B persona vectors (skipped when ../shared is absent)."""

from __future__ import annotations

import matplotlib.image as mpimg
import pytest
import torch

from viz import analyze_vector_geometry

TRAITS = ["apathetic", "evil", "hallucinating", "humorous", "impolite", "optimistic", "sycophantic"]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / a.norm() / b.norm())


def test_geometry_on_qwen3_4b_vectors(shared_dir, tmp_path, capsys):
    folder = shared_dir / "reference" / "qwen3_4b_vectors"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    vectors = {t: torch.load(folder / f"{t}_response_avg_diff.pt", weights_only=True) for t in TRAITS}
    out = tmp_path / "figs"
    assert (
        analyze_vector_geometry.main(
            [
                "--vector_dir",
                str(folder),
                "--layer",
                "20",
                "--output_dir",
                str(out),
                "--orthogonal",
                "evil",
                "hallucinating",
                "optimistic",
                "--antonym",
                "evil:optimistic",
                "optimistic:pessimistic",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"7 vectors (37, 2560) from {folder}" in printed
    matrix = printed.split("cosine similarity at layer 20:\n")[1].split("\n\n")[0].splitlines()
    assert matrix[0].split() == TRAITS
    for line in matrix[1:]:
        name, *values = line.split()
        assert [float(v) for v in values] == pytest.approx(
            [_cos(vectors[name][20], vectors[t][20]) for t in TRAITS], abs=5e-4
        )
    norms = printed.split("L2 norms by layer:\n")[1].split("\n\n")[0].splitlines()
    row20 = next(line.split() for line in norms if line.split()[0] == "20")
    assert [float(v) for v in row20[1:]] == pytest.approx([float(vectors[t][20].norm()) for t in TRAITS], abs=6e-3)
    pairs = [("evil", "hallucinating"), ("evil", "optimistic"), ("hallucinating", "optimistic")]
    for a, b in pairs:
        assert f"cos({a}, {b}) = {_cos(vectors[a][20], vectors[b][20]):+.3f}" in printed
    worst = max(abs(_cos(vectors[a][20], vectors[b][20])) for a, b in pairs)
    assert f"max |cos| = {worst:.3f}" in printed
    anti = _cos(vectors["evil"][20], vectors["optimistic"][20])
    verdict = "roughly opposite" if anti < -0.5 else "NOT opposite"
    assert f"cos(evil, optimistic) = {anti:+.3f} -> {verdict}" in printed
    assert "antonyms: not checked, no vector for ['pessimistic']" in printed
    for name in (  # the original study's names
        "similarity_heatmap_layer20.png",
        "similarity_across_layers.png",
        "geometry_norms.png",
        "pca_layer20.png",
    ):
        image = mpimg.imread(out / name)
        assert image[..., :3].std() > 0.01
