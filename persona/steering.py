"""Steering: add (or ablate) persona vectors in the residual stream, one mechanism for all uses.

Layer L means the residual stream `hidden_states[L]` reports: 0 = embedding output,
L = output of decoder block L (for the last block, after the model's final norm, as
transformers reports it and as vectors are extracted). Positions follow the original persona-vectors code:

- ``response``: the last real prompt position (its output is the first answer token)
  and every generated token;
- ``prompt``: every real prompt token, never padding, never generated tokens;
- ``all``: both, never padding.

A pre-hook on the decoder stack reads each forward call's attention mask and cache
length, so padding is never touched and prefill is told apart from decode steps. The
same context serves generation, sweeps (per-row coefficients) and training hooks.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from persona.checks import check_finite
from persona.sites import decoder_layers, decoder_stack, embedding_weight, residual_site, vector_at_layer

if TYPE_CHECKING:
    from persona.vectors import PersonaVector

Positions = Literal["response", "prompt", "all"]
Op = Literal["add", "ablate"]
POSITIONS: tuple[str, ...] = ("response", "prompt", "all")

_ACTIVE: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


@dataclass
class Steer:
    """One intervention at one layer; several may be active at once.

    `vector` is a `PersonaVector` or a `[num_layers+1, hidden]` (or `[hidden]`) tensor.
    `coef` may be a float or a `[batch]` tensor of per-row coefficients. `op="ablate"`
    removes `coef` times the component along the unit vector (1.0, the default, removes
    it fully; a per-row 0/1 tensor ablates some rows only).
    """

    vector: torch.Tensor | PersonaVector
    layer: int
    coef: float | torch.Tensor = 1.0
    positions: Positions = "response"
    op: Op = "add"


def as_tensor(value: torch.Tensor | PersonaVector) -> torch.Tensor:
    """The raw `[num_layers+1, hidden]` (or `[hidden]`) tensor of a vector given as a `PersonaVector` or a tensor."""
    return value if isinstance(value, torch.Tensor) else value.tensor


class _CallState:
    """Which positions of the current forward call each `positions` kind touches."""

    def __init__(self) -> None:
        self.real: torch.Tensor | None = None  # [B, T] bool, False on padding
        self.prefill = True
        self._masks: dict[str, torch.Tensor] = {}

    def update(self, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        source = ids if ids is not None else kwargs["inputs_embeds"]
        shape, device = source.shape[:2], source.device
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = cache.get_seq_length() if cache is not None and hasattr(cache, "get_seq_length") else 0
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            self.real = mask[:, -shape[1] :].to(device=device, dtype=torch.bool)
        else:
            self.real = torch.ones(shape, dtype=torch.bool, device=device)
        self.prefill = past == 0
        self._masks = {}

    def mask(self, positions: str) -> torch.Tensor:
        """A [B, T, 1] 0/1 mask of the positions to steer in this call."""
        if positions not in self._masks:
            real = self.real
            if real is None:
                raise RuntimeError("steering hook ran before the decoder stack's pre-hook saw the inputs")
            if positions == "all":
                sel = real
            elif positions == "prompt":
                sel = real if self.prefill else torch.zeros_like(real)
            elif self.prefill:  # response during prefill: the last real prompt position only
                idx = torch.arange(real.shape[1], device=real.device).expand_as(real)
                last = torch.where(real, idx, -1).max(dim=1, keepdim=True).values
                sel = idx == last
            else:
                sel = real
            self._masks[positions] = sel.unsqueeze(-1)
        return self._masks[positions]


def steer_change(op: Op, direction: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    """The change one unit of coefficient makes to the residual `stream`: the direction itself
    (`add`), or minus the stream's component along the unit direction (`ablate`)."""
    if op == "ablate":
        return -(stream @ direction).unsqueeze(-1) * direction
    return direction


def _make_hook(steer: Steer, direction: torch.Tensor, state: _CallState):
    def hook(hidden: torch.Tensor) -> torch.Tensor:
        mask = state.mask(steer.positions).to(hidden.dtype)
        coef = steer.coef
        if isinstance(coef, torch.Tensor) and coef.dim() > 0:
            if coef.shape[0] != hidden.shape[0]:
                raise ValueError(f"per-row coef has {coef.shape[0]} rows but the batch has {hidden.shape[0]}")
            coef = coef.to(hidden.device, hidden.dtype).view(-1, 1, 1)
        return hidden + mask * (coef * steer_change(steer.op, direction, hidden))

    return hook


def _direction(steer: Steer, num_layers: int, ref: torch.Tensor) -> torch.Tensor:
    if steer.positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {steer.positions!r}")
    if steer.op not in ("add", "ablate"):
        raise ValueError(f"op must be 'add' or 'ablate', got {steer.op!r}")
    hidden = ref.shape[1]
    check_finite(steer.coef, "steering coef", layer=steer.layer, fix="use a finite coefficient")
    vec = vector_at_layer(
        as_tensor(steer.vector), steer.layer, num_layers=num_layers, hidden_size=hidden, source="steering vector"
    ).to(ref.device, ref.dtype)
    check_finite(vec, f"steering vector (in {ref.dtype})", layer=steer.layer, fix="use a vector with finite values")
    if steer.op == "ablate":
        norm = vec.norm()
        if norm == 0:
            raise ValueError("cannot ablate along a zero vector")
        vec = vec / norm
    return vec


def check_steers(model: nn.Module, steers: Sequence[Steer]) -> list[torch.Tensor]:
    """Validate steers against the model (size, layer range, options); the per-steer directions."""
    ref = embedding_weight(model)
    n_layers = len(decoder_layers(model))
    return [_direction(s, n_layers, ref) for s in steers]


@contextlib.contextmanager
def steering(model: nn.Module, steers: Sequence[Steer]) -> Iterator[None]:
    """Apply `steers` to `model` inside the block; hooks are removed on exit, whatever happens."""
    stack = decoder_stack(model)
    directions = check_steers(model, steers)
    state = _CallState()
    handles = []
    try:
        handles.append(stack.register_forward_pre_hook(lambda _m, a, k: state.update(a, k), with_kwargs=True))
        for steer, direction in zip(steers, directions):
            handles.append(residual_site(model, steer.layer).register(_make_hook(steer, direction, state)))
        _ACTIVE[stack] = _ACTIVE.get(stack, 0) + 1
        yield
    finally:
        for handle in handles:
            handle.remove()
        if stack in _ACTIVE:
            _ACTIVE[stack] -= 1
            if _ACTIVE[stack] <= 0:
                del _ACTIVE[stack]


def is_steered(model: nn.Module) -> bool:
    """True while a `steering` context is active on this model (judges refuse to score then)."""
    return _ACTIVE.get(decoder_stack(model), 0) > 0
