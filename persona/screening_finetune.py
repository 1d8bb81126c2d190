"""Finetune on screened datasets and measure what the projection difference is meant to predict.

For each chosen `(trait, level)` dataset of the prediction check: a short LoRA run through
the library's training function (`persona.training.trainer.train`, what `training.py` runs,
from a `configs/train_demo.json`-style template), then the finetuned model's answers to the
trait's eval questions through `persona.evaluation.run_evaluation` (their mean judged score is
the post-finetune `trait_score`), and the finetuning shift along the trait's vector: the
mean projection of (finetuned - base) response-average activations on those answers, the
quantity `eval.cal_projection --base_model` adds (`persona.projection.add_projection_columns`).

The proxy judge scores each finetuned model's answers with the base model (`likelihood:<model>`),
not with the finetuned model itself, so every run is scored by the same judge. Every step
resumes: a finished identical training run is not redone, a finished evaluation is read back,
a projection column already there is kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from persona.analysis.stats import mean_interval
from persona.answers import Job
from persona.cells import Cell
from persona.evaluation import EvalSpec
from persona.io import read_table
from persona.judge.factory import LIKELIHOOD, resolve_spec

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = Path("configs/train_demo.json")
EFFECT_COLUMNS = (
    "trait",
    "level",
    "finetuning_shift",
    "finetuning_shift_ci_low",
    "finetuning_shift_ci_high",
    "trait_score",
    "n_answers",
    "steps",
    "run_dir",
)


@dataclass(frozen=True)
class FinetuneSettings:
    """How each screened dataset is finetuned and measured.

    `eval` decides the post-finetune evaluation (questions, answer length, judge, backend; its
    `trait` and `model` are replaced per run); `steps` LoRA steps from `template` (its other
    keys kept).
    """

    eval: EvalSpec
    steps: int = 4
    template: Path = DEFAULT_TEMPLATE

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"`finetune_steps` must be at least 1, got {self.steps}")
        if not Path(self.template).is_file():
            raise FileNotFoundError(f"training template {self.template} does not exist (e.g. configs/train_demo.json)")


def training_config(settings: FinetuneSettings, model: str, data: str | Path, run_dir: str | Path) -> dict:
    """The template with this run's model, data, folder and step count; no training-time hooks."""
    base = json.loads(Path(settings.template).read_text(encoding="utf-8"))
    return {
        **base,
        "model": model,
        "training_file": str(data),
        "test_file": None,
        "output_dir": str(run_dir),
        "max_steps": settings.steps,
        "save_steps": settings.steps,
        "enable_steering_during_training": False,
        "steering_config": None,
    }


def eval_spec(spec: EvalSpec, trait: str, run_dir: str | Path, base_model: str) -> EvalSpec:
    """`spec` for `trait` on the finetuned `run_dir`; a plain proxy judge becomes `likelihood:<base_model>`."""
    judge = spec.judge
    if resolve_spec(judge.judge_model, judge.judge_base_url) == LIKELIHOOD:
        judge = replace(judge, judge_model=f"{LIKELIHOOD}:{base_model}")
    return replace(spec, model=str(run_dir), trait=trait, judge=judge, judge_spec=None, judged_by={})


def finetune_one(
    output_dir: Path, trait: str, level: str, data: Path, vector: Path, layer: int, model: str, s: FinetuneSettings
) -> dict:
    """Train, evaluate and project one dataset; one `EFFECT_COLUMNS` row."""
    from persona.evaluation import run_evaluation
    from persona.projection import add_projection_columns, column_name
    from persona.training.config import parse_config
    from persona.training.trainer import train

    run_dir = output_dir / f"{trait}_{level}"
    cfg = parse_config(training_config(s, model, data, run_dir), f"finetune {trait}/{level}")
    log.info("finetuning %s on %s for %d steps", model, data, s.steps)
    train(cfg)
    answers = output_dir / f"{trait}_{level}_eval.csv"
    run_evaluation(eval_spec(s.eval, trait, run_dir, model), [Job(Cell("unsteered"), answers)])
    add_projection_columns(
        answers,
        [str(vector)],
        [layer],
        ("proj",),
        model_name=str(run_dir),
        base_model=model,
        batch_size=s.eval.batch_size,
        device=s.eval.device,
        dtype=s.eval.dtype,
    )
    table = read_table(answers)
    shift_column = column_name(str(run_dir), str(vector), "proj", layer, shift=True)
    shift = pd.to_numeric(table[shift_column], errors="coerce")
    judge_column = replace(s.eval, trait=trait).load_traits()[0].judge_column
    score = pd.to_numeric(table[judge_column], errors="coerce")
    return {
        "trait": trait,
        "level": level,
        **mean_interval(table, shift_column).columns("finetuning_shift"),
        "trait_score": float(score.mean()),
        "n_answers": int(shift.notna().sum()),
        "steps": s.steps,
        "run_dir": str(run_dir),
    }


def finetune_effects(
    output_dir: str | Path,
    runs: Sequence[tuple[str, str]],
    data: Mapping[tuple[str, str], Path],
    vectors: Mapping[str, Path],
    layer: int,
    *,
    model: str,
    settings: FinetuneSettings,
) -> pd.DataFrame:
    """The measured effect of finetuning on each `(trait, level)` in `runs` (see the module docstring).

    `data` maps each run to its chat JSONL file, `vectors` each trait to its vector file; runs land in
    `output_dir/<trait>_<level>/` with their answers beside them.
    """
    missing = sorted({t for t, _ in runs if t not in vectors})
    if missing:
        raise FileNotFoundError(
            f"no vector for finetuned trait(s) {missing}: extract them or drop them from `finetune`"
        )
    unknown = [f"{t}:{lv}" for t, lv in runs if (t, lv) not in data]
    if unknown:
        raise ValueError(f"`finetune` names {unknown}, which are not screened datasets")
    output_dir = Path(output_dir)
    rows = [
        finetune_one(output_dir, t, lv, data[t, lv], vectors[t], layer, model, settings)
        for t, lv in tqdm(runs, desc="finetuning screened datasets")
    ]
    return pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
