"""Project activations onto persona vectors and add the results as columns of an eval file.

Projection types (activation kind in brackets): `proj` (response_avg), `prompt_last_proj`
(prompt_last), `prompt_avg_proj` (prompt_avg) give the scalar projection `a·v/|v|`;
`cos_sim` (response_avg) gives the cosine of the angle between `a` and `v`. With a base
model the activation is `a_model - a_base` per sample: the finetuning shift along `v`.

Columns are named as the original study names them, `{model folder name}_{vector file stem}_{type}_layer{L}`
(+ `_finetuning_shift`): a checkpoint's own folder name (`checkpoint-250_evil_response_avg_diff_proj_layer20`),
the last part of a Hub id, so the original analysis code finds them.
"""

from __future__ import annotations

import gc
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from persona.activations import capture
from persona.fingerprint import check_finished, code_version, model_ref, tensor_sha256, texts_sha256
from persona.generation import chat_prompts
from persona.io import read_jsonl, read_table, write_csv, write_json, write_jsonl
from persona.locks import output_lock
from persona.models import load_model
from persona.preflight import check_output_path
from persona.sites import vector_at_layer
from persona.vectors import load_vector

log = logging.getLogger(__name__)

PROJECTION_TYPES = {
    "proj": "response_avg",
    "prompt_last_proj": "prompt_last",
    "prompt_avg_proj": "prompt_avg",
    "cos_sim": "response_avg",
}
SHIFT_SUFFIX = "_finetuning_shift"


def project(acts: Tensor, vector: Tensor, projection_type: str) -> Tensor:
    """`a·v/|v|` (or cosine for `cos_sim`) of each row of `acts` `[n, hidden]`; NaN rows stay NaN."""
    if projection_type not in PROJECTION_TYPES:
        raise ValueError(f"unknown projection type {projection_type!r}; use one of {list(PROJECTION_TYPES)}")
    vector = vector.to(acts.dtype)
    norm = vector.norm()
    if norm == 0:
        raise ValueError("cannot project onto a zero vector (is that layer's row all zeros?)")
    if projection_type == "cos_sim":
        return F.cosine_similarity(acts, vector.expand_as(acts), dim=-1)
    return acts @ vector / norm


def column_name(
    model_name: str,
    vector_path: str | Path,
    projection_type: str,
    layer: int,
    shift: bool = False,
    prefix: str | None = None,
) -> str:
    """`{model folder name}_{vector_file_stem}_{type}_layer{L}`, plus `_finetuning_shift` for a shift.

    The prefix is the model's last path part, as the original code's `os.path.basename(model_name)`:
    a checkpoint gives `checkpoint-250_...`, `Qwen/Qwen3-4B` gives `Qwen3-4B_...`. `prefix`
    replaces it: the base model evaluated as step 0 of a run is labelled `checkpoint-0`.
    """
    label = prefix or Path(str(model_name).rstrip("/")).name
    name = f"{label}_{Path(vector_path).stem}_{projection_type}_layer{layer}"
    return name + SHIFT_SUFFIX if shift else name


@dataclass(frozen=True)
class Column:
    """One output column: a vector file, a layer and a projection type."""

    name: str
    vector_path: str
    layer: int
    projection_type: str


class EvalFile:
    """An eval CSV (kept as text cells, so nothing but new columns changes) or chat JSONL."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist")
        self.is_jsonl = self.path.suffix.lower() == ".jsonl"
        if self.is_jsonl:
            self.records = read_jsonl(self.path)
            if any("messages" not in r for r in self.records):
                raise ValueError(f"{self.path}: every JSONL line needs a 'messages' list")
        else:
            self.table = read_table(self.path, ("prompt", "answer"), text=True)

    @property
    def columns(self) -> list[str]:
        if self.is_jsonl:
            return list(dict.fromkeys(k for r in self.records for k in r))
        return list(self.table.columns)

    def __len__(self) -> int:
        return len(self.records) if self.is_jsonl else len(self.table)

    def prompts_and_answers(self, tokenizer) -> tuple[list[str | None], list[str | None]]:
        """CSV: the stored (already chat-templated) prompt; JSONL: all but the last message, templated."""
        if not self.is_jsonl:
            return list(self.table["prompt"]), list(self.table["answer"])
        prompts, answers = [], []
        for r in self.records:
            messages = r["messages"]
            if messages and messages[-1].get("role") == "assistant":
                context, answer = messages[:-1], messages[-1].get("content")
            else:  # nothing to score: no assistant turn at the end
                context, answer = messages, None
            prompts.append(chat_prompts(tokenizer, [context])[0] if context else None)
            answers.append(answer)
        return prompts, answers

    def rows_sha256(self) -> str:
        """Digest of what is projected (prompts and answers, or messages), not of the added columns."""
        if self.is_jsonl:
            return texts_sha256(json.dumps(r["messages"], ensure_ascii=False, sort_keys=True) for r in self.records)
        return texts_sha256([*self.table["prompt"], *self.table["answer"]])

    def drop_columns(self, names: Sequence[str]) -> None:
        """Remove columns (in memory; `save` writes the file)."""
        if self.is_jsonl:
            for r in self.records:
                for name in names:
                    r.pop(name, None)
        else:
            self.table = self.table.drop(columns=list(names))

    def set_column(self, name: str, values: Sequence[float]) -> None:
        if self.is_jsonl:
            for r, v in zip(self.records, values):
                r[name] = None if math.isnan(v) else v  # JSON has no NaN
        else:
            self.table[name] = list(values)

    def save(self) -> None:
        if self.is_jsonl:
            write_jsonl(self.path, self.records)
        else:
            write_csv(self.path, self.table)


def records_path(file_path: str | Path) -> Path:
    """`<file>.projections.json`: the settings each projection column was computed with."""
    return Path(f"{file_path}.projections.json")


def _read_records(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        log.warning("ignoring unreadable %s: its columns count as made before records", path)
        return {}


def plan_columns(
    model_name: str,
    vector_paths: Sequence[str],
    layers: Sequence[int],
    projection_types: Sequence[str],
    *,
    shift: bool,
    prefix: str | None = None,
) -> list[Column]:
    """Every (vector, layer, type) column, in that nesting order."""
    bad = [t for t in projection_types if t not in PROJECTION_TYPES]
    if bad:
        raise ValueError(f"unknown projection type(s) {bad}; use {list(PROJECTION_TYPES)}")
    if not (vector_paths and layers and projection_types):
        raise ValueError("give at least one vector path, one layer and one projection type")
    columns = [
        Column(column_name(model_name, v, t, layer, shift, prefix), v, layer, t)
        for v in dict.fromkeys(vector_paths)
        for layer in dict.fromkeys(layers)
        for t in dict.fromkeys(projection_types)
    ]
    names: dict[str, str] = {}
    for c in columns:
        if names.setdefault(c.name, c.vector_path) != c.vector_path:
            raise ValueError(
                f"{names[c.name]} and {c.vector_path} would both write column {c.name}: "
                "rename one vector file (columns use the file name without its folder)"
            )
    return columns


def _free_memory() -> None:
    """Return a dropped model's accelerator memory before the next one loads."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def add_projection_columns(
    file_path: str | Path,
    vector_paths: Sequence[str],
    layers: Sequence[int],
    projection_types: Sequence[str] = ("proj",),
    *,
    model_name: str,
    base_model: str | None = None,
    overwrite: bool = False,
    batch_size: int = 16,
    device: str | None = None,
    dtype: str | None = None,
    column_prefix: str | None = None,
) -> list[str]:
    """Add projection columns to an eval CSV/JSONL in place (atomically); return the columns written.

    Existing columns are kept unless `overwrite` (recomputed ones move to the end). All vectors
    and layers come from one pass of each model over the data. Rows without an answer get NaN for
    response-based types. `column_prefix` replaces the model's name in the column names; a
    base model equal to the model (step 0 of a run) gives a zero shift without a second pass. The
    file is locked meanwhile (`persona.locks`): a second process adding columns to it is refused
    instead of one silently losing the other's columns.
    """
    if not Path(file_path).is_file():
        raise FileNotFoundError(f"{file_path} does not exist")
    check_output_path(file_path)
    with output_lock(file_path):
        data = EvalFile(file_path)  # read once locked: another writer's columns are all in it
        args = (vector_paths, layers, projection_types, model_name, base_model, overwrite, batch_size, device, dtype)
        return _add_columns(data, *args, column_prefix=column_prefix)


def _add_columns(
    data: EvalFile,
    vector_paths: Sequence[str],
    layers: Sequence[int],
    projection_types: Sequence[str],
    model_name: str,
    base_model: str | None,
    overwrite: bool,
    batch_size: int,
    device: str | None,
    dtype: str | None,
    *,
    column_prefix: str | None,
) -> list[str]:
    """`add_projection_columns` under the file's lock."""
    vectors = {p: load_vector(p) for p in dict.fromkeys(vector_paths)}
    columns = plan_columns(
        model_name, list(vectors), layers, projection_types, shift=base_model is not None, prefix=column_prefix
    )
    common = {
        "model": model_ref(model_name),
        "base_model": model_ref(base_model),
        "rows_sha256": data.rows_sha256(),
        "code_version": code_version(),
    }
    settings = {
        c.name: {
            **common,
            "vector_sha256": tensor_sha256(vectors[c.vector_path]),
            "layer": c.layer,
            "projection_type": c.projection_type,
        }
        for c in columns
    }
    records = _read_records(records_path(data.path))
    todo = [c for c in columns if overwrite or not _column_done(data, c.name, records.get(c.name), settings[c.name])]
    for c in columns:
        if c not in todo:
            log.info("column %s exists; skipping (pass `overwrite` to recompute)", c.name)
    if not todo:
        return []
    needed = sorted({c.layer for c in todo})

    lm = load_model(model_name, device=device, dtype=dtype)
    shape = (lm.num_layers, lm.hidden_size)
    rows = {
        (c.vector_path, c.layer): vector_at_layer(
            vectors[c.vector_path], c.layer, num_layers=shape[0], hidden_size=shape[1], source=c.vector_path
        )
        for c in todo
    }  # shape errors surface before the long pass
    prompts, answers = data.prompts_and_answers(lm.tokenizer)
    acts = capture(lm, prompts, answers, layers=needed, batch_size=batch_size)
    if base_model is not None and base_model == model_name:
        base = acts
    elif base_model is not None:
        del lm
        _free_memory()
        lm = load_model(base_model, device=device, dtype=dtype)
        if (lm.num_layers, lm.hidden_size) != shape:
            raise ValueError(
                f"`base_model` {base_model} has {lm.num_layers} layers x {lm.hidden_size} hidden but "
                f"{model_name} has {shape[0]} x {shape[1]}: a finetuning shift needs the same "
                "architecture"
            )
        base = capture(lm, prompts, answers, layers=needed, batch_size=batch_size)

    values: dict[str, list[float]] = {}
    for c in todo:
        kind = PROJECTION_TYPES[c.projection_type]
        a = acts.at_layer(kind, c.layer)
        if base_model is not None:
            a = a - base.at_layer(kind, c.layer)
        values[c.name] = project(a, rows[c.vector_path, c.layer], c.projection_type).tolist()
    _save_columns(data, records, values, settings)
    return list(values)


def _save_columns(
    data: EvalFile, records: dict[str, Any], values: dict[str, list[float]], settings: dict[str, Any]
) -> None:
    """Write new columns so that a kill at any point leaves each one absent or with its own record.

    Three atomic writes: (1) only when recomputing existing columns, the file without them (their
    old records then name absent columns, which a rerun computes); (2) the records, with those of
    the new columns and without those of columns the file lacks; (3) the file with the new
    columns, appended at the end. No column is ever visible without its record (it would be kept
    as made before records existed) or beside a record of other settings.
    """
    stale = [name for name in values if name in data.columns]
    if stale:
        data.drop_columns(stale)
        data.save()
    present = set(data.columns)
    kept = {name: record for name, record in records.items() if name in present}
    write_json(records_path(data.path), kept | {name: settings[name] for name in values})
    for name, column in values.items():
        data.set_column(name, column)
    data.save()


def _column_done(data: EvalFile, name: str, record: dict[str, Any] | None, settings: dict[str, Any]) -> bool:
    """Whether an existing column is kept: True when made with `settings` or before records existed.

    A column the file lacks is computed, whatever its record says (a run killed before writing it).
    Raises `SettingsMismatch` (what differs) when its record shows other settings.
    """
    if name not in data.columns:
        return False
    return record is None or check_finished(f"column {name} of {data.path}", record, settings)
