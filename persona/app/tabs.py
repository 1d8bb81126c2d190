"""The explorer's folder tabs (Vectors, Results) and the failure rule every handler follows.

A handler returns `(status, *outputs)`; `guarded` turns any failure into the library's one-line
message in the status box (outputs unchanged), so the page never shows a traceback and keeps serving.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from persona.app import browse
from persona.app.render import geometry_figures, rounded
from persona.cli import error_line

log = logging.getLogger(__name__)
PRIVATE: dict[str, Any] = {"api_visibility": "private"}  # UI events are not API endpoints (`steer` is)
SCORE_DIGITS = 1  # judge scores are 0-100; a tenth is already finer than a 5-question interval
NORM_DIGITS = 3


def guarded(n_outputs: int, fn: Callable[..., tuple]) -> Callable[..., tuple]:
    """`fn`, with a failure reported as `error: <one line>` in the status and `n_outputs` outputs left as they are."""

    @functools.wraps(fn)  # Gradio reads the signature (a gr.Progress default) through the wrapper
    def run(*args: Any, **kwargs: Any) -> tuple:
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # every failure becomes the status line; the app keeps running
            log.debug("explorer action failed", exc_info=True)
            return ("error: " + error_line(err), *[gr.skip()] * n_outputs)

    return run


def status_box(elem_id: str) -> gr.Textbox:
    return gr.Textbox(label="status", interactive=False, elem_id=elem_id)


def vector_choices(folder: str | Path | None) -> list[tuple[str, str]]:
    """(name, path) of the folder's vectors; none for a missing folder (the Vectors tab says why)."""
    try:
        return [(name, str(path)) for name, path in browse.folder_vectors(folder).items()] if folder else []
    except FileNotFoundError:
        return []


def vectors_tab(
    vector_dir: str | Path | None, layer_slider: Callable[[str], gr.Slider], dropdowns: Sequence[gr.Dropdown]
) -> None:
    """Cosine heatmap at a layer and norms by layer of a folder's vectors; loading a folder refills `dropdowns`."""
    with gr.Row():
        folder = gr.Textbox(str(vector_dir or ""), label="vector folder", elem_id="vectors-folder")
        layer = layer_slider("vectors-layer")
    show = gr.Button("Show", variant="primary", elem_id="vectors-run")
    with gr.Row():
        heatmap = gr.Plot(label="cosine similarity at the layer", elem_id="vectors-heatmap")
        norm_plot = gr.Plot(label="norms by layer", elem_id="vectors-norms")
    norm_table = gr.Dataframe(label="norms at the layer", interactive=False)
    status = status_box("vectors-status")

    def run(path: str, at: int) -> tuple:
        cosines, norms = browse.vector_geometry(path, int(at))
        heat, lines = geometry_figures(cosines, norms, int(at))
        table = rounded(norms.loc[int(at)].rename("norm").rename_axis("vector").reset_index(), NORM_DIGITS)
        refill = gr.update(choices=vector_choices(path))
        return (f"{len(cosines)} vectors in {path}", heat, lines, table, *[refill] * len(dropdowns))

    outputs = [status, heatmap, norm_plot, norm_table, *dropdowns]
    handler = guarded(len(outputs) - 1, run)
    show.click(handler, [folder, layer], outputs, **PRIVATE)
    layer.release(handler, [folder, layer], outputs, **PRIVATE)


def results_tab(results_dir: str | Path | None) -> None:
    """Pick a steering cell under an output folder; read its answers beside the baseline's."""
    with gr.Row():
        folder = gr.Textbox(str(results_dir or ""), label="output folder", elem_id="results-folder")
        load = gr.Button("Load", elem_id="results-load")
    cell = gr.Dropdown([], label="steering cell", elem_id="results-cell")
    summary = gr.Dataframe(label="mean scores in the cell's folder", interactive=False, elem_id="results-summary")
    answers = gr.Dataframe(
        label="the cell's answers beside the baseline's", interactive=False, wrap=True, elem_id="results-answers"
    )
    status = status_box("results-status")

    def run_load(path: str) -> tuple:
        names = list(browse.sweep_cells(path))
        return (f"{len(names)} steering cells under {path}", gr.update(choices=names, value=names[0]))

    def run_cell(path: str, name: str | None) -> tuple:
        if not name:
            return ("", gr.skip(), gr.skip())
        file = Path(path) / name
        scores = (browse.sweep_summary(file), browse.cell_with_baseline(file))
        return (str(file), *(rounded(table, SCORE_DIGITS) for table in scores))

    load.click(guarded(1, run_load), [folder], [status, cell], **PRIVATE)
    cell.change(guarded(2, run_cell), [folder, cell], [status, summary, answers], **PRIVATE)
