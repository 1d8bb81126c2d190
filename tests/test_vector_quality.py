"""Held-out vector quality (AUROC, bootstrap interval, Cohen's d) and the `layer="auto"` choice made from it."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from persona.layer_choice import choose_layer, resolve_layer, resolve_layer_list
from persona.vector_quality import QUALITY_FILE, auroc, auroc_interval, cohens_d, quality_table
from persona.vectors import save_vector

LAYERS, HIDDEN = 4, 6


def test_auroc_equals_sklearn_with_ties_and_over_a_batch_axis():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 30).astype(float)  # many ties
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[pos, neg])
    assert auroc(pos, neg) == pytest.approx(expected, abs=1e-12)
    batch = auroc(np.stack([pos, -pos]), np.stack([neg, -neg]))
    assert batch == pytest.approx([expected, 1 - expected], abs=1e-12)
    low, high = auroc_interval(pos, neg, n_boot=2000)
    assert low < expected < high and 0 <= low and high <= 1


def test_cohens_d_by_hand():
    pos, neg = np.array([2.0, 4.0, 6.0]), np.array([1.0, 3.0])  # means 4 and 2; vars 4 and 2; pooled (2*4+1*2)/3
    assert cohens_d(pos, neg) == pytest.approx(2 / np.sqrt(10 / 3))
    assert np.isnan(cohens_d(np.ones(3), np.ones(3)))


def test_quality_table_auroc_is_sklearn_on_the_projections(tmp_path):
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(LAYERS, HIDDEN, generator=g)
    pos = torch.randn(30, LAYERS, HIDDEN, generator=g) + torch.linspace(0, 1, LAYERS)[:, None] * direction
    neg = torch.randn(25, LAYERS, HIDDEN, generator=g)
    pos[3] = float("nan")  # a sample without an answer is dropped
    files = {}
    for method, suffix, v in (
        ("mean_diff", "diff", direction),
        ("probe", "probe", direction + 0.5 * torch.randn(LAYERS, HIDDEN, generator=g)),
    ):
        files[f"{method}/response_avg"] = tmp_path / f"evil_response_avg_{suffix}.pt"
        save_vector(files[f"{method}/response_avg"], v)
    table = quality_table("evil", files, {"response_avg": pos}, {"response_avg": neg}, n_boot=200)
    assert len(table) == 2 * LAYERS and set(table["n_pos"]) == {29} and set(table["n_neg"]) == {25}
    kept = pos[~pos.isnan().flatten(1).any(1)]
    for row in table.itertuples():
        v = torch.load(tmp_path / row.vector_file, weights_only=True)[row.layer]
        scores = torch.cat([kept[:, row.layer], neg[:, row.layer]]) @ v
        assert row.auroc == pytest.approx(roc_auc_score(np.r_[np.ones(29), np.zeros(25)], scores.numpy()), abs=1e-9)
        assert row.auroc_low <= row.auroc <= row.auroc_high
    mean_diff = table[table["method"] == "mean_diff"]
    assert mean_diff["cos_mean_diff"].tolist() == pytest.approx([1.0] * LAYERS)
    assert mean_diff.set_index("layer")["auroc"].idxmax() == LAYERS - 1  # the planted signal grows with the layer


def quality_csv(folder, rows):
    columns = ["trait", "method", "kind", "layer", "vector_file", "auroc"]
    pd.DataFrame(rows, columns=columns).to_csv(folder / QUALITY_FILE, index=False)


def test_auto_takes_the_best_layer_ties_the_lowest_and_shared_layers_the_best_mean(tmp_path):
    for name in ("a_response_avg_diff.pt", "b_response_avg_probe.pt"):
        save_vector(tmp_path / name, torch.zeros(LAYERS, HIDDEN))
    quality_csv(
        tmp_path,
        [
            ["a", "mean_diff", "response_avg", 1, "a_response_avg_diff.pt", 0.7],
            ["a", "mean_diff", "response_avg", 2, "a_response_avg_diff.pt", 0.9],
            ["a", "mean_diff", "response_avg", 3, "a_response_avg_diff.pt", 0.9],
            ["b", "probe", "response_avg", 1, "b_response_avg_probe.pt", 0.95],
            ["b", "probe", "response_avg", 2, "b_response_avg_probe.pt", 0.6],
            ["b", "probe", "response_avg", 3, "b_response_avg_probe.pt", 0.8],
        ],
    )
    a, b = tmp_path / "a_response_avg_diff.pt", tmp_path / "b_response_avg_probe.pt"
    assert resolve_layer(12, a) == (12, None)
    layer, choice = resolve_layer("auto", a)
    assert layer == 2 and choice.auroc == pytest.approx(0.9) and choice.record()["vectors"] == [str(a)]
    assert choose_layer([a, b]).layer == 3  # mean AUROC by layer: 0.825, 0.75, 0.85
    layers, records = resolve_layer_list(["auto", "5"], [str(a), str(b)])
    assert layers == ["2", "5"] and [r["layer"] for r in records] == [2]
    layers, records = resolve_layer_list(["auto"], [str(a), str(b)])
    assert layers == ["2", "1"] and len(records) == 2
    assert resolve_layer_list(["auto"], [str(a), str(b)], pair=False)[0] == ["2", "1"]
    assert resolve_layer_list(["20"], [str(a)]) == (["20"], [])


def test_auto_never_takes_row_0_the_embeddings(tmp_path):
    vector = tmp_path / "a_prompt_last_diff.pt"
    save_vector(vector, torch.zeros(LAYERS, HIDDEN))
    rows = [
        ["a", "mean_diff", "prompt_last", layer, vector.name, auc] for layer, auc in enumerate([1.0, 0.6, 0.8, 0.7])
    ]
    quality_csv(tmp_path, rows)  # row 0 separates best (the system prompts' tokens differ), yet block 2 is chosen
    layer, choice = resolve_layer("auto", vector)
    assert layer == 2 and choice.auroc == pytest.approx(0.8) and "layers >= 1" in choice.rule
    assert resolve_layer_list(["auto"], [str(vector)]) == (["2"], [choice.record()])
    quality_csv(tmp_path, rows[:1])  # only the embeddings measured: nothing to choose from
    with pytest.raises(ValueError, match=r"no layer >= 1 measured .*row 0, the embeddings, is never chosen"):
        choose_layer([vector])


def test_auto_without_quality_rows_or_held_out_answers_says_what_to_run(tmp_path):
    vector = tmp_path / "evil_response_avg_diff.pt"
    save_vector(vector, torch.zeros(LAYERS, HIDDEN))
    (tmp_path / "evil_vectors.json").write_text(json.dumps({"sources": {"pos": str(tmp_path / "x/evil_pos.csv")}}))
    with pytest.raises(FileNotFoundError, match=r"held-out answers .*x/evil_pos_eval.csv.*eval.vector_quality"):
        resolve_layer("auto", vector)
    with pytest.raises(ValueError, match="registered method"):
        save_vector(tmp_path / "steer.pt", torch.zeros(LAYERS, HIDDEN))
        resolve_layer("auto", tmp_path / "steer.pt")
