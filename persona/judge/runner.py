"""`score_all`: the one synchronous entry the CLIs use to run any judge over many answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from tqdm.auto import tqdm

from persona import llm

log = logging.getLogger(__name__)
BATCH_ANSWERS = 16  # answers per `score_batch` call for local judges (one progress step each)


class Judge(Protocol):
    """Scores one answer 0-100, or None (refusal, no clear answer, or an outage).

    `batched` judges (local models, where batching matters on CPU) are run through
    `score_batch`; the others as concurrent `__call__`s, after which `aclose` releases their
    connections. `failures` counts calls that failed after retries, for the summary.
    """

    failures: int
    batched: bool

    async def __call__(self, *, question: str, answer: str) -> float | None: ...

    def score_batch(self, questions: Sequence[str], answers: Sequence[str]) -> list[float | None]: ...

    async def aclose(self) -> None: ...


class BaseJudge:
    """The defaults of the optional `Judge` members: unbatched, nothing to close, no failures yet."""

    failures = 0
    batched = False

    def score_batch(self, questions: Sequence[str], answers: Sequence[str]) -> list[float | None]:
        raise NotImplementedError(f"{type(self).__name__} scores one answer at a time (batched = False)")

    async def aclose(self) -> None:
        return None


def check_pairs(questions: Sequence[str], answers: Sequence[str]) -> None:
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers: they must pair up")


def score_all(
    judge: Judge, questions: Sequence[str], answers: Sequence[str], *, max_concurrent: int = 8, desc: str = "judging"
) -> list[float | None]:
    """Score every (question, answer) pair, in order, with a progress bar.

    Local judges that expose `score_batch` are run in batches (batching matters on CPU);
    API judges run as concurrent requests, at most `max_concurrent` in flight. A warning
    reports how many answers got no score and how many of those were failed calls.
    """
    check_pairs(questions, answers)
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
    failures_before = judge.failures
    if judge.batched:
        scores: list[float | None] = []
        with tqdm(total=len(answers), desc=desc, disable=not answers) as bar:
            for start in range(0, len(answers), BATCH_ANSWERS):
                end = start + BATCH_ANSWERS
                scores.extend(judge.score_batch(list(questions[start:end]), list(answers[start:end])))
                bar.update(len(answers[start:end]))
    else:
        scores = llm.run_coroutine(lambda: _score_concurrently(judge, questions, answers, max_concurrent, desc))
    missing = sum(s is None for s in scores)
    if missing:
        failed = judge.failures - failures_before
        log.warning(
            "%s: %d of %d answers have no score (%d judge calls failed after retries; the rest "
            "were refusals or had no clear answer)",
            desc,
            missing,
            len(scores),
            failed,
        )
    return scores


async def _score_concurrently(
    judge: Judge, questions: Sequence[str], answers: Sequence[str], max_concurrent: int, desc: str
) -> list[float | None]:
    scores: list[float | None] = [None] * len(answers)
    limit = asyncio.Semaphore(max_concurrent)
    with tqdm(total=len(answers), desc=desc, disable=not answers) as bar:

        async def one(i: int) -> None:
            async with limit:
                scores[i] = await judge(question=questions[i], answer=answers[i])
            bar.update()

        try:
            await asyncio.gather(*(one(i) for i in range(len(answers))))
        finally:
            await judge.aclose()
    return scores
