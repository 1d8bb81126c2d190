"""The judge is never silent: the proxy is announced once, scored files get a `.judge.json` sidecar,
a user's coherence prompt is used and recorded, and `eval.judge` re-scores an existing CSV."""

from __future__ import annotations

import argparse
import hashlib
import json

import pandas as pd
import pytest

from eval import eval_persona
from eval import judge as judge_cli
from persona.cli import add_judge_args, judge_settings, judges_from_args
from persona.judge import likelihood as likelihood_module
from persona.judge import make_judge, score_all
from persona.judge.factory import PROXY_NOTICE, announce_proxy, load_coherence_prompt
from persona.judge.openai_judge import OpenAIJudge
from persona.judge.prompts import coherence_prompt
from persona.judge.sidecar import judge_record, read_sidecar, sidecar_path, write_sidecar
from persona.models import load_model
from persona.traits import Trait, load_trait
from tests.trait_files import short_trait_file

TRAIT = Trait(
    name="evil_2",
    judge_column="evil",
    instructions=[("Be cruel.", "Be kind.")] * 5,
    questions=["q"],
    eval_prompt="Evil? {question} / {answer}\nRespond with a number 0-100.",
)
ORIGINAL_COHERENCE = "Rate coherence.\nQ: {question}\nA: {answer}\nRespond with a number between 0 and 100."


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(autouse=True)
def env(offline_env):
    announce_proxy.cache_clear()  # each test sees the first announcement of its own process
    return offline_env


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_judge_args(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def coherence_file(tmp_path):
    path = tmp_path / "coherence.txt"
    path.write_text(ORIGINAL_COHERENCE)
    return path


def test_proxy_default_is_announced_once_as_a_warning(tiny_lm, caplog, monkeypatch):
    def notices() -> int:
        return sum(PROXY_NOTICE in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)

    judges_from_args(parse(), trait=TRAIT, eval_model=tiny_lm)  # trait and coherence judges
    judges_from_args(parse(), trait=TRAIT, eval_model=tiny_lm)
    assert notices() == 1 and "OPENAI_API_KEY" in caplog.text
    announce_proxy.cache_clear()
    caplog.clear()
    judges_from_args(parse("--judge_model", "likelihood"), trait=TRAIT, eval_model=tiny_lm)  # chosen, not defaulted
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    make_judge(None, trait=TRAIT, metric="evil")  # the paper's judge: nothing to announce
    assert notices() == 0


def test_coherence_prompt_file_replaces_the_built_in_template(coherence_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # the client is made, never called
    judges = judges_from_args(parse("--judge_model", "gpt-x", "--coherence_prompt", str(coherence_file)), trait=TRAIT)
    assert isinstance(judges["coherence"], OpenAIJudge)
    assert judges["coherence"].template("0_100") == ORIGINAL_COHERENCE
    assert judges["evil"].template("0_100") == TRAIT.eval_prompt
    with pytest.raises(ValueError, match="0_100 template"):
        judges["coherence"].template("0_10")
    bad = tmp_path / "bad.txt"
    bad.write_text("Rate {answer} only.")
    with pytest.raises(ValueError, match=r"bad.txt: the template needs the placeholder\(s\) \{question\}"):
        load_coherence_prompt(bad)
    for path, message in ((bad, "needs the placeholder(s) {question}"), (tmp_path / "absent.txt", "does not exist")):
        with pytest.raises(SystemExit):  # checked as the flags are parsed, before any work
            parse("--judge_model", "gpt-x", "--coherence_prompt", str(path))
        assert message in capsys.readouterr().err


def test_record_hashes_the_prompts_each_judge_reads(coherence_file):
    llm = judge_record(
        judge_settings(parse("--judge_model", "gpt-x", "--coherence_prompt", str(coherence_file))), trait=TRAIT
    )
    assert llm["judge"] == "gpt-x" and llm["eval_type"] == "0_100" and not llm["default_judge"]
    assert llm["columns"]["evil"]["prompt_sha256"] == sha(TRAIT.eval_prompt)
    assert llm["columns"]["coherence"] == {
        "prompt_sha256": sha(ORIGINAL_COHERENCE),
        "prompt_source": str(coherence_file),
    }
    built_in = judge_record(judge_settings(parse("--judge_model", "gpt-x")), trait=TRAIT)
    assert built_in["columns"]["coherence"] == {
        "prompt_sha256": sha(coherence_prompt("0_100")),
        "prompt_source": "built-in",
    }
    proxy = judge_record(judge_settings(parse()), trait=TRAIT)  # no key: the proxy, by default
    assert proxy["judge"] == "likelihood" and proxy["default_judge"] and "not an LLM judge" in proxy["method"]
    assert proxy["columns"]["evil"]["prompt_sha256"] == sha(json.dumps(TRAIT.instructions))
    assert proxy["columns"]["coherence"]["prompt_sha256"] is None


def test_sidecar_round_trip(tmp_path):
    csv = tmp_path / "a.csv"
    assert read_sidecar(csv) is None
    path = write_sidecar(csv, {"judge": "likelihood"})
    assert path == tmp_path / "a.csv.judge.json" == sidecar_path(csv)
    back = read_sidecar(csv)
    assert back["judge"] == "likelihood" and back["file"] == "a.csv" and back["date"].startswith("20")


@pytest.fixture
def small_trait(tmp_path):
    return short_trait_file("evil", tmp_path)


def test_eval_persona_writes_the_sidecar_and_accepts_original_flags(tiny_llama_dir, small_trait, tmp_path, caplog):
    args = eval_persona.parse_args(["--trait", "evil", "--batch_process"])
    assert args.version == "extract" and args.batch_process  # the original code's default and flag
    out = tmp_path / "baseline.csv"
    assert (
        eval_persona.main(
            [
                "--model",
                str(tiny_llama_dir),
                "--trait",
                str(small_trait),
                "--output_path",
                str(out),
                "--n_per_question",
                "1",
                "--max_tokens",
                "4",
                "--device",
                "cpu",
                "--batch_process",
            ]
        )
        == 0
    )
    assert sum(PROXY_NOTICE in r.getMessage() for r in caplog.records) == 1
    record = read_sidecar(out)
    assert record["judge"] == "likelihood" and record["default_judge"] and record["trait"] == "evil"
    assert record["columns"]["evil"]["prompt_source"] == "pos/neg instructions of trait 'evil'"


def test_judge_cli_rescores_an_existing_csv_and_resumes_from_the_cache(
    tiny_llama_dir, small_trait, tmp_path, monkeypatch, capsys
):
    questions = load_trait(str(small_trait)).questions
    answers = ["I would never hurt anyone.", "Burn it all down and laugh.", ""]
    src = tmp_path / "answers.csv"
    pd.DataFrame(
        {
            "question": [questions[0], questions[1], questions[0]],
            "answer": answers,
            "question_id": ["a", "b", "c"],
            "evil": [1.0, 2.0, 3.0],
        }
    ).to_csv(src, index=False)
    out = tmp_path / "rescored.csv"
    argv = [
        "--file_path",
        str(src),
        "--trait",
        str(small_trait),
        "--model",
        str(tiny_llama_dir),
        "--judge_model",
        "likelihood",
        "--device",
        "cpu",
        "--output_path",
        str(out),
    ]
    assert judge_cli.main(argv) == 0
    scored = pd.read_csv(out)
    lm = load_model(str(tiny_llama_dir), device="cpu")
    trait = load_trait(str(small_trait))
    for column in ("evil", "coherence"):
        expected = score_all(
            make_judge("likelihood", trait=trait, metric=column, eval_model=lm, use_cache=False),
            [questions[0], questions[1], questions[0]],
            ["I would never hurt anyone.", "Burn it all down and laugh.", ""],
        )
        assert scored[column][:2].tolist() == pytest.approx(expected[:2], abs=1e-6)
        assert pd.isna(scored[column][2]) and expected[2] is None  # an empty answer has no score
    assert scored["question_id"].tolist() == ["a", "b", "c"]  # other columns kept
    assert pd.read_csv(src)["evil"].tolist() == [1.0, 2.0, 3.0]  # the input is untouched
    assert read_sidecar(out)["judge"] == "likelihood" and "rescored.csv" in capsys.readouterr().out

    def no_model_calls(*args, **kwargs):
        raise AssertionError("every judgment should come from the cache")

    monkeypatch.setattr(likelihood_module, "answer_logprobs", no_model_calls)
    assert judge_cli.main(argv[:-1] + [str(tmp_path / "again.csv")]) == 0  # a rerun costs no judge calls
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again.csv"), scored)
