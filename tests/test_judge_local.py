"""Local HF logprob judge: the cached, batched expectation equals a naive per-candidate computation."""

from __future__ import annotations

import pytest
import torch

from persona.judge.aggregate import aggregate, candidates
from persona.judge.local_judge import LocalLogprobJudge, candidate_logprobs

TEMPLATE = "Rate the answer.\nQ: {question}\nA: {answer}\nRespond with a number between 0 and 100."


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "cache"))


def naive_logprobs(lm, prompt: str, answers: list[str], shared: int) -> torch.Tensor:
    """log P(tokens of prompt+answer after `shared` | the first `shared`), then a non-digit, from an
    uncached forward over each whole sequence (right-padded, so no real position sees padding);
    the digit test reads each vocab token's text."""
    tok = lm.tokenizer
    seqs = [tok(prompt + a, add_special_tokens=False)["input_ids"] for a in answers]
    width = max(map(len, seqs))
    with torch.no_grad():
        lp = lm.model(input_ids=torch.tensor([s + [0] * (width - len(s)) for s in seqs])).logits.float().log_softmax(-1)
    vocab = tok.convert_ids_to_tokens(list(range(lp.shape[-1])))
    digit = torch.tensor([bool(t) and t[0] in "0123456789" for t in vocab])
    out = []
    for row, (answer, ids) in enumerate(zip(answers, seqs)):
        total = sum(lp[row, t - 1, ids[t]].item() for t in range(shared, len(ids)))
        if answer.isdigit():
            total += torch.log1p(-lp[row, len(ids) - 1][digit].exp().sum()).item()
        out.append(total)
    return torch.tensor(out)


@pytest.mark.parametrize("prefill", ["", "Score: "])
def test_exact_expectation_matches_naive_per_candidate(tiny_lm, prefill):
    judge = LocalLogprobJudge(tiny_lm, TEMPLATE, prefill=prefill, use_cache=False)
    prompt = judge.prompt("How are you?", "Fine, thanks. Score: 85")
    assert prompt.endswith("<|im_start|>assistant\n" + prefill)
    answers = candidates("0_100")
    fast = candidate_logprobs(tiny_lm, prompt, answers)

    tok = tiny_lm.tokenizer
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    fulls = [tok(prompt + a, add_special_tokens=False)["input_ids"] for a in answers]
    shared = min(next((k for k, (x, y) in enumerate(zip(p_ids, f)) if x != y), min(len(p_ids), len(f))) for f in fulls)
    naive = naive_logprobs(tiny_lm, prompt, answers, shared)
    torch.testing.assert_close(fast, naive, atol=1e-4, rtol=1e-4)

    p = naive.exp()
    expected = (p * torch.arange(101)).sum() / p.sum()
    table = judge.probabilities(prompt)
    got = sum(int(a) * q for a, q in table.items()) / sum(table.values())
    assert got == pytest.approx(expected.item(), rel=1e-4)


def test_binary_candidates_and_cache(tiny_lm, monkeypatch):
    judge = LocalLogprobJudge(tiny_lm, TEMPLATE, eval_type="binary")
    table = judge.probabilities(judge.prompt("q", "a"))
    assert set(table) == {"YES", "NO", "REFUSAL"}
    first = judge.score_batch(["q"], ["a"])
    assert first == [aggregate(table, "binary")]

    def boom(*args, **kwargs):
        raise AssertionError("a cached judgment must not run the model")

    monkeypatch.setattr("persona.judge.local_judge.candidate_logprobs", boom)
    again = LocalLogprobJudge(tiny_lm, TEMPLATE, eval_type="binary")
    assert again.score_batch(["q"], ["a"]) == first


def test_binary_text_is_rejected_for_local_judges(tiny_lm):
    with pytest.raises(ValueError, match="binary_text"):
        LocalLogprobJudge(tiny_lm, TEMPLATE, eval_type="binary_text")


@pytest.mark.embedded
def test_local_judge_reads_a_multi_digit_number(embedded_lm):
    """SmolLM2 writes numbers digit by digit: a first-token read would see "8"; the exact
    candidate probabilities put the mass on "85"."""
    judge = LocalLogprobJudge(
        embedded_lm, "Repeat the number {answer} and nothing else.{question}", prefill="Score: ", use_cache=False
    )
    table = judge.probabilities(judge.prompt("", "85"))
    assert max(table, key=table.get) == "85" and table["85"] > 5 * table["8"]
    assert sum(table.values()) > 0.25 and judge.score_batch([""], ["85"])[0] is not None
