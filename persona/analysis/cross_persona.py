"""Cross-persona effects of finetuning: does training on trait A move trait B in proportion to cos(v_A, v_B)?

For a model finetuned on A and judged on B: the change in B's score (final checkpoint minus
the reference: checkpoint 0 or the base model's baseline), the relative trait score
(change in B / change in A) and the finetuning shift of the activations along v_B. Each change
carries a question-clustered interval (paired by question when the final checkpoint and its
reference hold the same questions), and `cross_persona_fits` gives Pearson r of each relative
score against the cosine with a bootstrap interval and a permutation p-value.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from persona.analysis.results import checkpoint_files, find_column, projection_suffix
from persona.analysis.stats import NAN_INTERVAL, Interval, QuestionMismatch, correlation, mean_interval, paired_delta
from persona.io import read_table
from persona.traits import base_trait

log = logging.getLogger(__name__)

EFFECT_COLUMNS = [
    "finetuned",
    "judged",
    "step",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "n_questions",
    "shift",
    "shift_ci_low",
    "shift_ci_high",
]
TABLE_COLUMNS = [
    "finetuned",
    "judged",
    "cos",
    "delta_judged",
    "delta_judged_ci_low",
    "delta_judged_ci_high",
    "delta_finetuned",
    "relative_trait_score",
    "shift_judged",
    "shift_judged_ci_low",
    "shift_judged_ci_high",
    "shift_finetuned",
    "relative_shift",
]


def load_finetuning_effects(
    folders: dict[str, Path],
    *,
    layer: int,
    projection_type: str = "proj",
    vector_type: str = "response_avg_diff",
    baseline_dir: Path | None = None,
) -> pd.DataFrame:
    """One row per (finetuned trait A, judged trait B) from `{A: output/{A}_projection_eval}` folders.

    `delta` = mean B score at the last checkpoint minus at checkpoint 0 (or, without one, in
    `baseline_dir/{B}_baseline.csv`); `shift` = mean finetuning shift along v_B at `layer`
    (NaN when the column is absent). Both carry intervals over questions (`_ci_low`, `_ci_high`).
    Pairs without a reference are skipped with a warning.
    """
    rows, skipped = [], []
    for finetuned, folder in folders.items():
        files = checkpoint_files(folder)
        for judged, group in files.groupby("judge_trait", sort=True):
            column = base_trait(judged)
            last = group.iloc[-1]
            final = read_table(last.path, required=(column,))
            if group["step"].iloc[0] == 0 and last.step != 0:
                reference_path = group.iloc[0].path
            elif baseline_dir is not None and (Path(baseline_dir) / f"{judged}_baseline.csv").is_file():
                reference_path = Path(baseline_dir) / f"{judged}_baseline.csv"
            else:
                skipped.append(f"{finetuned}->{judged}")
                continue
            reference = read_table(reference_path, required=(column,))
            delta = _change(final, reference, column, f"{last.path} vs {reference_path}")
            suffix = projection_suffix(f"{judged}_{vector_type}", projection_type, layer, shift=True)
            shift = NAN_INTERVAL
            if any(c.endswith("_" + suffix) for c in final.columns):
                shift = mean_interval(final, find_column(final, suffix, last.path))
            rows.append(
                {
                    "finetuned": finetuned,
                    "judged": judged,
                    "step": int(last.step),
                    **delta.columns("delta"),
                    "n_questions": delta.n_questions,
                    **shift.columns("shift"),
                }
            )
    if skipped:
        log.warning(
            "no reference score (checkpoint-0 file or baseline) for %s; those pairs are left out", ", ".join(skipped)
        )
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _change(final: pd.DataFrame, reference: pd.DataFrame, column: str, what: str) -> Interval:
    """Final minus reference: paired by question when both hold the same questions, else the mean difference
    without an interval (a warning says why)."""
    try:
        return paired_delta(final, reference, column)
    except QuestionMismatch as err:
        log.warning("%s: %s; the change is left without an interval", what, err)
    a, b = mean_interval(final, column), mean_interval(reference, column)
    return Interval(a.n_questions, a.n_answers, a.mean - b.mean, float("nan"), float("nan"))


def cross_persona_table(effects: pd.DataFrame, cos: pd.DataFrame) -> pd.DataFrame:
    """Off-diagonal pairs (A != B) with cos(v_A, v_B), the relative trait score and the relative shift.

    `effects` has finetuned, judged, delta, shift; a pair needs the (A, A) row for its ratios.
    """
    own = effects[effects["finetuned"] == effects["judged"]].set_index("finetuned")
    rows = []
    for e in effects[effects["finetuned"] != effects["judged"]].itertuples():
        if e.finetuned not in cos.index or e.judged not in cos.index:
            log.warning("no vector for %s or %s; pair left out", e.finetuned, e.judged)
            continue
        delta_a = own["delta"].get(e.finetuned, float("nan"))
        shift_a = own["shift"].get(e.finetuned, float("nan"))
        rows.append(
            {
                "finetuned": e.finetuned,
                "judged": e.judged,
                "cos": float(cos.loc[e.finetuned, e.judged]),
                "delta_judged": e.delta,
                "delta_judged_ci_low": getattr(e, "delta_ci_low", float("nan")),
                "delta_judged_ci_high": getattr(e, "delta_ci_high", float("nan")),
                "delta_finetuned": delta_a,
                "relative_trait_score": e.delta / delta_a if delta_a else float("nan"),
                "shift_judged": e.shift,
                "shift_judged_ci_low": getattr(e, "shift_ci_low", float("nan")),
                "shift_judged_ci_high": getattr(e, "shift_ci_high", float("nan")),
                "shift_finetuned": shift_a,
                "relative_shift": e.shift / shift_a if shift_a else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


FIT_COLUMNS = ["y", "r", "r_ci_low", "r_ci_high", "p_value", "n"]


def cross_persona_fits(table: pd.DataFrame, columns: tuple[str, ...], *, ci: float = 0.95) -> pd.DataFrame:
    """Pearson r of cos(v_A, v_B) against each column (bootstrap interval, permutation p); NaN r below 3 points."""
    rows = [{"y": c, **correlation(table["cos"], table[c], ci=ci).columns()} for c in columns]
    return pd.DataFrame(rows, columns=FIT_COLUMNS)
