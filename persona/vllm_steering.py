"""Steering inside vLLM's own forward pass, at exactly the positions `persona.steering` steers.

vLLM flattens the tokens of every scheduled request into one `[tokens, hidden]` tensor, so a
forward pre-hook on the first decoder layer builds, once per step, a table saying which request
(and so which of our rows) owns each token and where the token sits (`positions` against the
request's prompt length), from the model runner's batch (`query_start_loc`, request order,
per-request state). The steering hooks then add `coef * vector` at exactly the positions
`persona.steering` would steer:

- ``response``: positions >= prompt length - 1 (the last prompt token and every generated one);
- ``prompt``: positions < prompt length; ``all``: every real token, never padding.

A vLLM decoder layer returns `(mlp_out, residual)` whose sum is the residual stream that
transformers reports as `hidden_states[L]`; the change goes into exactly one of the two.
Layer 0 is the input of block 0 and the last layer the output of the final norm, as in
`persona.sites` (whose layer -> module map this reuses, with `persona.steering`'s add/ablate
arithmetic). Per-row coefficients become per-token coefficients through the table. The
backend that runs these hooks is `persona.vllm_backend`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from persona.sites import decoder_layers, decoder_stack, residual_site
from persona.steering import Steer, steer_change

ROW_KEY = "persona_row"  # SamplingParams.extra_args key that tells a hook which of our rows a request is


class _TokenTable:
    """Per forward step: which row owns each flattened token, and which positions each kind steers."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.rows: Tensor | None = None  # [tokens] row index, -1 on padding
        self.masks: dict[str, Tensor] = {}

    def refresh(self, positions: Tensor) -> None:
        runner, batch = self.runner, self.runner.input_batch
        n = batch.num_reqs
        states = [runner.requests[req_id] for req_id in batch.req_ids[:n]]
        starts = runner.query_start_loc.cpu[: n + 1].to(torch.long)
        counts = (starts[1:] - starts[:-1]).to(positions.device)
        rows = torch.tensor([s.sampling_params.extra_args[ROW_KEY] for s in states], device=positions.device)
        prompt_len = torch.tensor([s.num_prompt_tokens for s in states], device=positions.device)
        real = int(starts[n])
        owner = torch.full_like(positions, -1, dtype=torch.long)
        owner[:real] = rows.repeat_interleave(counts)
        length = torch.zeros_like(owner)
        length[:real] = prompt_len.repeat_interleave(counts)
        is_real = owner >= 0
        self.rows = owner
        self.masks = {
            "all": is_real,
            "prompt": is_real & (positions < length),
            "response": is_real & (positions >= length - 1),
        }

    def coefficients(self, steer: Steer, like: Tensor) -> Tensor:
        """`[tokens, 1]` coefficient of `steer` for every token (0 where it does not steer)."""
        if self.rows is None:
            raise RuntimeError("a steering hook ran before the token table saw the step's positions")
        mask = self.masks[steer.positions].to(like.dtype)
        coef = steer.coef
        if isinstance(coef, Tensor) and coef.dim() > 0:
            per_row = coef.to(like.device, like.dtype)
            return (per_row[self.rows.clamp(min=0)] * mask).unsqueeze(-1)
        return (float(coef) * mask).unsqueeze(-1)


def _layer_hook(steer: Steer, direction: Tensor, table: _TokenTable) -> Callable[..., Any]:
    """Forward hook on decoder block L-1: `(mlp_out, residual)` sums to the stream; change `mlp_out` only."""

    def hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
        out, residual = output
        stream = out if residual is None else out + residual
        coef = table.coefficients(steer, out)
        return (out + coef * steer_change(steer.op, direction, stream), residual)

    return hook


def _input_hook(steer: Steer, direction: Tensor, table: _TokenTable) -> Callable[..., Any]:
    """Forward pre-hook on block 0 (layer 0): its `hidden_states` input (plus residual, if any) is the stream."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> Any:
        positions, hidden, residual = _block_inputs(args, kwargs)
        stream = hidden if residual is None else hidden + residual
        new = hidden + table.coefficients(steer, hidden) * steer_change(steer.op, direction, stream)
        if len(args) >= 2:
            return (args[0], new, *args[2:]), kwargs
        return args, {**kwargs, "hidden_states": new}

    return hook


def _norm_hook(steer: Steer, direction: Tensor, table: _TokenTable) -> Callable[..., Any]:
    """Forward hook on the final norm (the last layer): its normalised output is the stream."""

    def hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
        normed = output[0] if isinstance(output, tuple) else output
        new = normed + table.coefficients(steer, normed) * steer_change(steer.op, direction, normed)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


def _block_inputs(args: tuple, kwargs: dict) -> tuple[Tensor, Tensor, Tensor | None]:
    names = ("positions", "hidden_states", "residual")
    values = {**dict(zip(names, args)), **{k: v for k, v in kwargs.items() if k in names}}
    return values["positions"], values["hidden_states"], values.get("residual")


def unsteerable_reason(model: nn.Module) -> str | None:
    """Why steering cannot be placed exactly in this vLLM model, or None when it can."""
    try:
        layers = decoder_layers(model)
    except TypeError as err:
        return str(err)
    params = inspect.signature(layers[0].forward).parameters
    if not {"positions", "hidden_states", "residual"} <= set(params):
        return (
            f"{type(layers[0]).__name__}.forward takes {list(params)}, not the (positions, hidden_states, "
            "residual) convention whose (mlp_out, residual) output this backend steers"
        )
    if not isinstance(getattr(decoder_stack(model), "norm", None), nn.Module):
        return f"{type(decoder_stack(model)).__name__} has no final `norm` module"
    return None


@contextmanager
def steering_in_vllm(runner: Any, steers: Sequence[Steer], directions: Sequence[Tensor]) -> Iterator[None]:
    """Hooks that apply `steers` inside the runner's model while the block runs; always removed."""
    model = runner.get_model()
    layers = decoder_layers(model)
    param = next(model.parameters())
    table = _TokenTable(runner)
    handles = [
        layers[0].register_forward_pre_hook(
            lambda _m, args, kwargs: table.refresh(_block_inputs(args, kwargs)[0]), with_kwargs=True
        )
    ]
    try:
        for steer, direction in zip(steers, directions):
            d = direction.to(param.device, param.dtype)
            site = residual_site(model, steer.layer)  # the same layer -> module map as HF steering
            if site.is_input:
                handles.append(site.module.register_forward_pre_hook(_input_hook(steer, d, table), with_kwargs=True))
            elif site.module is decoder_stack(model).norm:
                handles.append(site.module.register_forward_hook(_norm_hook(steer, d, table)))
            else:  # a vLLM decoder block returns (mlp_out, residual), not the stream
                handles.append(site.module.register_forward_hook(_layer_hook(steer, d, table)))
        yield
    finally:
        for handle in handles:
            handle.remove()
