"""Clustered intervals, paired deltas, correlations and held-out selection, against independent computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from persona.analysis.selection import select_best
from persona.analysis.stats import (
    Interval,
    QuestionMismatch,
    correlation,
    mean_interval,
    paired_delta,
    question_means,
    score_interval,
)


def answers(scores_by_question: dict[str, list[float]], column: str = "evil", **extra: list) -> pd.DataFrame:
    """An eval frame: one row per answer, `question_id` the question, `question` its text."""
    rows = [(q, s) for q, scores in scores_by_question.items() for s in scores]
    frame = pd.DataFrame(
        {
            "question_id": [q for q, _ in rows],
            "question": [f"text of {q}" for q, _ in rows],
            column: [s for _, s in rows],
        }
    )
    return frame.assign(**extra)


def simulated(rng: np.random.Generator, n_q: int, k: int, mean: float, q_sd: float, noise: float) -> pd.DataFrame:
    """Questions with a random effect (sd q_sd) and k noisy answers each around it."""
    effects = rng.normal(0, q_sd, n_q)
    return answers({f"q{i}": list(mean + effects[i] + rng.normal(0, noise, k)) for i in range(n_q)})


def test_the_mean_is_the_plain_mean_over_scored_answers():
    frame = answers({"a": [10.0, 20.0, float("nan")], "b": [60.0], "c": [30.0, 50.0]})
    for method in ("t", "normal", "bootstrap"):
        found = mean_interval(frame, "evil", method=method)
        assert found.mean == pytest.approx(np.mean([10, 20, 60, 30, 50]))
        assert (found.n_questions, found.n_answers) == (3, 5)
        assert found.ci_low < found.mean < found.ci_high


def test_one_answer_per_question_normal_interval_is_mean_pm_196_se():
    values = np.random.default_rng(1).normal(40, 12, 9)
    frame = answers({f"q{i}": [v] for i, v in enumerate(values)})
    se = values.std(ddof=1) / math.sqrt(len(values))
    normal = mean_interval(frame, "evil", method="normal")
    assert (normal.ci_low, normal.ci_high) == pytest.approx(
        (values.mean() - 1.96 * se, values.mean() + 1.96 * se), rel=1e-4
    )
    t = mean_interval(frame, "evil", ci=0.9)  # the default: Student t on n - 1 degrees of freedom
    assert (t.ci_low, t.ci_high) == pytest.approx(scipy_stats.t.interval(0.9, len(values) - 1, values.mean(), se))


@pytest.mark.parametrize("method", ["t", "normal", "bootstrap"])
def test_duplicated_samples_of_a_question_add_no_information(method):
    values = np.random.default_rng(2).uniform(0, 100, 7)
    once = answers({f"q{i}": [v] for i, v in enumerate(values)})
    thrice = answers({f"q{i}": [v, v, v] for i, v in enumerate(values)})
    a, b = mean_interval(once, "evil", method=method), mean_interval(thrice, "evil", method=method)
    assert (b.mean, b.ci_low, b.ci_high) == pytest.approx((a.mean, a.ci_low, a.ci_high), abs=1e-9)
    assert (a.n_answers, b.n_answers, b.n_questions) == (7, 21, 7)


def test_a_seed_column_nests_inside_questions():
    """Seeds are one more level inside a question: the cluster is still the question."""
    rng = np.random.default_rng(3)
    frame = pd.concat(
        [simulated(np.random.default_rng(s), 6, 2, 50, 10, 5).assign(seed=s) for s in range(3)], ignore_index=True
    )
    per_question = frame.groupby("question_id")["evil"].mean()
    one_row_each = answers({q: [v] for q, v in per_question.items()})
    a, b = mean_interval(frame, "evil"), mean_interval(one_row_each, "evil")
    assert (a.n_questions, a.n_answers) == (6, 36)
    assert (a.ci_low, a.ci_high) == pytest.approx((b.ci_low, b.ci_high))
    assert rng is not None


def test_paired_delta_is_the_mean_of_per_question_differences_and_narrower_than_unpaired():
    rng = np.random.default_rng(4)
    difficulty = rng.normal(0, 25, 12)  # large question effects, shared by both cells
    base = answers({f"q{i}": list(40 + difficulty[i] + rng.normal(0, 3, 2)) for i in range(12)})
    cell = answers({f"q{i}": list(48 + difficulty[i] + rng.normal(0, 3, 3)) for i in range(12)})
    found = paired_delta(cell, base, "evil")
    naive = [
        np.mean(cell.loc[cell["question_id"] == q, "evil"]) - np.mean(base.loc[base["question_id"] == q, "evil"])
        for q in sorted(set(base["question_id"]))
    ]
    assert found.mean == pytest.approx(np.mean(naive))
    se = np.std(naive, ddof=1) / math.sqrt(len(naive))
    assert (found.ci_low, found.ci_high) == pytest.approx(scipy_stats.t.interval(0.95, 11, np.mean(naive), se))
    # unpaired: the two cells' own clustered standard errors, combined as if independent
    means_a, means_b = question_means(cell, "evil"), question_means(base, "evil")
    unpaired_se = math.hypot(means_a.std(ddof=1) / math.sqrt(12), means_b.std(ddof=1) / math.sqrt(12))
    assert found.ci_high - found.ci_low < 0.5 * (2 * scipy_stats.t.ppf(0.975, 11) * unpaired_se)
    assert found.excludes(0.0) and found.n_answers == 36


def test_paired_delta_refuses_different_question_sets_naming_them():
    base = answers({"q1": [1.0], "q2": [2.0], "q3": [3.0]})
    cell = answers({"q1": [1.0], "q2": [2.0], "q9": [3.0]})
    with pytest.raises(QuestionMismatch, match="only in the cell: q9; only in the baseline: q3") as err:
        paired_delta(cell, base, "evil")
    assert isinstance(err.value, ValueError) and err.value.only_cell == ["q9"]


@pytest.mark.parametrize("method, n_q", [("t", 8), ("bootstrap", 30), ("normal", 40)])
def test_coverage_of_the_95_interval_over_500_simulated_datasets(method, n_q):
    rng = np.random.default_rng(5)
    hits = 0
    for i in range(500):
        found = mean_interval(simulated(rng, n_q, 3, 50.0, 10.0, 8.0), "evil", method=method, seed=i, n_boot=1000)
        hits += found.ci_low <= 50.0 <= found.ci_high
    assert 0.92 <= hits / 500 <= 0.98


def test_a_judge_score_interval_stays_on_the_0_100_scale():
    frame = pd.DataFrame({"question_id": ["q0", "q1", "q2"], "evil": [100.0, 100.0, 90.0]})
    half = scipy_stats.t.ppf(0.975, 2) * np.std([100, 100, 90], ddof=1) / math.sqrt(3)
    raw, cut = mean_interval(frame, "evil"), score_interval(frame, "evil")
    assert raw.ci_high == pytest.approx(frame["evil"].mean() + half) and raw.ci_high > 100
    assert cut.ci_high == 100.0 and cut.ci_low == pytest.approx(frame["evil"].mean() - half)
    assert cut.mean == raw.mean and cut.n_questions == 3


def test_interval_text_rounds_to_the_width():
    assert Interval(5, 5, 52.734, 41.02, 63.14).text() == "53 [41, 63]"
    assert Interval(5, 5, 52.734, 51.02, 54.14).text() == "52.7 [51.0, 54.1]"
    assert Interval(5, 5, 0.5234, 0.5011, 0.5456).text() == "0.523 [0.501, 0.546]"
    assert Interval(5, 5, 52.734, 41.02, 63.14).text(1) == "52.7 [41.0, 63.1]"
    assert Interval(5, 5, 3.0, -1.0, 7.0).text(1, signed=True) == "+3.0 [-1.0, +7.0]"
    assert Interval(1, 2, 3.0, math.nan, math.nan).text() == "3.0 [no interval: 1 question(s)]"
    assert mean_interval(answers({"a": [float("nan")]}), "evil").text() == "n/a (0 questions)"


def test_permutation_p_of_a_perfect_six_point_line():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    y = [2.0 * v + 1 for v in x]
    one_sided = correlation(x, y, alternative="greater")
    assert one_sided.r == pytest.approx(1.0) and one_sided.p_value <= 1 / 720 + 1e-9
    assert correlation(x, y).p_value == pytest.approx(2 / 720)  # two-sided: the reversed pairing is as extreme


def test_permutation_p_matches_scipy_and_bootstrap_interval_brackets_r():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=6), rng.normal(size=6)
    x[0] += 2
    y[0] += 2
    found = correlation(x, y)
    reference = scipy_stats.permutation_test(
        (y,),
        lambda yy: scipy_stats.pearsonr(x, yy).statistic,
        permutation_type="pairings",
        n_resamples=np.inf,
        alternative="greater",
    )
    assert correlation(x, y, alternative="greater").p_value == pytest.approx(reference.pvalue)
    r = scipy_stats.pearsonr(x, y).statistic
    naive = [
        abs(scipy_stats.pearsonr(x, y[list(p)]).statistic) >= abs(r) - 1e-12 for p in itertools.permutations(range(6))
    ]
    assert found.r == pytest.approx(r) and found.p_value == pytest.approx(np.mean(naive))
    assert found.ci_low <= found.r <= found.ci_high and found.n == 6
    many = correlation(np.arange(20.0), np.arange(20.0) + rng.normal(0, 5, 20), n_perm=2000)
    assert 0 < many.p_value < 0.05  # Monte Carlo: (hits + 1) / (n_perm + 1), never 0
    assert many.text().startswith(f"r = {many.r:.2f} [")


def test_correlation_is_undefined_below_three_points_or_without_spread():
    assert correlation([0.1, 0.5], [1.0, 3.0]).text() == "r undefined (2 points)"
    assert correlation([0.1, 0.5, float("nan")], [1.0, 3.0, 2.0]).text() == "r undefined (2 points)"
    assert correlation([0.3, 0.3, 0.3], [1.0, 3.0, 2.0]).text() == "r undefined (3 points)"


def _cell(prefix: str, trait: list[float], coherence: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "question_id": [f"evil_{i}" for i in range(len(trait))],
            "question": [f"{prefix} question {i}" for i in range(len(trait))],
            "answer": ["a"] * len(trait),
            "evil": trait,
            "coherence": coherence,
        }
    )


def test_select_best_chooses_on_selection_and_reports_on_the_disjoint_set():
    sel_base = _cell("extract", [10, 12, 14], [95, 95, 95])
    rep_base = _cell("eval", [20, 25, 30, 35], [90, 90, 90, 90])
    selection = {
        (6, 2.0): _cell("extract", [50, 52, 54], [85, 85, 85]),
        (6, 4.0): _cell("extract", [90, 95, 99], [40, 40, 40]),  # loud but incoherent: never chosen
        (10, 2.0): _cell("extract", [50, 52, 54], [90, 90, 90]),  # ties (6, 2.0): the lower layer wins
        (10, 1.0): _cell("extract", [30, 31, 32], [99, 99, 99]),
    }
    report = {(6, 2.0): _cell("eval", [40, 44, 52, 60], [88, 86, 84, 90]), (10, 1.0): _cell("eval", [0] * 4, [0] * 4)}
    h = select_best(selection, report, sel_base, rep_base, trait_column="evil")
    assert h.selected == (6, 2.0)
    assert h.selection_questions == ("evil_0", "evil_1", "evil_2")
    assert h.report_questions == ("evil_0", "evil_1", "evil_2", "evil_3")
    assert h.best.mean == pytest.approx(49.0) and h.baseline.mean == pytest.approx(27.5)
    diffs = np.array([20, 19, 22, 25])
    assert h.delta.mean == pytest.approx(diffs.mean())
    assert (h.delta.ci_low, h.delta.ci_high) == pytest.approx(
        scipy_stats.t.interval(0.95, 3, diffs.mean(), diffs.std(ddof=1) / 2)
    )
    assert h.effect and "steering effect" in h.verdict()
    assert h.row()["best_layer"] == 6 and h.row()["cells_below_floor"] == 1
    text = "\n".join(h.lines())
    assert "chosen on 3 selection questions" in text and "measured on 4 other questions" in text
    assert "baseline 27.5 [" in text and "delta +21.5 [" in text


def test_select_best_refuses_shared_questions_and_says_when_there_is_no_effect():
    base = _cell("eval", [20, 25, 30], [90, 90, 90])
    with pytest.raises(ValueError, match="share 3 question"):
        select_best({(6, 2.0): base}, {(6, 2.0): base}, base, base, trait_column="evil")
    sel_base = _cell("extract", [10, 12, 14], [95, 95, 95])
    noisy = {(6, 2.0): _cell("eval", [10, 45, 20], [90, 90, 90])}  # delta 0, 20, -10: interval spans 0
    h = select_best(
        {(6, 2.0): _cell("extract", [50, 52, 54], [85, 85, 85])}, noisy, sel_base, base, trait_column="evil"
    )
    assert not h.effect and h.delta.ci_low < 0 < h.delta.ci_high and "includes 0" in h.verdict()
    none = select_best(
        {(6, 2.0): _cell("extract", [90, 90, 90], [10, 10, 10])}, {}, sel_base, base, trait_column="evil"
    )
    assert none.selected is None and not none.effect and "no steering win" in none.verdict()
    with pytest.raises(ValueError, match="report_cells has no such cell"):
        select_best(
            {(8, 1.0): _cell("extract", [50, 52, 54], [85, 85, 85])}, noisy, sel_base, base, trait_column="evil"
        )


def test_select_best_matches_a_naive_scan():
    rng = np.random.default_rng(7)
    for _ in range(50):
        keys = list(itertools.product((4, 8, 12), (1.0, 2.0)))
        selection = {
            k: _cell("extract", list(rng.choice([50.0, 60.0], 3)), list(rng.uniform(60, 100, 3))) for k in keys
        }
        base = _cell("extract", [1.0, 2.0, 3.0], [99.0] * 3)
        report = {k: _cell("eval", [5.0, 6.0], [90.0, 90.0]) for k in keys}
        h = select_best(selection, report, base, _cell("eval", [1.0, 2.0], [99.0] * 2), trait_column="evil")
        ranked = [
            (-f["evil"].mean(), abs(k[1]), k[0], k) for k, f in selection.items() if f["coherence"].mean() >= 80.0
        ]
        assert h.selected == (min(ranked)[3] if ranked else None)
