"""The study's result tables from cell files: intervals on every cell and the held-out headline."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from persona.analysis.headline import (
    cell_table,
    headline_rows,
    held_out_headlines,
    held_out_rows,
    held_out_text,
    projection_summary,
)
from persona.evaluation import sweep_filename


def write_cell(path, prefix: str, trait: list[float], coherence: list[float], proj: list[float] | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(trait)
    frame = pd.DataFrame(
        {
            "question": [f"{prefix} question {i}" for i in range(n)],
            "prompt": ["p"] * n,
            "answer": ["a"] * n,
            "question_id": [f"evil_{i}" for i in range(n)],
            "evil": trait,
            "coherence": coherence,
        }
    )
    if proj is not None:
        frame["m_evil_response_avg_diff_proj_layer6"] = proj
    frame.to_csv(path, index=False)
    return path


def t_interval(values: list[float]) -> tuple[float, float]:
    s = pd.Series(values)
    return scipy_stats.t.interval(0.95, len(s) - 1, s.mean(), s.std(ddof=1) / math.sqrt(len(s)))


def test_cell_table_and_headline_rows_carry_intervals(tmp_path):
    base = write_cell(tmp_path / "evil_baseline.csv", "eval", [10.0, 20.0, 30.0], [90.0, 95.0, 100.0], [1, 2, 3])
    cell = write_cell(tmp_path / sweep_filename("evil", "all", 6, 2.0), "eval", [40.0, 55.0, 60.0], [85.0] * 3)
    table = cell_table([base, cell], "evil").set_index("cell")
    low, high = t_interval([10, 20, 30])  # (-4.8, 44.8): a mean score cannot lie below 0, so the bound is cut there
    assert tuple(table.loc["baseline", ["trait_ci_low", "trait_ci_high"]]) == pytest.approx((max(low, 0.0), high))
    cell_low, cell_high = t_interval([40, 55, 60])  # inside 0-100: as computed
    assert tuple(table.loc["layer 6, coef 2", ["trait_ci_low", "trait_ci_high"]]) == pytest.approx(
        (cell_low, cell_high)
    )
    assert table.loc["layer 6, coef 2", "n_questions"] == 3
    assert table.loc["layer 6, coef 2", "coherence_ci_low"] == 85.0  # no spread: a zero-width interval
    head = headline_rows({"evil": table.reset_index()}, columns={"evil": "evil"}).iloc[0]
    assert head["delta"] == pytest.approx(95.0 / 3)
    assert (head["delta_ci_low"], head["delta_ci_high"]) == pytest.approx(t_interval([30.0, 35.0, 30.0]))
    summary = projection_summary([base]).iloc[0]
    assert summary["m_evil_response_avg_diff_proj_layer6"] == pytest.approx(2.0)
    assert summary["m_evil_response_avg_diff_proj_layer6_ci_high"] == pytest.approx(t_interval([1, 2, 3])[1])


def test_held_out_headline_chooses_on_selection_files_and_reports_on_disjoint_ones(tmp_path):
    sel, rep = tmp_path / "select", tmp_path / "steering"
    selection = [
        write_cell(sel / "evil_baseline.csv", "extract", [10.0, 12.0], [95.0, 95.0]),
        write_cell(sel / sweep_filename("evil", "all", 6, 2.0), "extract", [50.0, 70.0], [90.0, 90.0]),
        write_cell(sel / sweep_filename("evil", "all", 10, 2.0), "extract", [99.0, 99.0], [30.0, 30.0]),
    ]
    report = [
        write_cell(rep / "evil_baseline.csv", "eval", [20.0, 30.0, 25.0], [95.0] * 3),
        write_cell(rep / sweep_filename("evil", "all", 6, 2.0), "eval", [45.0, 52.0, 50.0], [88.0] * 3),
    ]
    headlines = held_out_headlines({"evil": selection}, {"evil": report}, {"evil": "evil"})
    h = headlines["evil"]
    assert h.selected == (6, 2.0) and h.effect
    row = held_out_rows(headlines).iloc[0]
    assert row["selection_questions"] == "evil_0 evil_1" and row["report_questions"] == "evil_0 evil_1 evil_2"
    assert row["best_trait"] == pytest.approx(49.0) and row["cells_below_floor"] == 1
    assert (row["delta_ci_low"], row["delta_ci_high"]) == pytest.approx(t_interval([25.0, 22.0, 25.0]))
    texts = {pd.read_csv(p)["question"].iloc[0] for p in selection} & {
        pd.read_csv(p)["question"].iloc[0] for p in report
    }
    assert not texts  # the two sets are disjoint by construction, and select_best checks it
    text = held_out_text(headlines, "likelihood")
    assert "layer 6, coef 2: baseline 25.0 [" in text and "-> best 49.0 [" in text and "steering effect" in text
    with pytest.raises(ValueError, match="share 2 question"):
        held_out_headlines({"evil": selection}, {"evil": selection}, {"evil": "evil"})


def test_held_out_intervals_stay_on_the_score_scale_and_same_ids_are_explained(tmp_path):
    """Two selection questions with the same ids as the report's (each set numbers its own), and a
    coherence spread whose t interval reaches past 100: the headline cuts it at the scale's end."""
    sel, rep = tmp_path / "select", tmp_path / "steering"
    selection = [
        write_cell(sel / "evil_baseline.csv", "extract", [10.0, 12.0], [95.0, 95.0]),
        write_cell(sel / sweep_filename("evil", "all", 6, 2.0), "extract", [50.0, 70.0], [90.0, 90.0]),
    ]
    coherence = [100.0, 60.0]
    report = [
        write_cell(rep / "evil_baseline.csv", "eval", [20.0, 30.0], [95.0, 95.0]),
        write_cell(rep / sweep_filename("evil", "all", 6, 2.0), "eval", [45.0, 52.0], coherence),
    ]
    raw_low, raw_high = t_interval(coherence)
    assert raw_high > 100 and raw_low < 0  # the uncut t interval on 1 degree of freedom
    h = held_out_headlines({"evil": selection}, {"evil": report}, {"evil": "evil"})["evil"]
    assert (h.best_coherence.ci_low, h.best_coherence.ci_high) == (0.0, 100.0)
    assert h.best_coherence.mean == pytest.approx(80.0)
    assert h.delta.ci_high == pytest.approx(t_interval([25.0, 22.0])[1])  # a difference is not cut
    assert "ids are numbered within each set" in h.lines()[0]
