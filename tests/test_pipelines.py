"""The bash pipelines in scripts/: they parse, fail with one line naming a missing input, write the
original study's layout, resume, and chain end to end (tiny model; the embedded model where marked)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from persona.layout import Layout

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PIPELINES = [
    "generate_vec.sh",
    "eval_persona.sh",
    "eval_steering.sh",
    "eval_steering_sweep.sh",
    "eval_checkpoints.sh",
    "eval_projection_variants.sh",
    "cal_projection.sh",
]
SETTING = re.compile(r"^([A-Z_]+)=\$\{\1[:-]", re.MULTILINE)  # `NAME=${NAME:-default}` at the top of a script
FAST = {"N_PER_QUESTION": "1", "MAX_TOKENS": "3", "MAX_QUESTIONS": "1", "JUDGE_MODEL": "likelihood"}


def run_script(name: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    full = {**os.environ, "PY": sys.executable, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(["bash", str(SCRIPTS / name), "0"], env=full, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.parametrize("name", sorted(p.name for p in SCRIPTS.glob("*.sh")))
def test_every_script_parses(name):
    assert subprocess.run(["bash", "-n", str(SCRIPTS / name)], capture_output=True).returncode == 0


def test_the_seven_pipelines_exist_with_strict_mode_and_are_documented():
    docs = (REPO / "docs" / "pipelines.md").read_text()
    common = (SCRIPTS / "_common.sh").read_text()
    assert "set -euo pipefail" in common and "CUDA_VISIBLE_DEVICES=$1" in common
    for name in PIPELINES:
        text = (SCRIPTS / name).read_text()
        assert 'source "$(dirname "$0")/_common.sh"' in text and "GPU=${1:-0}" in text
        assert f"scripts/{name}" in docs, f"docs/pipelines.md does not list scripts/{name}"
        for variable in SETTING.findall(text):
            assert f"`{variable}`" in docs, f"docs/pipelines.md does not document {name}'s {variable}"
    assert not (SCRIPTS / "generate_vectors.sh").exists() and "generate_vectors.sh" not in docs


@pytest.fixture
def env(offline_env, tmp_path) -> dict[str, str]:
    return {"OUTPUT_ROOT": str(tmp_path / "output"), "PERSONA_CACHE": str(offline_env)}


def test_a_missing_input_is_one_line_naming_it_and_the_step_that_makes_it(env, tmp_path):
    result = run_script("eval_steering.sh", {**env, "TRAIT": "optimistic"})
    vector = tmp_path / "output/persona_vectors/smollm2-135m/optimistic_response_avg_diff.pt"
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {vector} does not exist (make it with MODEL=smollm2-135m "
        "TRAIT=optimistic bash scripts/generate_vec.sh)"
    ]
    logs = list((tmp_path / "output/eval_persona_eval/smollm2-135m").glob("eval_steering_*.log"))
    assert len(logs) == 1 and "does not exist" in logs[0].read_text() and "COEF=6.0" in logs[0].read_text()
    result = run_script(
        "eval_checkpoints.sh", {**env, "CHECKPOINT_DIR": str(tmp_path / "none"), "JUDGE_TRAITS": "evil"}
    )
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "generate_vec.sh" in result.stderr


def save_random_vector(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.randn(4, 64), path)  # [num_layers + 1, hidden] of the 3-layer tiny model
    return path


def test_sweep_defaults_to_the_original_grid_on_a_model_that_is_not_embedded(env, tiny_llama_dir, tmp_path):
    layout = Layout(str(tiny_llama_dir), env["OUTPUT_ROOT"])
    save_random_vector(layout.vectors_dir / "evil_response_avg_diff.pt", 0)
    ok(run_script("eval_steering_sweep.sh", {**env, **FAST, "MODEL": str(tiny_llama_dir)}))
    made = sorted(p.name for p in layout.eval_dir.glob("*.csv"))
    # layers 0..L (the tiny model has 3 decoder layers), coefficients 0.5..2.5, the original file names
    assert made == sorted(
        f"evil_steer_response_layer_{layer}_coef_{coef}.csv"
        for layer in range(4)
        for coef in ("0.5", "1.0", "1.5", "2.0", "2.5")
    )
    assert all((layout.eval_dir / f"{name}.judge.json").is_file() for name in made)


@pytest.fixture
def two_checkpoints(tiny_llama_dir, tmp_path) -> Path:
    """A two-step LoRA run on the tiny model, saving after each step (no held-out split)."""
    from persona.training.config import parse_config
    from persona.training.trainer import train

    data = tmp_path / "train.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": "Treat them with respect and care."},
            ]
        }
        for i in range(4)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ckpt" / "run"
    train(
        parse_config(
            dict(
                model=str(tiny_llama_dir),
                training_file=str(data),
                output_dir=str(out),
                max_steps=2,
                save_steps=1,
                save_strategy="steps",  # the original's default is "epoch", keeping 1 checkpoint
                save_total_limit=None,
                per_device_train_batch_size=2,
                gradient_accumulation_steps=1,
                warmup_steps=0,
                learning_rate=1e-2,
                r=4,
                lora_alpha=8,
                target_modules=["q_proj", "v_proj"],
                optim="adamw_torch",
                max_seq_length=64,
                no_test_split=True,
            )
        )
    )
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    return out


def test_checkpoint_pipelines_write_original_files_and_columns(env, tiny_llama_dir, two_checkpoints, tmp_path):
    base = str(tiny_llama_dir)
    layout = Layout(base, env["OUTPUT_ROOT"])
    save_random_vector(layout.vectors_dir / "evil_response_avg_diff.pt", 0)
    save_random_vector(layout.vectors_dir / "evil_2_response_avg_diff.pt", 1)
    settings = {
        **env,
        **FAST,
        "TRAIT": "evil",
        "BASE_MODEL": base,
        "CHECKPOINT_DIR": str(two_checkpoints),
        "LAYER": "2",
        "SHIFT_TYPES": "prompt_last_proj proj",  # the original's shift, plus proj when asked
    }
    ok(run_script("eval_checkpoints.sh", settings))
    results = Path(env["OUTPUT_ROOT"]) / "evil_projection_eval"
    assert sorted(p.name for p in results.glob("*.csv")) == [f"checkpoint-{n}_evil.csv" for n in (0, 1, 2)]
    assert len(list(results.glob("eval_checkpoints_*.log"))) == 1
    for step in (0, 1, 2):
        path = results / f"checkpoint-{step}_evil.csv"
        df = pd.read_csv(path)
        assert list(df.columns) == [
            "question",
            "prompt",
            "answer",
            "question_id",
            "evil",
            "coherence",
            f"checkpoint-{step}_evil_response_avg_diff_proj_layer2",
            f"checkpoint-{step}_evil_response_avg_diff_prompt_last_proj_layer2_finetuning_shift",
            f"checkpoint-{step}_evil_response_avg_diff_proj_layer2_finetuning_shift",
        ]
        assert (
            len(df) == 1 and json.loads(path.with_name(path.name + ".judge.json").read_text())["judge"] == "likelihood"
        )
    step0 = pd.read_csv(results / "checkpoint-0_evil.csv")  # the base model minus itself
    assert step0.filter(like="_finetuning_shift").abs().to_numpy().max() == 0

    # the base model's projection, added by cal_projection.sh: the shift is checkpoint minus base
    ok(
        run_script(
            "cal_projection.sh",
            {**env, "MODEL": base, "LAYERS": "2", "FILE_PATH": str(results / "checkpoint-2_evil.csv")},
        )
    )
    df = pd.read_csv(results / "checkpoint-2_evil.csv")
    shift = df["checkpoint-2_evil_response_avg_diff_proj_layer2_finetuning_shift"]
    base_column = f"{tiny_llama_dir.name}_evil_response_avg_diff_proj_layer2"
    expected = df["checkpoint-2_evil_response_avg_diff_proj_layer2"] - df[base_column]
    assert shift.tolist() == pytest.approx(expected.tolist(), abs=1e-4)
    assert shift.abs().max() > 0  # two steps at lr 1e-2 moved the activations

    before = {p.name: p.read_bytes() for p in results.glob("checkpoint-*")}
    rerun = ok(run_script("eval_checkpoints.sh", settings))
    assert rerun.stdout.count("exists, skipping") == 3 and "all columns exist" in rerun.stdout
    assert {p.name: p.read_bytes() for p in results.glob("checkpoint-*")} == before

    ok(run_script("eval_projection_variants.sh", {**settings, "TRAIT_VARIANTS": "evil_2"}))
    for step in (0, 1, 2):
        columns = pd.read_csv(results / f"checkpoint-{step}_evil.csv").columns
        assert {
            f"checkpoint-{step}_evil_2_response_avg_diff_proj_layer2",
            f"checkpoint-{step}_evil_2_response_avg_diff_prompt_last_proj_layer2_finetuning_shift",
            f"checkpoint-{step}_evil_2_response_avg_diff_proj_layer2_finetuning_shift",
        } <= set(columns)


@pytest.fixture
def embedded_env(tmp_path, monkeypatch) -> dict[str, str]:
    """No OpenAI settings, but the usual PERSONA_CACHE: the embedded model is converted there once."""
    monkeypatch.setenv("PERSONA_DOTENV", str(tmp_path / "absent.env"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return {"OUTPUT_ROOT": str(tmp_path / "output")}


@pytest.mark.embedded
def test_vector_steering_and_projection_pipelines_on_the_embedded_model(embedded_env, tmp_path):
    """generate_vec -> eval_steering -> eval_steering_sweep (reuses the cell) -> eval_persona -> cal_projection."""
    env = embedded_env
    settings = {**env, "N_PER_QUESTION": "1", "MAX_TOKENS": "12", "MAX_QUESTIONS": "1"}
    layout = Layout("smollm2-135m", env["OUTPUT_ROOT"])
    first = ok(run_script("generate_vec.sh", settings))
    assert first.stderr.count("judge: OPENAI_API_KEY is not set") == 2  # once per eval_persona process
    for kind in ("pos", "neg"):
        df = pd.read_csv(layout.extract_dir / f"evil_{kind}_instruct.csv")
        assert len(df) == 5 and {"evil", "coherence"} <= set(df.columns)
    meta = json.loads((layout.vectors_dir / "evil_vectors.json").read_text())
    assert meta["judge"]["pos"]["judge"] == "likelihood" and meta["judge"]["pos"]["default_judge"]
    assert torch.load(layout.vectors_dir / "evil_response_avg_diff.pt", weights_only=True).shape == (31, 576)

    ok(run_script("eval_steering.sh", settings))
    cell = layout.eval_dir / "evil_steer_response_layer_15_coef_6.0.csv"
    assert cell.is_file()
    sweep = ok(run_script("eval_steering_sweep.sh", {**settings, "LAYERS": "15", "COEFS": "6.0 0.0"}))
    assert f"{cell} exists, skipping" in sweep.stdout
    ok(run_script("eval_persona.sh", settings))
    baseline = layout.eval_dir / "evil_baseline.csv"
    # coefficient 0 reproduces the unsteered answers (per-row seeds)
    assert (
        pd.read_csv(layout.eval_dir / "evil_steer_response_layer_15_coef_0.0.csv")["answer"].tolist()
        == pd.read_csv(baseline)["answer"].tolist()
    )
    ok(run_script("cal_projection.sh", settings))
    assert "smollm2-135m_evil_response_avg_diff_proj_layer15" in pd.read_csv(baseline).columns
    rerun = ok(run_script("generate_vec.sh", settings))
    assert rerun.stdout.count("exists, skipping") == 3 and "++ " not in rerun.stdout  # nothing runs again
