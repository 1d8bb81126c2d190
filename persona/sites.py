"""Where layer L of the residual stream lives: one map for steering, capture and training hooks.

Layer L always means `hidden_states[L]` as transformers reports it:

- L = 0: the input of decoder block 0 (a forward pre-hook), so it equals `hidden_states[0]`
  even for models that scale the embeddings inside the forward pass (Gemma);
- 0 < L < n: the output of decoder block L-1;
- L = n: the output of the final norm (transformers reports the last hidden state after it).

A hook registered through a `ResidualSite` sees the `[batch, seq, hidden]` residual tensor
whatever the module's calling convention (positional or keyword input, tuple or tensor
output) and may return a replacement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from persona.errors import InputError

# Called with the residual tensor; returns a replacement or None to leave it unchanged.
ResidualHook = Callable[[Tensor], Tensor | None]


def decoder_stack(model: nn.Module) -> nn.Module:
    """The module that owns the decoder blocks (`.layers`), for plain and PEFT-wrapped models."""
    seen = model
    for _ in range(6):
        if isinstance(getattr(seen, "layers", None), nn.ModuleList):
            return seen
        inner = getattr(seen, "model", None) or getattr(seen, "base_model", None)
        if inner is None or inner is seen:
            break
        seen = inner
    raise TypeError(f"cannot find decoder layers on {type(model).__name__}")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM, plain or PEFT-wrapped."""
    layers = decoder_stack(model).layers
    assert isinstance(layers, nn.ModuleList)
    return layers


def embedding_weight(model: nn.Module) -> Tensor:
    """The input embedding matrix `[vocab, hidden]`: the model's hidden size, dtype and device."""
    get_embeddings = cast(Callable[[], nn.Module], decoder_stack(model).get_input_embeddings)
    weight = get_embeddings().weight
    assert isinstance(weight, Tensor)
    return weight


class VectorShapeError(InputError):
    """A vector does not fit the model or the requested layer."""


def check_layer(layer: int, n_layers: int) -> None:
    if not 0 <= layer <= n_layers:
        raise VectorShapeError(
            f"layer {layer} is out of range: the model has layers 0..{n_layers} "
            "(0 = embeddings, L = output of decoder block L)"
        )


def vector_at_layer(vector: Tensor, layer: int, *, num_layers: int, hidden_size: int, source: str = "vector") -> Tensor:
    """Row `layer` of a `[num_layers+1, hidden]` vector (a 1-D vector is used as is), checked."""
    check_layer(layer, num_layers)
    if vector.dim() == 2:
        if vector.shape[0] != num_layers + 1 or vector.shape[1] != hidden_size:
            raise VectorShapeError(
                f"{source} has shape {tuple(vector.shape)} but the model needs "
                f"[{num_layers + 1}, {hidden_size}] (num_layers+1, hidden)"
            )
        vector = vector[layer]
    elif vector.shape[0] != hidden_size:
        raise VectorShapeError(f"{source} has size {vector.shape[0]} but the model's hidden size is {hidden_size}")
    return vector


@dataclass(frozen=True)
class ResidualSite:
    """The module and hook kind at which `hidden_states[layer]` can be read or replaced."""

    layer: int
    module: nn.Module
    is_input: bool  # True: a pre-hook on the module's input; False: a hook on its output

    def register(self, fn: ResidualHook) -> RemovableHandle:
        """Register `fn` on the residual tensor at this site; remove it with `handle.remove()`."""
        if self.is_input:
            return self.module.register_forward_pre_hook(_input_hook(fn), with_kwargs=True)
        return self.module.register_forward_hook(_output_hook(fn))


def residual_site(model: nn.Module, layer: int) -> ResidualSite:
    """The site of `hidden_states[layer]` in `model` (see the module docstring)."""
    stack = decoder_stack(model)
    blocks = decoder_layers(model)
    check_layer(layer, len(blocks))
    if layer == 0:
        return ResidualSite(0, blocks[0], is_input=True)
    norm = getattr(stack, "norm", None)
    if layer == len(blocks) and isinstance(norm, nn.Module):
        return ResidualSite(layer, norm, is_input=False)
    return ResidualSite(layer, blocks[layer - 1], is_input=False)


def _input_hook(fn: ResidualHook) -> Callable[..., Any]:
    def hook(_module: nn.Module, args: tuple, kwargs: dict):
        if args:
            new = fn(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        new = fn(kwargs["hidden_states"])
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    return hook


def _output_hook(fn: ResidualHook) -> Callable[..., Any]:
    def hook(_module: nn.Module, _args: tuple, output: Any):
        hidden = output[0] if isinstance(output, tuple) else output
        new = fn(hidden)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook
