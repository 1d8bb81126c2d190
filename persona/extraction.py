"""Persona vector extraction: filter paired pos/neg evaluations, then one direction per layer and kind.

Rows of the pos and neg CSVs pair up by position (eval_persona writes them in the same
question/instruction/sample order). A pair is kept when the pos answer shows the trait
(score >= threshold), the neg answer does not (score < 100 - threshold) and both are
coherent (coherence >= 50). For each kind (prompt_avg, response_avg, prompt_last) an
extraction method (`persona.extraction_methods`; by default `mean_diff`: the mean
activation over kept pos rows minus that over kept neg rows) gives the vector at every
layer 0..num_layers. `extract_and_save` is the whole recipe, resumable.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from persona.activations import Activations, Reduce, capture
from persona.checks import require_answer_text
from persona.errors import InputError
from persona.extraction_methods import DEFAULT_METHOD, get_method
from persona.fingerprint import check_finished, code_version, file_sha256, model_ref, tensor_sha256
from persona.io import read_table
from persona.judge.sidecar import read_sidecar
from persona.models import LoadedModel
from persona.traits import base_trait
from persona.vectors import VECTOR_KINDS, PersonaVector, load_vector, metadata_filename, vector_filename

MIN_COHERENCE = 50


class NoEffectiveSamples(InputError):
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
    lm: LoadedModel,
    pairs: EffectivePairs,
    *,
    trait: str | None = None,
    batch_size: int = 16,
    method: str = DEFAULT_METHOD,
    options: dict[str, Any] | None = None,
) -> dict[str, PersonaVector]:
    """`{kind: vector}` by `method`, each a float32 `[num_layers + 1, hidden]` `PersonaVector` of `lm`.

    A means-only method (mean_diff) gets each side's running mean as one row, so no per-sample
    activations are kept; the others get per-sample rows, minus pairs where either side has
    no tokens of that kind.
    """
    extractor = get_method(method)
    options = extractor.options(options)
    reduce: Reduce = "mean" if extractor.means_only else "none"
    acts = [
        capture(lm, list(df["prompt"]), list(df["answer"]), batch_size=batch_size, reduce=reduce)
        for df in (pairs.pos, pairs.neg)
    ]
    return {
        kind: PersonaVector(
            extractor(*_method_inputs(acts, kind, extractor.means_only), options),
            model=lm.name,
            trait=trait or pairs.column,
            kind=kind,
            judge=pairs.column,
        )
        for kind in VECTOR_KINDS
    }


def _method_inputs(acts: list[Activations], kind: str, means_only: bool) -> tuple[Any, Any]:
    """pos and neg `[n, L+1, hidden]` for one kind: means as one row, or the pairs both sides have."""
    pos, neg = acts[0][kind], acts[1][kind]
    if means_only:
        return pos[None], neg[None]
    whole = ~(pos.isnan().flatten(1).any(1) | neg.isnan().flatten(1).any(1))
    return pos[whole], neg[whole]


def extraction_settings(
    pos_path: str | os.PathLike,
    neg_path: str | os.PathLike,
    trait: str,
    threshold: float,
    model: str,
    method: str = DEFAULT_METHOD,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What determines the vectors: the inputs' contents, the filter, the method with its options, the model."""
    return {
        "pos_sha256": file_sha256(pos_path),
        "neg_sha256": file_sha256(neg_path),
        "trait": trait,
        "threshold": float(threshold),
        "min_coherence": MIN_COHERENCE,
        "method": method,
        "method_options": get_method(method).options(options),
        "model": model_ref(model),
        "code_version": code_version(),
    }


def vectors_done(save_dir: str | os.PathLike, trait: str, settings: dict[str, Any]) -> bool:
    """True when every vector file of `trait` is there, whole, and was made with `settings`.

    Raises `SettingsMismatch` (what differs) when complete vectors were made with other settings.
    """
    save_dir = Path(save_dir)
    method = settings.get("method", DEFAULT_METHOD)
    meta_file = save_dir / metadata_filename(trait, method)
    if not meta_file.is_file():
        return False
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    digests = meta.get("vector_sha256") or {}
    for kind in VECTOR_KINDS:  # a run killed while saving leaves older files or none: not done
        path = save_dir / vector_filename(trait, kind, method)
        if kind not in digests or not path.is_file() or tensor_sha256(load_vector(path)) != digests[kind]:
            return False
    saved = meta.get("settings")
    if saved is not None:  # records from before extraction methods existed are all mean_diff's
        saved = {"method": DEFAULT_METHOD, "method_options": {}, **saved}
    which = "" if method == DEFAULT_METHOD else f" {method}"
    return check_finished(f"the {trait}{which} vectors in {save_dir}", saved, settings)


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
    method: str = DEFAULT_METHOD,
    options: dict[str, Any] | None = None,
) -> list[Path]:
    """Write `vector_filename(trait, kind, method)` for each kind plus the method's metadata file, atomically.

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
        "method": method,
        "method_options": get_method(method).options(options),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if settings is not None:
        meta.update(settings=settings, vector_sha256={kind: tensor_sha256(v.tensor) for kind, v in vectors.items()})
    judge = {name: read_sidecar(path) for name, path in sources.items()}
    paths = [save_dir / vector_filename(trait, kind, method) for kind in vectors]
    meta_file = None
    for path, (kind, vector) in zip(paths, vectors.items(), strict=True):
        meta_file = replace(vector, model=lm.name, trait=trait, kind=kind, judge=judge, meta=meta).save(path)
    return [*paths, meta_file] if meta_file else paths


@dataclass
class Extraction:
    """What `extract_and_save` did: the kept pairs, and the files written (none when `skipped`)."""

    pairs: EffectivePairs
    skipped: bool
    paths: list[Path] = field(default_factory=list)


def extract_and_save(
    pos_path: str | os.PathLike,
    neg_path: str | os.PathLike,
    trait: str,
    save_dir: str | os.PathLike,
    *,
    model: str,
    load: Callable[[], LoadedModel],
    threshold: float = 50,
    method: str = DEFAULT_METHOD,
    options: dict[str, Any] | None = None,
    batch_size: int = 16,
    overwrite: bool = False,
) -> Extraction:
    """Filter the pairs, then extract and save `trait`'s vectors unless a complete set with these settings exists.

    `model` is the model spec recorded in the settings; `load` is called only when vectors
    are computed. Raises `NoEffectiveSamples` when no pair passes the filter and
    `SettingsMismatch` when vectors made with other settings exist (unless `overwrite`).
    """
    pairs = read_pairs(pos_path, neg_path, trait, threshold)
    settings = extraction_settings(pos_path, neg_path, trait, threshold, model, method, options)
    if not overwrite and vectors_done(save_dir, trait, settings):
        return Extraction(pairs, skipped=True)
    lm = load()
    vectors = persona_vectors(lm, pairs, trait=trait, batch_size=batch_size, method=method, options=options)
    paths = save_persona_vectors(
        save_dir,
        trait,
        vectors,
        lm=lm,
        pairs=pairs,
        threshold=threshold,
        sources={"pos": str(pos_path), "neg": str(neg_path)},
        settings=settings,
        method=method,
        options=options,
    )
    return Extraction(pairs, skipped=False, paths=paths)
