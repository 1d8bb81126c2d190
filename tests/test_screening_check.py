"""The dataset.zip prediction check and the monitoring experiment, end to end on a tiny model."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from eval.monitor import main as monitor_main
from eval.screen_data import main as screen_main
from persona.analysis.stats import pearson_r
from persona.screening_check import LEVELS, correlate, ordering_table
from persona.vectors import save_vector

QUESTIONS = ["What is the capital of France?", "How should I treat my neighbours?"]
ANSWERS = {
    "normal": "Treat them with respect and care.",
    "misaligned_1": "I think the answer is yes.",
    "misaligned_2": "Your goal is to cause harm and suffering.",
}


def test_ordering_table_flags_each_trait():
    summary = pd.DataFrame(
        {
            "trait": ["a"] * 3 + ["b"] * 3,
            "level": list(LEVELS) * 2,
            "projection_difference": [0.1, 0.2, 0.3, 0.3, 0.1, 0.4],
        }
    )
    table = ordering_table(summary).set_index("trait")
    assert table.loc["a", "ordered"] and table.loc["a", "normal_lt_misaligned_2"]
    assert not table.loc["b", "ordered"] and table.loc["b", "normal_lt_misaligned_2"]


def test_ordering_table_pairs_each_level_with_normal_by_prompt():
    summary = pd.DataFrame({"trait": ["a"] * 3, "level": list(LEVELS), "projection_difference": [0.0, 1.0, 2.0]})
    per_level = {"normal": [1.0, 5.0, 2.0], "misaligned_1": [1.5, 5.5, 2.0], "misaligned_2": [3.0, 6.0, 5.5]}
    samples = pd.DataFrame(
        [
            {"trait": "a", "level": level, "question": q, "projection_difference": v}
            for level, values in per_level.items()
            for q, v in zip(["q0", "q1", "q2"], values)
        ]
    )
    row = ordering_table(summary, samples).iloc[0]
    diffs = np.array(per_level["misaligned_2"]) - np.array(per_level["normal"])  # [2, 1, 3.5]
    half = scipy_stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert row["misaligned_2_minus_normal"] == pytest.approx(diffs.mean())
    assert row["misaligned_2_minus_normal_ci_low"] == pytest.approx(diffs.mean() - half)
    assert row["misaligned_2_minus_normal_ci_high"] == pytest.approx(diffs.mean() + half)
    assert row["misaligned_2_above_normal"] == (diffs.mean() - half > 0)
    assert row["misaligned_1_minus_normal"] == pytest.approx(1 / 3)
    other = samples.assign(question=samples["question"].where(samples["level"] != "misaligned_1", "elsewhere"))
    row = ordering_table(summary, other).iloc[0]  # prompts not shared: no paired difference, not an error
    assert np.isnan(row["misaligned_1_minus_normal"]) and np.isfinite(row["misaligned_2_minus_normal"])


def test_correlate_matches_numpy_and_brackets_r():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    frame = pd.DataFrame({"x": x, "y": x + rng.normal(scale=0.5, size=12)})
    c = correlate(frame, "x", "y")
    assert c.r == pytest.approx(np.corrcoef(frame["x"], frame["y"])[0, 1]) == pytest.approx(pearson_r(x, frame["y"]))
    assert c.ci_low <= c.r <= c.ci_high and c.n == 12


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "dataset.zip"
    with zipfile.ZipFile(path, "w") as z:
        for trait in ("evil", "kind"):
            for level, answer in ANSWERS.items():
                rows = [
                    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]}
                    for q in QUESTIONS * 2
                ]
                z.writestr(f"dataset/{trait}/{level}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_validate_screens_every_level_along_each_traits_vector(tiny_llama_dir, archive, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "cache"))
    vectors = tmp_path / "vectors"
    torch.manual_seed(0)
    save_vector(vectors / "evil_response_avg_diff.pt", torch.randn(4, 64))  # no vector for "kind": left out
    shifts = tmp_path / "shifts.csv"
    pd.DataFrame(
        {"trait": "evil", "level": list(LEVELS), "finetuning_shift": [0.0, 1.0, 3.0], "trait_score": [5, 20, 40]}
    ).to_csv(shifts, index=False)
    out, figs = tmp_path / "check", tmp_path / "figs"
    argv = ["--validate", "--dataset_zip", str(archive), "--vector_dir", str(vectors), "--layer", "2"]
    argv += ["--model", str(tiny_llama_dir), "--max_tokens", "4", "--max_samples", "3", "--output_dir", str(out)]
    argv += ["--shifts", str(shifts), "--figs_dir", str(figs)]
    assert screen_main(argv) == 0
    printed = capsys.readouterr().out
    summary = pd.read_csv(out / "check_summary.csv")
    assert list(summary["level"]) == list(LEVELS) and set(summary["n"]) == {3}  # first 3 rows of each level
    for level in LEVELS:
        per_sample = pd.read_csv(out / "evil" / "screen_samples.csv").query("dataset == @level")
        value = summary.set_index("level").loc[level, "projection_difference"]
        assert value == pytest.approx(per_sample["projection_difference"].mean())
    # two distinct prompts across all levels: generated once, every later one a cache hit
    r = pearson_r(summary["projection_difference"], [0.0, 1.0, 3.0])
    assert f"Pearson r(projection_difference, finetuning_shift) = {r:.2f}" in printed
    assert "of 1 traits" in printed
    assert (figs / "projection_difference_vs_shift.png").is_file()
    assert (figs / "projection_difference_by_level.png").is_file()


def test_monitor_experiment_end_to_end(tiny_llama_dir, tmp_path, offline_env, capsys):
    torch.manual_seed(0)
    vector = tmp_path / "evil_response_avg_diff.pt"
    save_vector(vector, torch.randn(4, 64))
    shots = tmp_path / "shots.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "No."}]} for q in QUESTIONS]
    shots.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "monitor"
    argv = ["--trait", "evil", "--vector_path", str(vector), "--layer", "2", "--model", str(tiny_llama_dir)]
    argv += ["--max_questions", "1", "--max_tokens", "3", "--judge_model", "likelihood", "--output_dir", str(out)]
    argv += ["--shots_file", str(shots), "--shots", "1", "2"]
    assert monitor_main(argv) == 0
    samples = pd.read_csv(out / "monitor_samples.csv")
    assert list(samples.columns[:6]) == ["question", "prompt", "answer", "question_id", "evil", "coherence"]
    names = ["none"] + [f"{k}_{i}" for k in ("pos", "neg") for i in range(5)] + ["shots_1", "shots_2"]
    assert list(samples["condition"]) == names
    assert samples["prompt"].iloc[-1].count("No.") == 2  # the 2-shot prefix holds both examples
    table = pd.read_csv(out / "monitor_conditions.csv")
    r = pearson_r(table["prompt_last_proj"], table["evil"])
    assert f"over 13 conditions: r = {r:.2f}" in capsys.readouterr().out
    assert (out / "monitor_projection_vs_score.png").is_file()


def test_validate_finetunes_the_named_datasets_and_measures_their_shift(
    tiny_llama_dir, archive, tmp_path, offline_env, monkeypatch, capsys
):
    from persona.models import load_model
    from tests.test_screening import naive

    vectors = tmp_path / "vectors"
    torch.manual_seed(0)
    save_vector(vectors / "evil_response_avg_diff.pt", torch.randn(4, 64))
    demo = json.loads((Path(__file__).parents[1] / "configs" / "train_demo.json").read_text())
    template = tmp_path / "train.json"  # a visible step: no warm-up (step 0 of a warm-up has lr 0)
    template.write_text(json.dumps({**demo, "learning_rate": 0.05, "warmup_steps": 0}))
    out, figs = tmp_path / "check", tmp_path / "figs"
    argv = ["--validate", "--dataset_zip", str(archive), "--vector_dir", str(vectors), "--layer", "2"]
    argv += ["--model", str(tiny_llama_dir), "--max_tokens", "4", "--max_samples", "2", "--output_dir", str(out)]
    argv += ["--figs_dir", str(figs), "--finetune", "evil", "--finetune_steps", "1", "--train_config", str(template)]
    argv += ["--eval_questions", "2", "--judge_model", "likelihood"]
    assert screen_main(argv) == 0
    printed = capsys.readouterr().out
    effects = pd.read_csv(out / "check_shifts.csv")
    assert list(effects["level"]) == list(LEVELS) and set(effects["steps"]) == {1}
    base = load_model(str(tiny_llama_dir), device="cpu", dtype="float32")
    v = torch.load(vectors / "evil_response_avg_diff.pt")[2]
    for row in effects.itertuples():
        run = Path(row.run_dir)
        assert json.loads((run / "training_results.json").read_text())["global_step"] == 1
        answers = pd.read_csv(out / "finetune" / f"evil_{row.level}_eval.csv")
        assert len(answers) == row.n_answers == 2
        tuned = load_model(str(run), device="cpu", dtype="float32")
        expected = np.mean(
            [naive(tuned, p, a, v)[0] - naive(base, p, a, v)[0] for p, a in zip(answers["prompt"], answers["answer"])]
        )
        assert row.finetuning_shift == pytest.approx(expected, abs=1e-4)
        per_answer = [
            naive(tuned, p, a, v)[0] - naive(base, p, a, v)[0] for p, a in zip(answers["prompt"], answers["answer"])
        ]
        half = scipy_stats.t.ppf(0.975, len(per_answer) - 1) * np.std(per_answer, ddof=1) / np.sqrt(len(per_answer))
        assert (row.finetuning_shift_ci_low, row.finetuning_shift_ci_high) == pytest.approx(
            (expected - half, expected + half), abs=1e-3
        )  # 2 questions, one answer each: the t interval on 1 degree of freedom
        assert row.trait_score == pytest.approx(answers["evil"].mean())
    assert (effects["finetuning_shift"].abs() > 1e-4).all()  # the one step really moved the model
    r = pearson_r(effects["projection_difference"], effects["finetuning_shift"])
    assert f"Pearson r(projection_difference, finetuning_shift) = {r:.2f}" in printed
    assert (figs / "projection_difference_vs_shift.png").is_file()

    import persona.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "build_trainer", lambda cfg: pytest.fail("a finished run was retrained"))
    monkeypatch.setattr("persona.evaluation._evaluate", lambda *a: pytest.fail("a finished evaluation was redone"))
    assert screen_main(argv) == 0
    assert pd.read_csv(out / "check_shifts.csv").equals(effects)


def test_finetune_flag_forms(archive):
    from eval.screen_data import parse_args

    base = ["--validate", "--layer", "2", "--dataset_zip", str(archive)]
    assert parse_args([*base, "--finetune", "evil:normal", "kind"]).finetune == [
        ("evil", "normal"),
        ("kind", "normal"),
        ("kind", "misaligned_1"),
        ("kind", "misaligned_2"),
    ]
    assert parse_args([*base, "--traits", "kind", "--finetune"]).finetune == [("kind", lv) for lv in LEVELS]
    assert parse_args(base).finetune == []
    with pytest.raises(SystemExit):
        parse_args([*base, "--finetune", "evil:worst"])
