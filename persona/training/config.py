"""The training config schema: every key of the original persona-vectors configs, validated.

A config is a JSON file read by `python training.py configs/X.json`. Unknown keys, missing
files and bad values are reported together, one line per key, each naming the key and
what to write instead. Omitted keys default as in the original study's schema (r 16, lora_alpha 16,
learning_rate 1e-4, seed 3407, save_strategy epoch, save_total_limit 1, output_dir ./tmp). The
original's learning-rate forms are read without evaluating code: a number, a string holding
arithmetic on numbers ("1e-5", "5e-5 / 2", "10 ** -5"), and a negative value meaning 10 ** value.
Every number must be finite (JSON's NaN and Infinity are refused, naming the key).
"""

from __future__ import annotations

import ast
import difflib
import json
import operator
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    NonNegativeFloat,
    NonNegativeInt,
    PlainValidator,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames

from persona.errors import InputError

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class ConfigError(InputError):
    """A training config is invalid; the message lists every bad key with its fix."""


_LAYER_INDEX: TypeAdapter[int] = TypeAdapter(NonNegativeInt)


def _steering_layer(value: Any) -> int | str:
    """A layer index >= 0 (as the other int keys read it), or "auto": the vector's best held-out layer."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return _LAYER_INDEX.validate_python(value)
    except ValidationError:
        raise ValueError(f"must be a layer index >= 0 or 'auto', got {value!r}") from None


SteeringLayer = Annotated[int | str, PlainValidator(_steering_layer)]


class SteeringConfig(BaseModel):
    """Hooks active during training only: `steer` adds coef*v (preventative steering), `ablate` removes v (CAFT)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON NaN/Infinity: an all-NaN adapter

    steering_vector_path: FilePath
    type: Literal["steer", "ablate"] = "steer"
    steering_coef: float = 1.0
    layers: list[SteeringLayer] = Field(min_length=1)

    @field_validator("layers", mode="before")
    @classmethod
    def _auto_alone(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class TrainingConfig(BaseModel):
    """One finetuning run: LoRA (or full) SFT on chat JSONL with optional training-time hooks."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # JSON NaN/Infinity: an all-NaN adapter

    model: str = Field(min_length=1)
    training_file: list[FilePath] = Field(min_length=1)
    test_file: FilePath | None = None
    test_size: float = Field(0.1, ge=0.0, lt=1.0)  # held-out fraction when there is no test_file (ours)
    no_test_split: bool = False  # train on every row; no held-out set (the original configs' key)
    finetuned_model_id: str | None = None
    max_seq_length: PositiveInt = 2048
    load_in_4bit: bool = False
    loss: Literal["sft", "dpo", "orpo"] = "sft"
    is_peft: bool = True
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES), min_length=1)
    lora_bias: Literal["none", "all", "lora_only"] = "none"
    r: PositiveInt = 16
    lora_alpha: PositiveInt = 16
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    use_rslora: bool = True
    merge_before_push: bool = True
    push_to_private: bool = True
    epochs: PositiveInt = 1
    max_steps: PositiveInt | None = None
    per_device_train_batch_size: PositiveInt = 2
    gradient_accumulation_steps: PositiveInt = 8
    warmup_steps: NonNegativeInt = 5
    learning_rate: float = Field(1e-4, gt=0.0, allow_inf_nan=False)
    logging_steps: PositiveInt = 1
    optim: str = "adamw_8bit"
    weight_decay: NonNegativeFloat = 0.01
    lr_scheduler_type: str = "linear"
    seed: int = 3407
    beta: float = Field(0.1, gt=0.0)
    save_steps: PositiveInt = 5000
    save_strategy: Literal["steps", "epoch", "no"] = "epoch"
    save_total_limit: PositiveInt | None = 1
    output_dir: str = Field("./tmp", min_length=1)
    train_on_responses_only: bool = True
    enable_steering_during_training: bool = False
    steering_config: SteeringConfig | None = None

    @field_validator("training_file", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, os.PathLike)) else value

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _parse_number(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = arithmetic(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            return 10.0**value  # the original's log10 form: -5 means 1e-5
        return value

    @field_validator("optim")
    @classmethod
    def _known_optim(cls, value: str) -> str:
        return _one_of(value, [o.value for o in OptimizerNames])

    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        return _one_of(value, [s.value for s in SchedulerType])

    @model_validator(mode="after")
    def _steering_needs_config(self) -> TrainingConfig:
        if self.enable_steering_during_training and self.steering_config is None:
            raise ValueError(
                "enable_steering_during_training is true but steering_config is missing: add "
                '{"steering_vector_path": ..., "type": "steer"|"ablate", "steering_coef": ..., '
                '"layers": [...]} or set it to false'
            )
        return self

    @model_validator(mode="after")
    def _no_test_split(self) -> TrainingConfig:
        """`no_test_split` means no held-out set at all: no split, and a test_file would contradict it."""
        if self.no_test_split:
            if self.test_file is not None:
                raise ValueError("no_test_split is true but test_file is set: remove one of them")
            self.test_size = 0.0
        return self

    @property
    def steering(self) -> SteeringConfig | None:
        """The steering config when steering is enabled, else None."""
        return self.steering_config if self.enable_steering_during_training else None


_OPERATORS: dict[type[ast.AST], Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def arithmetic(text: str) -> float:
    """The value of `text`, numbers joined by + - * / ** and parentheses; anything else is refused.

    The original configs' string learning rates ("1e-5", "5e-5/2") were passed to eval(); this
    reads the same strings without running code.
    """

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError

    try:
        return value(ast.parse(text.strip(), mode="eval").body)
    except (ValueError, SyntaxError, ZeroDivisionError, OverflowError, RecursionError):
        raise ValueError(f"must be a number like 1e-5 or arithmetic like 5e-5 / 2, got {text!r}") from None


def _one_of(value: str, allowed: list[str]) -> str:
    if value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f"; choose from {', '.join(allowed)}"
        raise ValueError(f"unknown value {value!r}{hint}")
    return value


def _describe(error: ErrorDetails, known: list[str]) -> str:
    """One line per pydantic error: the key path, then what is wrong and how to fix it."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    kind, got = error["type"], error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if not where or kind == "value_error":  # our own messages already name the value and the fix
        return f"{where}: {message}" if where else message
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "remove it"
        return f"{where}: unknown key ({hint})"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "path_not_file":
        return f"{where}: file {got!r} does not exist (paths are relative to {Path.cwd()})"
    return f"{where}: {message} (got {got!r})"


def parse_config(data: Any, source: str = "<config>") -> TrainingConfig:
    """Validate a config dict; a `ConfigError` lists every problem, one per line."""
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as err:
        known = list(TrainingConfig.model_fields) + list(SteeringConfig.model_fields)
        lines = [_describe(e, known) for e in err.errors()]
        raise ConfigError(f"{source}: invalid training config:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | os.PathLike) -> TrainingConfig:
    """Read and validate a JSON training config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    return parse_config(data, str(path))
