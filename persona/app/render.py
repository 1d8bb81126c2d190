"""What the explorer draws: coloured tokens, score lines and the vector figures (the report's own)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from persona.analysis.figures import lines_figure, similarity_figure

TokenValues = Sequence[tuple[str, float]]
_POSITIVE = (220, 38, 38)  # red: more of the vector's direction than the centre
_NEGATIVE = (37, 99, 235)  # blue: less


def mean_value(values: TokenValues) -> float:
    return sum(v for _, v in values) / len(values) if values else math.nan


def colour_scale(answers: Sequence[TokenValues], centre: float) -> float:
    """The largest distance from `centre` over all answers (1 when they are flat), so colours compare."""
    spread = max((abs(v - centre) for values in answers for _, v in values), default=0.0)
    return spread or 1.0


def token_html(title: str, values: TokenValues, centre: float, scale: float) -> str:
    """One answer, each token shaded by its projection minus `centre`; the value shows on hover."""
    spans = []
    for text, value in values:
        strength = min(abs(value - centre) / scale, 1.0) * 0.8
        rgb = _POSITIVE if value >= centre else _NEGATIVE
        spans.append(
            f'<span class="tok" title="{value:+.3f}" data-value="{value!r}" '
            f'style="background: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {strength:.2f})">{html.escape(text)}</span>'
        )
    return (
        f'<div class="token-view"><p><b>{html.escape(title)}</b>: {len(values)} tokens, '
        f"mean projection {mean_value(values):+.3f} (the answer's <code>proj</code> in cal_projection)</p>"
        f'<div style="white-space: pre-wrap; line-height: 1.9">{"".join(spans)}</div></div>'
    )


def score_line(scores: pd.Series, trait_column: str | None) -> str:
    """`evil 71.2 · coherence 84.0` for one scored answer (`-` where the judge gave no score)."""
    if trait_column is None:
        return "not scored: pick a trait to score with"
    parts = []
    for column in (trait_column, "coherence"):
        value = pd.to_numeric(scores.get(column), errors="coerce")
        parts.append(f"{column} {value:.1f}" if pd.notna(value) else f"{column} -")
    return " · ".join(parts)


def rounded(table: pd.DataFrame, digits: int) -> pd.DataFrame:
    """The table with its float columns rounded for reading (the library's tables keep full precision)."""
    floats = table.select_dtypes("float").columns
    return table.round(dict.fromkeys(floats, digits))


def geometry_figures(cosines: pd.DataFrame, norms: pd.DataFrame, layer: int) -> tuple[Figure, Figure]:
    """The cosine heatmap at `layer` and the norms by layer, drawn as `viz/analyze_vector_geometry.py` draws them
    (both draw with `persona.analysis.figures`)."""
    return similarity_figure(cosines, f"cosine similarity, layer {layer}"), lines_figure(
        norms, "vector norm by layer", "L2 norm"
    )
