"""The per-experiment sections: steering sweep, projections, finetuning shift, linearity, interference, geometry.

Each section shows its table of means (with intervals where the answers behind them are
in the folder), says which files it read, and marks those files as used; whatever no
section claims is still shown, under "Other results", so nothing the folder holds is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from persona.analysis.geometry import cosine_by_layer, norms_by_layer
from persona.analysis.headline import COHERENCE_FLOOR
from persona.analysis.multi_persona import interference_fit
from persona.analysis.results import load_vectors
from persona.vectors import VECTOR_KINDS
from viz.report.collect import Report, Sweep
from viz.report.html import details, esc, table
from viz.report.intervals import mean_text, row_interval, score_text, with_intervals

_PROJECTION = re.compile(
    r"(?P<prefix>.+?)_(?P<type>prompt_last_proj|prompt_avg_proj|proj|cos_sim)_layer(?P<layer>\d+)(?P<shift>_finetuning_shift)?"
)
_VECTOR = re.compile(rf"(?:(?P<model>.*?)_)?(?P<trait>[^_]+(?:_\d+)?)_(?P<kind>{'|'.join(VECTOR_KINDS)})_diff")
PROJECTION_LEGEND = (
    "<code>evil L10</code> = mean projection of the answer's activations onto the evil vector at layer 10 "
    "(<code>shift</code>: of the finetuned minus the base model's activations); hover a header for the full column "
    "name."
)


def projection_label(column: str) -> str | None:
    """`smollm2-135m_evil_response_avg_diff_proj_layer10` -> `evil L10`; None for other columns."""
    m = _PROJECTION.fullmatch(column)
    if not m:
        return None
    v = _VECTOR.fullmatch(m["prefix"])
    name = (v["trait"] + ("" if v["kind"] == "response_avg" else f" {v['kind']}")) if v else m["prefix"]
    kind = "" if m["type"] == "proj" else f" {m['type']}"
    return f"{name}{kind} L{m['layer']}{' shift' if m['shift'] else ''}"


def short_headers(columns: Iterable[object]) -> dict[str, str]:
    return {str(c): label for c in columns if (label := projection_label(str(c)))}


def _tables(report: Report, names: Iterable[str]) -> str:
    """Each named CSV as a table (interval columns merged into `mean [low, high]`, short projection headers)."""
    parts = []
    for n in names:
        df = with_intervals(report.tables[n])
        parts.append(f"<h4>{esc(n)}</h4>{table(df, short_headers(df.columns))}")
    return "".join(parts)


def _as_written(report: Report, names: Iterable[str]) -> str:
    """Tables another view already shows, as the files hold them, in a closed fold."""
    body = _tables(report, names)
    return details("the same numbers as the files hold them", body) if body else ""


def _section(anchor: str, title: str, body: str, sources: Iterable[str]) -> str:
    files = ", ".join(f"<code>{esc(s)}</code>" for s in dict.fromkeys(sources))
    return f'<section id="{anchor}"><h3>{esc(title)}</h3>{body}<p class="muted">From {files}.</p></section>'


def sweep_table(sweep: Sweep, report: Report) -> pd.DataFrame:
    """Each cell's trait and coherence mean with its interval, n and whether it counts (coherence floor)."""
    rows = []
    for _, row in sweep.table.iterrows():
        rows.append(
            {
                "cell": row["cell"],
                sweep.column: score_text(row_interval(row, "trait")),
                "coherence": score_text(row_interval(row, "coherence")),
                "n": row["n"],
                "counts": "yes" if row["coherent"] else f"no (coherence {row['coherence']:.1f} < {COHERENCE_FLOOR:g})",
            }
        )
    return pd.DataFrame(rows)


def steering_section(report: Report, used: set[str]) -> str:
    if not report.sweeps:
        return ""
    parts = []
    for s in report.sweeps:
        parts.append(f"<h4>{esc(s.trait)}{'' if s.folder == '.' else f' ({esc(s.folder)})'}</h4>")
        parts.append(table(sweep_table(s, report)))
        used.update(report.relative(p) for p in s.files)
    written = [n for n in ("headline.csv", "cells.csv") if n in report.tables]
    used.update(written)
    parts.append(_as_written(report, written))
    sources = sorted({s.folder + "/" for s in report.sweeps} | set(written))
    legend = (
        '<p class="muted">Means over answers (0-100) with their 95% intervals over questions where recorded, '
        "cut at 0 and 100 where an interval over a few questions reaches past the scale.</p>"
    )
    return _section("steering-sweep", "Steering sweep", legend + "".join(parts), sources)


def projections_section(report: Report, used: set[str]) -> str:
    """Projection means per cell with intervals from the cells' own answers; the summary CSVs folded beside them."""
    parts, sources = [], []
    for s in report.sweeps:
        rows = []
        for row in s.table.itertuples():
            df = report.evaluations[report.relative(Path(row.path))]
            cols = [c for c in df.columns if projection_label(c) and not c.endswith("_finetuning_shift")]
            if cols:
                rows.append({"cell": row.cell, **{c: mean_text(df, c) for c in cols}})
        if rows:
            frame = pd.DataFrame(rows)
            parts.append(f"<h4>{esc(s.trait)} answers</h4>{table(frame, short_headers(frame.columns))}")
            sources.append(s.folder + "/")
    summaries = [n for n, df in report.tables.items() if n not in used and short_headers(df.columns)]
    used.update(summaries)
    sources += summaries
    parts.append(_as_written(report, summaries) if parts else _tables(report, summaries))
    if not sources:
        return ""
    return _section("projections", "Projections", "".join(parts) + f'<p class="muted">{PROJECTION_LEGEND}</p>', sources)


def finetuning_section(report: Report, used: set[str]) -> str:
    """Mean shift of each finetuning run along the vector, with its interval from the run's shift file."""
    parts, sources = [], []
    for name, df in report.tables.items():
        if not name.endswith("finetuning_shift.csv") or "mean_shift" not in df.columns:
            continue
        used.add(name)
        sources.append(name)
        rows = []
        for r in df.itertuples():
            shift_file = str(Path(name).parent / f"{r.run}_shift.csv")
            data = report.evaluations.get(shift_file)
            column = next(
                (
                    c
                    for c in (data.columns if data is not None else [])
                    if c.endswith(f"_layer{r.layer}_finetuning_shift")
                ),
                None,
            )
            mean = mean_text(data, column, signed=True) if data is not None and column else f"{r.mean_shift:+.3g}"
            if data is not None:
                used.add(shift_file)
                sources.append(shift_file)
            rows.append(
                {
                    "run": r.run,
                    "steering": "preventative" if r.preventative_steering else "none",
                    "vector": r.vector,
                    "layer": r.layer,
                    "mean shift": mean,
                    "n": r.n,
                }
            )
        parts.append(table(pd.DataFrame(rows)))
    if not parts:
        return ""
    note = (
        '<p class="muted">Mean projection of (finetuned - base) activations onto the vector, '
        "over the baseline answers.</p>"
    )
    return _section("finetuning", "Finetuning shift", note + "".join(parts), sources)


def _tables_section(
    anchor: str, title: str, names: Callable[[str], bool], report: Report, used: set[str], note: str
) -> str:
    picked = [n for n in report.tables if names(n) and n not in used]
    if not picked:
        return ""
    used.update(picked)
    return _section(anchor, title, f'<p class="muted">{note}</p>{_tables(report, picked)}', picked)


def linearity_section(report: Report, used: set[str]) -> str:
    return _tables_section(
        "linearity",
        "Linearity",
        lambda n: Path(n).name.startswith("linearity"),
        report,
        used,
        "Residual = S(a,b) - S(a,0) - S(0,b) + S(0,0): how far the joint effect of two vectors is from the sum "
        "of each alone.",
    )


def interference_section(report: Report, used: set[str]) -> str:
    """The interference tables, and Pearson r of the change in B against cos(v_A, v_B) over the pairs A != B."""
    note = (
        "Change in each judged trait B (columns) when steering with vector A alone (rows), against the unsteered cell."
    )
    for name, df in report.tables.items():
        if Path(name).name == "interference.csv" and {"steered", "judged", "cos", "delta"} <= set(df.columns):
            found = interference_fit(df)
            words = found.text() if found.defined else f"{found.text()}: r needs 3+ pairs, so 3+ traits"
            note += f" Over the pairs A != B in <code>{esc(name)}</code>: {esc(words)}."
    return _tables_section(
        "interference", "Interference", lambda n: Path(n).name.startswith("interference"), report, used, note
    )


def geometry_section(report: Report, used: set[str]) -> str:
    """Cosine similarity of the persona vectors at the steered layers, and their norms there."""
    folders = sorted({p.parent for p in report.root.rglob("*_diff.pt")})
    layers = sorted({int(x) for s in report.sweeps for x in s.table["layer"].dropna()})
    parts, sources = [], []
    for folder in folders:
        for kind in VECTOR_KINDS:
            paths = {p.name[: -len(f"_{kind}_diff.pt")]: p for p in sorted(folder.glob(f"*_{kind}_diff.pt"))}
            if not paths:
                continue
            sources += [report.relative(p) for p in paths.values()]
            try:
                vectors = load_vectors(paths)
            except ValueError as err:  # a mix of shapes or models: nothing to compare
                parts.append(f'<p class="muted">{esc(folder.relative_to(report.root))}: {esc(err)}</p>')
                continue
            rows = next(iter(vectors.values())).shape[0]
            shown = [L for L in layers if L < rows] or [rows // 2]
            if len(vectors) > 1:
                cos = cosine_by_layer(vectors).loc[shown].T.rename(columns=lambda L: f"layer {L}")
                parts.append(
                    f"<h4>cosine similarity of the {esc(kind)} vectors</h4>{table(cos.reset_index(names='pair'))}"
                )
            norms = norms_by_layer(vectors).loc[shown].T.rename(columns=lambda L: f"layer {L}")
            parts.append(f"<h4>L2 norm of the {esc(kind)} vectors</h4>{table(norms.reset_index(names='vector'))}")
    cross = [n for n in report.tables if n not in used and "cross_persona" in n]
    parts.append(_tables(report, cross))
    sources += cross
    used.update(cross)
    return _section("geometry", "Vector geometry", "".join(parts), sources) if sources else ""


def other_section(report: Report, used: set[str]) -> str:
    """Every table and evaluated file no other section showed, as today's report did."""
    parts = []
    for folder, scores in report.scores.items():
        names = {str(Path(folder) / f"{c}.csv") for c in scores["cell"]}
        if names <= used:
            continue
        parts.append(f"<h4>mean scores per file in {esc(folder)}</h4>{table(scores, short_headers(scores.columns))}")
    parts.append(_tables(report, [n for n in report.tables if n not in used]))
    parts = [p for p in parts if p]
    return f'<section id="other-results"><h3>Other results</h3>{"".join(parts)}</section>' if parts else ""


SECTIONS = (
    steering_section,
    projections_section,
    finetuning_section,
    linearity_section,
    interference_section,
    geometry_section,
    other_section,
)


def experiments_section(report: Report) -> str:
    used: set[str] = set()
    body = "".join(section(report, used) for section in SECTIONS)
    return f'<section id="experiments"><h2>Experiments</h2>{body}</section>' if body else ""
