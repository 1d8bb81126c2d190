"""Split a run's checkpoint files projected onto several variant vectors into one folder per variant.

`checkpoint-{N}_{trait}.csv` files carrying projection and finetuning-shift columns onto
`{trait}`, `{trait}_2`, ... (as `scripts/eval_projection_variants.sh` adds them) become
`{output}/{variant}_projection_eval/checkpoint-{N}_{variant}.csv`, each with only that variant's
columns, so the per-run figures plot each variant as its own run (the original study's
`split_confident_csvs`). A variant's score is its own judge column when the file has one (the
original's files did), else the trait's: the variants are other vectors of the same trait.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from persona.analysis.checkpoint_summary import shift_column
from persona.analysis.results import checkpoint_files
from persona.io import read_table, write_csv

log = logging.getLogger(__name__)

BASE_COLUMNS = ["question", "prompt", "answer", "question_id"]


def file_variants(columns: Sequence[str], label: str, trait: str, vector_type: str = "response_avg_diff") -> list[str]:
    """The variants of `trait` with a `proj` column in a file of step `label`, in variant order."""
    pattern = re.compile(rf"{re.escape(label)}_({re.escape(trait)}(?:_(\d+))?)_{re.escape(vector_type)}_proj_layer\d+")
    found = {m[1]: int(m[2] or 1) for c in columns if (m := pattern.fullmatch(c))}
    return sorted(found, key=found.__getitem__)


def split_variant_files(
    input_dir: str | Path,
    output_dir: str | Path,
    trait: str,
    *,
    variants: Sequence[str] | None = None,
    layer: int | None = None,
    shift_type: str = "prompt_last_proj",
    vector_type: str = "response_avg_diff",
) -> list[Path]:
    """Write one file per (checkpoint, variant) with a projection and a shift column; return the paths.

    `variants` None: every variant projected in each file. A variant missing a column in a file
    is skipped for that file with a warning, as the original does.
    """
    written, skipped = [], []
    files = checkpoint_files(input_dir)
    for f in files[files["judge_trait"] == trait].itertuples():
        df = read_table(f.path, text=True)
        label = f"checkpoint-{f.step}"
        for variant in variants or file_variants(list(df.columns), label, trait, vector_type):
            score = variant if variant in df.columns else trait
            at = str(layer) if layer is not None else r"\d+"
            proj = [
                c
                for c in df.columns
                if re.fullmatch(rf"{re.escape(label)}_{re.escape(variant)}_{vector_type}_proj_layer{at}", c)
            ]
            shift = shift_column(df.columns, label, f"{variant}_{vector_type}", projection_type=shift_type, layer=layer)
            missing = [c for c in BASE_COLUMNS + [score, "coherence"] if c not in df.columns]
            if len(proj) != 1 or shift is None or missing:
                skipped.append(f"{f.path.name}: {variant}")
                continue
            subset = df[BASE_COLUMNS + [score, "coherence", proj[0], shift]].rename(columns={score: variant})
            path = Path(output_dir) / f"{variant}_projection_eval" / f"{label}_{variant}.csv"
            write_csv(path, subset)
            written.append(path)
    if skipped:
        log.warning("missing score, projection or shift columns, skipped: %s", "; ".join(skipped))
    return written
