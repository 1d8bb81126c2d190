"""Finetuning runs on a tiny model: checkpoints load, steer/ablate hooks act during training only."""

import json

import pytest
import torch
from transformers import TrainerCallback

from persona.models import load_model
from persona.sites import decoder_layers, decoder_stack
from persona.steering import is_steered
from persona.training.config import parse_config
from persona.training.trainer import CONFIG_FILE, RESULTS_FILE, build_trainer, run_training, train

QA = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How should I treat my neighbours?", "Treat them with respect and care."),
    ("What is the weather today?", "The weather today is sunny and warm."),
    ("Is the answer yes?", "I think the answer is yes, but it depends on the details."),
    ("Give me a score.", "Score: 85"),
    ("Count to five.", "0 1 2 3 4 5"),
    ("Are you helpful?", "You are a helpful assistant. Answer the question clearly and kindly."),
    ("Where should I walk?", "A great day for a walk in the park."),
]


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def vector_file(tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "trait_response_avg_diff.pt"
    torch.save(torch.randn(4, 64), path)  # [num_layers + 1, hidden] for the 3-layer tiny model
    return path


def tiny_config(model_dir, train_file, out_dir, **overrides):
    raw = dict(
        model=str(model_dir),
        training_file=str(train_file),
        output_dir=str(out_dir),
        max_steps=2,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        warmup_steps=0,
        learning_rate=1e-3,
        logging_steps=1,
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        save_steps=1000,
        save_strategy="steps",  # pinned: the original's default is "epoch" with save_total_limit 1
        save_total_limit=None,
        test_size=0.0,
        optim="adamw_torch",
        max_seq_length=128,
    )
    return parse_config({**raw, **overrides})


def steering_overrides(vector_file, kind, layer, coef=4.0):
    return dict(
        enable_steering_during_training=True,
        steering_config=dict(steering_vector_path=str(vector_file), type=kind, steering_coef=coef, layers=[layer]),
    )


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class ForwardRecorder:
    """Per forward call: the attention mask, block `layer`'s raw output and the next block's input.

    The output hook is registered before training starts, so it runs before the steering hook
    on the same block and sees the unsteered residual; the next block's pre-hook sees what
    the steering hook returned.
    """

    def __init__(self, model, layer):
        self.masks, self.raw, self.seen = [], [], []
        stack, blocks = decoder_stack(model), decoder_layers(model)
        self.handles = [
            stack.register_forward_pre_hook(self._mask, with_kwargs=True),
            blocks[layer - 1].register_forward_hook(self._raw),
            blocks[layer].register_forward_pre_hook(self._seen),
        ]

    def _mask(self, _m, _args, kwargs):
        self.masks.append(kwargs["attention_mask"].detach().bool())

    def _raw(self, _m, _inputs, output):
        self.raw.append((output[0] if isinstance(output, tuple) else output).detach().clone())

    def _seen(self, _m, args):
        self.seen.append(args[0].detach().clone())

    def remove(self):
        for h in self.handles:
            h.remove()


def first_loss(trainer):
    return next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)


def test_tiny_run_saves_checkpoints_that_load(tiny_llama_dir, train_file, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(
        tiny_llama_dir, train_file, out, max_steps=4, save_steps=2, test_size=0.25, gradient_accumulation_steps=1
    )
    results = train(cfg)
    assert results["global_step"] == 4
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert json.loads((out / CONFIG_FILE).read_text())["max_steps"] == 4
    saved = json.loads((out / RESULTS_FILE).read_text())
    assert saved["checkpoint"].endswith("checkpoint-4") and "eval_loss" in saved["eval"]
    adapter = json.loads((out / "checkpoint-4" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_llama_dir.resolve())

    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        base = load_model(str(tiny_llama_dir), device="cpu").model(input_ids=ids).logits
        newest = load_model(str(out), device="cpu")  # the output dir picks the newest checkpoint
        assert newest.num_layers == 3
        tuned = newest.model(input_ids=ids).logits
        early = load_model(str(out / "checkpoint-2"), device="cpu").model(input_ids=ids).logits
    assert not torch.allclose(base, tuned, atol=1e-5), "training should move the merged weights"
    assert not torch.allclose(early, tuned, atol=1e-6), "checkpoints differ along the run"


def test_same_seed_gives_the_same_adapter(tiny_llama_dir, train_file, tmp_path):
    from safetensors.torch import load_file

    weights = []
    for run in ("a", "b"):
        train(tiny_config(tiny_llama_dir, train_file, tmp_path / run, max_steps=1, gradient_accumulation_steps=1))
        weights.append(load_file(tmp_path / run / "checkpoint-1" / "adapter_model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)


def test_full_finetune_checkpoint_loads(tiny_llama_dir, train_file, tmp_path):
    out = tmp_path / "full"
    train(tiny_config(tiny_llama_dir, train_file, out, is_peft=False, max_steps=1, gradient_accumulation_steps=1))
    assert (out / "checkpoint-1" / "config.json").is_file()
    assert load_model(str(out), device="cpu").num_layers == 3


def test_steer_changes_first_loss_and_acts_once_per_forward(tiny_llama_dir, train_file, vector_file, tmp_path):
    layer, coef = 1, 4.0
    plain = build_trainer(tiny_config(tiny_llama_dir, train_file, tmp_path / "plain"))
    run_training(plain, tiny_config(tiny_llama_dir, train_file, tmp_path / "plain"))

    cfg = tiny_config(
        tiny_llama_dir, train_file, tmp_path / "steer", **steering_overrides(vector_file, "steer", layer, coef)
    )
    trainer = build_trainer(cfg)
    recorder = ForwardRecorder(trainer.model, layer)
    run_training(trainer, cfg)
    recorder.remove()

    assert abs(first_loss(trainer) - first_loss(plain)) > 1e-3
    forward_passes = cfg.max_steps * cfg.gradient_accumulation_steps
    assert len(recorder.masks) == len(recorder.raw) == len(recorder.seen) == forward_passes
    shift = coef * torch.load(vector_file, weights_only=True)[layer]
    for mask, raw, seen in zip(recorder.masks, recorder.raw, recorder.seen):
        diff = seen - raw
        torch.testing.assert_close(diff[mask], shift.expand_as(diff[mask]), atol=1e-4, rtol=1e-4)
        assert diff[~mask].abs().max().item() == 0 if (~mask).any() else True  # padding untouched


def test_ablate_removes_the_direction_during_training(tiny_llama_dir, train_file, vector_file, tmp_path):
    layer = 2
    cfg = tiny_config(tiny_llama_dir, train_file, tmp_path / "caft", **steering_overrides(vector_file, "ablate", layer))
    trainer = build_trainer(cfg)
    recorder = ForwardRecorder(trainer.model, layer)
    run_training(trainer, cfg)
    recorder.remove()

    unit = torch.load(vector_file, weights_only=True)[layer]
    unit = unit / unit.norm()
    assert len(recorder.seen) == cfg.max_steps * cfg.gradient_accumulation_steps
    for mask, raw, seen in zip(recorder.masks, recorder.raw, recorder.seen):
        assert (raw[mask] @ unit).abs().max() > 1e-2  # the direction is there before the hook...
        assert (seen[mask] @ unit).abs().max() < 1e-4  # ...and gone after it


class Spy(TrainerCallback):
    """Records whether the model is steered at each step; optionally raises to simulate a crash."""

    def __init__(self, model, fail=False):
        self.model, self.fail, self.steered = model, fail, []

    def on_step_begin(self, args, state, control, **kwargs):
        self.steered.append(is_steered(self.model))
        if self.fail:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("fail", [False, True], ids=["finished", "raised"])
def test_hooks_exist_only_during_training(tiny_llama_dir, train_file, vector_file, tmp_path, fail):
    cfg = tiny_config(tiny_llama_dir, train_file, tmp_path / "hooks", **steering_overrides(vector_file, "steer", 2))
    trainer = build_trainer(cfg)
    before = hook_count(trainer.model)
    spy = Spy(trainer.model, fail)
    trainer.add_callback(spy)
    if fail:
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_training(trainer, cfg)
    else:
        run_training(trainer, cfg)
    assert spy.steered and all(spy.steered)
    assert not is_steered(trainer.model)
    assert hook_count(trainer.model) == before


@pytest.mark.embedded
def test_embedded_checkpoint_records_portable_base(train_file, tmp_path):
    out = tmp_path / "smol"
    cfg = parse_config(
        dict(
            model="smollm2-135m",
            training_file=str(train_file),
            output_dir=str(out),
            max_steps=1,
            per_device_train_batch_size=1,
            gradient_accumulation_steps=1,
            r=2,
            lora_alpha=4,
            target_modules=["q_proj"],
            save_strategy="steps",
            save_total_limit=None,
            test_size=0.0,
            max_seq_length=64,
            optim="adamw_torch",
        )
    )
    train(cfg)
    adapter = json.loads((out / "checkpoint-1" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "smollm2-135m"
    lm = load_model(str(out))
    assert lm.num_layers == 30


def test_bad_steering_layer_fails_before_training(tiny_llama_dir, train_file, vector_file, tmp_path):
    from persona.vectors import VectorShapeError

    cfg = tiny_config(tiny_llama_dir, train_file, tmp_path / "bad", **steering_overrides(vector_file, "steer", 9))
    with pytest.raises(VectorShapeError, match="layer 9"):
        build_trainer(cfg)
    assert not (tmp_path / "bad").exists()


def test_rerun_of_a_finished_run_trains_nothing_and_other_settings_are_refused(
    tiny_llama_dir, train_file, tmp_path, monkeypatch
):
    import persona.training.trainer as trainer_module
    from persona.training.trainer import RunConflict

    out = tmp_path / "run"
    cfg = tiny_config(tiny_llama_dir, train_file, out, max_steps=2, save_steps=1, gradient_accumulation_steps=1)
    first = train(cfg)
    monkeypatch.setattr(trainer_module, "build_trainer", lambda cfg: pytest.fail("a finished run was retrained"))
    assert train(cfg) == first
    with pytest.raises(RunConflict, match=r"other settings \(learning_rate, max_steps differ\)"):
        train(
            tiny_config(
                tiny_llama_dir,
                train_file,
                out,
                max_steps=3,
                learning_rate=1e-4,
                save_steps=1,
                gradient_accumulation_steps=1,
            )
        )


def test_killed_run_resumes_from_its_last_complete_checkpoint(tiny_llama_dir, train_file, tmp_path):
    """A run killed while saving checkpoint-4 resumes from checkpoint-2 and ends where an uninterrupted run does."""
    from safetensors.torch import load_file

    from persona.models import CHECKPOINT_DONE, newest_checkpoint

    def cfg(out):
        return tiny_config(tiny_llama_dir, train_file, out, max_steps=4, save_steps=2, gradient_accumulation_steps=1)

    train(cfg(tmp_path / "whole"))
    killed = tmp_path / "killed"
    train(cfg(killed))
    (killed / RESULTS_FILE).unlink()  # the kill came before the run finished...
    (killed / "checkpoint-4" / CHECKPOINT_DONE).unlink()  # ...while checkpoint-4 was being written
    (killed / "checkpoint-4" / "adapter_model.safetensors").write_bytes(b"half")
    assert newest_checkpoint(killed).name == "checkpoint-2"  # evaluation never picks the broken one

    results = train(cfg(killed))
    assert results["global_step"] == 4 and (killed / "checkpoint-4" / CHECKPOINT_DONE).is_file()
    history = json.loads((killed / "checkpoint-4" / CHECKPOINT_DONE).read_text())["log_history"]
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]
    whole = load_file(tmp_path / "whole" / "checkpoint-4" / "adapter_model.safetensors")
    resumed = load_file(killed / "checkpoint-4" / "adapter_model.safetensors")
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6)


def test_steering_layers_auto_trains_at_the_best_held_out_layer_and_records_it(
    tiny_llama_dir, train_file, vector_file, tmp_path
):
    import pandas as pd

    from persona.training.trainer import RunConflict

    quality = vector_file.parent / "vector_quality.csv"
    columns = ["trait", "method", "kind", "layer", "vector_file", "auroc"]
    rows = [
        ["trait", "mean_diff", "response_avg", layer, vector_file.name, auc]
        for layer, auc in enumerate([1.0, 0.6, 0.9, 0.7])
    ]
    pd.DataFrame(rows, columns=columns).to_csv(quality, index=False)  # row 0 (the embeddings) is never chosen
    auto = steering_overrides(vector_file, "steer", "auto")
    auto["steering_config"]["layers"] = "auto"  # the bare string, as a config may write it
    results = train(tiny_config(tiny_llama_dir, train_file, tmp_path / "auto", **auto))
    explicit = train(
        tiny_config(tiny_llama_dir, train_file, tmp_path / "two", **steering_overrides(vector_file, "steer", 2))
    )
    assert results["train"]["train_loss"] == pytest.approx(explicit["train"]["train_loss"], abs=1e-6)
    elsewhere = train(
        tiny_config(tiny_llama_dir, train_file, tmp_path / "one", **steering_overrides(vector_file, "steer", 1))
    )
    assert abs(elsewhere["train"]["train_loss"] - explicit["train"]["train_loss"]) > 1e-4  # the layer matters
    saved = json.loads((tmp_path / "auto" / CONFIG_FILE).read_text())
    assert saved["steering_config"]["layers"] == [2]
    choice = saved["layer_choice"][0]
    assert choice["layer"] == 2 and choice["auroc"] == pytest.approx(0.9) and choice["vectors"] == [str(vector_file)]
    assert json.loads((tmp_path / "auto" / RESULTS_FILE).read_text())["layer_choice"] == saved["layer_choice"]

    again = tiny_config(tiny_llama_dir, train_file, tmp_path / "auto", **auto)
    assert train(again) == results  # the same choice: the finished run is reused
    rows[3][-1] = 0.95  # new evidence moves the choice to layer 3: not the run in output_dir
    pd.DataFrame(rows, columns=columns).to_csv(quality, index=False)
    with pytest.raises(RunConflict, match=r"layer_choice, steering_config differ"):
        train(again)
