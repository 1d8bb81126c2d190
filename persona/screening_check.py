"""The prediction check: does the projection difference rank `dataset.zip`'s levels, and predict finetuning?

For every trait of the archive (`dataset/<trait>/{normal,misaligned_1,misaligned_2}.jsonl`)
the three levels are screened along the trait's own vector. Chen et al. (2025) expect the
dataset-level projection difference to grow with the level, normal < misaligned_1 <
misaligned_2, and to correlate with the trait shift that finetuning on the dataset causes.
The measured effects come from short finetunes the check runs itself on the datasets named
in `finetune` (`persona.screening_finetune`), from a table measured elsewhere (`training.py`,
then `eval.cal_projection --base_model`), or both.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from persona.analysis.stats import NAN_INTERVAL, QuestionMismatch, correlation, paired_delta
from persona.io import read_table, write_text
from persona.screening import dataset_labels, run_screening
from persona.screening_finetune import FinetuneSettings, finetune_effects

log = logging.getLogger(__name__)

LEVELS = ("normal", "misaligned_1", "misaligned_2")
SHIFT_COLUMNS = ("trait", "level", "finetuning_shift")


def archive_traits(dataset_zip: str | Path) -> list[str]:
    """The traits with all three levels in the archive, sorted."""
    with zipfile.ZipFile(dataset_zip) as archive:
        names = set(archive.namelist())
    traits = {n.split("/")[1] for n in names if n.startswith("dataset/") and n.count("/") == 2}
    return sorted(t for t in traits if all(f"dataset/{t}/{level}.jsonl" in names for level in LEVELS))


def extract_datasets(
    dataset_zip: str | Path, dest: str | Path, traits: Sequence[str], *, max_rows: int | None = None
) -> dict[tuple[str, str], Path]:
    """Write `dest/<trait>/<level>.jsonl` (the first `max_rows` rows of each) and return the paths."""
    dataset_zip = Path(dataset_zip)
    if not dataset_zip.is_file():
        raise FileNotFoundError(f"{dataset_zip} does not exist (the repository ships dataset.zip at its root)")
    have = archive_traits(dataset_zip)
    unknown = [t for t in traits if t not in have]
    if unknown:
        raise ValueError(f"{dataset_zip} has no levels for trait(s) {unknown}; it has {have}")
    paths = {}
    with zipfile.ZipFile(dataset_zip) as archive:
        for trait in traits:
            for level in LEVELS:
                lines = archive.read(f"dataset/{trait}/{level}.jsonl").decode("utf-8").splitlines(keepends=True)
                kept = [line for line in lines if line.strip()][:max_rows]
                path = Path(dest) / trait / f"{level}.jsonl"
                if not path.is_file() or path.read_text(encoding="utf-8") != "".join(kept):
                    write_text(path, "".join(kept))
                paths[trait, level] = path
    return paths


def ordering_table(summary: pd.DataFrame, samples: pd.DataFrame | None = None, *, ci: float = 0.95) -> pd.DataFrame:
    """Per trait: the dataset-level projection difference of each level and whether they rise with it.

    With the per-sample rows (`trait, level, question, projection_difference`) each misaligned
    level also gets its paired difference from `normal` over the prompts the levels share
    (`misaligned_2_minus_normal` with `_ci_low`/`_ci_high`): the base response of a prompt is
    the same at every level, so it cancels, and the interval says whether the levels differ at
    all; `misaligned_2_above_normal` is True when that interval lies above 0.
    """
    wide = summary.pivot(index="trait", columns="level", values="projection_difference").reindex(columns=list(LEVELS))
    out = wide.reset_index()
    out["normal_lt_misaligned_2"] = wide["normal"].to_numpy() < wide["misaligned_2"].to_numpy()
    out["ordered"] = (wide["normal"] < wide["misaligned_1"]).to_numpy() & (
        wide["misaligned_1"] < wide["misaligned_2"]
    ).to_numpy()
    if samples is None:
        return out
    paired = [_level_differences(samples[samples["trait"] == trait], trait, ci) for trait in out["trait"]]
    out = pd.concat([out, pd.DataFrame(paired)], axis=1)
    out["misaligned_2_above_normal"] = out["misaligned_2_minus_normal_ci_low"] > 0
    return out


def _level_differences(samples: pd.DataFrame, trait: str, ci: float) -> dict[str, float]:
    """Each misaligned level minus `normal`, paired by prompt; NaN (with a warning) when the prompts differ."""
    normal = samples[samples["level"] == "normal"]
    row: dict[str, float] = {}
    for level in LEVELS[1:]:
        try:
            delta = paired_delta(
                samples[samples["level"] == level], normal, "projection_difference", cluster="question", ci=ci
            )
        except QuestionMismatch as err:
            log.warning("%s: %s and normal do not share their prompts (%s): no paired difference", trait, level, err)
            delta = NAN_INTERVAL
        row.update(delta.columns(f"{level}_minus_normal"))
    return row


@dataclass(frozen=True)
class Correlation:
    """Pearson r of two named columns over `n` datasets, with a bootstrap interval and permutation p-value."""

    x: str
    y: str
    r: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def correlate(frame: pd.DataFrame, x: str, y: str, *, ci: float = 0.95) -> Correlation:
    """Pearson r of `frame[x]` and `frame[y]` over rows where both are finite."""
    c = correlation(frame[x].to_numpy(dtype=float), frame[y].to_numpy(dtype=float), ci=ci)
    return Correlation(x, y, c.r, c.ci_low, c.ci_high, c.p_value, c.n)


def read_shifts(path: str | Path) -> pd.DataFrame:
    """Measured finetuning effects per finetuned dataset: `trait, level, finetuning_shift` [, `trait_score`]."""
    shifts = read_table(path, SHIFT_COLUMNS)
    if shifts.duplicated(["trait", "level"]).any():
        raise ValueError(f"{path}: one row per (trait, level) please; found duplicates")
    return shifts


@dataclass
class CheckResult:
    summary: pd.DataFrame  # one row per (trait, level)
    ordering: pd.DataFrame  # one row per trait
    merged: pd.DataFrame | None = None  # summary rows of the finetuned datasets, with their measured effects
    correlations: tuple[Correlation, ...] = ()


def run_check(
    output_dir: str | Path,
    dataset_zip: str | Path,
    vector_dir: str | Path,
    layer: int,
    *,
    model_name: str,
    traits: Sequence[str] | None = None,
    vector_kind: str = "response_avg",
    max_rows: int | None = None,
    shifts_path: str | Path | None = None,
    finetune: Sequence[tuple[str, str]] = (),
    finetune_settings: FinetuneSettings | None = None,
    **screen_kwargs,
) -> CheckResult:
    """Screen every level of every trait along `<vector_dir>/<trait>_<kind>_diff.pt` (see the module docstring).

    Traits without a vector file are skipped with a warning. Each trait's screening lands in
    `output_dir/<trait>/` and resumes like `run_screening`; base responses are shared across
    traits and levels through the store (the archive reuses its prompts). The `(trait, level)`
    datasets in `finetune` are finetuned with `finetune_settings` into `output_dir/finetune/`
    (resumable); their measured effects join those of `shifts_path`.
    """
    if finetune and finetune_settings is None:
        raise ValueError("`finetune` needs `finetune_settings` (how to train and evaluate each run)")
    output_dir = Path(output_dir)
    traits = list(traits) if traits else archive_traits(dataset_zip)
    paths = extract_datasets(dataset_zip, output_dir / "data", traits, max_rows=max_rows)
    rows, per_sample, vectors = [], [], {}
    for trait in traits:
        vector = Path(vector_dir) / f"{trait}_{vector_kind}_diff.pt"
        if not vector.is_file():
            log.warning("no vector %s: trait %s is left out of the check", vector, trait)
            continue
        vectors[trait] = vector
        files = [paths[trait, level] for level in LEVELS]
        screened = run_screening(output_dir / trait, files, vector, layer, model_name=model_name, **screen_kwargs)
        level_of = dict(zip(dataset_labels(files), LEVELS))  # each file's `dataset` label -> its level
        rows.append(screened.summary.assign(trait=trait, level=screened.summary["dataset"].map(level_of)))
        per_sample.append(screened.samples.assign(trait=trait, level=screened.samples["dataset"].map(level_of)))
    if not rows:
        raise FileNotFoundError(f"no {vector_kind} vector in {vector_dir} for any of {traits} (extract them first)")
    summary = pd.concat(rows, ignore_index=True)
    result = CheckResult(summary, ordering_table(summary, pd.concat(per_sample, ignore_index=True)))
    measured = [read_shifts(shifts_path)] if shifts_path is not None else []
    if finetune:
        assert finetune_settings is not None
        measured.append(
            finetune_effects(
                output_dir / "finetune", finetune, paths, vectors, layer, model=model_name, settings=finetune_settings
            )
        )
    if measured:
        effects = pd.concat(measured, ignore_index=True)
        if effects.duplicated(["trait", "level"]).any():
            raise ValueError("a finetuned dataset also has a row in the `shifts` table: give each effect once")
        merged = summary.merge(effects, on=["trait", "level"], how="inner")
        if merged.empty:
            raise ValueError(f"{shifts_path}: no (trait, level) row matches a screened dataset")
        targets = [c for c in ("finetuning_shift", "trait_score") if c in merged.columns]
        result.merged = merged
        result.correlations = tuple(correlate(merged, "projection_difference", c) for c in targets)
    return result
