"""Persona vector files: load (seed bare tensors or the project's dict format) and save.

A vector file holds a float tensor `[num_layers + 1, hidden]`: row 0 is the embedding
output and row L the output of decoder block L (= `hidden_states[L]`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from persona.io import save_tensor

VECTOR_KINDS = ("prompt_avg", "response_avg", "prompt_last")


class VectorShapeError(ValueError):
    """A vector does not fit the model or the requested layer."""


def load_vector(path: str | os.PathLike) -> torch.Tensor:
    """Load a persona vector file safely (`weights_only=True`) as a float32 2-D tensor.

    Accepts a bare tensor (as the seed project wrote) or a dict with a `vector` entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        if "vector" not in obj:
            raise ValueError(f"{path}: dict without a 'vector' entry (keys: {sorted(obj)})")
        obj = obj["vector"]
    if not isinstance(obj, torch.Tensor) or obj.dim() not in (1, 2):
        raise ValueError(f"{path}: expected a [num_layers+1, hidden] tensor, got "
                         f"{type(obj).__name__} {getattr(obj, 'shape', '')}")
    return obj.float()


def vector_at_layer(vector: torch.Tensor, layer: int, *, num_layers: int, hidden_size: int,
                    source: str = "vector") -> torch.Tensor:
    """Row `layer` of a `[num_layers+1, hidden]` vector (a 1-D vector is used as is), checked."""
    if not 0 <= layer <= num_layers:
        raise VectorShapeError(f"layer {layer} is out of range: the model has layers 0..{num_layers} "
                               f"(0 = embeddings, L = output of decoder block L)")
    if vector.dim() == 2:
        if vector.shape[0] != num_layers + 1 or vector.shape[1] != hidden_size:
            raise VectorShapeError(f"{source} has shape {tuple(vector.shape)} but the model needs "
                                   f"[{num_layers + 1}, {hidden_size}] (num_layers+1, hidden)")
        vector = vector[layer]
    elif vector.shape[0] != hidden_size:
        raise VectorShapeError(f"{source} has size {vector.shape[0]} but the model's hidden size is {hidden_size}")
    return vector


def save_vector(path: str | os.PathLike, vector: torch.Tensor) -> None:
    """Write a vector as a bare float32 tensor (readable by the seed project too), atomically."""
    save_tensor(path, vector.detach().to("cpu", torch.float32).contiguous())
