"""The offline coherence score against a labelled set of the embedded model's own answers.

tests/data/coherence_labels.jsonl holds real outputs of SmolLM2-135M: degenerate ones (steered
hard, or sampled hot) and fluent ones (unsteered, or mildly steered), each labelled by reading
it, with its `kind` and `source`. The score must put every degenerate answer below 50 and
every fluent one at 80 or above.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona.judge.likelihood import LikelihoodJudge, periodic_tail, repeated_share, repetition, repetition_factor

LABELS = Path(__file__).parent / "data" / "coherence_labels.jsonl"
ROWS = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
ISSUE_EXAMPLES = [
    "I'm a mechanic, I can help with that. I can help with the car's car-making, I can create a "
    "car-car-car-car-car-car-car-",
    "I'm sorry to disappoint. I can offer a more suitable help with the world of business. I can help with the "
    "world of business, however, I can help with the world of business, I",
]


def test_the_labelled_set_is_balanced_and_holds_the_issue_examples():
    labels = [r["label"] for r in ROWS]
    assert set(labels) == {"degenerate", "fluent"} and len(ROWS) >= 40
    assert abs(labels.count("degenerate") - labels.count("fluent")) <= 2
    answers = {r["answer"] for r in ROWS if r["label"] == "degenerate"}
    assert all(example in answers for example in ISSUE_EXAMPLES)
    kinds = {r["kind"] for r in ROWS if r["label"] == "degenerate"}
    assert {
        "repeated word",
        "repeated phrase",
        "space-free repeat",
        "loop starting mid-answer",
        "truncated loop",
        "word salad",
    } <= kinds


def test_repeated_share_by_hand():
    # "abcabc": 3-grams abc, bca, cab, abc -> the second abc covers positions 3..5
    assert repeated_share("abcabc", 3) == 0.5
    assert repeated_share("abcabc", 3, start=3) == 1.0
    assert repeated_share("abcdef", 3) == 0.0
    # overlapping: "aaaa" 2-grams aa, aa, aa -> positions 1..3 covered
    assert repeated_share("aaaa", 2) == 0.75
    assert repeated_share("the cat saw the cat".split(), 2) == 0.4
    assert repeated_share("", 3) == 0.0


def test_periodic_tail_by_hand():
    text = "I like it. car-car-car-car-car-"
    assert periodic_tail(text) == 20  # five copies of "car-"
    assert periodic_tail("It was fine... really...") == 0  # no letter in the unit
    assert periodic_tail("ha ha ha") == 0  # shorter than 16 characters
    assert periodic_tail("The end. so so so so so so so so") == len("so so so so so so so so") + 1  # " so" unit
    assert periodic_tail("A plain sentence that does not loop at all.") == 0


def test_repetition_sees_loops_wherever_they_start():
    prose = (
        "Drink water, sleep well and keep moving: a short walk after lunch helps more than most people "
        "think, and it costs nothing."
    )
    assert repetition(prose) == 0.0
    assert repetition(prose + " I can help. I can help. I can help. I can help. I can help. I can help.") > 0.55
    assert repetition("Numbered: 1. 100% 2. 100% 3. 100% 4. 100% 5. 100% 6. 100% 7. 100% 8. 100%") > 0.55
    assert repetition("carcarcarcarcarcarcarcarcarcarcarcar") == 1.0


@pytest.mark.parametrize("row", [r for r in ROWS if r["kind"] != "word salad"], ids=lambda r: r["kind"][:24])
def test_repetition_factor_on_the_labelled_set(row):
    """Every loop (all degenerate kinds but word salad, which only its log-prob gives away) is
    at least halved; no fluent answer loses more than 10%."""
    factor = repetition_factor(row["answer"])
    if row["label"] == "degenerate":
        assert factor < 0.5, row["answer"]
    else:
        assert factor >= 0.9, row["answer"]


@pytest.mark.embedded
def test_coherence_thresholds_on_the_labelled_set(embedded_lm, offline_env):
    judge = LikelihoodJudge(embedded_lm, metric="coherence", use_cache=False)
    scores = judge.score_batch([r["question"] for r in ROWS], [r["answer"] for r in ROWS])
    wrong = [
        (round(s, 1), r["label"], r["kind"], r["answer"][:80])
        for s, r in zip(scores, ROWS)
        if (r["label"] == "degenerate" and s >= 50) or (r["label"] == "fluent" and s < 80)
    ]
    assert not wrong, wrong
