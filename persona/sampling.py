"""Batch-independent sampling on the model's device.

Row r draws its token at step t from softmax(logits / temperature) (after top-k and top-p)
by inverse-CDF lookup with a counter-based uniform u(seed_r, t). The uniform depends only on
the row's seed and the step, so a token depends on (seed, prompt, steering) and never on
which rows share the batch, the batch size or any global random state: a packed sweep
equals cell-by-cell runs. The uniforms of a whole batch are computed once (one small
host-to-device copy per batch); each step is a handful of vectorised ops on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from transformers import LogitsProcessor

from persona.checks import check_finite

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1
_UNIFORM_BITS = 24  # float32 holds every multiple of 2**-24 in [0, 1) exactly


@dataclass
class SamplingParams:
    """How answers are drawn; the defaults mirror the original study (see `eval_persona --help`)."""

    max_new_tokens: int = 1000
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0  # 1 keeps every token
    top_k: int = 0  # 0 keeps every token
    min_new_tokens: int = 1  # stop tokens are masked until this many tokens exist

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):  # NaN passes every comparison below
            check_finite(getattr(self, name), name)
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be >= 0, got {self.min_new_tokens}")


def study_sampling(
    n_per_question: int,
    max_new_tokens: int,
    temperature: float | None = None,
    *,
    top_p: float = 1.0,
    top_k: int = 0,
    min_new_tokens: int = 1,
) -> SamplingParams:
    """The study's rule: greedy for one sample per question, temperature 1 for several, unless given."""
    if temperature is None:
        temperature = 0.0 if n_per_question == 1 else 1.0
    return SamplingParams(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k, min_new_tokens=min_new_tokens
    )


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (numpy wraps modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seeds: Sequence[int], steps: int) -> torch.Tensor:
    """`[rows, steps]` float32 uniforms in [0, 1): entry (r, t) is the t-th output of a splitmix64
    stream seeded with `seeds[r]`, so it depends on that seed and step only."""
    state = np.array([s & _MASK64 for s in seeds], dtype=np.uint64)[:, None]
    counter = np.arange(1, steps + 1, dtype=np.uint64)[None, :]
    bits = _splitmix64(state + counter * _GOLDEN) >> np.uint64(64 - _UNIFORM_BITS)
    return torch.from_numpy(bits.astype(np.float32) * np.float32(2.0**-_UNIFORM_BITS))


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k best tokens of each row (ties with the k-th are kept, as transformers does)."""
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest best-first set of tokens whose probability reaches p (the best always stays)."""
    ranked, order = logits.sort(dim=-1, descending=True)
    probs = ranked.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the strictly better-ranked tokens
    ranked = ranked.masked_fill(before >= p, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, ranked)


def draw(
    scores: torch.Tensor, u: torch.Tensor, *, temperature: float, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """One token per row from softmax(scores / temperature) restricted by top-k then top-p.

    `u` holds one uniform in [0, 1) per row; the token is the first whose running weight
    exceeds u times the row's total. Every operation is row-wise, so rows never interact.
    """
    logits = scores.float() / temperature
    if top_k > 0:
        logits = _top_k(logits, top_k)
    if top_p < 1.0:
        logits = _top_p(logits, top_p)
    best_logit, best = logits.max(dim=-1, keepdim=True)
    weights = torch.exp(logits - best_logit)
    cdf = weights.cumsum(dim=-1)
    total = cdf[:, -1:]
    target = torch.minimum(u.view(-1, 1).to(total) * total, torch.nextafter(total, torch.zeros_like(total)))
    picks = torch.searchsorted(cdf, target, right=True)
    # a masked (zero-weight) token is never drawn, whatever the rounding of the running sum
    return torch.where(weights.gather(-1, picks) > 0, picks, best).squeeze(-1)


class RowSampler(LogitsProcessor):
    """Draws every row's token on the device and returns scores that make greedy pick it.

    Used with greedy decoding, so `generate` keeps its cache and stopping logic while the
    draw itself is batch-independent. The step comes from the length of `input_ids`
    (`prompt_length` = the padded prompt width), so the processor holds no mutable state.
    """

    def __init__(
        self, seeds: Sequence[int], params: SamplingParams, prompt_length: int, device: torch.device | str
    ) -> None:
        self.u = uniforms(seeds, params.max_new_tokens).to(device)
        self.params = params
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = min(input_ids.shape[1] - self.prompt_length, self.u.shape[1] - 1)
        picks = draw(
            scores,
            self.u[:, step],
            temperature=self.params.temperature,
            top_k=self.params.top_k,
            top_p=self.params.top_p,
        )
        return cast(torch.FloatTensor, torch.full_like(scores, float("-inf")).scatter_(-1, picks.view(-1, 1), 0.0))
