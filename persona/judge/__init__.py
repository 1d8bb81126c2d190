"""Judges: score an answer 0-100 for a trait or for coherence, behind one async interface.

    judge = make_judge("likelihood", trait=trait, metric=trait.judge_column, eval_model=lm)
    scores = score_all(judge, questions, answers, max_concurrent=8)

Backends: the OpenAI logprob judge (the paper's method), any OpenAI-compatible server
(digit-split tokenizers handled), a local Hugging Face logprob judge (exact expectation)
and the offline likelihood proxy judge. All cache judgments on disk.
"""

from persona.judge.aggregate import EVAL_TYPES
from persona.judge.factory import DEFAULT_OPENAI_JUDGE, JudgeSettings, make_judge, make_judges
from persona.judge.openai_judge import JudgeConfigError
from persona.judge.prompts import COHERENCE
from persona.judge.runner import Judge, score_all

__all__ = [
    "COHERENCE",
    "DEFAULT_OPENAI_JUDGE",
    "EVAL_TYPES",
    "Judge",
    "JudgeConfigError",
    "JudgeSettings",
    "make_judge",
    "make_judges",
    "score_all",
]
