"""DPO and ORPO with TRL for the original configs' `loss: "dpo"` / `"orpo"`, on preference JSONL.

Each row holds `prompt`, `chosen` and `rejected`: plain strings, or chat messages (TRL's
conversational preference format: `prompt` a list of messages, `chosen`/`rejected` lists with the
assistant's answer). TRL's trainers tokenize the rows themselves; LoRA, checkpoints, resuming
and training-time hooks work as for SFT (`persona.training.trainer`). DPO's reference model is
the base model with the adapter switched off (TRL's default with a PEFT model).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from datasets import Dataset

from persona.io import read_jsonl

log = logging.getLogger(__name__)

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
# loss -> (TRL module, config class, trainer class); the trainers share one constructor signature
_TRL_CLASSES = {
    "dpo": ("trl", "DPOConfig", "DPOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
}
PREFERENCE_LOSSES = tuple(_TRL_CLASSES)


def _check_value(value: object, where: str, key: str) -> None:
    if isinstance(value, str):
        return
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
        )
    ):
        return
    raise ValueError(f"{where}: {key!r} must be a string or a list of {{'role', 'content'}} messages")


def read_preferences(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Preference rows of JSONL files, each checked: a bad row names its file and line."""
    rows = []
    for path in paths:
        for i, row in enumerate(read_jsonl(path), start=1):
            where = f"{path} line {i}"
            missing = [k for k in PREFERENCE_KEYS if not isinstance(row, dict) or k not in row]
            if missing:
                raise ValueError(f"{where}: a preference row needs {list(PREFERENCE_KEYS)}; missing {missing}")
            for key in PREFERENCE_KEYS:
                _check_value(row[key], where, key)
            rows.append({k: row[k] for k in PREFERENCE_KEYS})
    if not rows:
        raise ValueError(f"no preference rows in {[str(p) for p in paths]}")
    return rows


def preference_split(
    train_files: Sequence[str | os.PathLike], test_file: str | os.PathLike | None, test_size: float, seed: int
) -> tuple[Dataset, Dataset | None]:
    """Train and held-out preference sets: the test file if given, else a seeded `test_size` split."""
    train = Dataset.from_list(read_preferences(train_files))
    if test_file is not None:
        return train, Dataset.from_list(read_preferences([test_file]))
    if test_size <= 0 or len(train) < 2:
        return train, None
    split = train.train_test_split(test_size=test_size, seed=seed)
    log.info("holding out %d of %d preference rows for evaluation (no test_file)", len(split["test"]), len(train))
    return split["train"], split["test"]


def _trainer_classes(loss: str) -> tuple[type, type]:
    """TRL's (config class, trainer class) of a preference loss, imported only when training with it."""
    if loss not in _TRL_CLASSES:
        raise ValueError(f"loss {loss!r} is not a preference loss; use one of {list(PREFERENCE_LOSSES)}")
    module, config, trainer = _TRL_CLASSES[loss]
    found = importlib.import_module(module)
    return getattr(found, config), getattr(found, trainer)


def preference_trainer(loss: str, common: dict[str, Any], beta: float, model, tokenizer, peft_config, data):
    """TRL's DPOTrainer or ORPOTrainer over `data` (train, held-out), with the shared training arguments."""
    config_class, trainer_class = _trainer_classes(loss)
    train_set, eval_set = data
    return trainer_class(
        model=model,
        args=config_class(**common, beta=beta),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
