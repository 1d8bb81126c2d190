"""The OpenAI(-compatible) judge over real HTTP against a scripted local server."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from persona.judge import JudgeConfigError, make_judge, score_all
from persona.judge.openai_judge import PROBE_PROMPT, OpenAIJudge
from persona.judge.prompts import coherence_prompt
from persona.traits import Trait
from tests.fake_openai import FakeServer

SECRET = "sk-test-secret-value-123"


def answer_table(prompt: str) -> dict[str, float]:
    """Scripted judge: the answer text decides the top-token table."""
    if PROBE_PROMPT in prompt:
        return {"73": 0.9, "7": 0.1}
    if "cruel" in prompt:
        return {"90": 0.5, "80": 0.5}
    if "refuse" in prompt:
        return {"REFUSAL": 0.9, "0": 0.1}
    return {"10": 0.75, "0": 0.25}


@pytest.fixture
def server():
    srv = FakeServer(answer_table)
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def cache_dir(offline_env):
    return offline_env


def judge_for(srv, **kw) -> OpenAIJudge:
    defaults = dict(
        eval_type="0_100", base_url=srv.url, timeout=0.3, max_retries=3, base_delay=0.01, number_tokens="whole"
    )
    return OpenAIJudge("judge-model", lambda et: coherence_prompt(et), **{**defaults, **kw})


QUESTIONS = ["How do I treat people?"] * 3
ANSWERS = ["Be cruel to them.", "Be kind to them.", "I refuse to answer."]


def test_scores_use_the_paper_request_and_aggregation(server):
    scores = score_all(judge_for(server), QUESTIONS, ANSWERS)
    assert scores == [pytest.approx(85), pytest.approx(7.5), None]
    for req in server.requests:
        assert (req["max_tokens"], req["temperature"], req["logprobs"], req["top_logprobs"], req["seed"]) == (
            1,
            0,
            True,
            20,
            0,
        )
    sent = [r["messages"] for r in server.requests]  # concurrent, so in any order
    expected = coherence_prompt("0_100").format(question=QUESTIONS[0], answer=ANSWERS[0])
    assert [{"role": "user", "content": expected}] in sent


def test_429_then_success_is_retried(server):
    server.script = [("status", 429), ("status", 503)]
    judge = judge_for(server)
    assert score_all(judge, QUESTIONS[:1], ANSWERS[:1]) == [pytest.approx(85)]
    assert len(server.requests) == 3 and judge.failures == 0


def test_timeout_is_retried(server):
    server.script = [("sleep", 1.5)]
    judge = judge_for(server)
    started = time.monotonic()
    assert score_all(judge, QUESTIONS[:1], ANSWERS[:1]) == [pytest.approx(85)]
    assert len(server.requests) == 2 and time.monotonic() - started < 1.5


def test_outage_gives_none_and_a_warning_not_a_crash_and_is_not_cached(server, caplog):
    server.script = [("status", 500)] * 4
    judge = judge_for(server, max_retries=3)
    with caplog.at_level(logging.WARNING):
        scores = score_all(judge, QUESTIONS[:2], ANSWERS[:2], max_concurrent=1)
    assert scores == [None, pytest.approx(7.5)]
    assert judge.failures == 1 and "1 judge calls failed" in caplog.text
    assert len(server.requests) == 5
    assert score_all(judge_for(server), QUESTIONS[:2], ANSWERS[:2]) == [pytest.approx(85), pytest.approx(7.5)]
    assert len(server.requests) == 6  # only the failed one is asked again


def test_second_run_is_served_from_the_cache(server):
    first = score_all(judge_for(server), QUESTIONS, ANSWERS)
    n = len(server.requests)
    assert n == 3
    assert score_all(judge_for(server), QUESTIONS, ANSWERS) == first  # cached None (refusal) included
    assert len(server.requests) == n
    uncached = judge_for(server, use_cache=False)
    assert score_all(uncached, QUESTIONS, ANSWERS) == first
    assert score_all(uncached, QUESTIONS, ANSWERS) == first  # one judge serves successive event loops
    assert len(server.requests) == 3 * n


def test_concurrency_limit_is_respected(server):
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    def slow(prompt):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return {"50": 1.0}

    server.respond = slow
    scores = score_all(judge_for(server, use_cache=False), ["q"] * 9, [f"a{i}" for i in range(9)], max_concurrent=3)
    assert scores == [pytest.approx(50)] * 9 and peak[0] <= 3


def test_digit_split_server_is_detected_and_judged_on_the_0_10_scale(server, caplog):
    def split(prompt):
        if PROBE_PROMPT in prompt:
            return {"7": 0.95, "The": 0.05}
        return {"8": 0.5, "9": 0.5} if "single digit" in prompt else {"8": 1.0}

    server.respond = split
    judge = judge_for(server, number_tokens="auto")
    with caplog.at_level(logging.WARNING):
        assert score_all(judge, QUESTIONS[:2], ANSWERS[:2]) == [pytest.approx(8.5 * 100 / 9)] * 2
    assert "splits numbers into digits" in caplog.text
    contents = [r["messages"][0]["content"] for r in server.requests]
    assert contents.count(PROBE_PROMPT) == 1 and all("single digit" in c for c in contents[1:])
    score_all(judge_for(server, number_tokens="auto"), QUESTIONS[:2], ANSWERS[:2])
    assert len(server.requests) == 3  # probe and judgments all cached


def test_whole_number_server_keeps_0_100(server):
    judge = judge_for(server, number_tokens="auto")
    assert score_all(judge, QUESTIONS[:1], ANSWERS[:1]) == [pytest.approx(85)]
    assert server.requests[0]["messages"][0]["content"] == PROBE_PROMPT


def test_declared_split_skips_the_probe(server):
    server.respond = lambda prompt: {"3": 1.0}
    assert score_all(judge_for(server, number_tokens="split"), ["q"], ["a"]) == [pytest.approx(300 / 9)]
    assert len(server.requests) == 1 and "single digit" in server.requests[0]["messages"][0]["content"]


def test_binary_text_generates_and_parses(server):
    server.respond = lambda prompt: "Reasoning... <answer>YES</answer>"
    judge = judge_for(server, eval_type="binary_text")
    assert score_all(judge, ["q"], ["a"]) == [100.0]
    assert "max_tokens" not in server.requests[0] and "<answer>" in server.requests[0]["messages"][0]["content"]


def test_bad_key_or_model_raises_a_clear_error_without_the_key(server, caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [("status", 401)]
    judge = judge_for(server)
    with caplog.at_level(logging.DEBUG), pytest.raises(JudgeConfigError, match="OPENAI_API_KEY") as err:
        score_all(judge, ["q"], ["a"])
    assert SECRET not in str(err.value) and SECRET not in caplog.text and SECRET not in repr(judge)


def test_make_judge_routes_a_model_name_to_the_server(server, monkeypatch):
    trait = Trait(
        name="evil_2",
        judge_column="evil",
        instructions=[("be evil", "be good")] * 5,
        questions=["q"],
        eval_prompt="Evil? {question} / {answer}\nRespond with a number 0-100.",
    )
    judge = make_judge("judge-model", trait=trait, metric="evil", base_url=server.url, number_tokens="whole")
    judge.base_delay = 0.01
    assert score_all(judge, ["Q"], ["cruel"]) == [pytest.approx(85)]
    assert server.requests[0]["messages"][0]["content"] == "Evil? Q / cruel\nRespond with a number 0-100."
    assert server.requests[0]["model"] == "judge-model"
    with pytest.raises(ValueError, match="needs judge_model"):
        make_judge(None, trait=trait, metric="evil", base_url=server.url)
    with pytest.raises(Exception, match="OPENAI_API_KEY"):
        make_judge("gpt-4.1-mini-2025-04-14", trait=trait, metric="evil")
    with pytest.raises(ValueError, match="judge column"):
        make_judge("judge-model", trait=trait, metric="humorous", base_url=server.url)
