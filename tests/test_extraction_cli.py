"""`generate_vec.py --method` (built in and registered from outside), `eval_persona --layer auto`: tiny model."""

import json
import shutil

import pandas as pd
import pytest
import torch

from eval.eval_persona import main as eval_persona
from eval.vector_quality import main as vector_quality
from generate_vec import main as generate_vec
from persona.cli import run_cli
from persona.extraction_methods import METHODS, register_method
from persona.fingerprint import read_record
from persona.vectors import VECTOR_KINDS, PersonaVector, load_vector
from tests import test_generate_vec
from tests.trait_files import short_trait_file

pair_csvs = test_generate_vec.pair_csvs  # the fixture: 4 pos/neg rows, 2 kept


def extract(model, pairs, out, *extra):
    argv = ["--model_name", str(model), "--pos_path", str(pairs[0]), "--neg_path", str(pairs[1])]
    return generate_vec([*argv, "--trait", "evil", "--save_dir", str(out), *extra])


def exit_code(argv, main):
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: main(argv))
    return info.value.code


@pytest.fixture
def toy_method():
    @register_method("toy_scaled", suffix="toy")
    def toy(pos, neg, *, scale: float = 1.0):
        return scale * (pos.mean(0) - neg.mean(0))

    yield "toy_scaled"
    METHODS.pop("toy_scaled")


def test_a_method_registered_outside_the_package_runs_through_the_cli(
    tiny_llama_dir, pair_csvs, tmp_path, toy_method, capsys
):
    out = tmp_path / "vectors"
    assert extract(tiny_llama_dir, pair_csvs, out) == 0
    assert extract(tiny_llama_dir, pair_csvs, out, "--method", toy_method, "--method_option", "scale=2") == 0
    for kind in VECTOR_KINDS:  # per-sample activations through the toy == 2 x the streamed mean difference
        toy = load_vector(out / f"evil_{kind}_toy.pt")
        torch.testing.assert_close(toy, 2 * load_vector(out / f"evil_{kind}_diff.pt"), atol=1e-5, rtol=1e-5)
    meta = json.loads((out / "evil_toy_vectors.json").read_text())
    assert meta["method"] == toy_method and meta["method_options"] == {"scale": 2}
    assert meta["settings"]["method"] == toy_method and meta["files"]["response_avg"] == "evil_response_avg_toy.pt"
    assert json.loads((out / "evil_vectors.json").read_text())["method"] == "mean_diff"  # each method its own record
    loaded = PersonaVector.load(out / "evil_response_avg_toy.pt")
    assert loaded.trait == "evil" and loaded.kind == "response_avg" and loaded.meta["method"] == toy_method
    capsys.readouterr()
    assert extract(tiny_llama_dir, pair_csvs, out, "--method", toy_method, "--method_option", "scale=2") == 0
    assert "toy_scaled vectors exist with these settings, skipping" in capsys.readouterr().out
    argv = ["--pos_path", str(pair_csvs[0]), "--neg_path", str(pair_csvs[1]), "--trait", "evil", "--save_dir", str(out)]
    assert exit_code([*argv, "--method", toy_method, "--method_option", "scale=3"], generate_vec) == 2
    assert "method_options: {'scale': 2} -> {'scale': 3}" in capsys.readouterr().err
    assert exit_code([*argv, "--method", toy_method, "--method_option", "shift=1"], generate_vec) == 2
    assert "has no option 'shift'; its options are ['scale']" in capsys.readouterr().err
    assert exit_code([*argv, "--pca_center"], generate_vec) == 2
    assert "--pca_center applies to --method pca_diff" in capsys.readouterr().err


def test_probe_vectors_then_eval_persona_layer_auto_records_the_chosen_layer(
    tiny_llama_dir, pair_csvs, tmp_path, capsys, offline_env
):
    out = tmp_path / "vectors"
    assert extract(tiny_llama_dir, pair_csvs, out, "--method", "probe", "--method_option", "folds=2") == 0
    assert extract(tiny_llama_dir, pair_csvs, out) == 0
    vector = out / "evil_response_avg_probe.pt"
    assert load_vector(vector).shape == (4, 64)
    assert json.loads((out / "evil_probe_vectors.json").read_text())["method_options"]["folds"] == 2
    for side in ("pos", "neg"):  # held-out answers, by convention beside the extraction CSVs
        held = pd.read_csv(pair_csvs[0 if side == "pos" else 1])
        held["answer"] = held["answer"].str.upper()
        held.to_csv(pair_csvs[0].parent / f"evil_{side}_eval.csv", index=False)

    trait = short_trait_file("evil_2", tmp_path)
    steered = tmp_path / "steered.csv"
    argv = ["--model", str(tiny_llama_dir), "--trait", str(trait), "--output_path", str(steered)]
    argv += ["--n_per_question", "1", "--max_tokens", "4", "--judge_model", "likelihood", "--device", "cpu"]
    assert eval_persona([*argv, "--vector_path", str(vector), "--layer", "auto", "--coef", "1.0"]) == 0
    quality = pd.read_csv(out / "vector_quality.csv")
    rows = quality[quality["vector_file"] == vector.name]
    assert set(rows["method"]) == {"probe"} and sorted(rows["layer"]) == [0, 1, 2, 3]
    blocks = rows[rows["layer"] >= 1]  # row 0, the embeddings, is never chosen
    best = int(blocks.sort_values(["auroc", "layer"], ascending=[False, True]).iloc[0]["layer"])
    record = read_record(steered)
    assert record["layer_choice"][0]["layer"] == best and record["layer_choice"][0]["vectors"] == [str(vector)]
    assert record["steers"][0]["layer"] == best

    capsys.readouterr()  # eval.vector_quality over every method in the folder, figure included
    assert (
        vector_quality(["--model", str(tiny_llama_dir), "--trait", "evil", "--vector_dir", str(out), "--n_boot", "50"])
        == 0
    )
    table = pd.read_csv(out / "vector_quality.csv")
    assert set(table["method"]) == {"mean_diff", "probe"} and len(table) == 2 * 3 * 4
    assert (table.loc[table["method"] == "mean_diff", "cos_mean_diff"].dropna() > 0.9999).all()
    assert (out / "evil_vector_quality.png").stat().st_size > 0
    shutil.rmtree(out)
