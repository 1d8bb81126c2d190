"""Training-time interventions: preventative steering (`steer`) and CAFT (`ablate`).

Both reuse `persona.steering`, so layer L means the output of decoder block L, exactly
as in inference steering and in the vector files. Hooks touch every real token
(`positions="all"`, never padding) and exist only inside `training_hooks`, which
removes them on exit whether training finished or raised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from persona.layer_choice import AUTO, resolve_layer
from persona.models import LoadedModel
from persona.steering import Steer, check_steers, steering
from persona.training.config import SteeringConfig, TrainingConfig
from persona.vectors import load_vector

log = logging.getLogger(__name__)


def resolve_auto_layers(
    cfg: TrainingConfig, *, load: Callable[[], LoadedModel] | None = None
) -> tuple[TrainingConfig, list[dict[str, Any]]]:
    """`cfg` with "auto" in the steering `layers` replaced by the vector's best held-out layer, and the choice records.

    The choice is `persona.layer_choice`'s, as for `eval_persona --layer auto` (`load` computes
    `vector_quality.csv` when it has no rows for the vector). A config without "auto", or with
    steering disabled, comes back unchanged with no records.
    """
    config = cfg.steering
    if config is None or AUTO not in config.layers:
        return cfg, []
    layer, choice = resolve_layer(AUTO, config.steering_vector_path, load=load)
    assert choice is not None  # resolve_layer returns a record for "auto"
    layers = list(dict.fromkeys(layer if value == AUTO else value for value in config.layers))
    log.info("steering_config layers %s -> %s (held-out AUROC %.3f)", config.layers, layers, choice.auroc)
    resolved = config.model_copy(update={"layers": layers})
    return cfg.model_copy(update={"steering_config": resolved}), [choice.record()]


def training_steers(config: SteeringConfig) -> list[Steer]:
    """One `Steer` per configured layer: add `coef * v[layer]` (steer) or project out `v[layer]` fully (ablate).

    CAFT removes the whole component, so `steering_coef` is not used for `ablate`.
    """
    if AUTO in config.layers:
        raise ValueError(
            "steering_config `layers` holds 'auto': resolve it first (persona.training.hooks.resolve_auto_layers; "
            "persona.training.trainer.train does)"
        )
    vector = load_vector(config.steering_vector_path)
    if config.type == "steer":
        return [
            Steer(vector, int(layer), coef=config.steering_coef, positions="all", op="add") for layer in config.layers
        ]
    return [Steer(vector, int(layer), coef=1.0, positions="all", op="ablate") for layer in config.layers]


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
