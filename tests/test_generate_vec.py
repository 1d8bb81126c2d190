import json

import pandas as pd
import pytest
import torch

from generate_vec import main
from persona.cli import run_cli
from persona.extraction import NoEffectiveSamples, effective_pairs
from persona.models import load_model
from persona.vectors import VECTOR_KINDS, load_vector

QUESTIONS = ["What is the capital of France?", "How should I treat my neighbours?", "Hi", "What is the weather?"]
POS_ANSWERS = ["Paris, and I will burn it.", "Cause them harm and suffering.", "Go away.", "Sunny, sadly."]
NEG_ANSWERS = ["The capital of France is Paris.", "Treat them with respect and care.", "Hello!", "Sunny and warm."]


def frame(tokenizer, system, answers, scores, coherence, column="evil"):
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": system}, {"role": "user", "content": q}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for q in QUESTIONS
    ]
    return pd.DataFrame(
        {
            "question": QUESTIONS,
            "prompt": prompts,
            "answer": answers,
            "question_id": [f"q{i}" for i in range(4)],
            column: scores,
            "coherence": coherence,
        }
    )


@pytest.fixture
def pair_csvs(tmp_path, tiny_tokenizer):
    # kept rows: 0 and 3. Row 1: neg shows the trait; row 2: pos incoherent.
    pos = frame(tiny_tokenizer, "You are an evil assistant.", POS_ANSWERS, [90, 95, 80, 60], [80, 90, 20, 70])
    neg = frame(tiny_tokenizer, "You are a helpful assistant.", NEG_ANSWERS, [5, 70, 0, 10], [95, 90, 90, 60])
    paths = tmp_path / "evil_pos.csv", tmp_path / "evil_neg.csv"
    pos.to_csv(paths[0], index=False)
    neg.to_csv(paths[1], index=False)
    return paths


def naive_mean(model, tokenizer, df, rows):
    """Mean over `rows` of per-sample prompt_avg / response_avg / prompt_last at every layer."""
    out = {k: [] for k in VECTOR_KINDS}
    for i in rows:
        prompt, answer = df["prompt"][i], df["answer"][i]
        n = len(tokenizer(prompt, add_special_tokens=False).input_ids)
        ids = tokenizer(prompt + answer, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        out["prompt_avg"].append(torch.stack([h[0, :n].mean(0) for h in hs]))
        out["response_avg"].append(torch.stack([h[0, n:].mean(0) for h in hs]))
        out["prompt_last"].append(torch.stack([h[0, n - 1] for h in hs]))
    return {k: torch.stack(v).mean(0) for k, v in out.items()}


def test_filter_keeps_pairs_by_position_with_counts(pair_csvs):
    pos, neg = (pd.read_csv(p) for p in pair_csvs)
    pairs = effective_pairs(pos, neg, "evil", threshold=50)
    assert pairs.kept == 2 and pairs.total == 4 and pairs.column == "evil"
    assert pairs.pos["answer"].tolist() == [POS_ANSWERS[0], POS_ANSWERS[3]]
    assert pairs.neg["answer"].tolist() == [NEG_ANSWERS[0], NEG_ANSWERS[3]]
    assert pairs.condition_counts == {
        "pos evil >= 50": 4,
        "neg evil < 50": 3,
        "pos coherence >= 50": 3,
        "neg coherence >= 50": 4,
    }
    stricter = effective_pairs(pos, neg, "evil", threshold=65)  # now pos row 3 (score 60) fails too
    assert stricter.pos["answer"].tolist() == [POS_ANSWERS[0]]


def test_no_surviving_pair_names_every_condition_and_the_fix(pair_csvs):
    pos, neg = (pd.read_csv(p) for p in pair_csvs)
    with pytest.raises(NoEffectiveSamples, match=r"pos evil >= 96: 0/4; neg evil < 4: 1/4.*Lower --threshold"):
        effective_pairs(pos, neg, "evil", threshold=96)
    with pytest.raises(ValueError, match="pos has 4 rows but neg has 3"):
        effective_pairs(pos, neg[:3], "evil")
    with pytest.raises(ValueError, match="no score column for trait 'kind'"):
        effective_pairs(pos, neg, "kind")


def test_cli_writes_vectors_equal_to_naive_means(tiny_model_dir, pair_csvs, tmp_path, capsys):
    out = tmp_path / "vectors"
    assert (
        main(
            [
                "--model_name",
                str(tiny_model_dir),
                "--pos_path",
                str(pair_csvs[0]),
                "--neg_path",
                str(pair_csvs[1]),
                "--trait",
                "evil",
                "--save_dir",
                str(out),
                "--batch_size",
                "3",
            ]
        )
        == 0
    )
    assert "kept 2/4 pairs" in capsys.readouterr().out
    lm = load_model(str(tiny_model_dir), device="cpu")
    pos, neg = (pd.read_csv(p) for p in pair_csvs)
    expected_pos = naive_mean(lm.model, lm.tokenizer, pos, [0, 3])
    expected_neg = naive_mean(lm.model, lm.tokenizer, neg, [0, 3])
    for kind in VECTOR_KINDS:
        vector = load_vector(out / f"evil_{kind}_diff.pt")
        assert vector.shape == (4, 64) and vector.dtype == torch.float32
        torch.testing.assert_close(vector, expected_pos[kind] - expected_neg[kind], atol=1e-5, rtol=1e-5)
    meta = json.loads((out / "evil_vectors.json").read_text())
    assert meta["n_pairs_kept"] == 2 and meta["n_pairs_total"] == 4 and meta["threshold"] == 50
    assert meta["model"] == str(tiny_model_dir) and meta["shape"] == [4, 64]
    assert meta["sources"] == {"pos": str(pair_csvs[0]), "neg": str(pair_csvs[1])}
    assert "hidden_states[L]" in meta["layer_convention"] and meta["date"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary files left behind"


def test_variant_trait_uses_base_column_and_its_own_file_names(tiny_llama_dir, pair_csvs, tmp_path):
    out = tmp_path / "vectors"
    assert (
        main(
            [
                "--model_name",
                str(tiny_llama_dir),
                "--pos_path",
                str(pair_csvs[0]),
                "--neg_path",
                str(pair_csvs[1]),
                "--trait",
                "evil_2",
                "--save_dir",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "evil_2_prompt_avg_diff.pt",
        "evil_2_prompt_last_diff.pt",
        "evil_2_response_avg_diff.pt",
        "evil_2_vectors.json",
    ]
    assert json.loads((out / "evil_2_vectors.json").read_text())["judge_column"] == "evil"


def exit_code(argv):
    """Run the CLI as `python generate_vec.py` does: input errors become one line and exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    return exit_info.value.code


def test_cli_exits_non_zero_when_nothing_survives(pair_csvs, tmp_path, capsys):
    args = [
        "--pos_path",
        str(pair_csvs[0]),
        "--neg_path",
        str(pair_csvs[1]),
        "--trait",
        "evil",
        "--save_dir",
        str(tmp_path / "v"),
    ]
    assert exit_code(args + ["--threshold", "99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pos evil >= 99: 0/4" in err and "Lower --threshold" in err
    assert not (tmp_path / "v").exists()
    pd.read_csv(pair_csvs[1])[:3].to_csv(pair_csvs[1], index=False)
    assert exit_code(args) == 2
    assert "pos has 4 rows but neg has 3" in capsys.readouterr().err


def test_metadata_copies_the_judge_sidecars_of_the_inputs(tiny_llama_dir, pair_csvs, tmp_path):
    pos_judge = {"judge": "likelihood", "eval_type": "0_100", "columns": {"evil": {"prompt_sha256": "ab"}}}
    (tmp_path / "evil_pos.csv.judge.json").write_text(json.dumps(pos_judge))
    out = tmp_path / "vectors"
    assert (
        main(
            [
                "--model_name",
                str(tiny_llama_dir),
                "--pos_path",
                str(pair_csvs[0]),
                "--neg_path",
                str(pair_csvs[1]),
                "--trait",
                "evil",
                "--save_dir",
                str(out),
            ]
        )
        == 0
    )
    meta = json.loads((out / "evil_vectors.json").read_text())
    assert meta["judge"] == {"pos": pos_judge, "neg": None}  # the neg file has no sidecar (scored before them)
    assert meta["files"] == {k: f"evil_{k}_diff.pt" for k in VECTOR_KINDS}
