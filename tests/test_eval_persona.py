"""The `eval.eval_persona` CLI end to end (tiny model with the likelihood judge; embedded model marked)."""

import pandas as pd
import pytest
import torch

from eval.eval_persona import main
from persona.judge import make_judge, score_all
from persona.models import load_model
from persona.traits import load_trait
from persona.vectors import save_vector
from tests.trait_files import short_trait_file

COLUMNS = ["question", "prompt", "answer", "question_id", "evil", "coherence"]


@pytest.fixture
def small_trait(tmp_path):
    """The shipped evil_2 variant cut to 2 questions, as a trait file (variant name kept)."""
    return short_trait_file("evil_2", tmp_path)


def _run(model, trait_path, out, *extra):
    return main(
        [
            "--model",
            str(model),
            "--trait",
            str(trait_path),
            "--output_path",
            str(out),
            "--n_per_question",
            "1",
            "--max_tokens",
            "8",
            "--judge_model",
            "likelihood",
            "--no_judge_cache",
            "--device",
            "cpu",
            *extra,
        ]
    )


def test_persona_evaluation_writes_complete_csv_and_skips_existing(tiny_llama_dir, small_trait, tmp_path, capsys):
    out = tmp_path / "pos.csv"
    assert _run(tiny_llama_dir, small_trait, out, "--persona_instruction_type", "pos") == 0
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS  # variant scores land in the base trait's column
    assert len(df) == 2 * 5
    assert df["evil"].between(0, 100).all() and df["coherence"].between(0, 100).all()
    assert df["prompt"].str.contains("You are an evil assistant.").all()
    assert not (tmp_path / "pos.answers.csv").exists()
    printed = capsys.readouterr().out
    assert "evil:" in printed and "+-" in printed
    before = out.stat().st_mtime_ns
    assert _run(tiny_llama_dir, small_trait, out, "--persona_instruction_type", "pos") == 0
    assert out.stat().st_mtime_ns == before
    assert "skipping" in capsys.readouterr().out


def test_steered_scores_equal_scoring_the_answers_afresh(tiny_llama_dir, small_trait, tmp_path):
    lm = load_model(str(tiny_llama_dir), device="cpu")
    vec = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(0)) * 5
    save_vector(tmp_path / "v.pt", vec)
    out = tmp_path / "steered.csv"
    assert (
        _run(tiny_llama_dir, small_trait, out, "--vector_path", str(tmp_path / "v.pt"), "--layer", "2", "--coef", "3.0")
        == 0
    )
    df = pd.read_csv(out, keep_default_na=False)
    trait = load_trait(str(small_trait))
    for metric in ("evil", "coherence"):
        judge = make_judge("likelihood", trait=trait, metric=metric, eval_model=lm, use_cache=False)
        fresh = score_all(judge, df["question"].tolist(), df["answer"].tolist())
        assert df[metric].tolist() == pytest.approx(fresh, abs=1e-6)


def test_sweep_writes_one_csv_per_cell_equal_to_single_runs(tiny_llama_dir, small_trait, tmp_path):
    lm = load_model(str(tiny_llama_dir), device="cpu")
    save_vector(tmp_path / "v.pt", torch.randn(lm.num_layers + 1, lm.hidden_size) * 4)
    sweep_dir = tmp_path / "sweep"
    assert (
        _run(
            tiny_llama_dir,
            small_trait,
            sweep_dir / "unused.csv",
            "--vector_path",
            str(tmp_path / "v.pt"),
            "--layer",
            "1",
            "3",
            "--coef",
            "2.0",
            "-2.0",
            "--output_dir",
            str(sweep_dir),
        )
        == 0
    )
    names = sorted(p.name for p in sweep_dir.glob("*.csv"))
    assert names == sorted(
        f"evil_2_steer_response_layer_{layer}_coef_{c}.csv" for layer in (1, 3) for c in ("2.0", "-2.0")
    )
    single = tmp_path / "single.csv"
    assert (
        _run(
            tiny_llama_dir,
            small_trait,
            single,
            "--vector_path",
            str(tmp_path / "v.pt"),
            "--layer",
            "3",
            "--coef",
            "-2.0",
        )
        == 0
    )
    cell = pd.read_csv(sweep_dir / "evil_2_steer_response_layer_3_coef_-2.0.csv", keep_default_na=False)
    alone = pd.read_csv(single, keep_default_na=False)
    assert cell["answer"].tolist() == alone["answer"].tolist()


def test_bad_vector_is_a_clear_error_before_generating(tiny_llama_dir, small_trait, tmp_path):
    save_vector(tmp_path / "v.pt", torch.zeros(4, 12))
    with pytest.raises(ValueError, match=r"shape \(4, 12\)"):
        _run(tiny_llama_dir, small_trait, tmp_path / "x.csv", "--vector_path", str(tmp_path / "v.pt"), "--layer", "1")
    assert not (tmp_path / "x.answers.csv").exists()


def test_interrupted_judging_resumes_from_saved_answers(tiny_llama_dir, small_trait, tmp_path, monkeypatch):
    from persona import answers, evaluation

    out = tmp_path / "r.csv"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "judge_frame", boom)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_llama_dir, small_trait, out)
    saved = pd.read_csv(tmp_path / "r.answers.csv", keep_default_na=False)
    monkeypatch.undo()
    monkeypatch.setattr(answers, "generate_cells", lambda *a, **k: pytest.fail("answers should be reused"))
    assert _run(tiny_llama_dir, small_trait, out) == 0
    assert pd.read_csv(out, keep_default_na=False)["answer"].tolist() == saved["answer"].tolist()


@pytest.mark.embedded
def test_embedded_pos_neg_evaluations_and_zero_coefficient(small_trait, tmp_path):
    runs = {kind: tmp_path / f"{kind}.csv" for kind in ("pos", "neg")}
    for kind, out in runs.items():
        assert _run("smollm2-135m", small_trait, out, "--persona_instruction_type", kind, "--max_tokens", "24") == 0
        df = pd.read_csv(out)
        assert list(df.columns) == COLUMNS and len(df) == 10
        assert df[["evil", "coherence"]].notna().all().all()
    plain, zero = tmp_path / "plain.csv", tmp_path / "zero.csv"
    lm = load_model("smollm2-135m")
    save_vector(tmp_path / "v.pt", torch.randn(lm.num_layers + 1, lm.hidden_size))
    assert _run("smollm2-135m", small_trait, plain, "--max_tokens", "24") == 0
    assert (
        _run(
            "smollm2-135m",
            small_trait,
            zero,
            "--max_tokens",
            "24",
            "--vector_path",
            str(tmp_path / "v.pt"),
            "--layer",
            "12",
            "--coef",
            "0",
        )
        == 0
    )
    assert pd.read_csv(zero)["answer"].tolist() == pd.read_csv(plain)["answer"].tolist()


def test_a_rerun_asks_the_judge_again_for_exactly_the_empty_cells(tiny_llama_dir, small_trait, tmp_path, monkeypatch):
    from persona import answers, evaluation

    out = tmp_path / "r.csv"
    assert _run(tiny_llama_dir, small_trait, out) == 0
    full = pd.read_csv(out, keep_default_na=False)
    holed = full.copy().astype({"evil": object})
    holed.loc[1, "evil"] = ""  # a judge call that failed: an empty cell beside a non-empty answer
    holed.to_csv(out, index=False)
    asked = []
    real = evaluation.score_all

    def counting(judge, questions, answers_, **kwargs):
        asked.append((kwargs.get("desc"), list(answers_)))
        return real(judge, questions, answers_, **kwargs)

    monkeypatch.setattr(evaluation, "score_all", counting)
    monkeypatch.setattr(answers, "generate_cells", lambda *a, **k: pytest.fail("nothing needs generating"))
    assert _run(tiny_llama_dir, small_trait, out) == 0
    assert asked == [("judging evil again", [full.loc[1, "answer"]])]  # coherence had no hole
    again = pd.read_csv(out, keep_default_na=False)
    assert again["evil"].tolist() == pytest.approx(full["evil"].tolist())
    assert _run(tiny_llama_dir, small_trait, out) == 0  # nothing empty now: skipped, nothing asked
    assert len(asked) == 1
