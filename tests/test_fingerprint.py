"""Settings fingerprints of finished outputs: vectors (generate_vec) and projection columns (cal_projection).

A rerun with the same settings skips the work (the model is not even loaded); with other
settings it stops with one line naming what differs; --overwrite recomputes.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import persona.extraction
import persona.projection
from eval.cal_projection import main as cal_projection
from generate_vec import main as generate_vec
from persona.cli import run_cli
from persona.fingerprint import SettingsMismatch, model_ref, tensor_sha256, texts_sha256
from persona.vectors import VECTOR_KINDS, load_vector, save_vector
from tests.test_generate_vec import NEG_ANSWERS, POS_ANSWERS, frame


@pytest.fixture
def pairs(tmp_path, tiny_tokenizer):
    pos = frame(tiny_tokenizer, "You are an evil assistant.", POS_ANSWERS, [90, 95, 80, 60], [80, 90, 70, 70])
    neg = frame(tiny_tokenizer, "You are a helpful assistant.", NEG_ANSWERS, [5, 10, 0, 10], [95, 90, 90, 60])
    paths = tmp_path / "pos.csv", tmp_path / "neg.csv"
    pos.to_csv(paths[0], index=False)
    neg.to_csv(paths[1], index=False)
    return paths


def no_model(*args, **kwargs):
    raise AssertionError("the model was loaded for work that was already done")


def exit_line(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    return exit_info.value.code, capsys.readouterr().err.strip()


def test_digests_are_content_digests():
    a = torch.arange(6.0).reshape(2, 3)
    assert tensor_sha256(a) == tensor_sha256(a.clone().double()) != tensor_sha256(a + 1e-3)
    assert texts_sha256(["a", None]) != texts_sha256(["a", "None"]) != texts_sha256(["a", ""])
    assert texts_sha256(["ab", "c"]) != texts_sha256(["a", "bc"])


def test_model_ref_changes_when_weights_change_in_place(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * 300_000)
    before = model_ref(str(tmp_path))
    assert before == model_ref(str(tmp_path)) and list(before["weights"]) == ["model.safetensors"]
    weights.write_bytes(b"\0" * 299_999 + b"\1")  # same size, last byte retrained
    assert model_ref(str(tmp_path)) != before
    assert model_ref("org/some-model") == {"spec": "org/some-model"}


def test_vectors_are_skipped_when_done_and_refused_when_made_otherwise(
    tiny_llama_dir, pairs, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "v"
    argv = [
        "--model_name",
        str(tiny_llama_dir),
        "--pos_path",
        str(pairs[0]),
        "--neg_path",
        str(pairs[1]),
        "--trait",
        "evil",
        "--save_dir",
        str(out),
    ]
    assert generate_vec(argv) == 0
    files = {kind: out / f"evil_{kind}_diff.pt" for kind in VECTOR_KINDS}
    first = {kind: load_vector(path) for kind, path in files.items()}
    stamps = {path: path.stat().st_mtime_ns for path in out.iterdir()}

    with monkeypatch.context() as m:
        m.setattr(persona.extraction, "capture", no_model)
        m.setattr("generate_vec.load_model", no_model)
        assert generate_vec(argv) == 0
        assert "exist with these settings, skipping" in capsys.readouterr().out
        code, line = exit_line(generate_vec, [*argv, "--threshold", "70"], capsys)
    assert code == 2 and "threshold: 50.0 -> 70.0" in line and "--overwrite" in line and "\n" not in line
    assert {path: path.stat().st_mtime_ns for path in out.iterdir()} == stamps

    save_vector(files["prompt_last"], torch.zeros_like(first["prompt_last"]))  # a set a killed run left mixed
    assert generate_vec(argv) == 0
    torch.testing.assert_close(load_vector(files["prompt_last"]), first["prompt_last"])

    assert generate_vec([*argv, "--threshold", "70", "--overwrite"]) == 0
    assert json.loads((out / "evil_vectors.json").read_text())["settings"]["threshold"] == 70.0


def test_projection_columns_keep_their_settings(tiny_llama_dir, pairs, tmp_path, monkeypatch, capsys):
    vector = tmp_path / "evil_response_avg_diff.pt"
    save_vector(vector, torch.randn(4, 64, generator=torch.Generator().manual_seed(3)))
    fresh = tmp_path / "fresh.csv"
    fresh.write_bytes(pairs[0].read_bytes())
    argv = [
        "--file_path",
        str(pairs[0]),
        "--vector_path_list",
        str(vector),
        "--layer_list",
        "2",
        "--model_name",
        str(tiny_llama_dir),
    ]
    assert cal_projection(argv) == 0
    column = f"{tiny_llama_dir.name}_evil_response_avg_diff_proj_layer2"
    record = json.loads((tmp_path / "pos.csv.projections.json").read_text())[column]
    assert record["layer"] == 2 and record["vector_sha256"] == tensor_sha256(load_vector(vector))
    stamp = pairs[0].stat().st_mtime_ns

    with monkeypatch.context() as m:
        m.setattr(persona.projection, "load_model", no_model)
        assert cal_projection(argv) == 0  # same settings: kept, the model is not loaded
        assert pairs[0].stat().st_mtime_ns == stamp
        save_vector(vector, torch.randn(4, 64, generator=torch.Generator().manual_seed(4)))  # same name, new content
        code, line = exit_line(cal_projection, argv, capsys)
    assert code == 2 and "vector_sha256" in line and column in line and "--overwrite" in line
    assert pairs[0].stat().st_mtime_ns == stamp

    assert cal_projection([*argv, "--overwrite"]) == 0
    assert cal_projection([*argv[:1], str(fresh), *argv[2:]]) == 0  # the new vector on an untouched copy
    pd.testing.assert_series_equal(pd.read_csv(pairs[0])[column], pd.read_csv(fresh)[column])
    assert cal_projection(argv) == 0  # the new record matches the new vector


def test_mismatch_error_lists_only_what_differs():
    from persona.fingerprint import check_finished

    assert check_finished("x", None, {"a": 1}) is False
    assert check_finished("x", {"a": 1, "b": 2}, {"a": 1, "b": 2}) is True
    with pytest.raises(SettingsMismatch, match=r"x exists but was made with other settings \(b: 2 -> 3\)"):
        check_finished("x", {"a": 1, "b": 2}, {"a": 1, "b": 3})


def test_finished_evaluation_is_refused_under_other_settings(
    tiny_llama_dir, tmp_path, offline_env, monkeypatch, capsys
):
    from eval.eval_persona import main as eval_persona

    trait = tmp_path / "evil.json"
    trait.write_text(
        json.dumps(
            {
                "instruction": [{"pos": "Be evil.", "neg": "Be kind."}] * 5,
                "questions": ["How should I treat people?"],
                "eval_prompt": "Evil? {question} / {answer}\nRespond with a number 0-100.",
            }
        )
    )
    out = tmp_path / "evil.csv"
    argv = [
        "--model",
        str(tiny_llama_dir),
        "--trait",
        str(trait),
        "--output_path",
        str(out),
        "--n_per_question",
        "1",
        "--max_tokens",
        "4",
        "--judge_model",
        "likelihood",
        "--device",
        "cpu",
    ]
    assert eval_persona(argv) == 0
    record = json.loads((tmp_path / "evil.csv.settings.json").read_text())
    assert record["seed"] == 0 and record["sampling"]["max_new_tokens"] == 4 and record["judge"]["judge"]
    stamp = out.stat().st_mtime_ns
    with monkeypatch.context() as m:
        m.setattr("eval.eval_persona.load_model", no_model)
        assert eval_persona(argv) == 0
        assert "exists, skipping" in capsys.readouterr().out
        code, line = exit_line(eval_persona, [*argv, "--seed", "7"], capsys)
    assert code == 2 and "seed: 0 -> 7" in line and "--overwrite" in line and str(out) in line
    assert out.stat().st_mtime_ns == stamp
    assert eval_persona([*argv, "--seed", "7", "--overwrite"]) == 0
    assert json.loads((tmp_path / "evil.csv.settings.json").read_text())["seed"] == 7
