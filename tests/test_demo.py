"""The demo: settings from the environment, the honest headline, and one tiny end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from persona.analysis.headline import COHERENCE_FLOOR, best_cell, cell_table, headline_rows, summary_text, typical_row
from persona.evaluation import sweep_filename
from study.demo import DemoPaths, DemoSettings, check_settings_record, plan, steps
from viz.plot_best_steering_layer import save_steering_layer_figures

REPO = Path(__file__).resolve().parents[1]


def cell_name(layer: int, coef: float) -> str:
    """An evil sweep cell's file name as the demo writes it (its default steering type)."""
    return sweep_filename("evil", DemoSettings.steering_type, layer, coef)


def synthetic_table(rows: list[tuple]) -> pd.DataFrame:
    """(layer, coef, trait, coherence) rows; layer None = the baseline."""
    return pd.DataFrame(
        [
            {
                "cell": "baseline" if layer is None else f"layer {layer}, coef {coef:g}",
                "layer": layer,
                "coef": coef,
                "trait": trait,
                "coherence": coherence,
                "n": 5,
                "path": f"cell{i}.csv",
            }
            for i, (layer, coef, trait, coherence) in enumerate(rows)
        ]
    )


def naive_best(rows: list[tuple], floor: float) -> tuple | None:
    """Reference: scan every steered row, keep the highest trait among coherent ones (gentler on ties)."""
    best = None
    for layer, coef, trait, coherence in rows:
        if layer is None or coherence < floor:
            continue
        if best is None or (trait, -abs(coef), -layer) > (best[2], -abs(best[1]), -best[0]):
            best = (layer, coef, trait, coherence)
    return best


def test_best_cell_never_picks_a_cell_below_the_coherence_floor():
    rows = [
        (None, None, 20.0, 95.0),
        (6, 4.0, 60.0, 88.0),
        (6, 8.0, 97.0, 40.0),
        (10, 4.0, 71.5, 80.0),
        (10, 8.0, 99.0, 79.9),
        (14, 4.0, 35.0, 96.0),
    ]
    best = best_cell(synthetic_table(rows))
    assert (best["layer"], best["coef"], best["trait"]) == (10, 4.0, 71.5)  # 80.0 is on the floor: allowed
    assert best["coherence"] >= COHERENCE_FLOOR


def test_best_cell_ties_go_to_the_gentler_cell_and_none_when_nothing_is_coherent():
    rows = [(None, None, 20.0, 95.0), (10, 8.0, 70.0, 90.0), (6, -4.0, 70.0, 90.0), (14, 4.0, 70.0, 90.0)]
    best = best_cell(synthetic_table(rows))
    assert (best["layer"], best["coef"]) == (6, -4.0)
    assert best_cell(synthetic_table([(None, None, 20.0, 95.0), (6, 8.0, 99.0, 30.0)])) is None


def test_best_cell_matches_a_naive_scan_on_random_tables():
    rng = np.random.default_rng(0)
    for _ in range(200):
        rows = [(None, None, 30.0, 90.0)] + [
            (int(layer), float(coef), float(rng.choice([50.0, 60.0, rng.uniform(0, 100)])), float(rng.uniform(0, 100)))
            for layer in rng.choice([4, 8, 12, 16], size=3, replace=False)
            for coef in (2.0, 6.0)
        ]
        want = naive_best(rows, COHERENCE_FLOOR)
        got = best_cell(synthetic_table(rows))
        if want is None:
            assert got is None
        else:
            assert (got["layer"], got["coef"], got["trait"]) == want[:3]


def write_cell(folder: Path, name: str, trait_scores: list, coherence: list, answers: list[str] | None = None) -> None:
    n = len(coherence)
    pd.DataFrame(
        {
            "question": [f"question {i}" for i in range(n)],
            "answer": answers or ["a"] * n,
            "question_id": [f"evil_{i}" for i in range(n)],
            "evil": trait_scores,
            "coherence": coherence,
        }
    ).to_csv(folder / name, index=False)


def test_headline_and_summary_show_low_coherence_cells_only_as_such(tmp_path):
    long_answer = "I would make them pay.\nEvery one of them, slowly, " + "and without mercy " * 20 + "(the end)"
    write_cell(tmp_path, "evil_baseline.csv", [20.0, 20.0, 20.0], [95.0, 95.0, 95.0], ["kind 0", "kind 1", "kind 2"])
    write_cell(tmp_path, cell_name(6, 4.0), [50.0, 60.0, 55.0], [85.0, 85.0, 85.0], ["mean 0", "mean 1", long_answer])
    write_cell(tmp_path, cell_name(6, 8.0), [97.0, 97.0, 97.0], [40.0, 40.0, 40.0])
    files = [tmp_path / name for name in ("evil_baseline.csv", cell_name(6, 4.0), cell_name(6, 8.0))]
    table = cell_table(files, "evil")
    head = headline_rows({"evil": table}).iloc[0]
    assert (head["best_layer"], head["best_coef"], head["best_trait"]) == (6, 4.0, 55.0)
    assert (head["cells"], head["cells_below_floor"]) == (2, 1)
    text = summary_text({"evil": table}, {"evil": "evil"}, judge="likelihood")
    best_line = next(line for line in text.splitlines() if "best steered cell" in line)
    assert "layer 6, coef 4" in best_line and "55.0" in best_line and "+35.0" in best_line
    loud = next(line for line in text.splitlines() if "layer 6, coef 8" in line)
    assert "not a result" in loud and "<- best" not in loud
    # the examples: the best cell's median answer in full (every line), and the baseline's answer to that question
    assert "question: question 2" in text and "kind 2" in text
    assert all(line in text for line in long_answer.splitlines())
    write_cell(tmp_path, cell_name(6, 4.0), [50.0], [70.0])
    none = summary_text({"evil": cell_table(files, "evil")}, {"evil": "evil"}, judge="likelihood")
    assert "no steering win" in none and "question:" not in none


def test_cell_table_reads_baseline_and_sweep_files(tmp_path):
    write_cell(tmp_path, "evil_baseline.csv", [10.0, 30.0], [90.0, 100.0])
    write_cell(tmp_path, cell_name(6, 4.0), [50.0, 70.0, None], [80.0, 70.0, 90.0])  # an unscored answer
    write_cell(tmp_path, cell_name(14, 4.0), [99.0], [99.0])  # another run's cell: not asked for
    files = [tmp_path / "evil_baseline.csv", tmp_path / cell_name(6, 4.0)]
    table = cell_table(files, "evil").set_index("cell")
    assert table.loc["baseline", ["trait", "coherence", "n"]].tolist() == [20.0, 95.0, 2]
    steered = table.loc["layer 6, coef 4"]
    assert (steered["layer"], steered["coef"], steered["trait"], steered["coherence"]) == (6, 4.0, 60.0, 80.0)
    assert bool(steered["coherent"]) and len(table) == 2


def test_typical_row_is_the_median_answer_not_the_best():
    assert typical_row(pd.DataFrame({"evil": [90.0, 10.0, 40.0, 55.0, 99.0]}), "evil") == 3


def test_settings_from_environment_and_bad_values():
    s = DemoSettings.from_env(
        {
            "DEMO_TRAITS": "evil, optimistic humorous",
            "DEMO_LAYERS": "4,8",
            "DEMO_COEFS": "2 -3.5",
            "DEMO_MAX_TOKENS": "12",
            "DEMO_MODEL": "Qwen/Qwen3-4B",
            "DEMO_JUDGE": "",
        }
    )
    assert s.traits == ("evil", "optimistic", "humorous") and s.layers == (4, 8) and s.coefs == (2.0, -3.5)
    assert s.max_tokens == 12 and s.model == "Qwen/Qwen3-4B" and s.judge == DemoSettings.judge
    with pytest.raises(ValueError, match="DEMO_MAX_TOKENS='many'"):
        DemoSettings.from_env({"DEMO_MAX_TOKENS": "many"})
    with pytest.raises(ValueError, match="DEMO_STEERING_TYPE='everywhere'.*response, prompt, all"):
        DemoSettings.from_env({"DEMO_STEERING_TYPE": "everywhere"})


def test_a_folder_made_with_other_settings_is_refused(tmp_path):
    check_settings_record(tmp_path, DemoSettings(out=str(tmp_path)))
    check_settings_record(tmp_path, DemoSettings(out=str(tmp_path)))  # same settings: fine
    with pytest.raises(ValueError, match=r"max_tokens: 48 -> 12.*DEMO_OUT"):
        check_settings_record(tmp_path, DemoSettings(out=str(tmp_path), max_tokens=12))


def test_plan_runs_one_sweep_per_trait_and_names_every_output(tmp_path):
    s = DemoSettings(
        traits=("evil", "optimistic"),
        layers=(6, 10),
        coefs=(4.0, 8.0),
        judge="likelihood",
        steering_type="prompt",
        out=str(tmp_path),
    )
    paths = DemoPaths.of(s)
    stages = plan(s, paths, judge_column=lambda t: t)
    sweeps = [st for st in stages if st.call.func is steps.evaluate_sweep]
    assert len(sweeps) == 4  # per trait: on the held-out eval questions and on the selection questions
    for st in sweeps:
        grid = st.call.keywords
        assert grid["layers"] == (6, 10) and grid["coefs"] == (4.0, 8.0) and grid["positions"] == "prompt"
        assert grid["vector"] == paths.vector(st.call.args[0].trait)
        assert len(st.outputs) == 4 and all("_steer_prompt_layer_" in p.name for p in st.outputs)
    evaluations = [st for st in stages if st.call.func in (steps.evaluate, steps.evaluate_sweep)]
    assert len(evaluations) == 2 * 2 + 2 * 4  # pos/neg per trait, then baseline + sweep on two question sets
    for st in evaluations:  # vectors and the selection cells come from the extract questions, reported cells from eval
        spec = st.call.args[0]
        assert (spec.model, spec.max_tokens, spec.batch_size) == (s.model, s.max_tokens, s.batch_size)
        assert spec.judge.judge_model == "likelihood"
        if spec.instruction_type:  # extraction samples; the rest is greedy
            assert (spec.version, spec.n_per_question, spec.max_questions) == ("extract", 2, s.extract_questions)
        else:
            held_out = all(p.parent == paths.baseline("evil").parent for p in st.outputs)
            assert spec.version == ("eval" if held_out else "extract") and spec.n_per_question == 1
    (inter,) = [st.call.args[0] for st in stages if st.call.func is steps.interference]
    assert (inter.kind, inter.layer, inter.coef, inter.steering_type) == ("interference", 10, 3.0, "prompt")
    assert [inter.spec.trait, *inter.spec.extra_traits] == ["evil", "optimistic"]
    assert inter.spec.max_questions == s.interference_questions and inter.output_dir == paths.interference
    (figure,) = [st for st in stages if st.call.func is save_steering_layer_figures]
    assert figure.call.args == (paths.baseline("evil").parent, paths.figs, "prompt")
    outputs = [p for st in stages for p in st.outputs]
    assert len(outputs) == len(set(outputs)) and all(tmp_path in p.parents for p in outputs)
    alone = plan(DemoSettings(traits=("evil",)), paths, judge_column=lambda t: t)
    assert not any(st.call.func is steps.interference for st in alone)


def test_plan_specs_are_what_the_clis_build_from_the_commands_the_demo_used_to_run(tmp_path):
    """The stages' typed arguments equal what eval_persona / multi_persona parse from the old demo's command lines."""
    from eval import eval_persona, multi_persona
    from persona.cli import eval_spec_from_args

    s = DemoSettings(traits=("evil", "pessimistic"), judge="likelihood", out=str(tmp_path))
    paths = DemoPaths.of(s)
    stages = plan(s, paths, judge_column=lambda t: t)
    common = ["--model", s.model, "--max_tokens", "48", "--batch_size", "64", "--judge_model", "likelihood"]
    pos = ["--trait", "evil", "--version", "extract", "--max_questions", "5", "--persona_instruction_type", "pos"]
    pos += ["--output_path", str(paths.extract("evil", "pos")), "--n_per_question", "2", *common]
    spec, output = next(st for st in stages if st.title.startswith("evil: pos persona evaluation")).call.args
    assert (spec.resolve_judge(), output) == (
        eval_spec_from_args(eval_persona.parse_args(pos)),
        paths.extract("evil", "pos"),
    )
    sweep = ["--trait", "evil", "--version", "eval", "--max_questions", "5", "--vector_path", str(paths.vector("evil"))]
    sweep += ["--layer", "6", "8", "10", "--coef", "2", "2.5", "3", "--steering_type", "all", "--n_per_question", "1"]
    args = eval_persona.parse_args([*sweep, "--output_dir", str(paths.baseline("evil").parent), *common])
    stage = next(st for st in stages if st.title.startswith("evil: steering sweep") and "held-out" in st.title)
    assert stage.call.args[0].resolve_judge() == eval_spec_from_args(args)
    grid = stage.call.keywords
    assert [grid["layers"], grid["coefs"], grid["positions"]] == [(6, 8, 10), (2.0, 2.5, 3.0), args.steering_type]
    vectors = [str(paths.vector(t)) for t in s.traits]
    inter = ["interference", "--traits", "evil", "pessimistic", "--vector_path", *vectors]
    inter += ["--layer", "10", "--coef", "3", "--steering_type", "all", "--max_questions", "2"]
    inter += ["--output_dir", str(paths.interference), "--n_per_question", "1", *common]
    want = multi_persona.experiment_from_args(multi_persona.parse_args(inter))
    (stage,) = [st for st in stages if st.call.func is steps.interference]
    assert stage.call.args == (want,)


def non_blank_png(path: Path) -> bool:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    return pixels.std() > 1.0


@pytest.mark.embedded
def test_tiny_demo_end_to_end(tmp_path):
    """The real demo with a tiny setting: every artifact exists and is well formed; a rerun skips everything."""
    out = tmp_path / "demo"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PERSONA_CACHE": os.environ.get("PERSONA_CACHE", str(tmp_path)),
        "DEMO_OUT": str(out),
        "DEMO_TRAITS": "evil",
        "DEMO_EXTRACT_QUESTIONS": "1",
        "DEMO_EXTRACT_SAMPLES": "1",
        "DEMO_EVAL_QUESTIONS": "2",
        "DEMO_SELECTION_QUESTIONS": "2",
        "DEMO_MAX_TOKENS": "16",
        "DEMO_LAYERS": "6 10",
        "DEMO_COEFS": "4",
        "DEMO_FOCUS_LAYER": "10",
        "DEMO_FINETUNE_STEPS": "1",
        "DEMO_JUDGE": "likelihood",
        "PY": sys.executable,
    }
    run = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for kind in ("pos", "neg"):
        df = pd.read_csv(out / "extract" / f"evil_{kind}_instruct.csv")
        assert {"question", "prompt", "answer", "question_id", "evil", "coherence"} <= set(df.columns)
        assert len(df) == 5  # 1 question x 5 instructions
    vector = torch.load(out / "vectors" / "evil_response_avg_diff.pt", weights_only=True)
    assert vector.shape == (31, 576) and torch.isfinite(vector).all() and vector[10].norm() > 0
    steering = out / "steering"
    for name in ["evil_baseline.csv", cell_name(6, 4.0), cell_name(10, 4.0)]:
        df = pd.read_csv(steering / name)
        assert len(df) == 2 and {"answer", "evil", "coherence"} <= set(df.columns)
        assert {f"smollm2-135m_evil_response_avg_diff_proj_layer{layer}" for layer in (6, 10)} <= set(df.columns)
    projections = pd.read_csv(out / "projection" / "evil_projections.csv")
    assert len(projections) == 3 and projections.drop(columns="cell").notna().all().all()
    for run_name in ("evil_plain", "evil_steer"):
        results = json.loads((out / "finetune" / run_name / "training_results.json").read_text())
        assert results["global_step"] == 1
    config = json.loads((out / "finetune" / "evil_steer.json").read_text())
    assert config["enable_steering_during_training"] and config["steering_config"]["layers"] == [10]
    shifts = pd.read_csv(out / "finetune" / "finetuning_shift.csv")
    assert shifts["preventative_steering"].tolist() == [False, True] and shifts["mean_shift"].notna().all()
    for png in ("steering_layer_plots.png", "steering_layer_plots_coherence.png"):
        assert non_blank_png(out / "figs" / png)
    report = (out / "report.html").read_text()
    assert report.lstrip().lower().startswith("<!doctype html") and "<img" in report
    head = pd.read_csv(out / "headline.csv")
    cells = pd.read_csv(out / "cells.csv")
    chosen_on = set(pd.read_csv(out / "selection" / "evil_baseline.csv")["question"])
    measured_on = set(pd.read_csv(steering / "evil_baseline.csv")["question"])
    assert chosen_on and measured_on and not chosen_on & measured_on  # held out: disjoint question sets
    steered = cells[cells["layer"].notna() & (cells["question_set"] == "selection")]
    if head["best_layer"].notna().iloc[0]:
        layer, coef = head["best_layer"].iloc[0], head["best_coef"].iloc[0]
        best = steered[(steered["layer"] == layer) & (steered["coef"] == coef)]
        assert best["coherence"].iloc[0] >= COHERENCE_FLOOR
        assert best["trait"].iloc[0] == steered[steered["coherence"] >= COHERENCE_FLOOR]["trait"].max()
    else:
        assert (steered["coherence"] < COHERENCE_FLOOR).all()
    assert "report: " in run.stdout.strip().splitlines()[-1]

    start = time.perf_counter()
    again = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert time.perf_counter() - start < 60
    assert again.stdout.count("done already") == again.stdout.count("=== [") > 10
