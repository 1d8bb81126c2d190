"""Find and read the pipeline's result files into the tidy frames the figures draw.

File names follow the output layout (DESIGN.md): steering sweep cells named like
`persona.evaluation.sweep_filename`, `{trait}_baseline.csv`, vector files
`{trait}_{kind}_diff.pt` (+ `{trait}_vectors.json`), and checkpoint evaluations
`checkpoint-{N}_{judge_trait}.csv` with projection columns named by
`persona.projection.column_name`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from persona.analysis.geometry import check_same_shape
from persona.analysis.stats import mean_interval, score_interval
from persona.io import read_table
from persona.judge.sidecar import read_sidecar
from persona.projection import PROJECTION_TYPES, SHIFT_SUFFIX, column_name
from persona.steering import POSITIONS
from persona.traits import base_trait
from persona.vectors import PersonaVector

log = logging.getLogger(__name__)


def warn_missing(what: str, missing: Sequence[str]) -> None:
    """One warning listing the grid cells without a result file (figures draw them as gaps)."""
    if missing:
        log.warning("%d missing %s drawn as gaps: %s", len(missing), what, ", ".join(missing))


SWEEP_PATTERN = "{trait}_steer_{type}_layer_{L}_coef_{c}.csv"
CHECKPOINT_PATTERN = "checkpoint-{N}_{judge_trait}.csv"
_SWEEP = re.compile(
    rf"(?P<trait>.+)_steer_(?P<type>{'|'.join(POSITIONS)})_layer_(?P<layer>\d+)"
    r"_coef_(?P<coef>[^_]+)\.csv"
)
_CHECKPOINT = re.compile(r"checkpoint-(?P<step>\d+)_(?P<judge>[^.]+)\.csv")  # not `.answers.csv` in progress
_CHECKPOINT_MODEL = re.compile(r"^(?:.*_)?checkpoint-\d+_")
_MODEL_LABEL = "MODEL"


def no_files_error(folder: Path, pattern: str) -> FileNotFoundError:
    """The one-line error of a folder without result files: it names both the folder and the pattern."""
    if not folder.is_dir():
        return FileNotFoundError(f"{folder}: folder does not exist (expected files named {pattern})")
    return FileNotFoundError(f"{folder}: no files matching {pattern}")


def parse_sweep_name(name: str) -> tuple[str, str, int, float] | None:
    """(trait, steering type, layer, coef) of a sweep cell file name; None for other files.

    Inverts `sweep_filename`, and also reads the original study's shell-written names (`coef_2`).
    """
    match = _SWEEP.fullmatch(name)
    if not match:
        return None
    try:
        coef = float(match["coef"])
    except ValueError:
        return None
    return match["trait"], match["type"], int(match["layer"]), coef


def score_means(df: pd.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    """Mean of each score column over the scored rows (unscored cells are skipped, as in the summaries)."""
    return {c: float(pd.to_numeric(df[c], errors="coerce").mean()) for c in columns}


def score_intervals(df: pd.DataFrame, column: str, *, ci: float = 0.95) -> dict[str, float]:
    """`score`, `coherence` with their question-clustered `_ci_low`/`_ci_high`, and `n_questions`, of one cell."""
    score = score_interval(df, column, ci=ci)
    return {
        **score.columns("score"),
        **score_interval(df, "coherence", ci=ci).columns("coherence"),
        "n_questions": score.n_questions,
    }


SWEEP_SCORE_COLUMNS = [
    "score",
    "score_ci_low",
    "score_ci_high",
    "coherence",
    "coherence_ci_low",
    "coherence_ci_high",
    "n_questions",
    "n",
]


def load_steering_sweep(
    folder: str | Path, steering_type: str | None = None, *, ci: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean scores, with question-clustered intervals, of every sweep cell and of every baseline in `folder`.

    Returns (cells: trait, steering_type, layer, coef, SWEEP_SCORE_COLUMNS, judge) and
    (baselines: trait, SWEEP_SCORE_COLUMNS); `score` is the trait's judge column and `judge`
    the judge named in the cell's sidecar (None for files scored before sidecars existed).
    """
    folder = Path(folder)
    rows = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        parsed = parse_sweep_name(path.name)
        if parsed is None or (steering_type and parsed[1] != steering_type):
            continue
        trait, kind, layer, coef = parsed
        df = read_table(path, required=(base_trait(trait), "coherence", "question_id"))
        rows.append(
            {
                "trait": trait,
                "steering_type": kind,
                "layer": layer,
                "coef": coef,
                **score_intervals(df, base_trait(trait), ci=ci),
                "n": len(df),
                "judge": (read_sidecar(path) or {}).get("judge"),
            }
        )
    if not rows:
        raise no_files_error(folder, SWEEP_PATTERN.replace("{type}", steering_type or "{type}"))
    cells = pd.DataFrame(rows).sort_values(["trait", "steering_type", "coef", "layer"], ignore_index=True)
    baselines = []
    for trait in cells["trait"].unique():
        path = folder / f"{trait}_baseline.csv"
        if path.is_file():
            df = read_table(path, required=(base_trait(trait), "coherence", "question_id"))
            baselines.append({"trait": trait, **score_intervals(df, base_trait(trait), ci=ci), "n": len(df)})
    return cells, pd.DataFrame(baselines, columns=["trait", *SWEEP_SCORE_COLUMNS])


def vector_files(
    folder: str | Path, vector_type: str = "response_avg_diff", traits: Sequence[str] | None = None
) -> dict[str, Path]:
    """The `{trait}_{vector_type}.pt` files of `folder`, by trait: those of `traits` in their order (a
    missing one fails when it is loaded, naming its path), or every such file found (sorted)."""
    folder = Path(folder)
    suffix = f"_{vector_type}.pt"
    if traits is not None:
        return {trait: folder / f"{trait}{suffix}" for trait in traits}
    found = {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*{suffix}"))} if folder.is_dir() else {}
    if not found:
        raise no_files_error(folder, f"{{trait}}{suffix}")
    return found


def load_vectors(paths: dict[str, Path]) -> dict[str, torch.Tensor]:
    """Load named vector files; refuse a mix of shapes or of models (as their `_vectors.json` metadata says)."""
    loaded = {name: PersonaVector.load(path) for name, path in paths.items()}
    vectors = {name: v.tensor for name, v in loaded.items()}
    check_same_shape(vectors)
    models = {name: v.model for name, v in loaded.items() if v.model}
    if len(set(models.values())) > 1:
        (a, ma), (b, mb) = next((x, y) for x in models.items() for y in models.items() if x[1] != y[1])
        raise ValueError(
            f"vectors come from different models: {a} from {ma}, {b} from {mb} "
            f"(both {tuple(vectors[a].shape)}); compare vectors of one model"
        )
    return vectors


def variant_names(trait: str, available: Sequence[str]) -> list[str]:
    """`trait` and its variants `trait_2`, `trait_3`, ... among `available`, in variant order."""
    pattern = re.compile(rf"{re.escape(trait)}(?:_(\d+))?")
    found = [(int(m[1] or 1), n) for n in available if (m := pattern.fullmatch(n))]
    return [n for _, n in sorted(found)]


def projection_suffix(vector_stem: str, projection_type: str, layer: int, shift: bool = False) -> str:
    """The part of a projection column after its model label (the naming is `projection.column_name`'s)."""
    full = column_name(_MODEL_LABEL, f"{vector_stem}.pt", projection_type, layer, shift)
    return full[len(_MODEL_LABEL) + 1 :]


def is_projection_column(column: str) -> bool:
    return any(re.search(rf"_{t}_layer\d+(?:{SHIFT_SUFFIX})?$", column) for t in PROJECTION_TYPES)


def projection_label(column: str) -> str:
    """A projection column without its checkpoint model label, so one series spans checkpoints."""
    return _CHECKPOINT_MODEL.sub("", column)


def find_column(df: pd.DataFrame, suffix: str, source: Path | str) -> str:
    """The one column of `df` ending in `_{suffix}`; a clear error when none or several do."""
    matches = [c for c in df.columns if c.endswith("_" + suffix)]
    if len(matches) != 1:
        raise ValueError(f"{source}: expected one column ending in _{suffix}, found {matches or 'none'}")
    return matches[0]


def checkpoint_files(folder: str | Path) -> pd.DataFrame:
    """`checkpoint-{N}_{judge_trait}.csv` files of a folder: step, judge_trait, path (sorted by step)."""
    folder = Path(folder)
    rows = [
        {"step": int(m["step"]), "judge_trait": m["judge"], "path": p}
        for p in (sorted(folder.glob("checkpoint-*.csv")) if folder.is_dir() else [])
        if (m := _CHECKPOINT.fullmatch(p.name))
    ]
    if not rows:
        raise no_files_error(folder, CHECKPOINT_PATTERN)
    return pd.DataFrame(rows).sort_values(["judge_trait", "step"], ignore_index=True)


PROJECTION_EVAL_COLUMNS = ["step", "judge_trait", "series", "kind", "value", "ci_low", "ci_high", "n_questions"]


def load_projection_eval(folder: str | Path, *, ci: float = 0.95) -> pd.DataFrame:
    """Long table of checkpoint evaluations: step, judge_trait, series, kind (score|projection), value (mean),
    ci_low, ci_high (its question-clustered interval), n_questions.

    Scores are the judged trait's column and coherence; projections are every projection column,
    labelled without the checkpoint's model name.
    """
    out = []
    for f in checkpoint_files(folder).itertuples():
        judge_col = base_trait(f.judge_trait)
        df = read_table(f.path, required=(judge_col, "question_id"))
        scores = [judge_col] + (["coherence"] if "coherence" in df.columns else [])
        series = [(c, "score", c) for c in scores]
        series += [(projection_label(c), "projection", c) for c in filter(is_projection_column, df.columns)]
        for label, kind, column in series:
            found = (score_interval if kind == "score" else mean_interval)(df, column, ci=ci)
            out.append(
                {
                    "step": f.step,
                    "judge_trait": f.judge_trait,
                    "series": label,
                    "kind": kind,
                    "value": found.mean,
                    "ci_low": found.ci_low,
                    "ci_high": found.ci_high,
                    "n_questions": found.n_questions,
                }
            )
    return pd.DataFrame(out, columns=PROJECTION_EVAL_COLUMNS)
