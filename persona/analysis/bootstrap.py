"""A percentile-bootstrap interval for any statistic of paired samples.

Stand-in for the interval functions planned in `persona.analysis.stats` (`mean_interval`,
`correlation`): screening and monitoring call only `bootstrap_interval`, so swapping it is
one import per caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_interval(
    statistic: Callable[..., float], *samples: Sequence[float], ci: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """(low, high) percentile interval of `statistic(*samples)`, resampling the rows jointly.

    Rows where any sample is not finite are dropped; fewer than 2 rows give (NaN, NaN).
    Resamples whose statistic is undefined (NaN) are left out of the percentiles.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    arrays = [np.asarray(s, dtype=float) for s in samples]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"samples differ in length: {[a.shape for a in arrays]}")
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    arrays = [a[keep] for a in arrays]
    n = len(arrays[0])
    if n < 2:
        return float("nan"), float("nan")
    rows = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    values = np.array([statistic(*(a[r] for a in arrays)) for r in rows], dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - ci) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
