"""`layer="auto"`: steer or project at the layer where a vector best separates held-out pos from neg answers.

The choice reads `vector_quality.csv` beside the vector (computing it first when the vector
has no rows there) and takes the layer with the highest held-out AUROC; for several vectors
sharing one layer, the highest mean AUROC. Row 0 (the embedding output, before any block) is
never chosen: it is measured in the table, but steering there only rewrites the token
embeddings, and a `prompt_*` vector's row 0 separates pos from neg trivially (the system
prompts differ in their tokens), so it would win for the wrong reason. Every choice is logged and returned as a record
for the caller's settings record. The original default layer (20) stays the default: "auto"
is only ever asked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from persona.models import LoadedModel
from persona.vector_quality import QUALITY_FILE, heldout_paths, method_of, vector_quality
from persona.vectors import PersonaVector, parse_vector_filename

log = logging.getLogger(__name__)

AUTO = "auto"
FIRST_BLOCK = 1  # row 0 is the embeddings: never a choice
RULE = "highest held-out AUROC (vector_quality.csv), layers >= 1"


@dataclass(frozen=True)
class LayerChoice:
    """Which layer "auto" became, for which vectors, and the evidence."""

    layer: int
    vectors: tuple[str, ...]
    auroc: float
    quality_csv: str
    rule: str = RULE

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "vectors": list(self.vectors)}


def quality_rows(
    vector_path: str | os.PathLike,
    *,
    load: Callable[[], LoadedModel] | None = None,
    heldout: tuple[str | os.PathLike, str | os.PathLike] | None = None,
) -> tuple[pd.DataFrame, Path]:
    """The rows of `vector_quality.csv` for this vector file, computed and saved first when there are none."""
    path = Path(vector_path)
    csv = path.parent / QUALITY_FILE
    table = pd.read_csv(csv) if csv.is_file() else None
    if table is not None and (rows := table[table["vector_file"] == path.name]).size:
        return rows, csv
    parts, method = parse_vector_filename(path), method_of(path)
    if parts is None or method is None:
        raise ValueError(
            f"layer 'auto' needs a {{trait}}_{{kind}}_{{suffix}}.pt vector of a registered method, not {path.name}"
        )
    pos, neg = heldout or default_heldout(path, parts["trait"])
    missing = [str(p) for p in (pos, neg) if not Path(p).is_file()]
    if missing or load is None:
        raise FileNotFoundError(
            f"layer 'auto' for {path.name}: {csv} has no rows for it and "
            + (f"the held-out answers {missing} do not exist" if missing else "no model was given to compute them")
            + "; run eval.vector_quality first (held-out answers: eval_persona --version eval, pos and neg)"
        )
    log.info("no held-out quality for %s yet: computing %s", path.name, csv)
    table = vector_quality(parts["trait"], path.parent, pos, neg, load=load, methods=[method], output=csv)
    return table[table["vector_file"] == path.name], csv


def default_heldout(path: Path, trait: str) -> tuple[Path, Path]:
    """`{trait}_{pos,neg}_eval.csv` beside the extraction CSVs the vector's metadata names (else beside the vector)."""
    source = (PersonaVector.load(path).meta.get("sources") or {}).get("pos")
    return heldout_paths(Path(source).parent if source else path.parent, trait)


def ranked_layers(auroc_by_layer: pd.Series) -> list[int]:
    """The layers >= 1 of a layer-indexed AUROC series, best first (ties: the lower layer); row 0 never."""
    kept = auroc_by_layer[auroc_by_layer.index >= FIRST_BLOCK].dropna()
    return [int(layer) for layer in sorted(kept.index, key=lambda layer: (-kept[layer], layer))]


def choose_layer(
    vector_paths: Sequence[str | os.PathLike],
    *,
    load: Callable[[], LoadedModel] | None = None,
    heldout: tuple[str | os.PathLike, str | os.PathLike] | None = None,
) -> LayerChoice:
    """The one layer >= 1 with the highest (mean) held-out AUROC over `vector_paths` (ties: the lowest layer)."""
    if not vector_paths:
        raise ValueError("layer 'auto' needs a vector to choose the layer for")
    tables = [quality_rows(p, load=load, heldout=heldout) for p in vector_paths]
    by_layer = pd.concat([rows.groupby("layer")["auroc"].mean() for rows, _ in tables], axis=1).dropna()
    mean = by_layer.mean(axis=1)
    ranked = ranked_layers(mean)
    if not ranked:
        raise ValueError(
            f"the vectors {[str(p) for p in vector_paths]} have no layer >= {FIRST_BLOCK} measured in common "
            "(row 0, the embeddings, is never chosen): measure more layers with eval.vector_quality"
        )
    layer = ranked[0]
    choice = LayerChoice(layer, tuple(str(p) for p in vector_paths), float(mean[layer]), str(tables[0][1]))
    log.info("layer auto -> %d (held-out AUROC %.3f) for %s", layer, choice.auroc, ", ".join(choice.vectors))
    return choice


def resolve_layer(
    layer: int | str,
    vector_paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    load: Callable[[], LoadedModel] | None = None,
    heldout: tuple[str | os.PathLike, str | os.PathLike] | None = None,
) -> tuple[int, LayerChoice | None]:
    """`(layer, None)` for a given layer; for "auto", the chosen layer and its record."""
    if str(layer).strip().lower() != AUTO:
        return int(layer), None
    paths = [vector_paths] if isinstance(vector_paths, str | os.PathLike) else list(vector_paths)
    choice = choose_layer(paths, load=load, heldout=heldout)
    return choice.layer, choice


def resolve_layer_list(
    layers: Sequence[str] | None,
    vector_paths: Sequence[str],
    *,
    load: Callable[[], LoadedModel] | None = None,
    pair: bool = True,
) -> tuple[list[str] | None, list[dict[str, Any]]]:
    """A layer list with each "auto" replaced, plus the choice records (empty when nothing was "auto").

    With `pair` (layers pair up with vectors, as in eval_persona) the i-th "auto" takes the
    i-th vector, or a lone "auto" one layer per vector; without it (every vector at every
    layer, as in cal_projection) "auto" becomes each vector's own best layer.
    """
    if not layers or all(str(v).strip().lower() != AUTO for v in layers):
        return (list(layers) if layers else None), []
    if pair and len(layers) == 1 and len(vector_paths) > 1:
        layers = list(layers) * len(vector_paths)
    out: list[str] = []
    records = []
    for i, value in enumerate(layers):
        if str(value).strip().lower() != AUTO:
            out.append(str(value))
            continue
        targets = [vector_paths[i if len(vector_paths) > 1 else 0]] if pair else list(vector_paths)
        for path in targets:
            choice = choose_layer([path], load=load)
            out.append(str(choice.layer))
            records.append(choice.record())
    return list(dict.fromkeys(out)) if not pair else out, records
