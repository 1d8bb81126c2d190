"""Training-time interventions: preventative steering (`steer`) and CAFT (`ablate`).

Both reuse `persona.steering`, so layer L means the output of decoder block L, exactly
as in inference steering and in the vector files. Hooks touch every real token
(`positions="all"`, never padding) and exist only inside `training_hooks`, which
removes them on exit whether training finished or raised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from torch import nn

from persona.steering import Steer, check_steers, steering
from persona.training.config import SteeringConfig
from persona.vectors import load_vector

log = logging.getLogger(__name__)


def training_steers(config: SteeringConfig) -> list[Steer]:
    """One `Steer` per configured layer: add `coef * v[layer]` (steer) or project out `v[layer]` fully (ablate).

    CAFT removes the whole component, so `steering_coef` is not used for `ablate`.
    """
    vector = load_vector(config.steering_vector_path)
    if config.type == "steer":
        return [Steer(vector, layer, coef=config.steering_coef, positions="all", op="add") for layer in config.layers]
    return [Steer(vector, layer, coef=1.0, positions="all", op="ablate") for layer in config.layers]


def check_training_hooks(model: nn.Module, config: SteeringConfig | None) -> None:
    """Fail before training starts if the vector does not fit the model or a layer is out of range."""
    if config is not None:
        check_steers(model, training_steers(config))


@contextlib.contextmanager
def training_hooks(model: nn.Module, config: SteeringConfig | None) -> Iterator[list[Steer]]:
    """Hooks for the duration of the block only (none when `config` is None); yields the active steers."""
    if config is None:
        yield []
        return
    steers = training_steers(config)
    what = f"adding {config.steering_coef} x vector" if config.type == "steer" else "ablating the vector direction"
    log.info("training with hooks: %s from %s at layers %s", what, config.steering_vector_path, config.layers)
    with steering(model, steers):
        yield steers
