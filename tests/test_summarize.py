"""`python -m eval.summarize` on synthetic sweep and experiment folders (no model: the test writes the CSVs)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from eval import summarize as summarize_cli
from persona.analysis.summary import metric_columns, summarize
from persona.evaluation import sweep_filename

REPO = Path(__file__).resolve().parents[1]
PROJ = "smollm2-135m_evil_response_avg_diff_proj_layer6"


def write_eval(path: Path, scores: dict[str, list[float]], n_questions: int = 4, per_question: int = 2, **extra):
    """An eval CSV: `per_question` answers to each of `n_questions` questions, columns of scores in row order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = n_questions * per_question
    frame = pd.DataFrame(
        {
            "question": [f"question {i // per_question}" for i in range(n)],
            "prompt": ["p"] * n,
            "answer": ["a"] * n,
            "question_id": [f"evil_{i // per_question}" for i in range(n)],
            **scores,
            **extra,
        }
    )
    frame.to_csv(path, index=False)
    return frame


def t_interval(per_question: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    m, se = per_question.mean(), per_question.std(ddof=1) / math.sqrt(len(per_question))
    return scipy_stats.t.interval(ci, len(per_question) - 1, m, se)


def question_means(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame.groupby("question_id")[column].mean().sort_index().to_numpy()


@pytest.fixture()
def sweep(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "sweep"
    frames = {}
    frames["baseline"] = write_eval(
        folder / "evil_baseline.csv",
        {"evil": rng.uniform(0, 40, 8), "coherence": rng.uniform(80, 100, 8), PROJ: rng.normal(0, 1, 8)},
    )
    for layer, coef in ((6, 2.0), (10, 2.0)):
        frames[layer, coef] = write_eval(
            folder / sweep_filename("evil", "all", layer, coef),
            {"evil": rng.uniform(30, 90, 8), "coherence": rng.uniform(50, 100, 8), PROJ: rng.normal(2, 1, 8)},
        )
    (folder / "evil_steer_all_layer_8_coef_2.0.answers.csv").write_text("question,answer\nq,half-done\n")
    return folder, frames


def test_sweep_folder_rows_and_paired_deltas_match_independent_computations(sweep, tmp_path, capsys):
    folder, frames = sweep
    out = tmp_path / "summary.csv"
    assert summarize_cli.main([str(folder), "--output_path", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "cell",
        "metric",
        "n_questions",
        "n_answers",
        "mean",
        "ci_low",
        "ci_high",
        "delta",
        "delta_ci_low",
        "delta_ci_high",
    ]
    assert set(table["cell"]) == {
        "evil_baseline",
        "evil_steer_all_layer_6_coef_2.0",
        "evil_steer_all_layer_10_coef_2.0",
    }
    assert table["metric"].tolist()[:3] == ["evil", "coherence", PROJ]
    row = table.set_index(["cell", "metric"]).loc[("evil_steer_all_layer_10_coef_2.0", "evil")]
    cell, base = frames[10, 2.0], frames["baseline"]
    assert row["mean"] == pytest.approx(cell["evil"].mean()) and (row["n_questions"], row["n_answers"]) == (4, 8)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(t_interval(question_means(cell, "evil")))
    diffs = question_means(cell, "evil") - question_means(base, "evil")
    assert row["delta"] == pytest.approx(diffs.mean())
    assert (row["delta_ci_low"], row["delta_ci_high"]) == pytest.approx(t_interval(diffs))
    assert table.loc[table["cell"] == "evil_baseline", "delta"].isna().all()
    printed = capsys.readouterr().out
    assert "mean [95% CI]" in printed and "delta vs baseline [95% CI]" in printed and "wrote" in printed


def test_ci_level_and_bootstrap_method(sweep):
    folder, frames = sweep
    narrow = summarize(folder, ci=0.5).set_index(["cell", "metric"]).loc[("evil_baseline", "coherence")]
    assert (narrow["ci_low"], narrow["ci_high"]) == pytest.approx(
        t_interval(question_means(frames["baseline"], "coherence"), 0.5)
    )
    boot = summarize(folder, method="bootstrap").set_index(["cell", "metric"]).loc[("evil_baseline", "coherence")]
    assert boot["ci_low"] < boot["mean"] < boot["ci_high"]


def test_one_csv_against_a_given_baseline_and_by_seed(tmp_path):
    base = write_eval(tmp_path / "base.csv", {"evil": [10.0, 20, 30, 40, 50, 60, 70, 80]}, seed=[0, 1] * 4)
    cell = write_eval(tmp_path / "cell.csv", {"evil": [15.0, 25, 30, 50, 50, 70, 75, 90]}, seed=[0, 1] * 4)
    table = summarize(tmp_path / "cell.csv", tmp_path / "base.csv").set_index("cell")
    assert table.loc["cell", "delta"] == pytest.approx((cell["evil"] - base["evil"]).mean())
    assert metric_columns(cell) == ["evil"]  # question_id and seed are not scores
    per_seed = summarize(tmp_path / "cell.csv", tmp_path / "base.csv", by="seed")
    seed1 = per_seed[(per_seed["cell"] == "cell") & (per_seed["seed"] == 1)].iloc[0]
    assert seed1["n_answers"] == 4 and seed1["delta"] == pytest.approx(np.mean([25 - 20, 50 - 40, 70 - 60, 90 - 80]))


def test_experiment_folders_use_their_unsteered_cell(tmp_path):
    inter = tmp_path / "interference"
    write_eval(inter / "cells" / "baseline.csv", {"evil": [1.0] * 8, "optimistic": [5.0] * 8, "coherence": [90.0] * 8})
    write_eval(
        inter / "cells" / "steer_evil.csv", {"evil": [3.0] * 8, "optimistic": [4.0] * 8, "coherence": [80.0] * 8}
    )
    (inter / "cells" / "steer_optimistic.answers.csv").write_text("question,answer\nq,a\n")
    table = summarize(inter).set_index(["cell", "metric"])
    assert set(table.index.get_level_values("cell")) == {"baseline", "steer_evil"}
    assert table.loc[("steer_evil", "optimistic"), "delta"] == pytest.approx(-1.0)
    lin = tmp_path / "linearity"
    for name, value in (("a_0.0_b_0.0", 10.0), ("a_1.0_b_0.0", 12.0), ("a_1.0_b_1.0", 19.0)):
        write_eval(lin / "cells" / f"{name}.csv", {"evil": [value] * 8, "coherence": [90.0] * 8})
    deltas = summarize(lin).set_index(["cell", "metric"])["delta"]
    assert deltas[("a_1.0_b_1.0", "evil")] == pytest.approx(9.0) and np.isnan(deltas[("a_0.0_b_0.0", "evil")])


def test_mismatched_questions_are_refused_naming_the_ids(sweep):
    folder, _ = sweep
    write_eval(
        folder / sweep_filename("evil", "all", 14, 2.0), {"evil": [1.0] * 10}, n_questions=5
    )  # one more question
    run = subprocess.run(
        [sys.executable, "-m", "eval.summarize", str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 2, run.stderr
    line = run.stderr.strip()
    assert line.count("\n") == 0 and "only in the cell: evil_4" in line
    assert "evil_steer_all_layer_14_coef_2.0.csv" in line and "evil_baseline.csv" in line


def test_bad_paths_and_levels_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no eval CSVs"):
        summarize(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such eval CSV or folder"):
        summarize(tmp_path / "missing")
    with pytest.raises(SystemExit):
        summarize_cli.main([str(tmp_path), "--ci", "95"])


def test_a_summary_written_into_the_folder_is_not_read_back_as_a_cell(sweep):
    """Summarizing a folder twice, the first summary saved inside it, gives the same table."""
    folder, _ = sweep
    inside = folder / "summary.csv"
    assert summarize_cli.main([str(folder), "--by", "seed", "--output_path", str(inside)]) == 0
    first = pd.read_csv(inside)
    assert summarize_cli.main([str(folder), "--by", "seed", "--output_path", str(inside)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(inside), first)
    assert "summary" not in set(first["cell"])


def test_mean_scores_are_cut_to_the_scale_and_projections_are_not(tmp_path):
    """Coherence 100/100/20 per question: its t interval reaches past 100 and is cut there; the same
    values as a projection column keep their raw t bounds."""
    values = [100.0, 100.0, 100.0, 100.0, 20.0, 20.0]
    path = tmp_path / "evil_baseline.csv"
    write_eval(path, {"coherence": values, PROJ: values}, n_questions=3)
    assert summarize_cli.main([str(path), "--output_path", str(tmp_path / "s.csv")]) == 0
    table = pd.read_csv(tmp_path / "s.csv").set_index("metric")
    low, high = t_interval(np.array([100.0, 100.0, 20.0]))
    assert high > 100 and low < 0
    assert (table.loc["coherence", "ci_low"], table.loc["coherence", "ci_high"]) == (0.0, 100.0)
    assert (table.loc[PROJ, "ci_low"], table.loc[PROJ, "ci_high"]) == pytest.approx((low, high))
