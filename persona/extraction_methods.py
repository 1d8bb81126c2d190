"""Extraction methods: named ways to turn pos/neg activations into a `[num_layers + 1, hidden]` direction.

A method is a function `(pos_acts, neg_acts, **options) -> [L+1, hidden]` over per-sample
activations `[n, L+1, hidden]` whose rows pair up (row i of pos and of neg answer the same
question with the same instruction pair). Register one from anywhere with a decorator:

    @register_method("my_method")
    def my_method(pos, neg, *, scale: float = 1.0): ...

Its keyword options are checked against the signature (an unknown option is an error) and
recorded, with their defaults, in the vector metadata and the extraction settings record.

Built in:
- `mean_diff` (the original study's, the default): mean(pos) - mean(neg).
- `pca_diff`: first principal direction of the paired differences pos_i - neg_i,
  uncentred by default (`center=True` removes the differences' mean first, as repeng's
  `pca_diff` does through sklearn's PCA, which discards a pure mean shift).
- `probe`: the weight direction of an L2 logistic regression per layer (pos = 1), its
  strength C chosen by cross-validation over held-out pairs.

`pca_diff` and `probe` give a direction only; `orient_and_scale` then fixes its sign so
that pos projects higher than neg on average, and its norm to the mean difference's norm
at each layer, so that steering coefficients mean the same for every method.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

Method = Callable[..., Tensor]
DEFAULT_METHOD = "mean_diff"
_SUFFIX = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*")


@dataclass(frozen=True)
class ExtractionMethod:
    """A registered method: its function, file-name suffix, and whether it needs only each side's mean."""

    name: str
    fn: Method
    suffix: str
    means_only: bool = False  # True: capture may stream running means (pos/neg arrive as [1, L+1, hidden])

    def options(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """`given` checked against the signature, with every other option at its default (what gets recorded)."""
        given = dict(given or {})
        params = list(inspect.signature(self.fn).parameters.values())[2:]
        accepted = {p.name: p.default for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            raise ValueError(
                f"extraction method {self.name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options are {sorted(accepted) or 'none'}"
            )
        missing = [
            name for name, default in accepted.items() if default is inspect.Parameter.empty and name not in given
        ]
        if missing:
            raise ValueError(f"extraction method {self.name!r} needs option(s) {missing}")
        return {name: given.get(name, default) for name, default in accepted.items()}

    def __call__(self, pos: Tensor, neg: Tensor, options: dict[str, Any] | None = None) -> Tensor:
        """The method's `[L+1, hidden]` float32 direction for `[n, L+1, hidden]` pos and neg activations."""
        if pos.dim() != 3 or pos.shape[1:] != neg.shape[1:] or len(pos) == 0 or len(neg) == 0:
            raise ValueError(
                f"pos and neg activations must be non-empty [n, num_layers+1, hidden] tensors of one model, "
                f"got {tuple(pos.shape)} and {tuple(neg.shape)}"
            )
        out = self.fn(pos, neg, **self.options(options))
        if not isinstance(out, Tensor) or tuple(out.shape) != tuple(pos.shape[1:]):
            raise ValueError(
                f"extraction method {self.name!r} returned {tuple(getattr(out, 'shape', ()))}, "
                f"expected {tuple(pos.shape[1:])} ([num_layers+1, hidden])"
            )
        return out.float()


METHODS: dict[str, ExtractionMethod] = {}


def register_method(name: str, *, suffix: str | None = None, means_only: bool = False) -> Callable[[Method], Method]:
    """Register `fn(pos, neg, **options) -> [L+1, hidden]` as extraction method `name`.

    Its vectors are saved as `{trait}_{kind}_{suffix}.pt` (suffix defaults to the name; `diff`
    is mean_diff's). `means_only` says the method depends on each side's mean alone, so the
    activations can be averaged on the fly instead of kept per sample.
    """
    suffix = suffix or name
    if not _SUFFIX.fullmatch(suffix):
        raise ValueError(f"method suffix {suffix!r} must be letters and digits joined by single underscores")
    taken = {m.suffix: m.name for m in METHODS.values() if m.name != name}
    if name in METHODS or suffix in taken:
        raise ValueError(f"extraction method {name!r} (file suffix {suffix!r}) is already registered")

    def decorator(fn: Method) -> Method:
        METHODS[name] = ExtractionMethod(name, fn, suffix, means_only)
        return fn

    return decorator


def get_method(name: str) -> ExtractionMethod:
    """The registered method `name` (an unknown name lists the registered ones)."""
    if name not in METHODS:
        raise ValueError(f"unknown extraction method {name!r}; registered: {sorted(METHODS)}")
    return METHODS[name]


def method_for_suffix(suffix: str) -> ExtractionMethod | None:
    """The registered method whose vector files end in `_{suffix}.pt`, if any."""
    return next((m for m in METHODS.values() if m.suffix == suffix), None)


def orient_and_scale(direction: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """`direction` `[L+1, hidden]` signed so pos projects higher than neg, and scaled to the mean difference's norm.

    A layer whose direction or mean difference is zero gives a zero row.
    """
    diff = pos.double().mean(0) - neg.double().mean(0)
    direction = direction.double()
    sign = torch.where((diff * direction).sum(-1) < 0, -1.0, 1.0).double()
    norm = direction.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, direction / norm.clamp_min(1e-300), torch.zeros_like(direction))
    return (sign[:, None] * unit * diff.norm(dim=-1, keepdim=True)).float()


@register_method("mean_diff", suffix="diff", means_only=True)
def mean_diff(pos: Tensor, neg: Tensor) -> Tensor:
    """mean(pos) - mean(neg) at every layer (the original study's persona vector)."""
    return pos.mean(0) - neg.mean(0)


@register_method("pca_diff", suffix="pca")
def pca_diff(pos: Tensor, neg: Tensor, *, center: bool = False) -> Tensor:
    """First right singular vector of the paired differences per layer (centred first with `center`)."""
    if len(pos) != len(neg):
        raise ValueError(f"pca_diff needs paired activations, got {len(pos)} pos and {len(neg)} neg")
    diffs = (pos.double() - neg.double()).transpose(0, 1)  # [L+1, n, hidden]
    if center:
        diffs = diffs - diffs.mean(1, keepdim=True)
    direction = torch.linalg.svd(diffs, full_matrices=False).Vh[:, 0, :]
    return orient_and_scale(direction, pos, neg)


@register_method("probe")
def probe(pos: Tensor, neg: Tensor, *, folds: int = 5, cs: int = 10, max_iter: int = 1000) -> Tensor:
    """Weight direction of an L2 logistic regression (pos = 1) per layer; C by cross-validation over pairs.

    Features are divided by their mean row norm at each layer (a scalar, so the direction is
    unchanged) so that one grid of C values fits every layer. Folds hold out whole pairs.
    The L2 weights lie in the span of the samples, so the fit runs in that basis (`2n` features
    instead of `hidden`), which gives the same weights.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold

    if len(pos) != len(neg) or len(pos) < 2:
        raise ValueError(f"probe needs at least 2 pos/neg pairs, got {len(pos)} pos and {len(neg)} neg")
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    groups = np.r_[np.arange(len(pos)), np.arange(len(neg))]
    cv = GroupKFold(n_splits=min(folds, len(pos)))
    rows = []
    for layer in range(pos.shape[1]):
        x = torch.cat([pos[:, layer], neg[:, layer]]).double().numpy()
        scale = np.linalg.norm(x, axis=1).mean()
        if not np.ptp(x, axis=0).any() or scale == 0:  # pos and neg identical here: no direction
            rows.append(np.zeros(x.shape[1]))
            continue
        # the L2 solution lies in the span of the samples: fit in that basis (exact, and fast when n << hidden)
        basis = np.linalg.svd(x, full_matrices=False)[2] if x.shape[1] > x.shape[0] else np.eye(x.shape[1])
        model = LogisticRegressionCV(
            Cs=cs,
            l1_ratios=(0.0,),
            cv=list(cv.split(x, y, groups)),
            scoring="neg_log_loss",
            max_iter=max_iter,
            use_legacy_attributes=False,
        )
        rows.append(model.fit(x @ basis.T / scale, y).coef_[0] @ basis)
    return orient_and_scale(torch.from_numpy(np.stack(rows)), pos, neg)
