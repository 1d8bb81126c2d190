"""score_all from synchronous code and from inside a running event loop (Jupyter)."""

import asyncio

import pytest

from persona.judge import score_all
from persona.judge.runner import BaseJudge


class LengthJudge(BaseJudge):
    """An async judge whose score is the answer length, so the expected scores are known."""

    def __init__(self):
        self.loops = set()

    async def __call__(self, *, question: str, answer: str) -> float | None:
        self.loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0)
        return float(len(answer)) if answer else None


def test_score_all_keeps_order_and_none():
    judge = LengthJudge()
    assert score_all(judge, ["q"] * 3, ["ab", "", "abcd"], max_concurrent=2) == [2.0, None, 4.0]


def test_score_all_works_inside_a_running_event_loop():
    judge = LengthJudge()

    async def notebook_cell() -> list[float | None]:
        # a notebook runs cells inside a loop: asyncio.run would refuse here
        return score_all(judge, ["q", "q"], ["abc", "de"])

    assert asyncio.run(notebook_cell()) == [3.0, 2.0]
    assert len(judge.loops) == 1


def test_score_all_rejects_unpaired_inputs():
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        score_all(LengthJudge(), ["a", "b"], ["x"])
