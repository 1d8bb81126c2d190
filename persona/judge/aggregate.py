"""Turn a judge's answer distribution into one 0-100 score, per eval type (pure math).

Every eval type reports on the same 0-100 scale, so thresholds (trait >= 50,
coherence >= 50) mean the same whichever type the judge used:

- ``0_100``: probability-weighted mean of the numbers 0..100; no explicit refusal check,
  but `None` when less than `MIN_MASS` of the probability is on numbers.
- ``0_10``: a single digit 0..9 (one token in every tokenizer), mean scaled by 100/9;
  `None` when REFUSAL beats every digit or when digits hold less than `MIN_MASS`.
- ``binary``: 100 * P(YES) / (P(YES) + P(NO)); `None` when REFUSAL beats both or when
  YES and NO together hold less than `MIN_MASS`.
- ``binary_text``: a generated verdict `<answer>YES|NO|REFUSAL</answer>` -> 100, 0, None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

EVAL_TYPES = ("0_100", "0_10", "binary", "binary_text")
LOGPROB_TYPES = ("0_100", "0_10", "binary")
MIN_MASS = 0.25
REFUSAL = "REFUSAL"
_NUMBER = re.compile(r"[0-9]{1,3}")
_VERDICT = re.compile(r"<answer>\s*(YES|NO|REFUSAL)\s*</answer>")


def check_eval_type(eval_type: str) -> str:
    if eval_type not in EVAL_TYPES:
        raise ValueError(f"unknown judge eval type {eval_type!r}; use one of {list(EVAL_TYPES)}")
    return eval_type


def candidates(eval_type: str) -> list[str]:
    """Every answer a logprob judge of this type can give (what the local judge scores exactly)."""
    if eval_type == "0_100":
        return [str(n) for n in range(101)]
    if eval_type == "0_10":
        return [str(n) for n in range(10)] + [REFUSAL]
    if eval_type == "binary":
        return ["YES", "NO", REFUSAL]
    raise ValueError(f"eval type {eval_type!r} has no fixed answer set (it is parsed from generated text)")


def token_probs(top_logprobs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """{token text: probability} from (token, logprob) pairs; surrounding spaces are ignored
    (open models often emit ' 7' or ' YES') and tokens equal after stripping are summed."""
    probs: dict[str, float] = {}
    for token, logprob in top_logprobs:
        key = token.strip()
        probs[key] = probs.get(key, 0.0) + math.exp(logprob)
    return probs


def _number(token: str) -> int | None:
    return int(token) if _NUMBER.fullmatch(token) else None


def _mean_over(probs: Mapping[str, float], top: int) -> tuple[float, float]:
    """(probability mass on the numbers 0..top, probability-weighted sum of those numbers)."""
    mass = weighted = 0.0
    for token, p in probs.items():
        n = _number(token)
        if n is not None and n <= top:
            mass += p
            weighted += n * p
    return mass, weighted


def aggregate(probs: Mapping[str, float], eval_type: str) -> float | None:
    """The 0-100 score for a {answer token: probability} table, or None (refusal / no clear answer)."""
    if eval_type == "0_100":
        mass, weighted = _mean_over(probs, 100)
        return weighted / mass if mass >= MIN_MASS else None
    if eval_type == "0_10":
        digits = [probs.get(str(d), 0.0) for d in range(10)]
        if probs.get(REFUSAL, 0.0) > max(digits):
            return None
        mass, weighted = _mean_over(probs, 9)
        return weighted / mass * 100 / 9 if mass >= MIN_MASS else None
    if eval_type == "binary":
        yes, no, refusal = probs.get("YES", 0.0), probs.get("NO", 0.0), probs.get(REFUSAL, 0.0)
        if refusal > yes and refusal > no:
            return None
        return 100 * yes / (yes + no) if yes + no >= MIN_MASS else None
    raise ValueError(f"eval type {eval_type!r} is not scored from logprobs; use one of {list(LOGPROB_TYPES)}")


def aggregate_text(text: str) -> float | None:
    """`binary_text`: the last `<answer>...</answer>` verdict -> 100 (YES), 0 (NO), None (REFUSAL/none)."""
    verdicts = _VERDICT.findall(text or "")
    if not verdicts or verdicts[-1] == REFUSAL:
        return None
    return 100.0 if verdicts[-1] == "YES" else 0.0


def number_tokenization(probs: Mapping[str, float]) -> str | None:
    """From the answer distribution to "reply with the number 73": "whole" when the tokenizer
    has multi-digit number tokens, "split" when only single digits appear, None if no digits.

    A digit-by-digit tokenizer can never emit a multi-digit token, so one such token in the
    top logprobs settles it; its absence while a lone digit leads means the number was split.
    """
    numbers = [t for t in probs if _number(t) is not None]
    if any(len(t) > 1 for t in numbers):
        return "whole"
    return "split" if numbers else None
