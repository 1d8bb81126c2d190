"""LoRA (or full) SFT with TRL's `SFTTrainer` (DPO/ORPO: `persona.training.preference`), optional
training-time hooks, checkpoints on disk.

`build_trainer` loads the model and data and sets everything up; `run_training` trains
inside the hooks (removed afterwards, also on error), evaluates the held-out set and
writes `training_results.json`. Every `save_steps` (and at the end) a `checkpoint-N`
folder with the adapter and tokenizer appears under `output_dir`; `persona.models.load_model`
loads it (or the output dir, which picks the newest checkpoint) with the adapter merged.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from transformers import Trainer
from trl import SFTConfig, SFTTrainer

from persona.defaults import EMBEDDED_MODEL
from persona.errors import InputError
from persona.io import write_json
from persona.locks import output_lock
from persona.models import CHECKPOINT_DONE, checkpoints, embedded_model_dir, load_model, newest_checkpoint
from persona.preflight import check_output_path
from persona.training.backend import resolve_optim, unsloth_wanted
from persona.training.config import TrainingConfig
from persona.training.data import tokenized_dataset, train_eval_split
from persona.training.guard import FiniteGuard
from persona.training.hooks import check_training_hooks, resolve_auto_layers, training_hooks
from persona.training.preference import PREFERENCE_LOSSES, preference_split, preference_trainer

log = logging.getLogger(__name__)

CONFIG_FILE = "training_config.json"
RESULTS_FILE = "training_results.json"


def base_model_id(spec: str) -> str:
    """What the adapter records as its base: the spec itself, or an absolute path for local dirs.

    `load_model` resolves it again later, so the embedded model stays `smollm2-135m`
    instead of a cache path that exists on this machine only.
    """
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def lora_config(cfg: TrainingConfig) -> LoraConfig:
    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        bias=cfg.lora_bias,
        target_modules=list(cfg.target_modules),
        use_rslora=cfg.use_rslora,
        task_type="CAUSAL_LM",
    )


def _load_unsloth(cfg: TrainingConfig):
    from unsloth import FastLanguageModel

    name = str(embedded_model_dir()) if cfg.model == EMBEDDED_MODEL else cfg.model
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=name, max_seq_length=cfg.max_seq_length, load_in_4bit=cfg.load_in_4bit, dtype=None
    )
    model.name_or_path = base_model_id(cfg.model)
    if cfg.is_peft:
        model = FastLanguageModel.get_peft_model(
            model,
            r=cfg.r,
            target_modules=list(cfg.target_modules),
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            bias=cfg.lora_bias,
            use_gradient_checkpointing="unsloth",
            random_state=cfg.seed,
            use_rslora=cfg.use_rslora,
            loftq_config=None,
        )
    return model, tokenizer, None


def _load_transformers(cfg: TrainingConfig):
    if cfg.load_in_4bit:
        log.warning("load_in_4bit needs Unsloth on CUDA; loading %s unquantized instead", cfg.model)
    lm = load_model(cfg.model)  # CUDA + bf16 when available, else CPU + fp32
    lm.model.name_or_path = base_model_id(cfg.model)
    lm.tokenizer.padding_side = "right"
    return lm.model, lm.tokenizer, lora_config(cfg) if cfg.is_peft else None


def training_arguments(cfg: TrainingConfig) -> dict[str, Any]:
    """The arguments every trainer's config shares (SFT, DPO and ORPO)."""
    cuda = torch.cuda.is_available()
    return dict(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_steps,
        learning_rate=cfg.learning_rate,
        logging_steps=cfg.logging_steps,
        optim=resolve_optim(cfg.optim),
        weight_decay=cfg.weight_decay,
        lr_scheduler_type=cfg.lr_scheduler_type,
        seed=cfg.seed,
        save_strategy=cfg.save_strategy,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        max_length=cfg.max_seq_length,
        eval_strategy="no",
        report_to="none",
        logging_nan_inf_filter=False,  # log a NaN loss as NaN (FiniteGuard stops the run), not as the mean so far
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=False,
        # Recomputing blocks in backward re-runs forward hooks; only worth it for big models on GPU
        # (Unsloth brings its own).
        activation_checkpointing=cuda and not unsloth_wanted(),
    )


def sft_config(cfg: TrainingConfig) -> SFTConfig:
    return SFTConfig(**training_arguments(cfg))


def build_trainer(cfg: TrainingConfig) -> Trainer:
    """Model, tokenizer, train/held-out sets and the configured trainer (`SFTTrainer`, or DPO/ORPO)."""
    model, tokenizer, peft_config = _load_unsloth(cfg) if unsloth_wanted() else _load_transformers(cfg)
    check_training_hooks(model, cfg.steering)
    if cfg.loss in PREFERENCE_LOSSES:
        data = preference_split(cfg.training_file, cfg.test_file, cfg.test_size, cfg.seed)
        log.info("training %s with %s on %d preference rows", cfg.model, cfg.loss, len(data[0]))
        return preference_trainer(cfg.loss, training_arguments(cfg), cfg.beta, model, tokenizer, peft_config, data)
    train_rows, eval_rows = train_eval_split(cfg.training_file, cfg.test_file, cfg.test_size, cfg.seed)
    train_set = tokenized_dataset(tokenizer, train_rows, cfg.train_on_responses_only)
    eval_set = tokenized_dataset(tokenizer, eval_rows, cfg.train_on_responses_only) if eval_rows else None
    log.info(
        "training %s on %d conversations (%d held out); loss on %s",
        cfg.model,
        len(train_rows),
        len(eval_rows),
        "assistant tokens only" if cfg.train_on_responses_only else "all tokens",
    )
    return SFTTrainer(
        model=model,
        args=sft_config(cfg),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[FiniteGuard(cfg.output_dir)],
    )


class RunConflict(InputError):
    """`output_dir` holds a run made with other settings."""


def config_record(cfg: TrainingConfig, layer_choice: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """What `training_config.json` holds: the config as run (steering layers resolved), plus how "auto" was resolved."""
    record = cfg.model_dump(mode="json")
    return {**record, "layer_choice": list(layer_choice)} if layer_choice else record


def finished_results(cfg: TrainingConfig, layer_choice: Sequence[dict[str, Any]] = ()) -> dict[str, Any] | None:
    """The results of a finished run of exactly this config in `output_dir`, else None.

    A run of another config there is refused (naming the keys that differ), so checkpoints of
    two settings never mix; an "auto" layer that now resolves differently counts as a difference.
    """
    out = Path(cfg.output_dir)
    saved_config = out / CONFIG_FILE
    if not saved_config.is_file():
        return None
    saved = json.loads(saved_config.read_text(encoding="utf-8"))
    current = config_record(cfg, layer_choice)
    differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differ:
        raise RunConflict(
            f"output_dir {out} holds a run with other settings ({', '.join(differ)} differ); "
            "use another output_dir, or delete this one to retrain"
        )
    results = out / RESULTS_FILE
    return json.loads(results.read_text(encoding="utf-8")) if results.is_file() else None


def resume_point(out: Path) -> Path | None:
    """The newest complete checkpoint to resume from; half-written newer ones (a killed save) are removed."""
    if not out.is_dir():
        return None
    found = checkpoints(out)
    complete = [(n, p) for n, p, done in found if done]
    newest = complete[-1][0] if complete else -1
    for n, path, done in found:
        if not done and n > newest:
            log.warning("removing %s: a save that did not finish (no whole %s)", path, CHECKPOINT_DONE)
            shutil.rmtree(path)
    return complete[-1][1] if complete else None


def run_training(trainer: Trainer, cfg: TrainingConfig, layer_choice: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Train (hooks active only meanwhile), evaluate the held-out set, write the results file.

    An interrupted run of the same config resumes from its newest complete checkpoint.
    `layer_choice` (from `resolve_auto_layers`) is recorded in the config and results files.
    """
    out = Path(cfg.output_dir)
    write_json(out / CONFIG_FILE, config_record(cfg, layer_choice))
    resume = resume_point(out)
    if resume is not None:
        log.info("resuming from %s", resume)
    assert trainer.model is not None  # the trainers always hold the model they were built with
    with training_hooks(trainer.model, cfg.steering):
        train_output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    results: dict[str, Any] = {"train": train_output.metrics, "global_step": trainer.state.global_step}
    if trainer.eval_dataset is not None:
        results["eval"] = trainer.evaluate()
    checkpoint = newest_checkpoint(out) if out.is_dir() else None
    results["checkpoint"] = str(checkpoint) if checkpoint else None
    if layer_choice:
        results["layer_choice"] = list(layer_choice)
    write_json(out / RESULTS_FILE, results)
    if cfg.finetuned_model_id:
        log.info(
            "finetuned_model_id %r is recorded only: this toolkit does not push to the Hub", cfg.finetuned_model_id
        )
    return results


def train(cfg: TrainingConfig) -> dict[str, Any]:
    """Run one finetuning job end to end (a finished identical run is not redone); see `run_training`.

    `output_dir` is checked before the model loads and locked while training (`<output_dir>.lock`),
    so a second run into it is refused instead of mixing checkpoints. Steering `layers` "auto"
    becomes the vector's best held-out layer first (`resolve_auto_layers`), recorded in both files.
    """
    check_output_path(cfg.output_dir, folder=True)
    cfg, layer_choice = resolve_auto_layers(cfg, load=lambda: load_model(cfg.model))
    done = finished_results(cfg, layer_choice)
    if done is not None:
        log.info("%s already holds the finished run of this config; not retraining", cfg.output_dir)
        return done
    with output_lock(cfg.output_dir):
        return run_training(build_trainer(cfg), cfg, layer_choice)
