"""persona.analysis: numbers behind the figures, checked against direct numpy/torch computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from persona.analysis.cross_persona import cross_persona_fits, cross_persona_table, load_finetuning_effects
from persona.analysis.geometry import (
    check_antonyms,
    check_orthogonal,
    cosine_by_layer,
    cosine_table,
    norms_by_layer,
    pca_2d,
)
from persona.analysis.multi_persona import (
    additivity,
    additivity_summary,
    check_settings,
    interference,
    interference_fit,
    linearity_cells,
    question_grid,
)
from persona.analysis.results import (
    load_projection_eval,
    load_steering_sweep,
    load_vectors,
    parse_sweep_name,
    projection_label,
    projection_suffix,
    variant_names,
    vector_files,
)
from persona.analysis.stats import cosine_matrix, fit_line, pearson_r
from persona.evaluation import sweep_filename
from persona.judge.sidecar import write_sidecar
from persona.projection import column_name


def _vectors(n: int = 4, layers: int = 5, hidden: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"t{i}": torch.randn(layers, hidden, generator=g) for i in range(n)}


def test_cosine_matrix_matches_direct_cosines():
    rows = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    sim = cosine_matrix(rows)
    for i in range(5):
        for j in range(5):
            a, b = rows[i].double().numpy(), rows[j].double().numpy()
            assert sim[i, j] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-12)
    assert np.array_equal(sim, sim.T) and np.all(np.diag(sim) == 1.0)


def test_cosine_matrix_refuses_zero_vector():
    with pytest.raises(ValueError, match="zero vector"):
        cosine_matrix(torch.zeros(2, 3))


def test_pearson_r_and_fit_line_match_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    slope, intercept = fit_line(x, 3 * x + 2)
    assert (slope, intercept) == pytest.approx((3.0, 2.0))
    y_nan = y.copy()
    y_nan[3] = np.nan  # pairs with a NaN are dropped
    keep = np.arange(30) != 3
    assert pearson_r(x, y_nan) == pytest.approx(np.corrcoef(x[keep], y[keep])[0, 1])
    assert math.isnan(pearson_r([1.0], [2.0])) and math.isnan(pearson_r([1, 2, 3], [5, 5, 5]))


def test_geometry_tables():
    vectors = _vectors()
    cos = cosine_table(vectors, 2)
    a, b = vectors["t0"][2], vectors["t3"][2]
    assert cos.loc["t0", "t3"] == pytest.approx(float(a @ b / a.norm() / b.norm()), abs=1e-6)
    by_layer = cosine_by_layer(vectors)
    assert list(by_layer.columns)[:2] == ["t0 vs t1", "t0 vs t2"] and len(by_layer.columns) == 6
    assert by_layer.loc[2, "t0 vs t3"] == pytest.approx(cos.loc["t0", "t3"])
    assert norms_by_layer(vectors).loc[4, "t1"] == pytest.approx(float(vectors["t1"][4].norm()), rel=1e-6)


def test_pca_2d_recovers_a_planar_configuration():
    # points in a 2-D plane of a 10-D space: two components explain everything, distances are kept
    basis = torch.linalg.qr(torch.randn(10, 2, generator=torch.Generator().manual_seed(0)))[0]
    plane = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 2.0]])
    coords, ratio = pca_2d((plane @ basis.T).double() + 5.0)
    assert ratio.sum() == pytest.approx(1.0) and ratio[0] >= ratio[1]
    d_coords = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    d_plane = np.linalg.norm(plane.numpy()[:, None] - plane.numpy()[None], axis=-1)
    assert np.allclose(d_coords, d_plane, atol=1e-6)


def test_claim_checks():
    v = torch.zeros(3, 4)
    vectors = {
        "a": v + torch.tensor([1.0, 0, 0, 0]),
        "b": v + torch.tensor([0, 1.0, 0, 0]),
        "c": v + torch.tensor([0.1, 0, 1.0, 0]),
        "anti_a": v + torch.tensor([-1.0, 0.2, 0, 0]),
    }
    cos = cosine_table(vectors, 1)
    ortho = check_orthogonal(cos, ["a", "b", "c"], threshold=0.2)
    assert ortho.holds and ortho.max_abs == pytest.approx(0.1 / math.sqrt(1.01))
    assert not check_orthogonal(cos, ["a", "b", "c"], threshold=0.05).holds
    anti = check_antonyms(cos, "a", "anti_a")
    assert anti.holds and anti.cosine == pytest.approx(-1 / math.sqrt(1.04))
    with pytest.raises(ValueError, match="no vector for"):
        check_antonyms(cos, "a", "missing")


def test_load_vectors_refuses_shapes_and_models(tmp_path):
    torch.save(torch.ones(4, 8), tmp_path / "x_response_avg_diff.pt")
    torch.save(torch.ones(5, 8), tmp_path / "y_response_avg_diff.pt")
    with pytest.raises(ValueError, match=r"x is \(4, 8\) but y is \(5, 8\)"):
        load_vectors(vector_files(tmp_path))
    torch.save(torch.ones(4, 8), tmp_path / "y_response_avg_diff.pt")
    (tmp_path / "x_vectors.json").write_text(json.dumps({"model": "m1"}))
    (tmp_path / "y_vectors.json").write_text(json.dumps({"model": "m2"}))
    with pytest.raises(ValueError, match="different models: x from m1, y from m2"):
        load_vectors(vector_files(tmp_path))


def test_vector_files_and_variants(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no files matching \{trait\}_response_avg_diff.pt"):
        vector_files(tmp_path)
    assert variant_names("anxious", ["anxious_10", "anxious_2", "anxious", "anxiousness", "calm"]) == [
        "anxious",
        "anxious_2",
        "anxious_10",
    ]


@pytest.mark.parametrize(
    "trait,kind,layer,coef",
    [("evil", "response", 20, 1.5), ("anxious_2", "all", 0, -2.0), ("a_steer_b", "prompt", 3, 1e-05)],
)
def test_sweep_names_round_trip(trait, kind, layer, coef):
    assert parse_sweep_name(sweep_filename(trait, kind, layer, coef)) == (trait, kind, layer, coef)


def test_sweep_name_rejects_other_files_and_reads_original_names():
    assert parse_sweep_name("evil_baseline.csv") is None
    assert parse_sweep_name(sweep_filename("evil", "response", 20, 1.0).replace(".csv", ".answers.csv")) is None
    assert parse_sweep_name("evil_steer_response_layer_20_coef_2.csv") == ("evil", "response", 20, 2.0)


def _eval_csv(path, column: str, scores, coherence, extra: dict | None = None):
    n = len(scores)
    df = pd.DataFrame(
        {
            "question": ["q"] * n,
            "prompt": ["p"] * n,
            "answer": ["a"] * n,
            "question_id": [f"q_{i}" for i in range(n)],
            column: scores,
            "coherence": coherence,
            **(extra or {}),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def test_load_steering_sweep(tmp_path):
    _eval_csv(tmp_path / sweep_filename("anxious_2", "response", 4, 1.0), "anxious", [10, 30, None], [80, 90, 100])
    _eval_csv(tmp_path / sweep_filename("anxious_2", "response", 8, 1.0), "anxious", [50, 70, 90], [60, 60, 60])
    _eval_csv(tmp_path / "anxious_2_baseline.csv", "anxious", [5, 15, 25], [99, 99, 99])
    (tmp_path / "notes.csv").write_text("x\n1\n")
    write_sidecar(tmp_path / sweep_filename("anxious_2", "response", 4, 1.0), {"judge": "likelihood"})
    cells, baselines = load_steering_sweep(tmp_path)
    assert cells[["layer", "score", "coherence", "n"]].values.tolist() == [[4, 20.0, 90.0, 3], [8, 70.0, 60.0, 3]]
    assert cells["judge"].iloc[0] == "likelihood" and pd.isna(cells["judge"].iloc[1])  # older file: no sidecar
    assert baselines[["trait", "score"]].values.tolist() == [["anxious_2", 15.0]]
    with pytest.raises(FileNotFoundError, match=r"no files matching \{trait\}_steer_prompt_layer"):
        load_steering_sweep(tmp_path, "prompt")


def test_projection_columns_follow_column_name():
    col = column_name("ckpt/run/checkpoint-30", "v/evil_response_avg_diff.pt", "proj", 20, shift=True)
    assert col.endswith("_" + projection_suffix("evil_response_avg_diff", "proj", 20, shift=True))
    assert projection_label(col) == projection_suffix("evil_response_avg_diff", "proj", 20, shift=True)
    plain = column_name("Qwen/Qwen3-4B", "evil_response_avg_diff.pt", "cos_sim", 8)
    assert projection_label(plain) == plain  # no checkpoint in the model label: kept whole


def test_load_projection_eval(tmp_path):
    for step, proj in ((0, [1.0, 3.0]), (10, [4.0, 8.0])):
        col = column_name(f"run/checkpoint-{step}", "evil_response_avg_diff.pt", "proj", 20)
        _eval_csv(tmp_path / f"checkpoint-{step}_evil.csv", "evil", [step, step + 2], [90, 70], {col: proj})
    (tmp_path / "checkpoint-20_evil.answers.csv").write_text("question,answer\nq,a\n")  # not judged yet: ignored
    data = load_projection_eval(tmp_path)
    proj = data[data["kind"] == "projection"]
    assert proj["series"].unique().tolist() == ["evil_response_avg_diff_proj_layer20"]
    assert proj.sort_values("step")["value"].tolist() == [2.0, 6.0]
    scores = data[(data["kind"] == "score") & (data["series"] == "evil")].sort_values("step")
    assert scores["value"].tolist() == [1.0, 11.0]


def test_cross_persona_effects_and_table(tmp_path):
    def write(trait_a, step, judged, score, shift):
        col = column_name(f"{trait_a}_run/checkpoint-{step}", f"{judged}_response_avg_diff.pt", "proj", 20, True)
        _eval_csv(
            tmp_path / f"{trait_a}_projection_eval" / f"checkpoint-{step}_{judged}.csv",
            judged,
            [score, score],
            [90, 90],
            {col: [shift, shift]},
        )

    # finetuned on evil: evil 10 -> 70 (+60), humorous 20 -> 50 (+30); shifts 4 along v_evil, 1 along v_humorous
    write("evil", 0, "evil", 10, 0.0)
    write("evil", 50, "evil", 70, 4.0)
    write("evil", 0, "humorous", 20, 0.0)
    write("evil", 50, "humorous", 50, 1.0)
    effects = load_finetuning_effects({"evil": tmp_path / "evil_projection_eval"}, layer=20, projection_type="proj")
    assert effects.set_index("judged").loc["humorous", ["delta", "shift"]].tolist() == [30.0, 1.0]
    cos = pd.DataFrame([[1.0, 0.4], [0.4, 1.0]], index=["evil", "humorous"], columns=["evil", "humorous"])
    table = cross_persona_table(effects, cos)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["cos"], row["relative_trait_score"], row["relative_shift"]) == pytest.approx((0.4, 0.5, 0.25))


def test_cross_persona_uses_baseline_without_checkpoint_0(tmp_path):
    _eval_csv(tmp_path / "evil_projection_eval" / "checkpoint-5_evil.csv", "evil", [60, 80], [90, 90])
    _eval_csv(tmp_path / "base" / "evil_baseline.csv", "evil", [10, 10], [90, 90])
    effects = load_finetuning_effects(
        {"evil": tmp_path / "evil_projection_eval"}, layer=20, baseline_dir=tmp_path / "base"
    )
    assert effects["delta"].tolist() == [60.0] and math.isnan(effects["shift"].iloc[0])


def test_linearity_cells_add_zero_and_combine_steers():
    va, vb = torch.ones(3, 4), -torch.ones(3, 4)
    cells = linearity_cells(va, vb, 1, [2.0], [1.0, -1.0])
    assert [(a, b) for a, b, _ in cells] == [(0.0, -1.0), (0.0, 0.0), (0.0, 1.0), (2.0, -1.0), (2.0, 0.0), (2.0, 1.0)]
    by_point = {(a, b): c for a, b, c in cells}
    assert by_point[0.0, 0.0].steers == []
    joint = by_point[2.0, -1.0].steers
    assert [(s.vector is va, s.coef) for s in joint] == [(True, 2.0), (False, -1.0)]


def test_additivity_residual_is_zero_on_an_additive_table():
    # S(a, b) = 40 + 3a - 2b exactly: every residual is 0, whatever the grid
    grid = pd.DataFrame(
        [{"a": a, "b": b, "evil": 40 + 3 * a - 2 * b} for a in (0.0, 1.0, 2.0) for b in (0.0, -1.0, 1.5)]
    )
    table = additivity(grid, ["evil"])
    assert len(table) == 4 and (table["residual"] == 0.0).all()
    assert table.set_index(["a", "b"]).loc[(2.0, 1.5), "effect"] == pytest.approx(3 * 2 - 2 * 1.5)


def test_additivity_residual_by_hand_and_gaps():
    grid = pd.DataFrame(
        {
            "a": [0.0, 0.0, 1.0, 1.0, 2.0, 2.0],
            "b": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0],
            "m": [10.0, 15.0, 30.0, 50.0, 40.0, 100.0],
        }
    )
    table = additivity(grid.drop(index=4), ["m"])  # (2, 0) missing: the (2, 1) residual is a gap
    res = table.set_index(["a", "b"])["residual"]
    assert res[1.0, 1.0] == pytest.approx(50 - 30 - 15 + 10) and math.isnan(res[2.0, 1.0])
    summary = additivity_summary(table).iloc[0]
    assert summary["cells"] == 1 and summary["mean_abs_residual"] == pytest.approx(15.0)
    assert summary["relative_residual"] == pytest.approx(15.0 / 40.0)


def test_interference_table():
    means = {
        "baseline": {"evil": 10.0, "humorous": 20.0},
        "steer_evil": {"evil": 50.0, "humorous": 30.0},
        "steer_humorous": {"evil": 5.0, "humorous": 60.0},
    }
    cos = pd.DataFrame([[1.0, 0.3], [0.3, 1.0]], index=["evil", "humorous"], columns=["evil", "humorous"])
    table = interference(means, cos, {"evil": "evil", "humorous": "humorous"}).set_index(["steered", "judged"])
    row = table.loc[("evil", "humorous"), ["delta", "self_delta", "relative", "cos"]]
    assert row.tolist() == [10.0, 40.0, 0.25, 0.3]
    assert table.loc[("humorous", "evil"), "delta"] == -5.0


def test_check_settings_records_and_refuses_changes(tmp_path):
    check_settings(tmp_path, {"layer": 2, "traits": ["a", "b"]}, overwrite=False)
    check_settings(tmp_path, {"layer": 2, "traits": ["a", "b"]}, overwrite=False)
    with pytest.raises(ValueError, match=r"layer: 2 -> 3"):
        check_settings(tmp_path, {"layer": 3, "traits": ["a", "b"]}, overwrite=False)
    check_settings(tmp_path, {"layer": 3, "traits": ["a", "b"]}, overwrite=True)
    assert json.loads((tmp_path / "settings.json").read_text())["layer"] == 3


def _t_interval(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return scipy_stats.t.interval(0.95, len(v) - 1, v.mean(), v.std(ddof=1) / math.sqrt(len(v)))


def test_load_steering_sweep_intervals_are_over_questions(tmp_path):
    _eval_csv(tmp_path / sweep_filename("evil", "all", 4, 1.0), "evil", [10, 30, 50, 20], [80, 90, 100, 70])
    _eval_csv(tmp_path / "evil_baseline.csv", "evil", [5, 15, 25], [99, 99, 99])
    cells, baselines = load_steering_sweep(tmp_path)
    row = cells.iloc[0]
    assert (row["score_ci_low"], row["score_ci_high"]) == pytest.approx(_t_interval([10, 30, 50, 20]))
    assert row["n_questions"] == 4
    base = baselines.iloc[0]
    low, high = _t_interval([5, 15, 25])  # (-9.8, 39.8): no mean score lies below 0, so the bound is cut there
    assert (base["score_ci_low"], base["score_ci_high"]) == pytest.approx((max(low, 0.0), high))
    assert base["coherence_ci_low"] == base["coherence_ci_high"] == 99.0


def _cell_frame(scores: dict[str, list[float]]) -> pd.DataFrame:
    """Two answers per question: question q_i gets scores[m][2i], scores[m][2i+1]."""
    n = len(next(iter(scores.values())))
    return pd.DataFrame({"question_id": [f"q_{i // 2}" for i in range(n)], **scores})


def test_additivity_per_question_residuals_and_their_intervals():
    rng = np.random.default_rng(0)
    difficulty = np.repeat(rng.normal(0, 20, 5), 2)  # shared by every cell: cancels in the residual
    cells = {
        (0.0, 0.0): 40 + difficulty + rng.normal(0, 1, 10),
        (2.0, 0.0): 50 + difficulty + rng.normal(0, 1, 10),
        (0.0, 1.0): 45 + difficulty + rng.normal(0, 1, 10),
        (2.0, 1.0): 75 + difficulty + rng.normal(0, 1, 10),  # additive would be 55: residual +20
    }
    frames = {k: _cell_frame({"m": list(v), "flat": [5.0] * 10}) for k, v in cells.items()}
    table = additivity(question_grid(frames, ["m", "flat"]), ["m", "flat"]).set_index("metric")
    q = {k: v.reshape(5, 2).mean(axis=1) for k, v in cells.items()}
    per_question = q[2.0, 1.0] - q[2.0, 0.0] - q[0.0, 1.0] + q[0.0, 0.0]
    row = table.loc["m"]
    assert row["residual"] == pytest.approx(per_question.mean()) and row["n_questions"] == 5
    assert (row["residual_ci_low"], row["residual_ci_high"]) == pytest.approx(_t_interval(per_question))
    assert row["score"] == pytest.approx(cells[2.0, 1.0].mean())
    assert row["residual"] == pytest.approx(row["effect"] - row["predicted"])
    summary = additivity_summary(table.reset_index()).set_index("metric")
    assert summary.loc["m", "cells_nonzero"] == 1 and not summary.loc["m", "consistent_with_zero"]
    assert summary.loc["flat", "cells_nonzero"] == 0 and summary.loc["flat", "consistent_with_zero"]
    gap = additivity(question_grid({k: f for k, f in frames.items() if k != (2.0, 0.0)}, ["m"]), ["m"])
    assert gap["residual"].isna().all() and gap["residual_ci_low"].isna().all()


def test_interference_paired_deltas_and_an_undefined_fit():
    frames = {
        "baseline": _cell_frame({"evil": [10, 12, 30, 32, 50, 52.0], "humorous": [20.0] * 6}),
        "steer_evil": _cell_frame({"evil": [20, 22, 41, 43, 58, 60.0], "humorous": [21, 23, 20, 20, 19, 21.0]}),
        "steer_humorous": _cell_frame({"evil": [10, 12, 30, 32, 50, 52.0], "humorous": [60.0] * 6}),
    }
    means = {c: {m: float(f[m].mean()) for m in ("evil", "humorous")} for c, f in frames.items()}
    cos = pd.DataFrame([[1.0, 0.3], [0.3, 1.0]], index=["evil", "humorous"], columns=["evil", "humorous"])
    columns = {"evil": "evil", "humorous": "humorous"}
    table = interference(means, cos, columns, frames=frames).set_index(["steered", "judged"])
    row = table.loc[("evil", "evil")]
    assert row["delta"] == pytest.approx(10.0 - 1 / 3)
    assert (row["delta_ci_low"], row["delta_ci_high"]) == pytest.approx(_t_interval([10, 11, 8]))
    assert table.loc[("evil", "humorous"), "n_questions"] == 3
    fit = interference_fit(table.reset_index())
    assert fit.n == 2 and math.isnan(fit.r) and fit.text() == "r undefined (2 points)"
    plain = interference(means, cos, columns)
    assert plain["delta_ci_low"].isna().all() and plain["delta"].tolist() == pytest.approx(table["delta"].tolist())


def test_cross_persona_changes_carry_paired_intervals(tmp_path):
    folder = tmp_path / "evil_projection_eval"
    _eval_csv(folder / "checkpoint-0_evil.csv", "evil", [10, 20, 30], [90, 90, 90])
    _eval_csv(folder / "checkpoint-5_evil.csv", "evil", [30, 35, 60], [90, 90, 90])
    effects = load_finetuning_effects({"evil": folder}, layer=20).iloc[0]
    assert effects["delta"] == pytest.approx(65 / 3)
    assert (effects["delta_ci_low"], effects["delta_ci_high"]) == pytest.approx(_t_interval([20, 15, 30]))
    fits = cross_persona_fits(
        pd.DataFrame({"cos": [0.1, 0.5, 0.9], "relative_trait_score": [0.2, 0.4, 0.9]}), ("relative_trait_score",)
    ).iloc[0]
    assert fits["r"] == pytest.approx(np.corrcoef([0.1, 0.5, 0.9], [0.2, 0.4, 0.9])[0, 1]) and fits["n"] == 3
