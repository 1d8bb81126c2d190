"""One judge-selection rule: `make_judge` specs, defaults and the shared CLI flags."""

from __future__ import annotations

import argparse

import pytest

from persona.cli import add_judge_args, judges_from_args
from persona.judge import COHERENCE, DEFAULT_OPENAI_JUDGE, make_judge, score_all
from persona.judge.factory import JudgeRequest
from persona.judge.likelihood import LikelihoodJudge
from persona.judge.local_judge import LocalLogprobJudge
from persona.judge.openai_judge import OpenAIJudge
from persona.judge.prompts import coherence_prompt, trait_prompt
from persona.judge.runner import BaseJudge
from persona.traits import Trait

TRAIT = Trait(
    name="evil_2",
    judge_column="evil",
    instructions=[("Be cruel.", "Be kind.")] * 5,
    questions=["q"],
    eval_prompt="Evil? {question} / {answer}\nRespond with a number 0-100.",
)


@pytest.fixture(autouse=True)
def env(offline_env):
    return offline_env


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_judge_args(parser)
    return parser.parse_args(list(argv))


def test_default_is_likelihood_offline_and_the_paper_judge_with_a_key(tiny_lm, monkeypatch):
    assert isinstance(make_judge(None, trait=TRAIT, metric="evil", eval_model=tiny_lm), LikelihoodJudge)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    judge = make_judge(None, trait=TRAIT, metric="evil")
    assert isinstance(judge, OpenAIJudge) and judge.model == DEFAULT_OPENAI_JUDGE and judge.base_url is None
    assert judge.number_tokens == "whole"  # the official API keeps 0..100 as single tokens
    assert judge.template("0_100") == TRAIT.eval_prompt
    assert judge.template("0_10") == trait_prompt(TRAIT.eval_prompt, "0_10")


def test_base_url_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    judge = make_judge("Qwen/Qwen2.5-7B-Instruct", trait=None, metric=COHERENCE)
    assert judge.base_url == "http://127.0.0.1:9/v1" and judge.number_tokens == "auto"
    assert judge.template("0_100") == coherence_prompt("0_100")


def test_local_and_likelihood_specs_load_the_named_model(tiny_llama_dir):
    local = make_judge(f"local:{tiny_llama_dir}", trait=TRAIT, metric="evil", eval_type="binary", prefill="Verdict: ")
    assert isinstance(local, LocalLogprobJudge) and local.prefill == "Verdict: " and local.eval_type == "binary"
    other = make_judge(f"likelihood:{tiny_llama_dir}", trait=TRAIT, metric=COHERENCE)
    assert isinstance(other, LikelihoodJudge) and other.lm is local.lm  # loaded once, shared
    assert len(score_all(other, ["q", "q"], ["An answer.", "Another answer."])) == 2


def test_bad_specs_say_what_to_pass(tiny_lm):
    with pytest.raises(ValueError, match="local:Qwen"):
        make_judge("local:", trait=TRAIT, metric="evil")
    with pytest.raises(ValueError, match="needs the trait"):
        make_judge("likelihood", trait=None, metric="evil", eval_model=tiny_lm)
    with pytest.raises(ValueError, match="eval type"):
        make_judge("likelihood", trait=TRAIT, metric="evil", eval_model=tiny_lm, eval_type="0_5")
    with pytest.raises(ValueError, match="pair up"):
        score_all(make_judge("likelihood", trait=TRAIT, metric="evil", eval_model=tiny_lm), ["q"], [])


def test_cli_flags_build_the_trait_and_coherence_judges(tiny_lm):
    args = parse()
    assert (
        args.judge_model,
        args.judge_base_url,
        args.max_concurrent_judges,
        args.no_judge_cache,
        args.judge_eval_type,
        args.judge_number_tokens,
    ) == (None, None, 100, False, "0_100", "auto")  # 100: the original's default
    judges = judges_from_args(parse("--no_judge_cache"), trait=TRAIT, eval_model=tiny_lm)
    assert list(judges) == ["evil", COHERENCE]
    assert judges["evil"].metric == "evil" and judges[COHERENCE].metric == COHERENCE
    remote = judges_from_args(
        parse(
            "--judge_model",
            "m",
            "--judge_base_url",
            "http://h:1/v1",
            "--judge_eval_type",
            "binary",
            "--judge_number_tokens",
            "split",
        ),
        trait=TRAIT,
    )
    assert all(j.eval_type == "binary" and j.number_tokens == "split" for j in remote.values())
    with pytest.raises(SystemExit):
        parse("--judge_eval_type", "0_5")


class _AnswerLengthJudge(BaseJudge):
    """A toy judge from outside the package: the score is the answer's length in characters (capped at 100)."""

    def __init__(self, request: JudgeRequest) -> None:
        self.request = request

    async def __call__(self, *, question: str, answer: str) -> float | None:
        return float(min(len(answer), 100))


def test_a_judge_registered_from_outside_runs_through_the_cli(tiny_llama_dir, tmp_path):
    import pandas as pd

    from eval import eval_persona
    from persona.judge.factory import JUDGE_KINDS, JudgeKind, register_judge
    from persona.judge.sidecar import read_sidecar
    from tests.trait_files import short_trait_file

    register_judge(JudgeKind("length", "length", _AnswerLengthJudge, "toy: answer length"))
    out = tmp_path / "toy.csv"
    trait = short_trait_file("evil", tmp_path)
    argv = ["--model", str(tiny_llama_dir), "--trait", str(trait), "--output_path", str(out)]
    argv += ["--n_per_question", "1", "--max_tokens", "6", "--judge_model", "length:v1", "--device", "cpu"]
    try:
        assert eval_persona.main(argv) == 0
    finally:
        JUDGE_KINDS.pop("length")
    df = pd.read_csv(out, keep_default_na=False)
    assert df["evil"].tolist() == [float(min(len(a), 100)) for a in df["answer"]]
    assert df["coherence"].tolist() == df["evil"].tolist()
    record = read_sidecar(out)
    assert record["judge"] == "length:v1" and record["method"] == "toy: answer length" and not record["paper_judge"]
