"""Numeric helpers shared by the figures: cosine matrices, Pearson r, least-squares lines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def cosine_matrix(rows: torch.Tensor) -> np.ndarray:
    """Pairwise cosine similarities of the rows of `rows` `[n, d]` (float64, exact unit diagonal)."""
    x = rows.detach().to(torch.float64)
    norms = x.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("cosine similarity of a zero vector is undefined (is a layer row all zeros?)")
    unit = x / norms
    sim = (unit @ unit.T).clamp(-1.0, 1.0).numpy()
    sim = (sim + sim.T) / 2  # exactly symmetric (a float matmul need not be)
    np.fill_diagonal(sim, 1.0)
    return sim


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length: {xa.shape} vs {ya.shape}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    return xa[keep], ya[keep]


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation over the pairs where both values are finite; NaN if undefined (< 2 points, no spread)."""
    xa, ya = _finite_pairs(x, y)
    if len(xa) < 2:
        return float("nan")
    dx, dy = xa - xa.mean(), ya - ya.mean()
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) over the finite pairs; NaNs when fewer than 2 distinct x."""
    xa, ya = _finite_pairs(x, y)
    if len(np.unique(xa)) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(xa, ya, 1)
    return float(slope), float(intercept)
