"""Finite-number checks: NaN and inf never pass silently into steering, projection, training or a file.

A NaN in a steering vector or coefficient makes every generated answer empty, one in a
projection vector gives all-NaN columns, one in a training setting an all-NaN adapter; none
of them raises by itself. Every place that takes such a number calls `check_finite`, whose
error names the input, the first layer row that is not finite, and what to do instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

import torch
from torch import Tensor

from persona.errors import InputError

T = TypeVar("T", bound=Tensor | float)


class NonFiniteError(InputError):
    """A number or tensor that must be finite holds NaN or inf (or is complex)."""


def _kinds(values: Tensor) -> str:
    found = [name for name, hit in (("nan", values.isnan().any()), ("inf", values.isinf().any())) if hit]
    return "/".join(found)


def check_finite(value: T, what: str, *, layer: int | None = None, fix: str = "use a finite value") -> T:
    """Return `value` unchanged if every entry is finite; raise `NonFiniteError` otherwise.

    `what` names the file, key or parameter; `layer` the layer a 1-D row or a number applies
    to. For a 2-D `[num_layers + 1, hidden]` tensor the message names the first row (layer)
    holding a non-finite entry. Complex tensors are refused: a persona vector is real.
    """
    at = f" at layer {layer}" if layer is not None else ""
    if isinstance(value, Tensor):
        if value.is_complex():
            raise NonFiniteError(f"{what}{at} is a complex tensor ({value.dtype}); a persona vector is real: {fix}")
        if not value.is_floating_point():
            return value
        bad = ~torch.isfinite(value.detach())
        if not bad.any():
            return value
        count = f"{int(bad.sum())} of {bad.numel()} values"
        if value.dim() == 2:
            row = int(bad.any(dim=1).nonzero()[0])
            detail = f"layer {row} (row {row}) is the first with {_kinds(value[row])}; {count} are not finite"
        else:
            detail = f"holds {_kinds(value.detach())} ({count} are not finite)"
        raise NonFiniteError(f"{what}{at}: {detail}: {fix}")
    number = float(value)
    if not math.isfinite(number):
        raise NonFiniteError(f"{what}{at} must be a finite number, got {number}: {fix}")
    return value


def _empty(answer: object) -> bool:
    return answer is None or (isinstance(answer, float) and math.isnan(answer)) or str(answer) == ""


def require_answer_text(answers: Mapping[str, Sequence[object]], trait: str) -> None:
    """Refuse an extraction whose response average would cover zero tokens (an all-NaN vector).

    `answers` maps each source (a CSV path) to its kept answers; every source needs at least
    one non-empty answer, checked before the model loads.
    """
    for source, texts in answers.items():
        if all(_empty(a) for a in texts):
            raise ValueError(
                f"{source}: all {len(texts)} kept answers for trait {trait!r} are empty, so the response_avg "
                "vector would average zero tokens (all NaN); regenerate the answers with eval_persona"
            )
