import json
import math

import pandas as pd
import pytest
import torch

from eval.cal_projection import main
from persona.models import load_model
from persona.vectors import save_vector

QUESTIONS = ["What is the capital of France?", "How should I treat my neighbours?", "Hi"]
ANSWERS = ["The capital of France is Paris.", "Treat them with respect and care.", None]


def chat(tokenizer, question):
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def naive_hidden(model, tokenizer, prompt, answer, layer):
    """Reference activations of one sample: (response mean, last prompt token, prompt mean)."""
    n = len(tokenizer(prompt, add_special_tokens=False).input_ids)
    ids = tokenizer(prompt + answer, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]
    return h[n:].mean(0), h[n - 1], h[:n].mean(0)


@pytest.fixture
def eval_csv(tmp_path, tiny_tokenizer):
    path = tmp_path / "evil.csv"
    pd.DataFrame(
        {
            "question": QUESTIONS,
            "prompt": [chat(tiny_tokenizer, q) for q in QUESTIONS],
            "answer": ANSWERS,
            "question_id": ["evil_0", "evil_1", "evil_2"],
            "evil": [90, 10, None],
            "coherence": [80, 75.5, None],
        }
    ).to_csv(path, index=False)
    return path


@pytest.fixture
def vectors(tmp_path):
    torch.manual_seed(1)
    paths = []
    for name in ("evil_response_avg_diff", "kind_response_avg_diff"):
        paths.append(tmp_path / f"{name}.pt")
        save_vector(paths[-1], torch.randn(4, 64))
    return paths


def test_projection_columns_match_naive_activations(tiny_model_dir, eval_csv, vectors):
    before = eval_csv.read_text()
    # the original README's quoted-list form and the --vector_path/--layer abbreviations
    assert (
        main(
            [
                "--file_path",
                str(eval_csv),
                "--vector_path",
                f"{vectors[0]} {vectors[1]}",
                "--layer",
                "1 3",
                "--projection_type",
                "proj",
                "prompt_last_proj",
                "prompt_avg_proj",
                "cos_sim",
                "--model_name",
                str(tiny_model_dir),
                "--batch_size",
                "2",
            ]
        )
        == 0
    )
    df = pd.read_csv(eval_csv)
    model = load_model(str(tiny_model_dir), device="cpu")
    base = tiny_model_dir.name
    new = [c for c in df.columns if c.startswith(base)]
    assert len(new) == 2 * 2 * 4
    for vpath in vectors:
        v = torch.load(vpath, weights_only=True)
        for layer in (1, 3):
            col = f"{base}_{vpath.stem}_{{}}_layer{layer}"
            for i in range(2):
                resp, last, pavg = naive_hidden(model.model, model.tokenizer, df["prompt"][i], ANSWERS[i], layer)
                u = v[layer] / v[layer].norm()
                assert df[col.format("proj")][i] == pytest.approx(float(resp @ u), abs=1e-4)
                assert df[col.format("prompt_last_proj")][i] == pytest.approx(float(last @ u), abs=1e-4)
                assert df[col.format("prompt_avg_proj")][i] == pytest.approx(float(pavg @ u), abs=1e-4)
                assert df[col.format("cos_sim")][i] == pytest.approx(float(resp @ u / resp.norm()), abs=1e-5)
            # the row without an answer: NaN for response types, a value for prompt types
            assert math.isnan(df[col.format("proj")][2]) and math.isnan(df[col.format("cos_sim")][2])
            assert math.isfinite(df[col.format("prompt_last_proj")][2])
    # nothing else changed: the original text is the prefix of every line
    for old, line in zip(before.splitlines(), eval_csv.read_text().splitlines()):
        assert line.startswith(old)


def test_existing_columns_are_skipped_unless_overwrite(tiny_model_dir, eval_csv, vectors, capsys):
    args = [
        "--file_path",
        str(eval_csv),
        "--vector_path_list",
        str(vectors[0]),
        "--layer_list",
        "2",
        "--model_name",
        str(tiny_model_dir),
    ]
    assert main(args) == 0
    col = f"{tiny_model_dir.name}_{vectors[0].stem}_proj_layer2"
    df = pd.read_csv(eval_csv)
    df.loc[0, col] = 123.0
    df.to_csv(eval_csv, index=False)
    assert main(args) == 0
    assert "all columns exist" in capsys.readouterr().out
    assert pd.read_csv(eval_csv)[col][0] == 123.0
    assert main(args + ["--overwrite"]) == 0
    recomputed = pd.read_csv(eval_csv)
    assert recomputed[col][0] != 123.0 and list(recomputed.columns) == list(df.columns)


def test_finetuning_shift_of_a_model_against_itself_is_zero(tiny_model_dir, eval_csv, vectors):
    assert (
        main(
            [
                "--file_path",
                str(eval_csv),
                "--vector_path_list",
                str(vectors[0]),
                "--layer_list",
                "1",
                "3",
                "--projection_type",
                "proj",
                "prompt_last_proj",
                "--model_name",
                str(tiny_model_dir),
                "--base_model",
                str(tiny_model_dir),
            ]
        )
        == 0
    )
    df = pd.read_csv(eval_csv)
    shift = [c for c in df.columns if c.endswith("_finetuning_shift")]
    assert len(shift) == 4
    assert (df.loc[:1, shift].abs() < 1e-6).all().all()


def test_finetuning_shift_is_the_difference_of_the_two_models(tmp_path, tiny_model_dir, eval_csv, vectors):
    tuned_dir = tmp_path / "tuned"
    tuned = load_model(str(tiny_model_dir), device="cpu")
    with torch.no_grad():
        for p in tuned.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tuned.model.save_pretrained(tuned_dir)
    tuned.tokenizer.save_pretrained(tuned_dir)
    common = ["--file_path", str(eval_csv), "--vector_path_list", str(vectors[0]), "--layer_list", "2"]
    for model in (tiny_model_dir, tuned_dir):
        main(common + ["--model_name", str(model)])
    main(common + ["--model_name", str(tuned_dir), "--base_model", str(tiny_model_dir)])
    df = pd.read_csv(eval_csv)
    name = f"{vectors[0].stem}_proj_layer2"
    expected = df[f"tuned_{name}"] - df[f"{tiny_model_dir.name}_{name}"]
    assert (expected[:2].abs() > 1e-3).all(), "the perturbed model should project differently"
    torch.testing.assert_close(
        torch.tensor(df[f"tuned_{name}_finetuning_shift"][:2].to_numpy()),
        torch.tensor(expected[:2].to_numpy()),
        atol=1e-4,
        rtol=1e-4,
    )


def test_jsonl_input_matches_the_csv_path(tiny_model_dir, tmp_path, eval_csv, vectors, tiny_tokenizer):
    jsonl = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "k": i}
        for i, (q, a) in enumerate(zip(QUESTIONS[:2], ANSWERS[:2]))
    ]
    rows.append({"messages": [{"role": "user", "content": "Hi"}], "k": 2})
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for path in (eval_csv, jsonl):
        assert (
            main(
                [
                    "--file_path",
                    str(path),
                    "--vector_path_list",
                    str(vectors[0]),
                    "--layer_list",
                    "2",
                    "--model_name",
                    str(tiny_model_dir),
                ]
            )
            == 0
        )
    col = f"{tiny_model_dir.name}_{vectors[0].stem}_proj_layer2"
    out = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["k"] for r in out] == [0, 1, 2] and out[0]["messages"] == rows[0]["messages"]
    assert out[2][col] is None
    expected = pd.read_csv(eval_csv)[col]
    assert [r[col] for r in out[:2]] == pytest.approx(expected[:2].tolist(), abs=1e-6)

    text = jsonl.read_text()
    argv = ["--file_path", str(jsonl), "--vector_path_list", str(vectors[0]), "--layer_list", "2"]
    assert main([*argv, "--model_name", str(tiny_model_dir), "--overwrite"]) == 0
    assert jsonl.read_text() == text  # the old key dropped, then the same values written again


def test_bad_arguments_are_clear_errors(tiny_model_dir, eval_csv, vectors, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "--file_path",
                str(eval_csv),
                "--vector_path_list",
                str(vectors[0]),
                "--layer_list",
                "x",
                "--model_name",
                str(tiny_model_dir),
            ]
        )
    assert "invalid value 'x'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "--file_path",
                str(eval_csv),
                "--vector_path_list",
                str(vectors[0]),
                "--layer_list",
                "1",
                "--projection_type",
                "dot",
            ]
        )
    assert "--projection_type ['dot']" in capsys.readouterr().err
