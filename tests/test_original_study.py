"""Drop-in for the original study: each figure against the original's formula (written out here as a
naive loop over the files, as its scripts compute it), its flags and spellings, and its file names."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from persona.analysis.checkpoint_summary import summarize_projection_eval
from persona.cli import bool_value
from viz import (
    analyze_vector_geometry,
    plot_cross_persona_corr,
    plot_projection_eval,
    plot_variant_projections,
    split_confident_csvs,
)

REPO = Path(__file__).resolve().parents[1]
SHIFT = "response_avg_diff_prompt_last_proj_layer20_finetuning_shift"
PROJ = "response_avg_diff_proj_layer20"


def eval_csv(path, scores: dict[str, list[float]], extra: dict[str, list[float]] | None = None) -> None:
    n = len(next(iter(scores.values())))
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "question": ["q"] * n,
            "prompt": ["p"] * n,
            "answer": ["a"] * n,
            "question_id": [f"q{i}" for i in range(n)],
            **scores,
            **(extra or {}),
        }
    ).to_csv(path, index=False)


def line(ax, label: str) -> list[float]:
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return list(map(float, found.get_ydata()))


# ------------------------------------------------------------------ cross-persona shift figure


@pytest.fixture
def cross_persona_run(tmp_path):
    rng = np.random.default_rng(0)
    traits = ["confident", "critical", "optimistic"]
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    for t in traits:
        torch.save(torch.tensor(rng.normal(size=(21, 8)), dtype=torch.float32), vectors / f"{t}_response_avg_diff.pt")
    for b in traits:
        eval_csv(tmp_path / "base" / f"{b}_baseline.csv", {b: rng.uniform(0, 100, 3).tolist(), "coherence": [90.0] * 3})
    for a in traits:
        for b in traits:
            for step in (0, 25, 50):  # the original reads the last checkpoint, 50
                shift = {f"checkpoint-{step}_{b}_{SHIFT}": rng.normal(size=3).tolist()}
                eval_csv(
                    tmp_path / "out" / f"{a}_projection_eval" / f"checkpoint-{step}_{b}.csv",
                    {b: rng.uniform(0, 100, 3).tolist(), "coherence": [80.0] * 3},
                    shift,
                )
    return tmp_path, traits


def original_cross_persona(root, traits):
    """plot_cross_persona_corr.py of the original, as a loop: (cos, relative score, raw shift along v_B)."""
    points = {}
    for a in traits:
        for b in traits:
            if a == b:
                continue

            def delta_and_shift(trait, a=a):
                base = pd.read_csv(root / "base" / f"{trait}_baseline.csv")[trait].mean()
                last = pd.read_csv(root / "out" / f"{a}_projection_eval" / f"checkpoint-50_{trait}.csv")
                return last[trait].mean() - base, last[f"checkpoint-50_{trait}_{SHIFT}"].mean()

            delta_a, _ = delta_and_shift(a)
            delta_b, shift_b = delta_and_shift(b)
            va = torch.load(root / "vectors" / f"{a}_response_avg_diff.pt")[20]
            vb = torch.load(root / "vectors" / f"{b}_response_avg_diff.pt")[20]
            cos = float((va * vb).sum() / (va.norm() * vb.norm()))
            points[a, b] = (cos, delta_b / delta_a, shift_b)
    return points


def test_cross_persona_figures_plot_the_original_quantities(cross_persona_run, tmp_path):
    root, traits = cross_persona_run
    out = tmp_path / "figs"
    argv = ["--results_dir", str(root / "out"), "--vector_dir", str(root / "vectors"), "--baseline_dir"]
    assert plot_cross_persona_corr.main([*argv, str(root / "base"), "--output_dir", str(out)]) == 0
    expected = original_cross_persona(root, traits)
    table = pd.read_csv(out / "cross_persona_corr.csv")
    assert (out / "cos_sim_vs_finetuning_shift.png").is_file()
    assert (out / "cos_sim_vs_relative_trait_score.png").is_file()
    for column, index in (("relative_trait_score", 1), ("shift_judged", 2)):
        fig, _ = plot_cross_persona_corr.cross_persona_figure(table, column, column)
        plotted = {tuple(p) for p in fig.axes[0].collections[0].get_offsets().tolist()}
        want = {(v[0], v[index]) for v in expected.values()}
        assert len(plotted) == len(want) == 6
        for x, y in sorted(want):
            assert any(math.isclose(x, px, abs_tol=1e-6) and math.isclose(y, py, abs_tol=1e-6) for px, py in plotted)


def test_cross_persona_relative_shift_is_the_projects_variant_behind_a_flag(cross_persona_run, tmp_path):
    root, traits = cross_persona_run
    out = tmp_path / "figs"
    argv = ["--results_dir", str(root / "out"), "--vector_dir", str(root / "vectors"), "--output_dir", str(out)]
    assert plot_cross_persona_corr.main([*argv, "--baseline_dir", str(root / "base"), "--relative_shift"]) == 0
    table = pd.read_csv(out / "cross_persona_corr.csv").set_index(["finetuned", "judged"])
    row = table.loc[("critical", "optimistic")]
    assert row["relative_shift"] == pytest.approx(row["shift_judged"] / row["shift_finetuned"])


# ------------------------------------------------------------------ projection-eval figure


def run_folder(folder, personas=("evil", "humorous"), steps=(0, 10, 20), seed=0):
    rng = np.random.default_rng(seed)
    for step in steps:
        for p in personas:
            eval_csv(
                folder / f"checkpoint-{step}_{p}.csv",
                {p: rng.uniform(0, 100, 4).tolist(), "coherence": rng.uniform(50, 100, 4).tolist()},
                {
                    f"checkpoint-{step}_{p}_{PROJ}": rng.normal(size=4).tolist(),
                    f"checkpoint-{step}_{p}_{SHIFT}": rng.normal(size=4).tolist(),
                },
            )


def original_summary(folder, personas, steps):
    """The original's _load_eval_dir + coherence_avg, as a loop over the files."""
    rows = {}
    for step in steps:
        for p in personas:
            df = pd.read_csv(folder / f"checkpoint-{step}_{p}.csv")
            rows[step, p] = (df[p].mean(), df["coherence"].mean(), df[f"checkpoint-{step}_{p}_{SHIFT}"].mean())
    coherence_avg = {s: np.mean([rows[s, p][1] for p in personas]) for s in steps}
    return rows, coherence_avg


def test_projection_eval_figure_is_the_originals_two_panels(tmp_path):
    run_folder(tmp_path / "evil_projection_eval")
    summary, offset = summarize_projection_eval(tmp_path / "evil_projection_eval")
    fig = plot_projection_eval.original_projection_figure(summary, title="Evil")
    scores, shifts = fig.axes
    rows, coherence_avg = original_summary(tmp_path / "evil_projection_eval", ("evil", "humorous"), (0, 10, 20))
    for p in ("evil", "humorous"):
        assert line(scores, f"{p} (persona_score)") == pytest.approx([rows[s, p][0] for s in (0, 10, 20)])
        assert line(shifts, f"{p} (finetuning_shift)") == pytest.approx([rows[s, p][2] for s in (0, 10, 20)])
    assert line(scores, "coherence (avg all personas)") == pytest.approx([coherence_avg[s] for s in (0, 10, 20)])
    assert offset == 0 and [ax.get_title() for ax in fig.axes] == ["Trait Expression Score", "Finetuning Shift"]
    combined = plot_projection_eval.original_projection_figure(summary, combine=True)
    assert len(combined.axes) == 1 and len(combined.axes[0].get_lines()) == 5  # 2 scores, coherence, 2 shifts


def test_projection_eval_sequential_dir_and_personas(tmp_path):
    run_folder(tmp_path / "a", personas=("evil", "humorous", "optimistic"))
    run_folder(tmp_path / "b", personas=("evil", "optimistic"), steps=(0, 5), seed=1)
    summary, offset = summarize_projection_eval(tmp_path / "a", tmp_path / "b")
    # the original: personas of the second run only, its checkpoints offset by the first's last
    assert offset == 20 and set(summary["persona"]) == {"evil", "optimistic"}
    assert sorted(summary["checkpoint"].unique()) == [0, 10, 20, 25]
    first, _ = original_summary(tmp_path / "a", ("evil", "optimistic"), (0, 10, 20))
    second, _ = original_summary(tmp_path / "b", ("evil", "optimistic"), (0, 5))
    # the first run's checkpoint 20 and the second's checkpoint 0 share x = 20: one coherence average
    want_avg_20 = np.mean(
        [first[20, p][1] for p in ("evil", "optimistic")] + [second[0, p][1] for p in ("evil", "optimistic")]
    )
    assert summary.loc[summary["checkpoint"] == 20, "coherence_avg"].iloc[0] == pytest.approx(want_avg_20)
    only, _ = summarize_projection_eval(tmp_path / "a", personas={"humorous"})
    assert set(only["persona"]) == {"humorous"}
    out = tmp_path / "seq.png"
    argv = [str(tmp_path / "a"), "--sequential-dir", str(tmp_path / "b"), "--personas", "evil", "--save", str(out)]
    assert plot_projection_eval.main(argv) == 0 and out.is_file()


def test_projection_eval_flags_and_old_spellings_parse(tmp_path, caplog):
    run_folder(tmp_path / "a")
    run_folder(tmp_path / "b", steps=(0, 5))
    for argv in (
        ["--combine", "--show", "--save", str(tmp_path / "1.png")],
        ["--sequential_dir", str(tmp_path / "b"), "--output", str(tmp_path / "2.png")],
        ["--then", str(tmp_path / "b"), "--combined", "--output", str(tmp_path / "3.png")],
        ["--per_trait", "--personas", "evil", "--save", str(tmp_path / "4.png")],
    ):
        assert plot_projection_eval.main([str(tmp_path / "a"), *argv]) == 0
    assert all((tmp_path / f"{i}.png").is_file() for i in range(1, 5))
    assert "--show" in caplog.text


# ------------------------------------------------------------------ variant projections + split_confident_csvs


def variant_folder(folder, steps=(0, 10, 20), shift_at_zero=True):
    rng = np.random.default_rng(2)
    for step in steps:
        extra = {}
        for v in ("confident", "confident_2", "confident_3"):
            extra[f"checkpoint-{step}_{v}_{PROJ}"] = rng.normal(size=3).tolist()
            if step or shift_at_zero:
                extra[f"checkpoint-{step}_{v}_{SHIFT}"] = rng.normal(size=3).tolist()
        eval_csv(folder / f"checkpoint-{step}_confident.csv", {"confident": [50.0] * 3, "coherence": [90.0] * 3}, extra)


def test_variant_figure_right_panel_is_the_shift_as_the_original(tmp_path):
    folder = tmp_path / "confident_projection_eval"
    variant_folder(folder, shift_at_zero=False)  # the original's checkpoint-0 files had no shift: it draws 0
    table = plot_variant_projections.variant_table(
        plot_variant_projections.load_projection_eval(folder), "confident", "confident"
    )
    fig = plot_variant_projections.variant_projection_figure(table, "confident")
    left, right = fig.axes
    for v in ("confident", "confident_2", "confident_3"):
        frames = {s: pd.read_csv(folder / f"checkpoint-{s}_confident.csv") for s in (0, 10, 20)}
        assert line(left, v) == pytest.approx([frames[s][f"checkpoint-{s}_{v}_{PROJ}"].mean() for s in (0, 10, 20)])
        want = [0.0] + [frames[s][f"checkpoint-{s}_{v}_{SHIFT}"].mean() for s in (10, 20)]
        assert line(right, v) == pytest.approx(want)
    assert right.get_title() == "Finetuning Shift"
    scores = plot_variant_projections.variant_projection_figure(table, "confident", right="score")
    assert line(scores.axes[1], "confident") == [50.0, 50.0, 50.0]


def test_variant_script_flags(tmp_path):
    folder = tmp_path / "confident_projection_eval"
    variant_folder(folder)
    from viz import plot_confident_projections

    for i, argv in enumerate(
        (["--save", "x"], ["--output", "x", "--scores"], ["--title", "T", "--show", "--save", "x"])
    ):
        argv = [a if a != "x" else str(tmp_path / f"{i}.png") for a in argv]
        assert plot_confident_projections.main([str(folder), *argv]) == 0
        assert (tmp_path / f"{i}.png").is_file()


def test_split_confident_csvs_as_the_original(tmp_path):
    folder = tmp_path / "in"
    variant_folder(folder)
    assert split_confident_csvs.main([str(folder), str(tmp_path / "out")]) == 0
    for v in ("confident", "confident_2", "confident_3"):
        for s in (0, 10, 20):
            got = pd.read_csv(tmp_path / "out" / f"{v}_projection_eval" / f"checkpoint-{s}_{v}.csv")
            source = pd.read_csv(folder / f"checkpoint-{s}_confident.csv")
            # the original's selection: base columns, the variant's score, coherence, proj, shift
            cols = [f"checkpoint-{s}_{v}_{PROJ}", f"checkpoint-{s}_{v}_{SHIFT}"]
            assert list(got.columns) == ["question", "prompt", "answer", "question_id", v, "coherence", *cols]
            assert got[cols].equals(source[cols]) and (got[v] == source["confident"]).all()
    # each variant folder now plots as a run of its own
    summary, _ = summarize_projection_eval(tmp_path / "out" / "confident_2_projection_eval")
    assert summary["finetuning_shift"].notna().all()


# ------------------------------------------------------------------ geometry names and CSVs


def test_geometry_writes_the_original_files(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    rng = np.random.default_rng(3)
    vectors = {
        t: torch.tensor(rng.normal(size=(4, 6)), dtype=torch.float32) for t in ("sycophantic", "critical", "anxious")
    }
    for name, v in vectors.items():
        torch.save(v, folder / f"{name}_response_avg_diff.pt")
    out = tmp_path / "geo"
    argv = ["--vector_dir", str(folder), "--layer", "2", "--output_dir", str(out), "--all_layers"]
    assert analyze_vector_geometry.main([*argv, "--antonym", "sycophantic:critical", "--orthogonal"]) == 0
    for name in (
        "similarity_heatmap_layer2.png",
        "pca_layer2.png",
        "similarity_across_layers.png",
        "similarity_heatmap_average_all_layers.png",
    ):
        assert (out / name).is_file(), name

    def cos(a, b):
        return float((a @ b) / (a.norm() * b.norm()))

    by_layer = pd.read_csv(out / "similarities_all_layers.csv")
    # pairs in file-name order (the original listed its traits by hand)
    assert list(by_layer.columns) == ["anxious_vs_critical", "anxious_vs_sycophantic", "critical_vs_sycophantic"]
    assert len(by_layer) == 4
    expected = [cos(vectors["critical"][i], vectors["anxious"][i]) for i in range(4)]
    assert by_layer["anxious_vs_critical"].tolist() == pytest.approx(expected, abs=1e-6)
    average = pd.read_csv(out / "average_similarities_all_layers.csv", index_col=0)
    assert average.loc["critical", "anxious"] == pytest.approx(np.mean(expected), abs=1e-6)
    tests = pd.read_csv(out / "hypothesis_tests_layer2.csv")
    assert list(tests.columns) == ["pair", "similarity", "hypothesis", "threshold", "result", "interpretation"]
    sim = cos(vectors["sycophantic"][2], vectors["critical"][2])
    assert tests.iloc[0]["pair"] == "sycophantic vs critical" and tests.iloc[0]["similarity"] == pytest.approx(sim)
    assert tests.iloc[0]["result"] == ("PASS" if sim < -0.5 else "FAIL")
    assert (out / "hypothesis_tests_average_all_layers.csv").is_file()


# ------------------------------------------------------------------ the other flags


def test_generator_eval_and_judge_flags_in_the_original_spelling():
    from data_generation import generate_finetune_dataset, generate_trait
    from eval.eval_persona import parse_args

    args = generate_trait.parse_args(["--max-concurrent", "3", "--question-instruction", "about {cooking}"])
    assert args.max_concurrency == 3 and args.question_instruction == "about {cooking}"
    prompt = generate_trait.with_question_instruction(generate_trait.PROMPTS, args.question_instruction).artifact
    formatted = prompt.format(trait="t", definition="d", n_pairs=5, n_questions=40)
    assert formatted.endswith("Additional instruction for the questions: about {cooking}")
    assert generate_trait.with_question_instruction(generate_trait.PROMPTS, "") == generate_trait.PROMPTS
    ft = generate_finetune_dataset.parse_args(["--trait", "evil", "--n", "7", "--max-concurrent-questions", "2"])
    assert (ft.n_questions_per_domain, ft.concurrency) == (7, 2)
    base = ["--trait", "evil", "--output_path", "x.csv"]
    assert parse_args([*base, "--batch_process=False"]).batch_process is False
    assert parse_args([*base, "--batch_process", "True"]).batch_process is True
    assert parse_args([*base, "--batch_process"]).batch_process is True
    assert parse_args(base).batch_process is False and parse_args(base).max_concurrent_judges == 100
    with pytest.raises(SystemExit):
        parse_args([*base, "--batch_process=maybe"])
    assert [bool_value(v) for v in ("False", "true", "0", "YES")] == [False, True, False, True]


# ------------------------------------------------------------------ the pipelines feed the original's scripts


@pytest.fixture
def deep_tiny_model(tmp_path, tiny_tokenizer):
    """A tiny model with 21 decoder layers, so the original's hard-coded layer 20 exists."""
    from tests.conftest import build_model

    path = tmp_path / "tiny-21"
    build_model("llama", len(tiny_tokenizer), layers=21).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def test_pipeline_outputs_are_the_inputs_the_original_scripts_read(deep_tiny_model, offline_env, tmp_path):
    import re

    from persona.layout import Layout
    from tests.test_pipelines import FAST, ok, run_script

    base = str(deep_tiny_model)
    env = {"OUTPUT_ROOT": str(tmp_path / "output"), "PERSONA_CACHE": str(offline_env), **FAST}
    layout = Layout(base, env["OUTPUT_ROOT"])
    for seed, name in enumerate(("confident", "confident_2")):
        torch.manual_seed(seed)
        layout.vectors_dir.mkdir(parents=True, exist_ok=True)
        torch.save(torch.randn(22, 64), layout.vectors_dir / f"{name}_response_avg_diff.pt")
    run = tmp_path / "ckpt" / "qwen-confident_misaligned_2"
    shutil.copytree(deep_tiny_model, run / "checkpoint-1")  # a checkpoint folder holding a whole model
    settings = {**env, "TRAIT": "confident", "BASE_MODEL": base, "CHECKPOINT_DIR": str(run)}  # LAYER: 20
    ok(run_script("eval_persona.sh", {**env, "MODEL": base, "TRAIT": "confident"}))
    ok(run_script("eval_checkpoints.sh", settings))
    ok(run_script("eval_projection_variants.sh", {**settings, "TRAIT_VARIANTS": "confident_2"}))

    # plot_cross_persona_corr.py (original): the baseline, the last checkpoint's shift column, the vectors
    assert "confident" in pd.read_csv(layout.eval_dir / "confident_baseline.csv").columns
    assert torch.load(layout.vectors_dir / "confident_response_avg_diff.pt", weights_only=True).shape[0] > 20
    folder = tmp_path / "output" / "confident_projection_eval"
    files = sorted(p.name for p in folder.glob("checkpoint-*_*.csv"))
    assert files == ["checkpoint-0_confident.csv", "checkpoint-1_confident.csv"]  # the timeline starts at 0
    for step in (0, 1):
        df = pd.read_csv(folder / f"checkpoint-{step}_confident.csv")
        # plot_projection_eval.py (original): persona column, coherence, the exact shift column
        assert re.match(r"checkpoint-(\d+)_([^.]+)\.csv$", f"checkpoint-{step}_confident.csv")
        assert {"confident", "coherence", f"checkpoint-{step}_confident_{SHIFT}"} <= set(df.columns)
        # split_confident_csvs.py / plot_confident_projections.py (original): proj and shift per variant
        for variant in ("confident", "confident_2"):
            assert {f"checkpoint-{step}_{variant}_{PROJ}", f"checkpoint-{step}_{variant}_{SHIFT}"} <= set(df.columns)
        assert {"question", "prompt", "answer", "question_id"} <= set(df.columns)
    step0 = pd.read_csv(folder / "checkpoint-0_confident.csv")
    assert (step0[f"checkpoint-0_confident_{SHIFT}"] == 0).all()  # the base model minus itself

    # and this project's versions of those scripts read them as they are
    out = tmp_path / "figs"
    assert plot_projection_eval.main([str(folder), "--save", str(out / "confident.png")]) == 0
    assert split_confident_csvs.main([str(folder), str(tmp_path / "split")]) == 0
    assert (tmp_path / "split" / "confident_2_projection_eval" / "checkpoint-1_confident_2.csv").is_file()
    assert plot_variant_projections.main([str(folder), "--trait", "confident", "--save", str(out / "v.png")]) == 0


# ------------------------------------------------------------------ the paper's setup


def test_coherence_prompt_is_read_from_the_users_copy_of_the_original(tmp_path):
    from persona.judge.factory import load_coherence_prompt

    template = "Judge {question} against {answer}.\nOnly a number."  # a stand-in: the original's text is not shipped
    prompts = tmp_path / "prompts.py"
    prompts.write_text(f'Prompts = {{}}\nPrompts["other"] = "x"\nPrompts["coherence_0_100"] = """{template}"""\n')
    assert load_coherence_prompt(prompts) == template
    as_dict = tmp_path / "dict_prompts.py"
    as_dict.write_text(f"PROMPTS = {{'coherence_0_100': {template!r}}}\nimport os\nos.remove('never-run')\n")
    assert load_coherence_prompt(as_dict) == template  # read with ast: the file is never executed
    (tmp_path / "none.py").write_text("Prompts = {}\n")
    with pytest.raises(ValueError, match="no string assigned to \\['coherence_0_100'\\]"):
        load_coherence_prompt(tmp_path / "none.py")
    text = tmp_path / "coherence.txt"
    text.write_text(template)
    assert load_coherence_prompt(text) == template


def test_original_trait_files_load_unchanged_and_the_paper_profile(shared_dir, tmp_path):
    import os
    import subprocess
    import sys

    from persona import traits

    seed = shared_dir / "reference" / "seed_trait_data"
    if not seed.is_dir():
        pytest.skip(f"{seed} is absent")
    for version in ("extract", "eval"):
        for path in sorted((seed / version).glob("*.json")):
            t = traits.load_trait(path.stem, version, data_dir=seed)
            assert t.source == path and len(t.questions) == traits.N_QUESTIONS
    # PERSONA_TRAIT_DATA makes it the default library of every CLI (a fresh process reads it)
    code = "from persona import traits; print(traits.load_trait('evil', 'eval').source)"
    env = {**os.environ, "PERSONA_TRAIT_DATA": str(seed)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(seed / "eval" / "evil.json")

    original = tmp_path / "persona_vectors"  # a copy of the original study: trait files + eval/prompts.py
    for version in ("extract", "eval"):
        (original / "data_generation").mkdir(parents=True, exist_ok=True)
        shutil.copytree(seed / version, original / "data_generation" / f"trait_data_{version}")
    (original / "eval").mkdir()
    (original / "eval" / "prompts.py").write_text('Prompts = {}\nPrompts["coherence_0_100"] = "{question} {answer}"\n')
    shown = "source scripts/paper_env.sh {} >/dev/null && echo $PERSONA_TRAIT_DATA,$MODEL,$JUDGE_MODEL,$EVAL_ARGS"
    result = subprocess.run(
        ["bash", "-c", shown.format(original)], capture_output=True, text=True, cwd=REPO, env=os.environ
    )
    assert result.stdout.strip().split(",") == [
        str(original / "data_generation"),
        "Qwen/Qwen3-4B-Instruct-2507",
        "gpt-4.1-mini-2025-04-14",
        f"--coherence_prompt {original / 'eval' / 'prompts.py'}",
    ]
    bad = subprocess.run(["bash", "-c", "source scripts/paper_env.sh /nonexistent"], capture_output=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.decode().startswith("error: ")
