"""persona.sampling: the draw matches softmax(logits / T) (with top-k / top-p), rows never interact.

Frequencies are compared bin by bin with a 5-sigma bound: for a correct sampler a bin's
binomial count leaves it with probability < 6e-7, so over a few dozen bins a false alarm
has odds below 1e-4 (and the draws are seeded, so a run is deterministic). Each test also
checks that the same bound rejects a plausible wrong answer, so it has the power to fail.
"""

import numpy as np
import pytest
import torch

from persona.sampling import SamplingParams, draw, uniforms

LOGITS = torch.tensor([2.0, 1.2, 1.0, 0.3, 0.0, -0.7, -2.0, -6.0])
N = 60_000


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def frequencies(picks: torch.Tensor, vocab: int) -> np.ndarray:
    return np.bincount(picks.numpy(), minlength=vocab) / len(picks)


def within_5_sigma(freq: np.ndarray, expected: np.ndarray, n: int) -> bool:
    sigma = np.sqrt(expected * (1 - expected) / n)
    return bool(np.all(np.abs(freq - expected) <= 5 * sigma + 1 / n))


def draws_over_rows(logits: torch.Tensor, n: int = N, **kw) -> torch.Tensor:
    """n rows with the same logits and different seeds, one draw each (step 0)."""
    u = uniforms(range(1000, 1000 + n), 1)[:, 0]
    return draw(logits.expand(n, -1), u, **kw)


def test_uniforms_follow_splitmix64_reference():
    # the first splitmix64 output for state 0 is 0xE220A8397B1DCDAF (Vigna's reference generator)
    assert uniforms([0], 1).item() == 0xE220A8 / 2**24
    u = uniforms([5, 7], 3)
    assert u.shape == (2, 3) and u.dtype == torch.float32
    assert torch.equal(uniforms([7], 3)[0], u[1])  # a row's stream ignores the other rows
    big = uniforms(range(20_000), 2)
    assert 0 <= big.min() and big.max() < 1
    assert abs(big.mean().item() - 0.5) < 0.005  # sd of the mean: 0.29 / sqrt(40000) = 0.0014
    assert abs(np.corrcoef(big[:, 0], big[:, 1])[0, 1]) < 0.02  # steps of one stream are uncorrelated


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_frequencies_match_softmax_over_rows(temperature):
    freq = frequencies(draws_over_rows(LOGITS, temperature=temperature), len(LOGITS))
    assert within_5_sigma(freq, softmax(LOGITS.numpy() / temperature), N)
    assert not within_5_sigma(freq, softmax(LOGITS.numpy() / (1.4 - temperature / 2)), N)


def test_frequencies_match_softmax_over_steps_of_one_row():
    steps = 40_000
    u = uniforms([123], steps)[0]
    freq = frequencies(draw(LOGITS.expand(steps, -1), u, temperature=1.0), len(LOGITS))
    assert within_5_sigma(freq, softmax(LOGITS.numpy()), steps)


def nucleus(probs: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """Reference: keep the top k, then the smallest best-first prefix reaching top_p, renormalise."""
    order = np.argsort(-probs, kind="stable")
    keep = np.zeros_like(probs, dtype=bool)
    mass = 0.0
    for rank, tok in enumerate(order):
        if (top_k and rank >= top_k) or mass >= top_p * probs[order[: top_k or None]].sum():
            break
        keep[tok] = True
        mass += probs[tok]
    out = np.where(keep, probs, 0.0)
    return out / out.sum()


@pytest.mark.parametrize(("top_k", "top_p"), [(3, 1.0), (0, 0.8), (0, 0.5), (4, 0.9)])
def test_top_k_and_top_p_frequencies(top_k, top_p):
    probs = softmax(LOGITS.numpy())
    expected = nucleus(probs, top_k, top_p)
    assert (expected == 0).any() and (expected > 0).sum() >= 2  # the case really truncates
    freq = frequencies(draws_over_rows(LOGITS, temperature=1.0, top_k=top_k, top_p=top_p), len(LOGITS))
    assert freq[expected == 0].sum() == 0
    assert within_5_sigma(freq, expected, N)
    assert not within_5_sigma(freq, probs, N)


def test_top_p_matches_transformers_warper():
    from transformers import TopPLogitsWarper

    scores = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 2
    kept_by_hf = TopPLogitsWarper(0.7)(None, scores.clone()) > float("-inf")
    u = uniforms(range(64), 1)[:, 0]
    for trial in range(20):  # every kept token is reachable, no other token ever is
        picks = draw(scores, (u + trial / 20) % 1, temperature=1.0, top_p=0.7)
        assert kept_by_hf.gather(1, picks.view(-1, 1)).all()


def test_rows_never_interact():
    scores = torch.randn(6, 30, generator=torch.Generator().manual_seed(1))
    u = uniforms([11, 12, 13, 14, 15, 16], 1)[:, 0]
    together = draw(scores, u, temperature=1.0, top_p=0.9, top_k=10)
    others = torch.randn(6, 30, generator=torch.Generator().manual_seed(2))
    for row in range(6):
        mixed = torch.cat([others[:row], scores[row : row + 1], others[row + 1 :]])
        assert draw(mixed, u, temperature=1.0, top_p=0.9, top_k=10)[row] == together[row]
        assert draw(scores[row : row + 1], u[row : row + 1], temperature=1.0, top_p=0.9, top_k=10)[0] == together[row]


def test_masked_tokens_are_never_drawn_even_at_the_extremes():
    scores = torch.tensor([[float("-inf"), 0.0, float("-inf"), 1.0, float("-inf")]]).expand(5, -1)
    u = torch.tensor([0.0, 2.0**-24, 0.5, 1 - 2.0**-24, 1 - 2.0**-23])
    picks = draw(scores, u, temperature=1.0)
    assert set(picks.tolist()) <= {1, 3}
    assert picks[0] == 1 and picks[3] == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -1.0),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("min_new_tokens", -1),
        ("max_new_tokens", 0),
    ],
)
def test_sampling_params_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})
