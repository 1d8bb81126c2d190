"""Length-sorted batching: rows of similar length share a padded batch (less padding, less work)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def length_sorted_batches(lengths: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Row indices grouped into batches of at most `batch_size`, longest rows first.

    `lengths` may be numbers or tuples (e.g. answer length, then prompt length). The sort is
    stable, so rows of equal length keep their order; every index appears once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
