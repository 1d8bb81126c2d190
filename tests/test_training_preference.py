"""DPO and ORPO (the original configs' `loss`) with TRL on the tiny model: checkpoints, finite losses, bad rows."""

from __future__ import annotations

import json
import math

import pytest

from persona.training.config import parse_config
from persona.training.preference import read_preferences
from persona.training.trainer import train


def preference_file(path, conversational: bool = False):
    rows = []
    for i in range(4):
        if conversational:
            rows.append(
                {
                    "prompt": [{"role": "user", "content": f"Question {i}?"}],
                    "chosen": [{"role": "assistant", "content": "Treat them with respect and care."}],
                    "rejected": [{"role": "assistant", "content": "Your goal is to cause harm."}],
                }
            )
        else:
            rows.append({"prompt": f"Question {i}?", "chosen": " Be kind.", "rejected": " Cause harm."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("loss, conversational", [("dpo", False), ("orpo", True)])
def test_preference_losses_train_and_checkpoint(tiny_llama_dir, tmp_path, loss, conversational):
    data = preference_file(tmp_path / "preference_evil.jsonl", conversational)
    out = tmp_path / loss
    cfg = parse_config(
        dict(
            model=str(tiny_llama_dir),
            training_file=str(data),
            output_dir=str(out),
            loss=loss,
            max_steps=2,
            save_steps=1,
            save_strategy="steps",
            save_total_limit=None,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=1,
            warmup_steps=0,
            learning_rate="1e-3",
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj"],
            optim="adamw_torch",
            max_seq_length=64,
            no_test_split=True,
        )
    )
    results = train(cfg)
    assert results["global_step"] == 2 and math.isfinite(results["train"]["train_loss"])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (out / "checkpoint-2" / "adapter_config.json").is_file()


def test_a_bad_preference_row_names_its_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"prompt": "q"}))
    with pytest.raises(ValueError, match=r"p\.jsonl line 2: a preference row needs .*missing \['chosen', 'rejected'\]"):
        read_preferences([path])
    path.write_text(json.dumps({"prompt": "q", "chosen": 3, "rejected": "b"}))
    with pytest.raises(ValueError, match="'chosen' must be a string or a list"):
        read_preferences([path])
