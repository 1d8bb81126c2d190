"""eval.multi_persona end to end on a tiny random model with the offline likelihood judge (2 questions, 4 tokens)."""

from __future__ import annotations

import logging

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch

from eval import multi_persona
from persona.generation import generate_answers
from persona.models import load_model
from persona.steering import Steer, steering
from persona.traits import load_trait

LAYER, COEF = 2, 4.0


@pytest.fixture
def vector_dir(tmp_path):
    g = torch.Generator().manual_seed(0)
    folder = tmp_path / "vectors"
    folder.mkdir()
    for trait in ("evil", "optimistic", "humorous"):
        torch.save(torch.randn(4, 64, generator=g), folder / f"{trait}_response_avg_diff.pt")
    return folder


def _args(experiment, model_dir, vector_dir, out, traits, *extra):
    return [
        experiment,
        "--model",
        str(model_dir),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--traits",
        *traits,
        "--vector_dir",
        str(vector_dir),
        "--layer",
        str(LAYER),
        "--n_per_question",
        "1",
        "--max_questions",
        "1",
        "--max_tokens",
        "4",
        "--judge_model",
        "likelihood",
        "--output_dir",
        str(out),
        *extra,
    ]


def _mean(path, column):
    return pd.read_csv(path)[column].mean()


def test_linearity_end_to_end(tmp_path, tiny_llama_dir, vector_dir, offline_env, monkeypatch, caplog):
    out = tmp_path / "lin"
    argv = _args(
        "linearity",
        tiny_llama_dir,
        vector_dir,
        out,
        ["evil", "optimistic"],
        "--coefs_a",
        str(COEF),
        "--coefs_b",
        str(COEF),
    )
    assert multi_persona.main(argv) == 0
    cells = {(a, b): out / "cells" / f"a_{a!r}_b_{b!r}.csv" for a in (0.0, COEF) for b in (0.0, COEF)}
    frames = {k: pd.read_csv(p, keep_default_na=False) for k, p in cells.items()}
    assert all(len(f) == 2 and {"evil", "optimistic", "coherence"} <= set(f.columns) for f in frames.values())
    assert not list((out / "cells").glob("*.answers.*"))

    # the joint cell is generation under a*v_A + b*v_B, as a direct steered run gives it
    lm = load_model(str(tiny_llama_dir), device="cpu", dtype="float32")
    questions = [load_trait(t, "eval").questions[0] for t in ("evil", "optimistic")]
    va, vb = (torch.load(vector_dir / f"{t}_response_avg_diff.pt", weights_only=True) for t in ("evil", "optimistic"))
    with steering(lm.model, [Steer(va, LAYER, COEF), Steer(vb, LAYER, COEF)]):
        direct = generate_answers(
            lm, [[{"role": "user", "content": q}] for q in questions], max_new_tokens=4, temperature=0.0
        )
    assert frames[COEF, COEF]["answer"].tolist() == direct
    assert frames[COEF, 0.0]["answer"].tolist() != frames[0.0, 0.0]["answer"].tolist()  # steering acted

    table = pd.read_csv(out / "linearity.csv").set_index("metric")
    for metric in ("evil", "optimistic", "coherence"):
        s = {k: _mean(p, metric) for k, p in cells.items()}
        expected = s[COEF, COEF] - s[COEF, 0.0] - s[0.0, COEF] + s[0.0, 0.0]
        assert table.loc[metric, "residual"] == pytest.approx(expected, abs=1e-9)
    assert mpimg.imread(out / "linearity_residuals.png")[..., :3].std() > 0.01

    # a rerun resumes: nothing is generated again
    def no_generation(*args, **kwargs):
        raise AssertionError("a finished cell was generated again")

    monkeypatch.setattr("persona.answers.generate_cells", no_generation)
    stamp = cells[COEF, COEF].stat().st_mtime_ns
    assert multi_persona.main(argv) == 0
    assert cells[COEF, COEF].stat().st_mtime_ns == stamp

    # other settings are refused, naming what changed
    changed = [a if a != "4" else "5" for a in argv]
    with pytest.raises(ValueError, match="max_tokens: 4 -> 5"):
        multi_persona.main(changed)

    # a missing cell is listed and left as a gap
    cells[COEF, 0.0].unlink()
    with caplog.at_level(logging.WARNING):
        assert multi_persona.main(argv + ["--no_run"]) == 0
    assert "1 missing cells drawn as gaps: a_4.0_b_0.0" in caplog.text
    assert pd.read_csv(out / "linearity.csv")["residual"].isna().all()


def test_interference_end_to_end(tmp_path, tiny_llama_dir, vector_dir, offline_env, capsys):
    out = tmp_path / "inter"
    traits = ["evil", "optimistic", "humorous"]
    assert multi_persona.main(_args("interference", tiny_llama_dir, vector_dir, out, traits, "--coef", str(COEF))) == 0
    base = out / "cells" / "baseline.csv"
    assert len(pd.read_csv(base)) == 3  # one question per trait
    table = pd.read_csv(out / "interference.csv").set_index(["steered", "judged"])
    vectors = {t: torch.load(vector_dir / f"{t}_response_avg_diff.pt", weights_only=True)[LAYER] for t in traits}
    for a in traits:
        for b in traits:
            delta = _mean(out / "cells" / f"steer_{a}.csv", b) - _mean(base, b)
            assert table.loc[(a, b), "delta"] == pytest.approx(delta, abs=1e-9)
            cos = torch.nn.functional.cosine_similarity(vectors[a], vectors[b], dim=0)
            assert table.loc[(a, b), "cos"] == pytest.approx(float(cos), abs=1e-6)
    matrix = pd.read_csv(out / "interference_matrix.csv").set_index("steered")
    assert matrix.shape == (3, 3) and matrix.loc["evil", "humorous"] == pytest.approx(
        table.loc[("evil", "humorous"), "delta"]
    )
    off = table.reset_index()
    off = off[off["steered"] != off["judged"]]
    r = np.corrcoef(off["cos"], off["delta"])[0, 1]
    assert f"over A != B: {r:.3f}" in capsys.readouterr().out
    assert mpimg.imread(out / "interference_vs_cos.png")[..., :3].std() > 0.01


def test_bad_arguments(tmp_path, vector_dir):
    with pytest.raises(ValueError, match="exactly two `traits`"):
        multi_persona.main(_args("linearity", "m", vector_dir, tmp_path, ["evil"]))
    with pytest.raises(ValueError, match="share judge columns"):
        multi_persona.main(_args("interference", "m", vector_dir, tmp_path, ["anxious", "anxious_2"]))
    with pytest.raises(FileNotFoundError, match="evil_prompt_last_diff.pt does not exist"):
        multi_persona.main(
            _args("linearity", "m", vector_dir, tmp_path, ["evil", "humorous"], "--vector_type", "prompt_last_diff")
        )


def test_backend_vllm_without_vllm_falls_back_and_every_cell_has_its_records(
    tmp_path, tiny_llama_dir, vector_dir, offline_env, monkeypatch, caplog
):
    from persona import vllm_backend
    from persona.fingerprint import read_record
    from persona.judge.sidecar import read_sidecar

    monkeypatch.setattr(vllm_backend, "vllm_unusable_reason", lambda device: "vLLM is not installed")
    out = tmp_path / "inter"
    argv = _args("interference", tiny_llama_dir, vector_dir, out, ["evil", "optimistic"], "--backend", "vllm")
    assert multi_persona.main(argv) == 0
    assert "backend vllm: vLLM is not installed; generating with the HF backend instead" in caplog.text
    for cell in ("baseline", "steer_evil", "steer_optimistic"):
        path = out / "cells" / f"{cell}.csv"
        sidecar, record = read_sidecar(path), read_record(path)
        assert sidecar["judge"] == "likelihood" and set(sidecar["columns"]) == {"evil", "optimistic", "coherence"}
        assert sidecar["trait"] == ["evil", "optimistic"]
        assert record["n_rows"] == 2 and record["judge"]["judge"] == "likelihood"
        assert len(record["steers"]) == (0 if cell == "baseline" else 1)
