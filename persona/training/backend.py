"""Which training stack runs: Unsloth on CUDA when installed, else plain transformers + PEFT.

Kept free of transformers/TRL imports so the CLI can import Unsloth first (its patches
only apply to libraries imported after it).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

import torch

log = logging.getLogger(__name__)

# transformers' names for the optimizers that need bitsandbytes (and so CUDA).
BITSANDBYTES_OPTIMIZERS = frozenset(
    {
        "adamw_bnb_8bit",
        "adamw_8bit",
        "paged_adamw_32bit",
        "paged_adamw_8bit",
        "ademamix",
        "ademamix_8bit",
        "paged_ademamix_32bit",
        "paged_ademamix_8bit",
        "lion_32bit",
        "lion_8bit",
        "paged_lion_32bit",
        "paged_lion_8bit",
        "rmsprop_bnb",
        "rmsprop_bnb_8bit",
        "rmsprop_bnb_32bit",
    }
)
FALLBACK_OPTIMIZER = "adamw_torch"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def unsloth_wanted() -> bool:
    """Unsloth is used when CUDA is available and the package is installed."""
    return torch.cuda.is_available() and _installed("unsloth")


def import_unsloth_if_wanted() -> bool:
    """Import Unsloth before transformers/TRL when it will be used; True if it was."""
    if unsloth_wanted():
        importlib.import_module("unsloth")
        return True
    return False


def resolve_optim(name: str) -> str:
    """The optimizer to use: bitsandbytes ones fall back to AdamW (torch) without CUDA or bitsandbytes."""
    if name in BITSANDBYTES_OPTIMIZERS and not (torch.cuda.is_available() and _installed("bitsandbytes")):
        where = "bitsandbytes is not installed" if torch.cuda.is_available() else "there is no CUDA device"
        log.warning(
            "optim %r needs bitsandbytes on CUDA but %s; using %r instead (same update rule, 32-bit state)",
            name,
            where,
            FALLBACK_OPTIMIZER,
        )
        return FALLBACK_OPTIMIZER
    return name
