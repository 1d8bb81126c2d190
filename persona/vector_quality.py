"""How well a vector separates held-out pos from neg answers, per method, kind and layer.

The vectors were extracted from the extract questions' pos/neg answers; the quality check
projects answers they never saw (the eval questions' pos/neg evaluations) onto each vector
and measures how far the pos answers land above the neg ones:

- AUROC of the projections (pos = positive class; ties count one half), with a percentile
  bootstrap interval (pos and neg resampled separately),
- Cohen's d (difference of means over the pooled standard deviation),
- cosine to the mean-difference vector of the same kind and layer.

Each kind projects its own summary (a `response_avg` vector the answers' `response_avg`
activations, and so on). The prompt kinds see the pos/neg system prompts themselves, so
they separate trivially; `response_avg` is the one that measures the answers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from persona.activations import capture
from persona.extraction import effective_pairs
from persona.extraction_methods import DEFAULT_METHOD, METHODS, method_for_suffix
from persona.io import read_table, write_csv
from persona.models import LoadedModel
from persona.vectors import VECTOR_KINDS, load_vector, parse_vector_filename, vector_filename

log = logging.getLogger(__name__)

QUALITY_FILE = "vector_quality.csv"
COLUMNS = [
    "trait",
    "method",
    "kind",
    "layer",
    "vector_file",
    "n_pos",
    "n_neg",
    "auroc",
    "auroc_low",
    "auroc_high",
    "cohens_d",
    "cos_mean_diff",
]


def auroc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of scores (pos = positive) over the last axis: the Mann-Whitney U over n_pos * n_neg."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    ranks = rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    n_pos, n_neg = pos.shape[-1], neg.shape[-1]
    return (ranks[..., :n_pos].sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc_interval(
    pos: np.ndarray, neg: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC, resampling pos and neg scores separately."""
    rng = np.random.default_rng(seed)
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    boot = auroc(pos[rng.integers(0, len(pos), (n_boot, len(pos)))], neg[rng.integers(0, len(neg), (n_boot, len(neg)))])
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def cohens_d(pos: np.ndarray, neg: np.ndarray) -> float:
    """(mean pos - mean neg) / pooled standard deviation (NaN when both sides are constant)."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    n_pos, n_neg = len(pos), len(neg)
    pooled = ((n_pos - 1) * pos.var(ddof=1) + (n_neg - 1) * neg.var(ddof=1)) / max(n_pos + n_neg - 2, 1)
    return float((pos.mean() - neg.mean()) / np.sqrt(pooled)) if pooled > 0 else float("nan")


def find_vectors(vector_dir: str | os.PathLike, trait: str, methods: Sequence[str] | None = None) -> dict[str, Path]:
    """`{method: {trait}_response_avg_<suffix>.pt}`-style discovery: every registered method's files of `trait`.

    Returns `{f"{method}/{kind}": path}` for the files that exist (all kinds, `methods` or all registered).
    """
    folder = Path(vector_dir)
    found = {}
    for name in methods or list(METHODS):
        for kind in VECTOR_KINDS:
            path = folder / vector_filename(trait, kind, name)
            if path.is_file():
                found[f"{name}/{kind}"] = path
    if not found:
        raise FileNotFoundError(
            f"no vectors of {trait!r} in {folder} for methods {list(methods or METHODS)}: "
            "extract them with generate_vec.py first"
        )
    return found


def method_of(path: str | os.PathLike) -> str | None:
    """The registered method whose file name `path` has (None for other names)."""
    parts = parse_vector_filename(path)
    method = method_for_suffix(parts["suffix"]) if parts else None
    return method.name if method else None


def quality_table(
    trait: str,
    vectors: dict[str, Path],
    pos_acts: dict[str, torch.Tensor],
    neg_acts: dict[str, torch.Tensor],
    *,
    references: dict[str, Path] | None = None,
    layers: Sequence[int] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (method, kind, layer): AUROC with interval, Cohen's d, cosine to mean_diff.

    `vectors` maps `"method/kind"` to a file; `pos_acts`/`neg_acts` map a kind to held-out
    per-sample activations `[n, L+1, hidden]` (rows with NaN are dropped); `references` maps
    a kind to its mean_diff file (default: the mean_diff entries of `vectors`).
    """
    loaded = {key: load_vector(path) for key, path in vectors.items()}
    if references is None:
        references = {k.split("/")[1]: p for k, p in vectors.items() if k.startswith(f"{DEFAULT_METHOD}/")}
    reference_of = {kind: load_vector(path) for kind, path in references.items()}
    rows = []
    for key, vector in loaded.items():
        method, kind = key.split("/")
        pos, neg = (_whole(acts[kind]) for acts in (pos_acts, neg_acts))
        if min(len(pos), len(neg)) < 2:
            raise ValueError(
                f"held-out {kind} activations: {len(pos)} pos and {len(neg)} neg rows; need at least 2 each"
            )
        if vector.shape != pos.shape[1:]:
            raise ValueError(
                f"{vectors[key]} has shape {tuple(vector.shape)}, the held-out activations {tuple(pos.shape[1:])}"
            )
        reference = reference_of.get(kind)
        for layer in layers if layers is not None else range(vector.shape[0]):
            v = vector[layer].double()
            unit = v / v.norm() if v.norm() > 0 else v
            p, n = (pos[:, layer].double() @ unit).numpy(), (neg[:, layer].double() @ unit).numpy()
            low, high = auroc_interval(p, n, n_boot=n_boot, seed=seed)
            cos = _cosine(v, reference[layer].double()) if reference is not None else float("nan")
            rows.append(
                [
                    trait,
                    method,
                    kind,
                    layer,
                    vectors[key].name,
                    len(p),
                    len(n),
                    float(auroc(p, n)),
                    low,
                    high,
                    cohens_d(p, n),
                    cos,
                ]
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity; NaN when either vector is zero (a layer where pos and neg did not differ)."""
    norms = float(a.norm() * b.norm())
    return float(a @ b) / norms if norms > 0 else float("nan")


def _whole(acts: torch.Tensor) -> torch.Tensor:
    return acts[~acts.isnan().flatten(1).any(1)]


def heldout_frames(
    pos_path: str | os.PathLike, neg_path: str | os.PathLike, trait: str, threshold: float | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The held-out pos and neg answers: all of them, or with `threshold` only the pairs extraction would keep."""
    pos, neg = (read_table(p, ("prompt", "answer")) for p in (pos_path, neg_path))
    if threshold is None:
        return pos, neg
    pairs = effective_pairs(pos, neg, trait, threshold)
    return pairs.pos, pairs.neg


def heldout_paths(extract_dir: str | os.PathLike, trait: str) -> tuple[Path, Path]:
    """Where the held-out answers live by convention: `{trait}_{pos,neg}_eval.csv` beside the extraction CSVs."""
    folder = Path(extract_dir)
    return folder / f"{trait}_pos_eval.csv", folder / f"{trait}_neg_eval.csv"


def vector_quality(
    trait: str,
    vector_dir: str | os.PathLike,
    pos_path: str | os.PathLike,
    neg_path: str | os.PathLike,
    *,
    load: Callable[[], LoadedModel],
    methods: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    threshold: float | None = None,
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    output: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Measure every vector of `trait` in `vector_dir` on the held-out answers; merge the rows into `output`.

    `output` (default `vector_dir/vector_quality.csv`) keeps the rows of other traits and methods.
    """
    vectors = find_vectors(vector_dir, trait, methods)
    folder = Path(vector_dir)
    references = {
        k: folder / vector_filename(trait, k) for k in VECTOR_KINDS if (folder / vector_filename(trait, k)).is_file()
    }
    pos, neg = heldout_frames(pos_path, neg_path, trait, threshold)
    lm = load()
    acts = [capture(lm, list(df["prompt"]), list(df["answer"]), batch_size=batch_size) for df in (pos, neg)]
    table = quality_table(
        trait,
        vectors,
        {k: acts[0][k] for k in VECTOR_KINDS},
        {k: acts[1][k] for k in VECTOR_KINDS},
        references=references,
        layers=layers,
        n_boot=n_boot,
        seed=seed,
    )
    output = Path(output) if output else Path(vector_dir) / QUALITY_FILE
    if output.is_file():
        old = pd.read_csv(output)
        keep = ~(old["vector_file"].isin(table["vector_file"]))
        table = pd.concat([old[keep], table], ignore_index=True)
    write_csv(output, table)
    log.info("wrote %s (%d rows)", output, len(table))
    return table


def best_layer(table: pd.DataFrame, vector_file: str) -> pd.Series | None:
    """The row with the highest AUROC for `vector_file` (ties: the lowest layer), or None when it has no rows."""
    rows = table[table["vector_file"] == vector_file].sort_values(["auroc", "layer"], ascending=[False, True])
    return rows.iloc[0] if len(rows) else None
