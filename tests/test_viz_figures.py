"""viz scripts on small synthetic result folders: the numbers behind each figure, non-blank PNGs, bad input."""

from __future__ import annotations

import logging

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch

from persona.cli import run_cli
from persona.evaluation import sweep_filename
from persona.projection import column_name
from viz import (
    analyze_vector_geometry,
    plot_best_steering_layer,
    plot_confident_projections,
    plot_cross_persona_corr,
    plot_projection_eval,
    plot_variant_projections,
    plot_vector_sim,
)
from viz.plot_projection_eval import chain_runs


def assert_png(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01, f"{path} is blank"


def eval_csv(path, column: str, scores, extra: dict | None = None, coherence=None):
    n = len(scores)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "question": ["q"] * n,
            "prompt": ["p"] * n,
            "answer": ["a"] * n,
            "question_id": [f"q{i}" for i in range(n)],
            column: scores,
            "coherence": coherence if coherence is not None else [90.0] * n,
            **(extra or {}),
        }
    ).to_csv(path, index=False)


def exit_line(main, argv, capsys) -> str:
    """Run a script's main through run_cli; assert exit 2 and return its one stderr line."""
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda: main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_steering_layer_plot(tmp_path, caplog):
    data, out = tmp_path / "sweep", tmp_path / "figs"
    rng = np.random.default_rng(0)
    written = {}
    for trait, column in (("evil", "evil"), ("anxious_2", "anxious")):
        for layer in (4, 8, 12):
            for coef in (1.0, 2.0):
                if (trait, layer, coef) == ("evil", 12, 2.0):
                    continue  # a hole in the grid
                scores = rng.uniform(0, 100, 4)
                written[trait, layer, coef] = scores.mean()
                eval_csv(
                    data / sweep_filename(trait, "response", layer, coef),
                    column,
                    scores,
                    coherence=[50.0, 60.0, 70.0, 80.0],
                )
        eval_csv(data / f"{trait}_baseline.csv", column, [1.0, 3.0])
    with caplog.at_level(logging.WARNING):
        assert plot_best_steering_layer.main(["--data_dir", str(data), "--output_dir", str(out)]) == 0
    assert "1 missing sweep cells drawn as gaps: evil layer 12 coef 2.0" in caplog.text
    assert_png(out / "steering_layer_plots.png")
    assert_png(out / "steering_layer_plots_coherence.png")
    cells, _ = plot_best_steering_layer.load_steering_sweep(data)
    grid = plot_best_steering_layer.steering_grid(cells, "evil", "score")
    assert grid.loc[8, 2.0] == pytest.approx(written["evil", 8, 2.0]) and np.isnan(grid.loc[12, 2.0])
    assert plot_best_steering_layer.steering_grid(cells, "anxious_2", "coherence").to_numpy() == pytest.approx(65.0)


def test_steering_axis_names_the_judge_and_flags_the_proxy():
    label = plot_best_steering_layer.axis_label
    assert label("score", [None, float("nan")]) == "trait score"
    assert label("score", ["likelihood", "likelihood", None]) == "trait score\n(judge: likelihood proxy)"
    assert label("coherence", ["likelihood:smollm2-135m"]) == "coherence\n(judge: likelihood:smollm2-135m proxy)"
    assert label("score", ["gpt-4.1-mini", "likelihood"]) == "trait score\n(judge: gpt-4.1-mini, likelihood proxy)"


def _save_vectors(folder, names, shape=(6, 16), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    vectors = {n: torch.randn(*shape, generator=g) for n in names}
    for n, v in vectors.items():
        torch.save(v, folder / f"{n}_response_avg_diff.pt")
    return vectors


def test_vector_similarity(tmp_path):
    vectors = _save_vectors(tmp_path / "v", ["anxious", "anxious_2", "anxious_3", "evil"])
    cos = plot_vector_sim.plot_vector_similarity("anxious", 3, tmp_path / "figs", base_dir=tmp_path / "v")
    assert list(cos.index) == ["anxious", "anxious_2", "anxious_3"]
    rows = torch.stack([vectors[n][3] for n in cos.index])
    direct = torch.nn.functional.cosine_similarity(rows[:, None], rows[None], dim=-1).numpy()
    assert cos.to_numpy() == pytest.approx(direct, abs=1e-6)
    assert np.array_equal(cos.to_numpy(), cos.to_numpy().T) and np.all(np.diag(cos.to_numpy()) == 1.0)
    assert_png(tmp_path / "figs" / "vector_sim_anxious.png")
    assert (
        plot_vector_sim.main(
            [
                "--trait",
                "evil",
                "--layer",
                "0",
                "--base-dir",
                str(tmp_path / "v"),
                "--output_dir",
                str(tmp_path / "figs"),
            ]
        )
        == 0
    )
    assert_png(tmp_path / "figs" / "vector_sim_evil.png")


def test_cross_persona_corr(tmp_path, capsys):
    traits = ["evil", "humorous", "optimistic"]
    vectors = _save_vectors(tmp_path / "v", traits)
    rng = np.random.default_rng(1)
    for a in traits:
        for b in traits:
            for step, score, shift in ((0, 20.0, 0.0), (30, rng.uniform(20, 90), rng.uniform(0.5, 3))):
                col = column_name(f"ckpt/{a}/checkpoint-{step}", f"{b}_response_avg_diff.pt", "proj", 2, shift=True)
                eval_csv(
                    tmp_path / "out" / f"{a}_projection_eval" / f"checkpoint-{step}_{b}.csv",
                    b,
                    [score, score],
                    {col: [shift, shift]},
                )
    out = tmp_path / "figs"
    assert (
        plot_cross_persona_corr.main(
            [
                "--results_dir",
                str(tmp_path / "out"),
                "--vector_dir",
                str(tmp_path / "v"),
                "--layer",
                "2",
                "--output_dir",
                str(out),
                "--projection_type",
                "proj",
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "cross_persona_corr.csv")
    assert len(table) == 6 and set(zip(table["finetuned"], table["judged"], strict=True)).isdisjoint(
        {(t, t) for t in traits}
    )
    row = table[(table["finetuned"] == "evil") & (table["judged"] == "optimistic")].iloc[0]
    direct = torch.nn.functional.cosine_similarity(vectors["evil"][2], vectors["optimistic"][2], dim=0)
    assert row["cos"] == pytest.approx(float(direct), abs=1e-6)
    assert row["relative_trait_score"] == pytest.approx(row["delta_judged"] / row["delta_finetuned"])
    printed = capsys.readouterr().out
    r = np.corrcoef(table["cos"], table["relative_trait_score"])[0, 1]
    assert f"Pearson r(cos, relative_trait_score): r = {r:.2f} [" in printed and ", p = " in printed
    assert_png(out / "cos_sim_vs_relative_trait_score.png")
    assert_png(out / "cos_sim_vs_finetuning_shift.png")


def test_cross_persona_without_shift_columns(tmp_path, caplog):
    traits = ["evil", "humorous", "optimistic"]
    _save_vectors(tmp_path / "v", traits)
    for i, a in enumerate(traits):
        for j, b in enumerate(traits):
            for step, score in ((0, 10.0), (8, 20.0 + 10 * i + 3 * j)):
                eval_csv(tmp_path / "out" / f"{a}_projection_eval" / f"checkpoint-{step}_{b}.csv", b, [score])
    out = tmp_path / "figs"
    with caplog.at_level(logging.WARNING):
        assert (
            plot_cross_persona_corr.main(
                [
                    "--results_dir",
                    str(tmp_path / "out"),
                    "--vector_dir",
                    str(tmp_path / "v"),
                    "--layer",
                    "1",
                    "--output_dir",
                    str(out),
                ]
            )
            == 0
        )
    assert "shift_judged; cos_sim_vs_finetuning_shift.png not drawn" in caplog.text
    assert_png(out / "cos_sim_vs_relative_trait_score.png")
    assert not (out / "cos_sim_vs_finetuning_shift.png").exists()
    table = pd.read_csv(out / "cross_persona_corr.csv").set_index(["finetuned", "judged"])
    # finetuned on humorous (i = 1): change in optimistic (j = 2) = 36 - 10, in humorous itself = 33 - 10
    assert table.loc[("humorous", "optimistic"), "relative_trait_score"] == pytest.approx(26 / 23)


def _checkpoints(folder, judged=("evil", "humorous"), steps=(0, 10, 20), vectors=("evil", "evil_2", "humorous")):
    for step in steps:
        for judge in judged:
            extra = {
                column_name(f"run/checkpoint-{step}", f"{v}_response_avg_diff.pt", "proj", 2): [step / 10 + i, 0.0]
                for i, v in enumerate(vectors)
            }
            eval_csv(folder / f"checkpoint-{step}_{judge}.csv", judge, [step, step + 10], extra)


def test_projection_eval_plot(tmp_path):
    _checkpoints(tmp_path / "a")
    _checkpoints(tmp_path / "b", steps=(5, 15))
    out = tmp_path / "figs"
    assert plot_projection_eval.main([str(tmp_path / "a"), "--output", str(out / "panels.png")]) == 0
    assert (
        plot_projection_eval.main(
            [
                "--data_dir",
                str(tmp_path / "a"),
                "--combined",
                "--then",
                str(tmp_path / "b"),
                "--output",
                str(out / "sequential.png"),
            ]
        )
        == 0
    )
    for name in ("panels.png", "sequential.png"):
        assert_png(out / name)
    chained, switch = chain_runs(
        plot_projection_eval.load_projection_eval(tmp_path / "a"),
        plot_projection_eval.load_projection_eval(tmp_path / "b"),
    )
    assert switch == 20 and sorted(chained["step"].unique()) == [0, 10, 20, 25, 35]


def test_variant_projections(tmp_path, capsys):
    data = tmp_path / "confident_projection_eval"
    _checkpoints(data, judged=("confident",), vectors=("confident", "confident_2", "confidential"))
    out = tmp_path / "figs" / "confident.png"
    assert plot_confident_projections.main([str(data), "--output", str(out)]) == 0
    assert_png(out)
    table = plot_variant_projections.variant_table(
        plot_variant_projections.load_projection_eval(data), "confident", "confident"
    )
    projections = table[table["metric"] == "projection"]
    assert set(projections["variant"]) == {"confident", "confident_2"}  # not `confidential`
    v2 = projections[projections["variant"] == "confident_2"].sort_values("step")
    assert v2["value"].tolist() == pytest.approx([0.5, 1.0, 1.5])  # mean of (step/10 + 1, 0)


def test_geometry_script_on_synthetic_vectors(tmp_path, capsys):
    base = torch.zeros(4, 3)
    folder = tmp_path / "v"
    folder.mkdir()
    for name, direction in {"a": [1.0, 0, 0], "b": [0, 1.0, 0], "c": [0, 0, 1.0], "anti": [-1.0, 0.1, 0]}.items():
        torch.save(base + torch.tensor(direction), folder / f"{name}_response_avg_diff.pt")
    out = tmp_path / "figs"
    assert (
        analyze_vector_geometry.main(
            [
                "--vector_dir",
                str(folder),
                "--layer",
                "2",
                "--output_dir",
                str(out),
                "--orthogonal",
                "a",
                "b",
                "c",
                "--antonym",
                "a:anti",
                "b:zzz",
                "--project_names",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "max |cos| = 0.000 -> near-orthogonal" in printed
    assert f"cos(a, anti) = {-1 / np.sqrt(1.01):+.3f} -> roughly opposite" in printed
    assert "antonyms: not checked, no vector for ['zzz']" in printed
    for name in (
        "geometry_cosine_layer2.png",
        "geometry_cosine_by_layer.png",
        "geometry_norms.png",
        "geometry_pca_layer2.png",
    ):
        assert_png(out / name)


@pytest.mark.parametrize(
    "main,argv,pattern",
    [
        (plot_best_steering_layer.main, ["--data_dir", "{d}"], "{trait}_steer_{type}_layer_{L}_coef_{c}.csv"),
        (plot_vector_sim.main, ["--trait", "evil", "--base-dir", "{d}"], "{trait}_response_avg_diff.pt"),
        (
            plot_cross_persona_corr.main,
            ["--results_dir", "{d}"],
            "{trait}_projection_eval/checkpoint-{N}_{judge_trait}.csv",
        ),
        (plot_projection_eval.main, ["{d}"], "checkpoint-{N}_{judge_trait}.csv"),
        (plot_variant_projections.main, ["{d}", "--trait", "confident"], "checkpoint-{N}_{judge_trait}.csv"),
        (analyze_vector_geometry.main, ["--vector_dir", "{d}"], "{trait}_response_avg_diff.pt"),
    ],
)
def test_empty_folder_is_one_line_naming_folder_and_pattern(tmp_path, capsys, main, argv, pattern):
    (tmp_path / "notes.txt").write_text("nothing here")
    err = exit_line(main, [a.replace("{d}", str(tmp_path)) for a in argv], capsys)
    assert str(tmp_path) in err and pattern in err


def test_vectors_of_different_shapes_are_refused(tmp_path, capsys):
    torch.save(torch.ones(37, 2560), tmp_path / "evil_response_avg_diff.pt")
    torch.save(torch.ones(31, 576), tmp_path / "humorous_response_avg_diff.pt")
    err = exit_line(
        analyze_vector_geometry.main, ["--vector_dir", str(tmp_path), "--output_dir", str(tmp_path)], capsys
    )
    assert "(37, 2560)" in err and "(31, 576)" in err


def test_every_script_has_help(capsys):
    for module in (
        plot_best_steering_layer,
        plot_vector_sim,
        plot_cross_persona_corr,
        plot_projection_eval,
        plot_variant_projections,
        plot_confident_projections,
        analyze_vector_geometry,
    ):
        with pytest.raises(SystemExit) as exc:
            module.main(["--help"])
        assert exc.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_steering_figure_draws_intervals_and_the_baseline_band(tmp_path):
    data = tmp_path / "sweep"
    for layer in (4, 8):
        eval_csv(data / sweep_filename("evil", "all", layer, 2.0), "evil", [10.0, 30.0, 50.0 + layer])
    eval_csv(data / "evil_baseline.csv", "evil", [5.0, 15.0, 25.0])
    cells, baselines = plot_best_steering_layer.load_steering_sweep(data)
    fig = plot_best_steering_layer.steering_layer_figure(cells, baselines, "score")
    ax = fig.axes[0]
    assert len(ax.containers) == 1  # one error-bar set per coefficient
    band = [p for p in ax.patches if p.get_alpha() == 0.15]
    assert len(band) == 1 and band[0].get_path().get_extents().transformed(band[0].get_transform()).height > 0


def test_interference_figure_says_r_undefined_with_two_points():
    from persona.analysis.multi_persona import interference_fit
    from viz.plot_multi_persona import interference_figure

    table = pd.DataFrame(
        {
            "steered": ["a", "a", "b", "b"],
            "judged": ["a", "b", "a", "b"],
            "cos": [1.0, 0.3, 0.3, 1.0],
            "delta": [10.0, 2.0, -1.0, 8.0],
            "delta_ci_low": [5.0, -1.0, -4.0, 3.0],
            "delta_ci_high": [15.0, 5.0, 2.0, 13.0],
        }
    )
    fig, fit = interference_figure(table, 10, 3.0)
    assert "r undefined (2 points)" in fig.axes[0].get_title() and fit.text() == interference_fit(table).text()
    assert "nan" not in fig.axes[0].get_title()
