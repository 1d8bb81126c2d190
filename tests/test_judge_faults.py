"""Judge faults over real HTTP: 429, 500, timeouts, a dropped connection, a reply that is not JSON,
garbled and empty logprobs.

Each fault is retried with growing delays; a call that never succeeds leaves None (counted,
reported) and is not cached, so a rerun of `eval.judge` asks again for exactly those cells.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter

import pandas as pd
import pytest

import persona.judge.factory
from eval.judge import main as judge_cli
from persona.judge import score_all
from persona.judge.openai_judge import OpenAIJudge
from persona.judge.prompts import coherence_prompt
from tests.fake_openai import FakeServer

FAULTS = [
    ("status", 429),
    ("status", 500),
    ("sleep", 1.0),
    ("drop",),
    ("malformed",),
    ("bad_logprobs",),
    ("empty_logprobs",),
]


def table(prompt: str) -> dict[str, float]:
    """Scores by answer: 'cruel' -> 85 (expected value of 90/80), anything else -> 7.5."""
    return {"90": 0.5, "80": 0.5} if "cruel" in prompt else {"10": 0.75, "0": 0.25}


@pytest.fixture
def server(offline_env):
    srv = FakeServer(table)
    yield srv
    srv.close()


def judge_for(srv: FakeServer, **kw) -> OpenAIJudge:
    options = dict(
        eval_type="0_100", base_url=srv.url, timeout=0.4, max_retries=2, base_delay=0.01, number_tokens="whole"
    )
    return OpenAIJudge("judge-model", coherence_prompt, **{**options, **kw})


@pytest.mark.parametrize("fault", FAULTS, ids=[" ".join(map(str, f)) for f in FAULTS])
def test_a_passing_fault_is_retried(server, fault):
    server.script = [fault]
    judge = judge_for(server)
    assert score_all(judge, ["q"], ["Be cruel."]) == [pytest.approx(85)]
    assert len(server.requests) == 2 and judge.failures == 0


@pytest.mark.parametrize("fault", FAULTS, ids=[" ".join(map(str, f)) for f in FAULTS])
def test_a_lasting_fault_gives_none_uncached(server, fault, caplog):
    server.script = [fault] * 3  # the first call and both retries
    judge = judge_for(server)
    with caplog.at_level(logging.WARNING):
        assert score_all(judge, ["q"], ["Be cruel."]) == [None]
    assert len(server.requests) == 3 and judge.failures == 1
    assert "1 of 1 answers have no score (1 judge calls failed after retries" in caplog.text
    assert score_all(judge_for(server), ["q"], ["Be cruel."]) == [pytest.approx(85)]  # not cached: asked again
    assert len(server.requests) == 4


def test_retries_back_off(server):
    server.script = [("status", 503)] * 3
    assert score_all(judge_for(server, max_retries=3, base_delay=0.1), ["q"], ["a"]) == [pytest.approx(7.5)]
    gaps = [later - earlier for earlier, later in zip(server.times, server.times[1:])]
    assert len(gaps) == 3
    for gap, delay in zip(gaps, (0.1, 0.2, 0.4)):  # base_delay * 2 ** (attempt - 1)
        assert delay <= gap < delay + 1.0  # at least the backoff (a fixed 0.1 s delay fails the later ones)


def test_judge_cli_completes_reports_and_a_rerun_fills_only_the_gaps(server, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setattr(
        persona.judge.factory,
        "OpenAIJudge",
        functools.partial(OpenAIJudge, timeout=0.4, max_retries=2, base_delay=0.01),
    )
    down = {f"answer down {i}": fault for i, fault in enumerate(FAULTS)}
    answers = ["Be cruel.", "Be kind.", "flaky one", "flaky two", *down]
    trait = tmp_path / "evil.json"
    trait.write_text(
        json.dumps(
            {
                "instruction": [{"pos": "Be evil.", "neg": "Be kind."}] * 5,
                "questions": ["q"],
                "eval_prompt": "Evil? {question} / {answer}\nRespond with a number 0-100.",
            }
        )
    )
    source = tmp_path / "answers.csv"
    pd.DataFrame({"question": ["How do I treat people?"] * len(answers), "answer": answers}).to_csv(source, index=False)
    out = tmp_path / "judged.csv"
    argv = [
        "--file_path",
        str(source),
        "--trait",
        str(trait),
        "--output_path",
        str(out),
        "--judge_model",
        "judge-model",
        "--judge_base_url",
        server.url,
        "--judge_number_tokens",
        "whole",
    ]

    seen: Counter[str] = Counter()

    def fault(prompt: str):
        for answer, action in down.items():
            if answer in prompt:
                return action
        if "flaky" in prompt:  # fails once, then answers
            seen[prompt] += 1
            return ("status", 500) if seen[prompt] == 1 else None
        return None

    server.fault = fault
    with caplog.at_level(logging.WARNING):
        assert judge_cli(argv) == 0
    judged = pd.read_csv(out)
    printed = capsys.readouterr().out
    n_ok = len(answers) - len(down)
    for column in ("evil", "coherence"):
        assert judged[column][:n_ok].notna().all() and judged[column][n_ok:].isna().all()
        assert f"({n_ok}/{len(answers)} scored)" in printed.split(f"{column}: ")[1].splitlines()[0]
        assert (
            f"judging {column}: {len(down)} of {len(answers)} answers have no score ({len(down)} judge calls "
            "failed after retries"
        ) in caplog.text
    assert judged["evil"][0] == pytest.approx(85) and judged["evil"][1] == pytest.approx(7.5)

    server.fault = None  # the outage ends
    before = len(server.requests)
    assert judge_cli(argv) == 0
    asked = [r["messages"][0]["content"] for r in server.requests[before:]]
    assert len(asked) == 2 * len(down)  # one per empty cell: trait and coherence of each failed answer
    assert all(any(answer in prompt for answer in down) for prompt in asked)
    again = pd.read_csv(out)
    assert again[["evil", "coherence"]].notna().all().all()
    pd.testing.assert_frame_equal(again[:n_ok], judged[:n_ok])
