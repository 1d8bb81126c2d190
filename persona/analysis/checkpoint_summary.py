"""The original study's per-checkpoint summary of a finetuning run, behind its projection-eval figure.

For each `checkpoint-{N}_{persona}.csv`: the mean judge score of the persona, the mean coherence
and the mean finetuning shift along the persona's vector (the column
`checkpoint-{N}_{persona}_{vector_type}_{projection_type}_layer{L}_finetuning_shift`, by default
`prompt_last_proj`, as the original pipelines write it); `coherence_avg` is the coherence averaged
over the personas of each checkpoint. A second, sequential run (finetuned on A, then on B) is
appended with its checkpoints offset by the first run's last one, personas restricted to its own.

Every mean carries its question-clustered interval (`_ci_low`, `_ci_high`, `persona.analysis.stats`).
`coherence_avg`'s interval is that of the pooled answers of the checkpoint's files, clustered by
(persona, question): its centre is `coherence_avg` itself when every file holds the same number of
scored answers, as the pipelines write them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from persona.analysis.results import checkpoint_files
from persona.analysis.stats import NAN_INTERVAL, Interval, mean_interval, score_interval
from persona.io import read_table
from persona.projection import SHIFT_SUFFIX
from persona.traits import base_trait

log = logging.getLogger(__name__)

MEANS = ("persona_score", "coherence", "finetuning_shift")
SUMMARY_COLUMNS = [
    "checkpoint",
    "persona",
    *(f"{m}{end}" for m in MEANS for end in ("", "_ci_low", "_ci_high")),
    "n_questions",
    "stage",
    "path",
]


def shift_column(
    columns: Collection[str],
    label: str,
    vector: str,
    *,
    projection_type: str = "prompt_last_proj",
    layer: int | None = None,
) -> str | None:
    """The finetuning-shift column of `vector` in a file of step `label` (checkpoint-N); None when absent.

    With `layer` None, any single layer is accepted; several layers need `layer` to choose.
    """
    at = str(layer) if layer is not None else r"\d+"
    pattern = re.compile(
        rf"{re.escape(label)}_{re.escape(vector)}_{re.escape(projection_type)}_layer{at}{SHIFT_SUFFIX}"
    )
    found = [c for c in columns if pattern.fullmatch(c)]
    if len(found) > 1:
        raise ValueError(f"several finetuning-shift layers for {vector}: {found}; choose one with layer")
    return found[0] if found else None


def load_run_summary(
    folder: str | Path,
    *,
    personas: Collection[str] | None = None,
    stage: str = "base",
    vector_type: str = "response_avg_diff",
    projection_type: str = "prompt_last_proj",
    layer: int | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row per (checkpoint, persona) of a run's folder (columns `SUMMARY_COLUMNS`: each mean with its
    question-clustered interval, and the file it comes from)."""
    rows, no_shift = [], []
    for f in checkpoint_files(folder).itertuples():
        if personas and f.judge_trait not in personas:
            continue
        df = read_table(f.path, required=("question_id",))
        score = f.judge_trait if f.judge_trait in df.columns else base_trait(f.judge_trait)
        if score not in df.columns or "coherence" not in df.columns:
            raise ValueError(f"{f.path}: needs the columns {score} and coherence (an eval_persona output)")
        column = shift_column(
            df.columns,
            f"checkpoint-{f.step}",
            f"{f.judge_trait}_{vector_type}",
            projection_type=projection_type,
            layer=layer,
        )
        if column is None:
            no_shift.append(f.path.name)
        found = {
            "persona_score": score_interval(df, score, ci=ci),
            "coherence": score_interval(df, "coherence", ci=ci),
            "finetuning_shift": mean_interval(df, column, ci=ci) if column else NAN_INTERVAL,
        }
        rows.append(
            {
                "checkpoint": f.step,
                "persona": f.judge_trait,
                **{k: v for m, interval in found.items() for k, v in interval.columns(m).items()},
                "n_questions": found["persona_score"].n_questions,
                "stage": stage,
                "path": str(f.path),
            }
        )
    if no_shift:
        log.warning(
            "%s: no %s finetuning-shift column in %s; drawn as gaps", folder, projection_type, ", ".join(no_shift)
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summarize_projection_eval(
    folder: str | Path, sequential: str | Path | None = None, **options
) -> tuple[pd.DataFrame, int]:
    """The summary of a run (and of a sequential second run), with `coherence_avg` and its interval; and the offset.

    The offset is the first run's last checkpoint (0 without a second run); `options` go to
    `load_run_summary`.
    """
    df, offset = load_run_summary(folder, **options), 0
    if sequential is not None:
        second = load_run_summary(sequential, stage="sequential", **options)
        if second.empty:
            raise ValueError(f"{sequential}: no checkpoint files to append")
        kept = set(second["persona"])
        df = df[df["persona"].isin(kept)]
        offset = int(df["checkpoint"].max()) if len(df) else 0
        df = pd.concat([df, second.assign(checkpoint=second["checkpoint"] + offset)], ignore_index=True)
    if df.empty:
        raise ValueError(f"{folder}: no checkpoint files for the personas asked for")
    df = df.sort_values(["checkpoint", "persona"], ignore_index=True)
    coherence_avg = df.groupby("checkpoint")["coherence"].mean().rename("coherence_avg")
    ci = options.get("ci", 0.95)
    bands = pd.DataFrame(
        [
            {"checkpoint": step, **pooled_coherence(group, ci=ci).columns("coherence_avg")}
            for step, group in df.groupby("checkpoint")
        ]
    ).drop(columns="coherence_avg")
    out = df.merge(coherence_avg, left_on="checkpoint", right_index=True, how="left")
    return out.merge(bands, on="checkpoint", how="left"), offset


def pooled_coherence(rows: pd.DataFrame, *, ci: float = 0.95) -> Interval:
    """Coherence over the pooled answers of summary `rows` (their files), clustered by (persona, question)."""
    frames = []
    for r in rows.itertuples():
        frame = read_table(r.path)
        frames.append(frame.assign(_cluster=f"{r.persona}/" + frame["question_id"].astype(str)))
    return score_interval(pd.concat(frames, ignore_index=True), "coherence", cluster="_cluster", ci=ci)
