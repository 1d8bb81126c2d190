"""Figures with captions: what each one shows and which files it was drawn from.

Captions are known per figure name (the names the study's plotting commands write);
an unknown figure still gets its file name and folder.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from viz.report.collect import Report
from viz.report.html import esc, figure

# figure file pattern -> (what it shows, what it was drawn from)
CAPTIONS: dict[str, tuple[str, str]] = {
    "steering_layer_plots.png": (
        "Mean trait score of each steering cell against its layer, one line per coefficient, with each cell's 95% "
        "interval over questions; the dashed line is the unsteered baseline, its interval the gray band.",
        "the sweep cells <code>{trait}_steer_{type}_layer_{L}_coef_{c}.csv</code> and "
        "<code>{trait}_baseline.csv</code>",
    ),
    "steering_layer_plots_coherence.png": (
        "Mean coherence of the same cells: a cell below 80 is not a result, however high its trait score.",
        "the same sweep cells",
    ),
    "interference_vs_cos.png": (
        "Change in each judged trait B when steering with vector A alone, against cos(v_A, v_B); Pearson r is "
        "undefined with fewer than three traits (two traits give one cosine, shared by both points).",
        "<code>interference.csv</code> (from the judged cells in <code>interference/cells/</code>)",
    ),
    "linearity_residuals.png": (
        "Additivity residual S(a,b) - S(a,0) - S(0,b) + S(0,0) of every joint cell: 0 means the two vectors add up.",
        "<code>linearity.csv</code>",
    ),
    "vector_sim_*.png": ("Cosine similarity between vector variants of one trait, by layer.", "the vector files"),
    "geometry_*.png": ("Geometry of the persona vectors (cosines, norms or a 2-D PCA).", "the vector files"),
    "cos_sim_vs_*.png": (
        "Cross-persona relation against the cosine similarity of the vectors.",
        "<code>cross_persona_corr.csv</code>",
    ),
    "projection_eval_*.png": (
        "Trait score and projection over finetuning checkpoints; the bands are 95% intervals over questions.",
        "<code>checkpoint-*.csv</code>",
    ),
    "variant_projections_*.png": (
        "Projections onto each variant of a trait's vector; the bands are 95% intervals over questions.",
        "the projection columns",
    ),
}


def caption(name: str) -> str:
    base = Path(name).name
    for pattern, (what, source) in CAPTIONS.items():
        if fnmatch.fnmatch(base, pattern):
            return f"{what} Drawn from {source}."
    return f"Figure written to <code>{esc(Path(name).parent)}/</code>."


def figures_section(report: Report) -> str:
    if not report.figures:
        return ""
    body = "".join(figure(name, png, caption(name)) for name, png in report.figures.items())
    return f'<section id="figures"><h2>Figures</h2>{body}</section>'
