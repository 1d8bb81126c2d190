"""Persona vector extraction: filter paired pos/neg evaluations, then mean(pos) - mean(neg) per layer.

Rows of the pos and neg CSVs pair up by position (eval_persona writes them in the same
question/instruction/sample order). A pair is kept when the pos answer shows the trait
(score >= threshold), the neg answer does not (score < 100 - threshold) and both are
coherent (coherence >= 50). For each kind (prompt_avg, response_avg, prompt_last) the
vector is the mean activation over kept pos rows minus that over kept neg rows, at every
layer 0..num_layers.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from persona.activations import capture
from persona.checks import require_answer_text
from persona.fingerprint import check_finished, code_version, file_sha256, model_ref, tensor_sha256
from persona.io import read_table
from persona.judge.sidecar import read_sidecar
from persona.models import LoadedModel
from persona.traits import base_trait
from persona.vectors import VECTOR_KINDS, PersonaVector, load_vector

MIN_COHERENCE = 50


class NoEffectiveSamples(ValueError):
    """No pos/neg pair passed the filter; the message gives the count for each condition."""


@dataclass
class EffectivePairs:
    """The kept pos and neg rows (aligned), the judge column used and per-condition counts."""

    pos: pd.DataFrame
    neg: pd.DataFrame
    column: str
    total: int
    condition_counts: dict[str, int]

    @property
    def kept(self) -> int:
        return len(self.pos)


def judge_column(trait: str, columns: list[str]) -> str:
    """The score column of `trait`: its base trait (`anxious_2` -> `anxious`), else the name itself."""
    for name in dict.fromkeys((base_trait(trait), trait)):
        if name in columns:
            return name
    raise ValueError(f"no score column for trait {trait!r}: expected {base_trait(trait)!r} among {columns}")


def effective_pairs(pos: pd.DataFrame, neg: pd.DataFrame, trait: str, threshold: float = 50) -> EffectivePairs:
    """The pairs where pos shows the trait, neg does not and both answers are coherent."""
    if len(pos) != len(neg):
        raise ValueError(
            f"pos has {len(pos)} rows but neg has {len(neg)}: rows pair up by position, so both "
            "must come from eval_persona runs with the same questions and --n_per_question"
        )
    column = judge_column(trait, list(pos.columns))
    if column not in neg.columns:
        raise ValueError(f"the neg file has no {column!r} column (the pos file does): {list(neg.columns)}")

    def score(df: pd.DataFrame, name: str) -> np.ndarray:  # unscored rows (NaN, text) never pass
        return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)

    conditions = {
        f"pos {column} >= {threshold:g}": score(pos, column) >= threshold,
        f"neg {column} < {100 - threshold:g}": score(neg, column) < 100 - threshold,
        f"pos coherence >= {MIN_COHERENCE}": score(pos, "coherence") >= MIN_COHERENCE,
        f"neg coherence >= {MIN_COHERENCE}": score(neg, "coherence") >= MIN_COHERENCE,
    }
    keep = np.logical_and.reduce(list(conditions.values()))
    counts = {name: int(mask.sum()) for name, mask in conditions.items()}
    if not keep.any():
        detail = "; ".join(f"{name}: {n}/{len(pos)}" for name, n in counts.items())
        raise NoEffectiveSamples(
            f"no pos/neg pair passes the filter for {trait!r} ({detail}). "
            f"Lower --threshold (now {threshold:g}) or check the judge scores."
        )
    return EffectivePairs(pos[keep].reset_index(drop=True), neg[keep].reset_index(drop=True), column, len(pos), counts)


def read_pairs(
    pos_path: str | os.PathLike, neg_path: str | os.PathLike, trait: str, threshold: float = 50
) -> EffectivePairs:
    """Read two eval_persona CSVs and filter them (`effective_pairs`)."""
    required = ("prompt", "answer", "coherence")
    pairs = effective_pairs(read_table(pos_path, required), read_table(neg_path, required), trait, threshold)
    require_answer_text({str(pos_path): list(pairs.pos["answer"]), str(neg_path): list(pairs.neg["answer"])}, trait)
    return pairs


def persona_vectors(
    lm: LoadedModel, pairs: EffectivePairs, *, trait: str | None = None, batch_size: int = 16
) -> dict[str, PersonaVector]:
    """`{kind: mean(pos) - mean(neg)}`, each a float32 `[num_layers + 1, hidden]` `PersonaVector` of `lm`."""
    means = [
        capture(lm, list(df["prompt"]), list(df["answer"]), batch_size=batch_size, reduce="mean")
        for df in (pairs.pos, pairs.neg)
    ]
    return {
        kind: PersonaVector(
            means[0][kind] - means[1][kind], model=lm.name, trait=trait or pairs.column, kind=kind, judge=pairs.column
        )
        for kind in VECTOR_KINDS
    }


def vector_filename(trait: str, kind: str) -> str:
    return f"{trait}_{kind}_diff.pt"


def extraction_settings(
    pos_path: str | os.PathLike, neg_path: str | os.PathLike, trait: str, threshold: float, model: str
) -> dict[str, Any]:
    """What determines the vectors: the inputs' contents, the filter and the model (see persona.fingerprint)."""
    return {
        "pos_sha256": file_sha256(pos_path),
        "neg_sha256": file_sha256(neg_path),
        "trait": trait,
        "threshold": float(threshold),
        "min_coherence": MIN_COHERENCE,
        "model": model_ref(model),
        "code_version": code_version(),
    }


def vectors_done(save_dir: str | os.PathLike, trait: str, settings: dict[str, Any]) -> bool:
    """True when every vector file of `trait` is there, whole, and was made with `settings`.

    Raises `SettingsMismatch` (what differs) when complete vectors were made with other settings.
    """
    save_dir = Path(save_dir)
    meta_file = save_dir / f"{trait}_vectors.json"
    if not meta_file.is_file():
        return False
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    digests = meta.get("vector_sha256") or {}
    for kind in VECTOR_KINDS:  # a run killed while saving leaves older files or none: not done
        path = save_dir / vector_filename(trait, kind)
        if kind not in digests or not path.is_file() or tensor_sha256(load_vector(path)) != digests[kind]:
            return False
    return check_finished(f"the {trait} vectors in {save_dir}", meta.get("settings"), settings)


def save_persona_vectors(
    save_dir: str | os.PathLike,
    trait: str,
    vectors: dict[str, PersonaVector],
    *,
    lm: LoadedModel,
    pairs: EffectivePairs,
    threshold: float,
    sources: dict[str, str],
    settings: dict[str, Any] | None = None,
) -> list[Path]:
    """Write `<trait>_<kind>_diff.pt` for each kind plus `<trait>_vectors.json` metadata, atomically.

    The metadata names the judge that scored the inputs: the `<csv>.judge.json` sidecar of
    each source (None for a file scored before sidecars existed). With `settings` it also
    records them and every vector's digest, from the first file on, so `vectors_done` can
    tell a complete set from one a killed run left half replaced.
    """
    save_dir = Path(save_dir)
    meta = {
        "judge_column": pairs.column,
        "threshold": threshold,
        "min_coherence": MIN_COHERENCE,
        "n_pairs_kept": pairs.kept,
        "n_pairs_total": pairs.total,
        "condition_counts": pairs.condition_counts,
        "sources": sources,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if settings is not None:
        meta.update(settings=settings, vector_sha256={kind: tensor_sha256(v.tensor) for kind, v in vectors.items()})
    judge = {name: read_sidecar(path) for name, path in sources.items()}
    paths = [save_dir / vector_filename(trait, kind) for kind in vectors]
    meta_file = None
    for path, (kind, vector) in zip(paths, vectors.items(), strict=True):
        meta_file = replace(vector, model=lm.name, trait=trait, kind=kind, judge=judge, meta=meta).save(path)
    return [*paths, meta_file] if meta_file else paths
