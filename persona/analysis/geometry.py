"""Geometry of persona vectors: cosines at a layer and across layers, norms, PCA, two claims.

The claims researchers check: a few chosen traits are near-orthogonal, and a trait points
roughly opposite its antonym (optimistic vs pessimistic). Vectors are `[num_layers+1, hidden]`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from persona.analysis.stats import cosine_matrix


def check_same_shape(vectors: Mapping[str, torch.Tensor]) -> None:
    """Refuse vectors of different shapes (different models or layers), naming both."""
    items = list(vectors.items())
    if not items:
        raise ValueError("no vectors given")
    first_name, first = items[0]
    for name, vector in items[1:]:
        if vector.shape != first.shape:
            raise ValueError(
                f"vectors differ in shape: {first_name} is {tuple(first.shape)} but {name} is "
                f"{tuple(vector.shape)}; compare vectors of one model (same layers and hidden size)"
            )


def layer_rows(vectors: Mapping[str, torch.Tensor], layer: int) -> torch.Tensor:
    """Row `layer` of every vector, stacked `[n, hidden]` (1-D vectors are used as they are)."""
    check_same_shape(vectors)
    first = next(iter(vectors.values()))
    if first.dim() == 1:
        return torch.stack(list(vectors.values()))
    if not 0 <= layer < first.shape[0]:
        raise ValueError(f"layer {layer} is out of range: the vectors have rows 0..{first.shape[0] - 1}")
    return torch.stack([v[layer] for v in vectors.values()])


def cosine_table(vectors: Mapping[str, torch.Tensor], layer: int) -> pd.DataFrame:
    """The cosine-similarity matrix at `layer`, labelled by vector name."""
    names = list(vectors)
    return pd.DataFrame(cosine_matrix(layer_rows(vectors, layer)), index=names, columns=names)


def cosine_by_layer(vectors: Mapping[str, torch.Tensor]) -> pd.DataFrame:
    """Each pair's cosine at every layer: index = layer, one column `a vs b` per pair."""
    check_same_shape(vectors)
    n_layers = next(iter(vectors.values())).shape[0]
    columns = {}
    for a, b in itertools.combinations(vectors, 2):
        va, vb = vectors[a].double(), vectors[b].double()
        columns[f"{a} vs {b}"] = torch.nn.functional.cosine_similarity(va, vb, dim=1).numpy()
    return pd.DataFrame(columns, index=pd.RangeIndex(n_layers, name="layer"))


def norms_by_layer(vectors: Mapping[str, torch.Tensor]) -> pd.DataFrame:
    """The L2 norm of every vector at every layer: index = layer, one column per vector."""
    check_same_shape(vectors)
    n_layers = next(iter(vectors.values())).shape[0]
    return pd.DataFrame(
        {name: v.double().norm(dim=1).numpy() for name, v in vectors.items()},
        index=pd.RangeIndex(n_layers, name="layer"),
    )


def pca_2d(rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of the rows `[n, d]` on the first two principal components, and their variance shares."""
    x = rows.detach().to(torch.float64).numpy()
    centered = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    coords = np.zeros((len(x), 2))
    k = min(2, len(s))
    coords[:, :k] = u[:, :k] * s[:k]
    total = (s**2).sum()
    ratio = np.zeros(2)
    if total > 0:
        ratio[:k] = s[:k] ** 2 / total
    return coords, ratio


@dataclass
class OrthogonalityCheck:
    """Are the chosen traits near-orthogonal (every pairwise |cos| below the threshold)?"""

    traits: list[str]
    cosines: dict[str, float]
    threshold: float

    @property
    def max_abs(self) -> float:
        return max(abs(c) for c in self.cosines.values())

    @property
    def holds(self) -> bool:
        return self.max_abs < self.threshold

    def __str__(self) -> str:
        pairs = ", ".join(f"cos({p}) = {c:+.3f}" for p, c in self.cosines.items())
        verdict = "near-orthogonal" if self.holds else "NOT near-orthogonal"
        return (
            f"{', '.join(self.traits)}: {pairs}; max |cos| = {self.max_abs:.3f} -> {verdict} (|cos| < {self.threshold})"
        )


@dataclass
class AntonymCheck:
    """Does a trait point roughly opposite its antonym (cosine below a negative threshold)?"""

    trait: str
    antonym: str
    cosine: float
    threshold: float

    @property
    def holds(self) -> bool:
        return self.cosine < self.threshold

    def __str__(self) -> str:
        verdict = "roughly opposite" if self.holds else "NOT opposite"
        return f"cos({self.trait}, {self.antonym}) = {self.cosine:+.3f} -> {verdict} (cos < {self.threshold})"


def _require(cos: pd.DataFrame, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in cos.index]
    if missing:
        raise ValueError(f"no vector for {missing}; available: {list(cos.index)}")


def check_orthogonal(cos: pd.DataFrame, traits: Sequence[str], threshold: float = 0.3) -> OrthogonalityCheck:
    """The pairwise cosines of `traits` from a cosine table, judged against `threshold`."""
    if len(traits) < 2:
        raise ValueError(f"the orthogonality check needs at least two traits, got {list(traits)}")
    _require(cos, traits)
    pairs = {f"{a}, {b}": float(cos.loc[a, b]) for a, b in itertools.combinations(traits, 2)}
    return OrthogonalityCheck(list(traits), pairs, threshold)


def check_antonyms(cos: pd.DataFrame, trait: str, antonym: str, threshold: float = -0.5) -> AntonymCheck:
    """The cosine of a trait and its antonym from a cosine table, judged against `threshold`."""
    _require(cos, [trait, antonym])
    return AntonymCheck(trait, antonym, float(cos.loc[trait, antonym]), threshold)


def average_cosine_table(vectors: Mapping[str, torch.Tensor]) -> pd.DataFrame:
    """The cosine matrix averaged over every row (layer) of the vectors, as the original's `--all_layers`."""
    n_layers = next(iter(vectors.values())).shape[0]
    return sum(cosine_table(vectors, layer) for layer in range(n_layers)) / n_layers


HYPOTHESIS_COLUMNS = ["pair", "similarity", "hypothesis", "threshold", "result", "interpretation"]


def hypothesis_table(
    cos: pd.DataFrame,
    orthogonal: Sequence[str],
    antonyms: Sequence[tuple[str, str]],
    *,
    orthogonal_threshold: float = 0.3,
    antonym_threshold: float = -0.5,
) -> pd.DataFrame:
    """The two claims, one row per pair, in the original study's `hypothesis_tests_*.csv` columns.

    Pairs whose traits have no vector are left out (as the original skips a missing trio).
    """
    rows = []
    if len(orthogonal) >= 2 and all(t in cos.index for t in orthogonal):
        for a, b in itertools.combinations(orthogonal, 2):
            sim = float(cos.loc[a, b])
            holds = abs(sim) < orthogonal_threshold
            rows.append(
                [f"{a} vs {b}", sim, "orthogonal (independent)", f"|sim| < {orthogonal_threshold}"]
                + (["PASS", "Independent traits"] if holds else ["FAIL", "Related traits"])
            )
    for a, b in antonyms:
        if a in cos.index and b in cos.index:
            sim = float(cos.loc[a, b])
            holds = sim < antonym_threshold
            rows.append(
                [f"{a} vs {b}", sim, "opposite (mutually exclusive)", f"sim < {antonym_threshold}"]
                + (["PASS", "Opposing traits"] if holds else ["FAIL", "Not strongly opposed traits"])
            )
    return pd.DataFrame(rows, columns=HYPOTHESIS_COLUMNS)
