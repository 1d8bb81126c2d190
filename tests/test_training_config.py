"""Training config schema: the original keys load, each bad input gets one line naming its key."""

import json
from pathlib import Path

import pytest
import torch

from persona.training.backend import BITSANDBYTES_OPTIMIZERS, FALLBACK_OPTIMIZER, resolve_optim
from persona.training.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_KEYS = {
    "model",
    "training_file",
    "test_file",
    "max_seq_length",
    "load_in_4bit",
    "loss",
    "is_peft",
    "target_modules",
    "lora_bias",
    "r",
    "lora_alpha",
    "lora_dropout",
    "use_rslora",
    "merge_before_push",
    "push_to_private",
    "epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "warmup_steps",
    "learning_rate",
    "logging_steps",
    "optim",
    "weight_decay",
    "lr_scheduler_type",
    "seed",
    "beta",
    "save_steps",
    "save_strategy",
    "save_total_limit",
    "output_dir",
    "train_on_responses_only",
    "enable_steering_during_training",
    "steering_config",
    "finetuned_model_id",
}


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    vec = tmp_path / "v.pt"
    vec.write_bytes(b"x")
    return data, vec


def full_config(data: Path, vec: Path) -> dict:
    """Every key of the original persona-vectors configs, with the original's values."""
    return {
        "model": "Qwen/Qwen3-4B-Instruct-2507",
        "training_file": str(data),
        "test_file": None,
        "finetuned_model_id": "me/qwen-evil",
        "max_seq_length": 2048,
        "load_in_4bit": False,
        "loss": "sft",
        "is_peft": True,
        "target_modules": ["q_proj", "v_proj"],
        "lora_bias": "none",
        "r": 32,
        "lora_alpha": 64,
        "lora_dropout": 0.0,
        "use_rslora": True,
        "merge_before_push": True,
        "push_to_private": True,
        "epochs": 1,
        "max_steps": None,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 8,
        "warmup_steps": 5,
        "learning_rate": 1e-05,
        "logging_steps": 1,
        "optim": "adamw_8bit",
        "weight_decay": 0.01,
        "lr_scheduler_type": "linear",
        "seed": 0,
        "beta": 0.1,
        "save_steps": 5000,
        "save_strategy": "steps",
        "save_total_limit": None,
        "output_dir": "./ckpt/x",
        "train_on_responses_only": True,
        "enable_steering_during_training": True,
        "steering_config": {"steering_vector_path": str(vec), "type": "steer", "steering_coef": 5.0, "layers": [20]},
    }


def test_every_original_key_is_accepted(files):
    raw = full_config(*files)
    assert set(raw) == ORIGINAL_KEYS
    cfg = parse_config(raw)
    assert cfg.training_file == [files[0]]  # a single file becomes a one-item list
    assert cfg.steering is not None and cfg.steering.layers == [20] and cfg.steering.steering_coef == 5.0


def test_training_file_list_and_string_learning_rate(files):
    data, vec = files
    cfg = parse_config({**full_config(data, vec), "training_file": [str(data), str(data)], "learning_rate": "1e-5"})
    assert cfg.training_file == [data, data]
    assert cfg.learning_rate == 1e-5


# The original study's schema (validate.py TrainingConfig), for the keys whose defaults once differed here.
ORIGINAL_DEFAULTS = {
    "r": 16,
    "lora_alpha": 16,
    "learning_rate": 1e-4,
    "seed": 3407,
    "save_strategy": "epoch",
    "save_total_limit": 1,
    "output_dir": "./tmp",
    "epochs": 1,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 8,
    "warmup_steps": 5,
    "save_steps": 5000,
    "max_seq_length": 2048,
    "optim": "adamw_8bit",
    "lora_dropout": 0.0,
    "use_rslora": True,
    "beta": 0.1,
}


def test_omitted_keys_default_as_the_original(files):
    cfg = parse_config({"model": "m", "training_file": str(files[0])})
    assert {key: getattr(cfg, key) for key in ORIGINAL_DEFAULTS} == ORIGINAL_DEFAULTS


@pytest.mark.parametrize(
    "given, expected",
    [("1e-5", 1e-5), ("5e-5 / 2", 2.5e-5), ("10 ** -5", 1e-5), ("(1 + 1) * 1e-4", 2e-4), (-5, 1e-5), ("-4", 1e-4)],
)
def test_the_original_learning_rate_forms(files, given, expected):
    # the original eval()s strings and reads a negative rate as 10 ** rate; arithmetic is read without eval
    assert parse_config({**full_config(*files), "learning_rate": given}).learning_rate == pytest.approx(expected)


def test_steering_disabled_ignores_its_config(files):
    cfg = parse_config({**full_config(*files), "enable_steering_during_training": False})
    assert cfg.steering is None


@pytest.mark.parametrize(
    "change, key, fragment",
    [
        ({"lerning_rate": 1e-5}, "lerning_rate", "did you mean 'learning_rate'"),
        ({"learning_rate": "__import__('os').getcwd()"}, "learning_rate", "must be a number"),
        ({"learning_rate": 0}, "learning_rate", "greater than 0"),
        ({"training_file": "missing.jsonl"}, "training_file[0]", "does not exist"),
        ({"test_file": "nope.jsonl"}, "test_file", "does not exist"),
        ({"loss": "kto"}, "loss", "'sft', 'dpo' or 'orpo'"),
        ({"optim": "adamw8bit"}, "optim", "did you mean adamw_8bit"),
        ({"lr_scheduler_type": "cosin"}, "lr_scheduler_type", "did you mean cosine"),
        ({"lora_bias": "some"}, "lora_bias", "'none', 'all' or 'lora_only'"),
        ({"r": 0}, "r", "greater than 0"),
        ({"epochs": "two"}, "epochs", "valid integer"),
        ({"lora_dropout": 1.5}, "lora_dropout", "less than 1"),
        ({"save_strategy": "sometimes"}, "save_strategy", "'steps', 'epoch' or 'no'"),
        ({"steering_config": None}, "enable_steering_during_training", "steering_config is missing"),
    ],
)
def test_each_bad_value_is_one_line_naming_its_key(files, change, key, fragment):
    raw = {**full_config(*files), **change}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "cfg.json")
    problems = str(err.value).splitlines()[1:]
    assert len(problems) == 1, str(err.value)
    assert problems[0].strip().startswith(f"{key}:") or problems[0].strip().startswith(key), problems
    assert fragment in problems[0]


@pytest.mark.parametrize(
    "change, key",
    [
        ({"type": "boost"}, "steering_config.type"),
        ({"layers": []}, "steering_config.layers"),
        ({"layers": [-1]}, "steering_config.layers[0]"),
        ({"steering_vector_path": "no.pt"}, "steering_config.steering_vector_path"),
        ({"steering_coeff": 2.0}, "steering_config.steering_coeff"),
    ],
)
def test_steering_config_errors_name_the_nested_key(files, change, key):
    raw = full_config(*files)
    raw["steering_config"] = {**raw["steering_config"], **change}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 1 and lines[0].strip().startswith(f"{key}:"), str(err.value)


def test_several_problems_are_all_listed(files):
    raw = {**full_config(*files), "r": -2, "optim": "nope"}
    del raw["model"]
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    text = str(err.value)
    assert "r:" in text and "optim:" in text and "model: required key is missing" in text


def test_load_config_reports_json_errors_with_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"model": "x",\n "r": }')
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON \(line 2"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.json")


@pytest.mark.parametrize("name", ["train_instruct.json", "train_instruct_steer.json", "train_demo.json"])
def test_shipped_configs_use_known_keys_only(name):
    """The research configs name files that exist only after data generation; their keys must still be valid."""
    from persona.training.config import TrainingConfig

    raw = json.loads((REPO / "configs" / name).read_text())
    assert set(raw) <= set(TrainingConfig.model_fields)
    if name == "train_demo.json":
        cfg = parse_config(raw)  # the demo must validate from a clean checkout
        assert cfg.model == "smollm2-135m" and cfg.max_steps is not None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without CUDA")
def test_bitsandbytes_optimizers_fall_back_on_cpu(caplog):
    from transformers.trainer_optimizer import _BITSANDBYTES_OPTIMIZERS

    assert BITSANDBYTES_OPTIMIZERS == {o.value for o in _BITSANDBYTES_OPTIMIZERS}
    with caplog.at_level("WARNING"):
        assert resolve_optim("adamw_8bit") == FALLBACK_OPTIMIZER
    assert "adamw_8bit" in caplog.text and FALLBACK_OPTIMIZER in caplog.text
    assert resolve_optim("adamw_torch") == "adamw_torch"


def test_no_test_split_trains_on_every_row(files, tmp_path):
    from persona.training.data import train_eval_split

    data, vec = files
    rows = [
        json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]})
        for i in range(20)
    ]
    data.write_text("\n".join(rows) + "\n")
    default = parse_config(full_config(data, vec))
    train, held_out = train_eval_split(default.training_file, default.test_file, default.test_size, default.seed)
    assert (len(train), len(held_out)) == (18, 2)  # without the key: a 10% split
    cfg = parse_config({**full_config(data, vec), "no_test_split": True})
    assert cfg.no_test_split and cfg.test_size == 0.0
    train, held_out = train_eval_split(cfg.training_file, cfg.test_file, cfg.test_size, cfg.seed)
    assert [c[0]["content"] for c in train] == [f"q{i}" for i in range(20)] and held_out == []
    with pytest.raises(ConfigError, match="no_test_split is true but test_file is set"):
        parse_config({**full_config(data, vec), "no_test_split": True, "test_file": str(data)})


def test_steering_layers_take_auto_alone_or_in_the_list(files):
    raw = full_config(*files)
    for layers, expected in (("auto", ["auto"]), ([20, "Auto"], [20, "auto"]), (["7"], [7])):
        raw["steering_config"] = {**raw["steering_config"], "layers": layers}
        cfg = parse_config(raw)
        assert cfg.steering is not None and cfg.steering.layers == expected
    raw["steering_config"]["layers"] = ["best"]
    with pytest.raises(ConfigError, match=r"steering_config.layers\[0\]: must be a layer index >= 0 or 'auto'"):
        parse_config(raw)
