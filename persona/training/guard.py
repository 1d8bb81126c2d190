"""Stop training at the first non-finite gradient, loss or weight, before it reaches a checkpoint.

Left alone, a NaN loss turns every LoRA weight into NaN within one optimizer step, the
Trainer logs the loss as the mean of earlier ones (its `logging_nan_inf_filter`), and the
run ends with exit 0 and an all-NaN adapter. The guard checks the gradients before each
optimizer step (so the weights in memory and every saved checkpoint stay the last good
ones), the trainable weights after it, and every logged loss and gradient norm.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from persona.checks import NonFiniteError
from persona.models import newest_checkpoint


class TrainingDiverged(NonFiniteError):
    """Training produced a NaN or inf; the message names the step and the checkpoint kept."""


class FiniteGuard(TrainerCallback):
    """A `TrainerCallback` that raises `TrainingDiverged` at the first non-finite value."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)

    def _fail(self, step: int, what: str) -> TrainingDiverged:
        kept = newest_checkpoint(self.output_dir) if self.output_dir.is_dir() else None
        where = f"kept the last good checkpoint, {kept}" if kept else "no checkpoint had been saved yet"
        return TrainingDiverged(
            f"training stopped at step {step}: {what} is not finite; {where}. "
            "Lower learning_rate, check the training data and the steering vector, then rerun"
        )

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model: nn.Module = kwargs["model"]
        for name, param in model.named_parameters():
            if param.grad is not None and not bool(torch.isfinite(param.grad).all()):
                raise self._fail(state.global_step + 1, f"the loss or gradient (of {name})")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        model: nn.Module = kwargs["model"]
        for name, param in model.named_parameters():
            if param.requires_grad and not bool(torch.isfinite(param.detach()).all()):
                raise self._fail(state.global_step, f"trained weight {name}")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        for key in ("loss", "grad_norm", "eval_loss"):
            value = (logs or {}).get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise self._fail(state.global_step, f"the logged {key} ({value})")
