"""Capture residual-stream activations over (prompt, answer) pairs: one function for extraction and projection.

`capture` runs a model on `prompt + answer` texts in length-sorted, padded batches under
`torch.inference_mode()` and reduces every requested layer to three per-sample summaries:

- `prompt_avg`:   mean hidden state over the prompt tokens,
- `response_avg`: mean hidden state over the answer tokens,
- `prompt_last`:  hidden state at the last prompt token (its output predicts the first answer token).

Layer L means `hidden_states[L]` of a Hugging Face forward pass: row 0 is the embedding
output (the input of block 0), row L < num_layers the output of decoder block L, and row
num_layers the last block's output after the model's final norm (as HF reports it).

Only the decoder blocks up to the deepest requested layer run, and never the LM head:
hooks at each layer's residual site (`persona.sites.residual_site`) reduce it as soon as it
is computed (no sample's full hidden states are kept), and the hook at the deepest needed
layer stops the forward pass.
With `reduce="mean"` the per-sample summaries are summed on the fly (extraction needs only
the means); with `reduce="none"` they are returned per sample (projection).

Prompt/answer boundary: the model reads the tokens of `prompt + answer` (no special tokens
added: the prompt is already chat-templated). The prompt part is the longest common prefix
of those tokens and the tokens of `prompt` alone, so it equals the prompt's own tokens
unless the tokenizer merges across the seam; then the merged token (which holds answer
text) counts as the response, and prompt activations never see answer text.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from persona.batching import length_sorted_batches
from persona.models import LoadedModel
from persona.sites import decoder_stack, residual_site
from persona.vectors import VECTOR_KINDS

log = logging.getLogger(__name__)

Reduce = Literal["none", "mean"]


@dataclass
class Activations:
    """Per-kind summaries at `layers`: `[n, len(layers), hidden]` per sample, or `[len(layers), hidden]` means.

    Per-sample rows are NaN where a sample has no tokens of that part (e.g. a missing answer);
    means skip such samples, and `counts[kind]` says how many samples each mean averages.
    """

    layers: tuple[int, ...]
    prompt_avg: Tensor
    response_avg: Tensor
    prompt_last: Tensor
    counts: dict[str, int]

    def __getitem__(self, kind: str) -> Tensor:
        if kind not in VECTOR_KINDS:
            raise KeyError(f"unknown activation kind {kind!r}; use one of {VECTOR_KINDS}")
        return getattr(self, kind)

    def at_layer(self, kind: str, layer: int) -> Tensor:
        """The summaries of `kind` at one captured layer (`[n, hidden]` or `[hidden]`)."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} was not captured (captured: {list(self.layers)})")
        return self[kind].select(-2, self.layers.index(layer))


@dataclass
class _Encoded:
    ids: list[int]
    n_prompt: int


def _text(value: object) -> str:
    """Missing cells (None, NaN) read as empty text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def encode_pairs(tokenizer, prompts: Sequence[object], answers: Sequence[object]) -> list[_Encoded]:
    """Token ids of `prompt + answer` and the length of the prompt part (see the module docstring)."""
    prompt_texts = [_text(p) for p in prompts]
    answer_texts = [_text(a) for a in answers]
    full = tokenizer([p + a for p, a in zip(prompt_texts, answer_texts)], add_special_tokens=False)["input_ids"]
    alone = tokenizer(prompt_texts, add_special_tokens=False)["input_ids"]
    return [_Encoded(list(ids), len(os.path.commonprefix([ids, p_ids]))) for ids, p_ids in zip(full, alone)]


def resolve_layers(layers: Sequence[int] | None, num_layers: int) -> tuple[int, ...]:
    """Sorted unique layers, all of 0..num_layers when None; out-of-range layers are an error."""
    if layers is None:
        return tuple(range(num_layers + 1))
    out = tuple(sorted({int(layer) for layer in layers}))
    bad = [layer for layer in out if not 0 <= layer <= num_layers]
    if bad or not out:
        raise ValueError(
            f"layers {bad or '[]'} are out of range: the model has layers 0..{num_layers} "
            "(0 = embeddings, L = output of decoder block L)"
        )
    return out


class _StopForward(Exception):
    """Raised by the hook on the deepest needed block: nothing after it has to run."""


class _Batch:
    """Reduction weights for one padded batch; hooks write each layer's summaries into `out`."""

    def __init__(self, items: list[_Encoded], n_slots: int, hidden: int, pad_id: int, left: bool, device: torch.device):
        lengths = [len(e.ids) for e in items]
        width = max(lengths)
        ids = torch.full((len(items), width), pad_id, dtype=torch.long)
        weights = torch.zeros(len(items), len(VECTOR_KINDS), width)  # rows follow VECTOR_KINDS
        for i, e in enumerate(items):
            start = width - len(e.ids) if left else 0
            ids[i, start : start + len(e.ids)] = torch.tensor(e.ids)
            prompt_end, end = start + e.n_prompt, start + len(e.ids)
            if e.n_prompt:
                weights[i, 0, start:prompt_end] = 1.0 / e.n_prompt
                weights[i, 2, prompt_end - 1] = 1.0
            if end > prompt_end:
                weights[i, 1, prompt_end:end] = 1.0 / (end - prompt_end)
        self.input_ids = ids.to(device)
        self.attention_mask = None
        self.position_ids = None
        if left:  # right padding needs no mask: under causal attention no real token sees a pad
            mask = torch.arange(width) >= torch.tensor([width - n for n in lengths])[:, None]
            self.attention_mask = mask.long().to(device)
            self.position_ids = (self.attention_mask.cumsum(-1) - 1).clamp(min=0)
        self.valid = None if self.attention_mask is None else self.attention_mask.bool()[..., None]
        self.weights = weights.to(device)
        self.out = torch.empty(len(items), len(VECTOR_KINDS), n_slots, hidden, device=device)

    def record(self, slot: int, hidden: Tensor) -> None:
        hidden = hidden.float()
        if self.valid is not None:  # left-pad rows attend to nothing: some kernels give NaN, and 0 * NaN is NaN
            hidden = hidden.masked_fill(~self.valid, 0.0)
        self.out[:, :, slot] = torch.bmm(self.weights, hidden)


@contextlib.contextmanager
def _layer_hooks(model: nn.Module, layers: tuple[int, ...], state: dict[str, _Batch]) -> Iterator[None]:
    """One hook per requested layer at its residual site; the deepest one stops the forward pass."""
    deepest = layers[-1]
    handles = []

    def recorder(slot: int, stop: bool):
        def hook(hidden: Tensor) -> None:
            state["batch"].record(slot, hidden)
            if stop:
                raise _StopForward

        return hook

    try:
        for slot, layer in enumerate(layers):
            handles.append(residual_site(model, layer).register(recorder(slot, layer == deepest)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture(
    lm: LoadedModel,
    prompts: Sequence[object],
    answers: Sequence[object],
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 16,
    reduce: Reduce = "none",
    padding_side: Literal["right", "left"] = "right",
    progress: bool = True,
) -> Activations:
    """Prompt-average, response-average and last-prompt-token activations of each (prompt, answer).

    `prompts` are chat-templated texts (ending with the generation prompt), `answers` the
    generated texts; missing answers (None/NaN) give NaN response summaries. `layers`
    defaults to all of 0..num_layers. `reduce="mean"` returns means over samples without
    keeping per-sample rows. Padding side does not change the result (right is fastest).
    """
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    if reduce not in ("none", "mean"):
        raise ValueError(f"reduce must be 'none' or 'mean', not {reduce!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    layers = resolve_layers(layers, lm.num_layers)
    device, hidden = lm.device, lm.hidden_size
    encoded = encode_pairs(lm.tokenizer, prompts, answers)
    kept = [i for i, e in enumerate(encoded) if e.ids]
    lengths = [len(encoded[i].ids) for i in kept]
    batches = [[kept[j] for j in rows] for rows in length_sorted_batches(lengths, batch_size)]
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0

    has = {"prompt_avg": [e.n_prompt > 0 for e in encoded], "response_avg": [len(e.ids) > e.n_prompt for e in encoded]}
    has["prompt_last"] = has["prompt_avg"]
    shape = (len(VECTOR_KINDS), len(layers), hidden)
    per_sample = torch.full((len(encoded), *shape), math.nan) if reduce == "none" else None
    sums = torch.zeros(shape, device=device)
    state: dict[str, _Batch] = {}
    base = decoder_stack(lm.model)
    bar = tqdm(total=len(kept), desc="activations", unit="sample", disable=not progress)
    with torch.inference_mode(), _layer_hooks(lm.model, layers, state), bar:
        for idx in batches:
            batch = state["batch"] = _Batch(
                [encoded[i] for i in idx], len(layers), hidden, pad_id, padding_side == "left", device
            )
            try:
                base(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    use_cache=False,
                )
            except _StopForward:
                pass
            if per_sample is not None:
                per_sample[idx] = batch.out.cpu()
            else:  # a part a sample lacks has zero weights, so it adds nothing to the sums
                sums += batch.out.sum(0)
            bar.update(len(idx))
    log.debug("captured %d samples at %d layers", len(kept), len(layers))

    counts = {kind: sum(flags) for kind, flags in has.items()}
    if per_sample is not None:
        for k, kind in enumerate(VECTOR_KINDS):
            per_sample[[i for i, ok in enumerate(has[kind]) if not ok], k] = math.nan
        values = per_sample.unbind(1)
    else:
        n = torch.tensor([counts[kind] for kind in VECTOR_KINDS])[:, None, None]
        values = (sums.cpu() / n).masked_fill(n == 0, math.nan).unbind(0)
    prompt_avg, response_avg, prompt_last = values  # in VECTOR_KINDS order
    return Activations(layers, prompt_avg, response_avg, prompt_last, counts=counts)


def token_states(lm: LoadedModel, prompt: str, answer: str, layer: int) -> tuple[list[int], int, Tensor]:
    """Every token's hidden state at `layer` over `prompt + answer`: (token ids, prompt length, `[T, hidden]`).

    The tokens and the prompt/answer boundary are `capture`'s (`encode_pairs`), so the mean of the
    answer rows is `capture`'s `response_avg`: per-token views add up to what `cal_projection` reports.
    """
    (layer,) = resolve_layers([layer], lm.num_layers)
    (encoded,) = encode_pairs(lm.tokenizer, [prompt], [answer])
    if not encoded.ids:
        raise ValueError("nothing to read: the prompt and the answer are both empty")
    seen: dict[str, Tensor] = {}

    def hook(hidden: Tensor) -> None:
        seen["states"] = hidden[0].float().cpu()
        raise _StopForward

    handle = residual_site(lm.model, layer).register(hook)
    try:
        with torch.inference_mode():
            decoder_stack(lm.model)(input_ids=torch.tensor([encoded.ids], device=lm.device), use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return encoded.ids, encoded.n_prompt, seen["states"]
