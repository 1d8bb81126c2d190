"""The one output layout: `<model>` keeps a Hub id's organisation folder, a local model gives its folder name."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from persona.layout import Layout, model_dir_name, shell_assignments

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "spec, name",
    [
        ("Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Instruct-2507"),  # Hub id: organisation folder kept
        ("unsloth/Qwen3-4B", "unsloth/Qwen3-4B"),
        ("smollm2-135m", "smollm2-135m"),  # the embedded model
        ("/abs/models/my-model/", "my-model"),  # a local path: its folder name
        ("./ckpt/run", "run"),
        ("ckpt/smollm2-135m/demo/checkpoint-4", "checkpoint-4"),
    ],
)
def test_model_dir_name(spec, name):
    assert model_dir_name(spec) == name


def test_an_existing_folder_is_local_even_if_it_looks_like_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Qwen" / "qwen-evil_misaligned_2").mkdir(parents=True)
    assert model_dir_name("Qwen/qwen-evil_misaligned_2") == "qwen-evil_misaligned_2"


def test_layout_paths_and_their_shell_form():
    layout = Layout("Qwen/Qwen3-4B-Instruct-2507", root="out put")
    assert layout.extract_dir == Path("out put/eval_persona_extract/Qwen/Qwen3-4B-Instruct-2507")
    assert layout.vectors_dir == Path("out put/persona_vectors/Qwen/Qwen3-4B-Instruct-2507")
    assert layout.eval_dir == Path("out put/eval_persona_eval/Qwen/Qwen3-4B-Instruct-2507")
    assert layout.projection_dir("evil") == Path("out put/evil_projection_eval")
    script = shell_assignments(layout, "evil") + '\necho "$VECTOR_DIR|$PROJECTION_DIR|$MODEL_NAME"'
    printed = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert (
        printed.strip() == "out put/persona_vectors/Qwen/Qwen3-4B-Instruct-2507|out put/evil_projection_eval|"
        "Qwen/Qwen3-4B-Instruct-2507"
    )


def test_cli_prints_assignments_and_reads_layer_counts(tiny_llama_dir):
    run = [sys.executable, "-m", "persona.layout"]
    out = subprocess.run(run + ["smollm2-135m"], capture_output=True, text=True, check=True).stdout
    assert "EVAL_DIR=output/eval_persona_eval/smollm2-135m" in out.splitlines()
    layers = subprocess.run(run + ["--num_layers", str(tiny_llama_dir)], capture_output=True, text=True, check=True)
    assert layers.stdout.strip() == "3"
    bad = subprocess.run(run + ["--num_layers", str(tiny_llama_dir / "absent")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1


def test_steering_config_points_where_generate_vec_writes():
    config = json.loads((REPO / "configs" / "train_instruct_steer.json").read_text())
    expected = Layout(config["model"]).vectors_dir / "evil_response_avg_diff.pt"
    assert Path(config["steering_config"]["steering_vector_path"]) == expected
