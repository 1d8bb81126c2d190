"""Every viz figure that draws a mean draws its interval: the bands and error bars read back from the
matplotlib artists equal `persona.analysis.stats.mean_interval` (`score_interval` for a judge score) on
the synthetic CSVs the test writes,
and, for one band, the Student t interval of the question means computed by hand with scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from persona.analysis.checkpoint_summary import summarize_projection_eval
from persona.analysis.results import is_projection_column, load_projection_eval
from persona.analysis.stats import mean_interval, score_interval
from persona.projection import column_name
from viz import plot_cross_persona_corr, plot_projection_eval, plot_variant_projections

N_QUESTIONS, SAMPLES = 4, 2  # several samples per question: the interval must cluster them
STEPS = (0, 10, 20)


def proj(step: int, vector: str, shift: bool = False, kind: str = "proj") -> str:
    return column_name(f"run/checkpoint-{step}", f"{vector}_response_avg_diff.pt", kind, 20, shift)


def write_checkpoints(folder, personas=("evil", "humorous"), vectors=None, seed=0) -> None:
    """checkpoint-{N}_{persona}.csv: random scores, a projection onto each vector and the shift along it."""
    rng = np.random.default_rng(seed)
    n = N_QUESTIONS * SAMPLES
    folder.mkdir(parents=True, exist_ok=True)
    for step in STEPS:
        for persona in personas:
            columns = {persona: rng.uniform(0, 100, n), "coherence": rng.uniform(50, 100, n)}
            for v in vectors or (persona,):
                columns[proj(step, v)] = rng.normal(step / 10, 1.0, n)
                if step:  # checkpoint 0 is the base model: the original writes no shift there
                    columns[proj(step, v, shift=True, kind="prompt_last_proj")] = rng.normal(1.0, 0.5, n)
            pd.DataFrame(
                {
                    "question": [f"question {i // SAMPLES}" for i in range(n)],
                    "prompt": ["p"] * n,
                    "answer": ["a"] * n,
                    "question_id": [f"q{i // SAMPLES}" for i in range(n)],
                    **columns,
                }
            ).to_csv(folder / f"checkpoint-{step}_{persona}.csv", index=False)


def band(ax, label: str) -> dict[float, tuple[float, float]]:
    """x -> (low, high) of the band drawn for the line `label` (the `_ci <label>` fill)."""
    (found,) = [c for c in ax.collections if c.get_label() == f"_ci {label}"]
    out: dict[float, list[float]] = {}
    for path in found.get_paths():
        for x, y in path.vertices:
            out.setdefault(round(float(x), 9), []).append(float(y))
    return {x: (min(ys), max(ys)) for x, ys in out.items()}


def expected(folder, step: int, persona: str, column: str) -> tuple[float, float]:
    """The interval a band must show: a projection's as computed, a judge score's cut to 0-100."""
    interval = mean_interval if is_projection_column(column) else score_interval
    found = interval(pd.read_csv(folder / f"checkpoint-{step}_{persona}.csv"), column)
    return found.ci_low, found.ci_high


def test_original_projection_figure_bands_are_mean_interval(tmp_path):
    folder = tmp_path / "evil_projection_eval"
    write_checkpoints(folder)
    summary, _ = summarize_projection_eval(folder)
    scores, shifts = plot_projection_eval.original_projection_figure(summary).axes
    shift = "response_avg_diff_prompt_last_proj_layer20_finetuning_shift"
    for persona in ("evil", "humorous"):
        drawn = band(scores, f"{persona} (persona_score)")
        assert set(drawn) == set(STEPS)
        for step in STEPS:
            assert drawn[step] == pytest.approx(expected(folder, step, persona, persona))
        drawn = band(shifts, f"{persona} (finetuning_shift)")
        assert set(drawn) == {10, 20}  # no shift column at checkpoint 0: a gap, not a made-up band
        for step in (10, 20):
            assert drawn[step] == pytest.approx(expected(folder, step, persona, f"checkpoint-{step}_{persona}_{shift}"))
    # independently: with equal samples per question the cluster-robust t interval is the t interval
    # of the question means on G - 1 degrees of freedom
    df = pd.read_csv(folder / "checkpoint-10_evil.csv")
    means = df.groupby("question_id")["evil"].mean()
    se = means.std(ddof=1) / np.sqrt(N_QUESTIONS)
    hand = np.clip(scipy_stats.t.interval(0.95, N_QUESTIONS - 1, means.mean(), se), 0, 100)  # a score's scale
    assert band(scores, "evil (persona_score)")[10] == pytest.approx(hand)
    # coherence averaged over personas: the pooled answers, clustered by (persona, question)
    drawn = band(scores, "coherence (avg all personas)")
    for step in STEPS:
        frames = [pd.read_csv(folder / f"checkpoint-{step}_{p}.csv") for p in ("evil", "humorous")]
        pooled = pd.concat([f.assign(q=f"{p}/" + f["question_id"]) for f, p in zip(frames, ("evil", "humorous"))])
        want = score_interval(pooled, "coherence", cluster="q")
        assert drawn[step] == pytest.approx((want.ci_low, want.ci_high))
        avg = summary.loc[summary["checkpoint"] == step, "coherence_avg"].iloc[0]
        assert want.mean == pytest.approx(avg)  # equal answers per file: the band is centred on the line
        assert want.ci_low < avg < want.ci_high


def test_projection_eval_layouts_band_every_line(tmp_path):
    folder = tmp_path / "evil_projection_eval"
    write_checkpoints(folder)
    data = load_projection_eval(folder)
    per_trait = plot_projection_eval.projection_eval_figure(data)
    evil = next(ax for ax in per_trait.axes if ax.get_title() == "judged: evil")
    twin = next(ax for ax in per_trait.axes if ax is not evil and ax.bbox.bounds == evil.bbox.bounds)
    for step in STEPS:
        assert band(evil, "evil")[step] == pytest.approx(expected(folder, step, "evil", "evil"))
        assert band(evil, "coherence")[step] == pytest.approx(expected(folder, step, "evil", "coherence"))
        projection = band(twin, "evil_response_avg_diff_proj_layer20")[step]
        assert projection == pytest.approx(expected(folder, step, "evil", proj(step, "evil")))
    combined = plot_projection_eval.projection_eval_figure(data, combined=True)
    scores, projections = combined.axes[:2]
    for step in STEPS:
        assert band(scores, "humorous: humorous")[step] == pytest.approx(expected(folder, step, "humorous", "humorous"))
        drawn = band(projections, "humorous_response_avg_diff_proj_layer20")[step]
        assert drawn == pytest.approx(expected(folder, step, "humorous", proj(step, "humorous")))


def test_a_step_with_two_evaluations_shows_their_mean_without_a_band():
    rows = pd.DataFrame(
        {"step": [0, 10, 10], "value": [1.0, 2.0, 4.0], "ci_low": [0.5, 1.0, 3.0], "ci_high": [1.5, 3.0, 5.0]}
    )
    out = plot_projection_eval.step_means(rows)
    assert out["value"].tolist() == [1.0, 3.0]
    assert out["ci_low"].iloc[0] == 0.5 and np.isnan(out["ci_low"].iloc[1]) and np.isnan(out["ci_high"].iloc[1])


def test_variant_figure_bands_are_mean_interval(tmp_path):
    folder = tmp_path / "confident_projection_eval"
    write_checkpoints(folder, personas=("confident",), vectors=("confident", "confident_2"))
    table = plot_variant_projections.variant_table(load_projection_eval(folder), "confident", "confident")
    fig = plot_variant_projections.variant_projection_figure(table, "confident")
    projections, shifts = fig.axes
    for variant in ("confident", "confident_2"):
        for step in STEPS:
            drawn = band(projections, variant)[step]
            assert drawn == pytest.approx(expected(folder, step, "confident", proj(step, variant)))
        assert band(shifts, variant)[0] == (0.0, 0.0)  # the base model's shift is 0 by definition
        for step in (10, 20):
            column = proj(step, variant, shift=True, kind="prompt_last_proj")
            assert band(shifts, variant)[step] == pytest.approx(expected(folder, step, "confident", column))
    scored = plot_variant_projections.variant_projection_figure(table, "confident", right="score")
    for step in STEPS:
        assert band(scored.axes[1], "confident")[step] == pytest.approx(
            expected(folder, step, "confident", "confident")
        )


def test_cross_persona_shift_figure_draws_each_shifts_interval():
    table = pd.DataFrame(
        {
            "finetuned": ["a", "a", "b", "b"],
            "judged": ["b", "c", "a", "c"],
            "cos": [0.1, 0.4, 0.1, 0.7],
            "relative_trait_score": [0.2, 0.5, 0.1, 0.9],
            "shift_judged": [1.0, 2.0, 0.5, 3.0],
            "shift_judged_ci_low": [0.4, 1.5, -0.5, 2.0],
            "shift_judged_ci_high": [1.6, 2.5, 1.5, 4.0],
        }
    )
    fig, _ = plot_cross_persona_corr.cross_persona_figure(table, "shift_judged", "shift")
    ((bars,),) = [c.lines[2] for c in fig.axes[0].containers]
    drawn = sorted((float(s[0][0]), float(s[0][1]), float(s[1][1])) for s in bars.get_segments())
    want = sorted(zip(table["cos"], table["shift_judged_ci_low"], table["shift_judged_ci_high"], strict=True))
    assert np.asarray(drawn) == pytest.approx(np.asarray(want))
    ratio, _ = plot_cross_persona_corr.cross_persona_figure(table, "relative_trait_score", "ratio")
    assert not ratio.axes[0].containers  # a ratio of two changes: no interval to draw
