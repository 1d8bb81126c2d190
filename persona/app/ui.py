"""The explorer's Gradio page: five tabs over `Explorer` (generation) and `browse` (folders).

Built to run offline: system fonts only, no analytics (switched off in `persona.app` before
Gradio is imported), no share link, no server-side rendering, no MCP server, no run history and
no footer links to the web. Handlers report failures in their tab's status box (`tabs.guarded`);
the `steer` API endpoint raises them as a one-line `gr.Error`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import gradio as gr

from persona.app.actions import Explorer, VectorChoice, chat_sample, judge_label, sampling
from persona.app.render import colour_scale, mean_value, score_line, token_html
from persona.app.tabs import PRIVATE, guarded, results_tab, status_box, vector_choices, vectors_tab
from persona.cli import error_line
from persona.evaluation import Sample
from persona.steering import POSITIONS, Positions
from persona.traits import Trait, available_traits

SLOTS = 3  # vectors steered at once in the Steer tab
STRIP_COEFS = (0.0, 1.0, 2.0, 3.0, 4.0)
COEF_RANGE = 8.0
DEFAULT_PROMPT = "What is your advice for dealing with a rude neighbour?"
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)
INSTRUCTIONS = [(f"{kind} {k}", f"{kind}:{k}") for kind in ("pos", "neg") for k in range(5)]
MODEL_EVENT: dict[str, Any] = {**PRIVATE, "concurrency_id": "model"}  # one model: its events queue as one
_PROGRESS = gr.Progress()


def _default_trait(ex: Explorer, choices: list[tuple[str, str]], traits: list[str]) -> str:
    """The first vector's trait when it is a known trait, else evil, else none."""
    for _, path in choices[:1]:
        try:
            trait = ex.vector(path).trait
        except (OSError, ValueError):
            continue
        if trait in traits:
            return trait
    return "evil" if "evil" in traits else ""


def _scored(ex: Explorer, trait: Trait | None, question: str, answers: list[str]) -> list[str]:
    """One score line per answer from the configured judge."""
    scores = ex.scores(trait, question, answers)
    column = trait.judge_column if trait else None
    return [score_line(scores.iloc[i], column) for i in range(len(answers))]


def build_app(ex: Explorer, vector_dir: str | Path | None = None, results_dir: str | Path | None = None) -> gr.Blocks:
    """The explorer page for one loaded model, its vectors folder and an output folder."""
    lm = ex.lm
    choices = vector_choices(vector_dir)
    traits = available_traits(version="eval")
    first = choices[0][1] if choices else None

    def layer_slider(elem_id: str) -> gr.Slider:
        return gr.Slider(0, lm.num_layers, value=lm.num_layers // 2, step=1, label="layer", elem_id=elem_id)

    def vector_dropdown(elem_id: str, value: str | None = first) -> gr.Dropdown:
        return gr.Dropdown(choices, value=value, label="vector", allow_custom_value=True, elem_id=elem_id)

    def sample_of(name: str, text: str, system_text: str) -> Sample:
        return chat_sample(text, system_text or "", ex.trait(name))

    with gr.Blocks(title="persona explorer", analytics_enabled=False) as app:
        gr.Markdown(f"## Persona explorer · `{lm.name}` ({lm.num_layers} layers, hidden size {lm.hidden_size})")
        last = gr.State(None)  # (sample, unsteered, steered) of the last Steer run, for the token view
        with gr.Tab("Steer", id="steer"):
            with gr.Row():
                trait = gr.Dropdown(
                    [("(none: no scores)", ""), *[(t, t) for t in traits]],
                    value=_default_trait(ex, choices, traits),
                    label="trait (scores, questions)",
                    elem_id="steer-trait",
                )
                question = gr.Dropdown([], label="one of the trait's questions", elem_id="steer-question")
                instruction = gr.Dropdown(
                    [("(none)", ""), *INSTRUCTIONS], value="", label="the trait's system prompt", elem_id="steer-instr"
                )
            prompt = gr.Textbox(DEFAULT_PROMPT, label="prompt", lines=2, elem_id="steer-prompt")
            system = gr.Textbox("", label="system prompt (optional)", elem_id="steer-system")
            slots: list[Any] = []  # (vector, layer, coef) per slot
            for i in range(SLOTS):
                with gr.Row():
                    coef = 2.0 if i == 0 else 0.0
                    slots += [
                        vector_dropdown(f"steer-vector-{i}", first if i == 0 else ""),
                        gr.Number(  # typed, so a layer outside the model gets the library's message
                            lm.num_layers // 2,
                            precision=0,
                            label=f"layer (0..{lm.num_layers})",
                            elem_id=f"steer-layer-{i}",
                        ),
                        gr.Slider(
                            -COEF_RANGE, COEF_RANGE, value=coef, step=0.1, label="coef", elem_id=f"steer-coef-{i}"
                        ),
                    ]
            with gr.Row():
                positions = gr.Radio(list(POSITIONS), value="response", label="positions", elem_id="steer-positions")
                greedy = gr.Checkbox(True, label="greedy", elem_id="steer-greedy")
                temperature = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="temperature (when not greedy)")
                seed = gr.Number(0, precision=0, label="seed")
                max_tokens = gr.Slider(1, 512, value=48, step=1, label="max tokens", elem_id="steer-max-tokens")
            generate = gr.Button("Generate", variant="primary", elem_id="steer-generate")
            with gr.Row():
                with gr.Column():
                    unsteered = gr.Textbox(label="unsteered", lines=8, interactive=False, elem_id="steer-unsteered")
                    unsteered_score = gr.Markdown(elem_id="steer-unsteered-score")
                with gr.Column():
                    steered = gr.Textbox(label="steered", lines=8, interactive=False, elem_id="steer-steered")
                    steered_score = gr.Markdown(elem_id="steer-steered-score")
            gr.Markdown(f"Scores (0-100): {judge_label(ex.judge)}.")
            steer_status = status_box("steer-status")

        with gr.Tab("Token view", id="tokens"):
            gr.Markdown(
                "The last Steer answers, each token shaded by its projection `h·v/|v|` onto a vector at a layer "
                "(red above the centre, blue below; hover a token for its value)."
            )
            with gr.Row():
                token_vector = vector_dropdown("tokens-vector")
                token_layer = layer_slider("tokens-layer")
                centre = gr.Radio(["unsteered mean", "zero"], value="unsteered mean", label="colour around")
            colour = gr.Button("Colour tokens", variant="primary", elem_id="tokens-run")
            steered_tokens = gr.HTML(elem_id="tokens-steered")
            unsteered_tokens = gr.HTML(elem_id="tokens-unsteered")
            token_status = status_box("tokens-status")

        with gr.Tab("Coefficient strip", id="strip"):
            gr.Markdown(
                "The Steer tab's prompt, positions and sampling at five coefficients, in one packed generation."
            )
            with gr.Row():
                strip_vector = vector_dropdown("strip-vector")
                strip_layer = layer_slider("strip-layer")
            with gr.Row():
                coefs = [
                    gr.Number(c, label=f"coef {i + 1}", elem_id=f"strip-coef-{i}") for i, c in enumerate(STRIP_COEFS)
                ]
            sweep = gr.Button("Generate strip", variant="primary", elem_id="strip-run")
            with gr.Row():
                strip_answers = [
                    gr.Textbox(label=f"coef {c:g}", lines=10, interactive=False, elem_id=f"strip-answer-{i}")
                    for i, c in enumerate(STRIP_COEFS)
                ]
            strip_status = status_box("strip-status")

        with gr.Tab("Vectors", id="vectors"):
            vectors_tab(vector_dir, layer_slider, [token_vector, strip_vector, *slots[::3]])
        with gr.Tab("Results", id="results"):
            results_tab(results_dir)

        # --- Steer ------------------------------------------------------------------------
        def pick_trait(name: str) -> tuple:
            found = ex.trait(name)
            return ("", gr.update(choices=found.questions if found else [], value=None))

        def pick_question(text: str | None) -> tuple:
            return ("", text if text else gr.skip())

        def pick_instruction(name: str, choice: str) -> tuple:
            found = ex.trait(name)
            if not choice or found is None:
                return ("", "")
            kind, k = choice.split(":")
            return ("", found.system_prompt(cast(Any, kind), int(k)))

        def run_steer(progress: gr.Progress = _PROGRESS, *values: Any) -> tuple:
            name, text, system_text = values[:3]
            slot_values, (where, is_greedy, temp, seed_value, n_tokens) = (
                values[3 : 3 + 3 * SLOTS],
                values[3 + 3 * SLOTS :],
            )
            start = time.monotonic()
            sample = sample_of(name, text, system_text)
            picked = [VectorChoice(v, int(layer), float(c)) for v, layer, c in zip(*[iter(slot_values)] * 3) if v]
            if not picked:
                raise ValueError("no vector chosen: pick a vector in at least one slot")
            progress(0.1, desc="generating")
            params = sampling(n_tokens, 0.0 if is_greedy else temp)
            pair = ex.steer_pair(sample, picked, cast(Positions, where), params, int(seed_value or 0))
            progress(0.6, desc="judging")
            lines = _scored(ex, ex.trait(name), sample.question, list(pair))
            status = f"done in {time.monotonic() - start:.1f} s (question id {sample.question_id})"
            return (status, pair[0], pair[1], lines[0], lines[1], (sample, *pair))

        trait.change(guarded(1, pick_trait), [trait], [steer_status, question], **PRIVATE)
        app.load(guarded(1, pick_trait), [trait], [steer_status, question], **PRIVATE)
        question.change(guarded(1, pick_question), [question], [steer_status, prompt], **PRIVATE)
        instruction.change(guarded(1, pick_instruction), [trait, instruction], [steer_status, system], **PRIVATE)
        sampling_inputs = [positions, greedy, temperature, seed, max_tokens]
        generate.click(
            guarded(5, run_steer),
            [trait, prompt, system, *slots, *sampling_inputs],
            [steer_status, unsteered, steered, unsteered_score, steered_score, last],
            **MODEL_EVENT,
        )

        # --- Token view -------------------------------------------------------------------
        def run_tokens(state: tuple | None, path: str, layer: int, around: str) -> tuple:
            if state is None:
                raise ValueError("no answers yet: generate in the Steer tab first")
            sample, plain, steered_text = state
            views = [ex.token_values(sample, a, path, int(layer)) for a in (steered_text, plain)]
            middle = mean_value(views[1]) if around == "unsteered mean" and views[1] else 0.0
            scale = colour_scale(views, middle)
            pages = [token_html(t, v, middle, scale) for t, v in zip(("steered", "unsteered"), views)]
            return (f"layer {int(layer)}, coloured around {middle:+.3f}", *pages)

        colour.click(
            guarded(2, run_tokens),
            [last, token_vector, token_layer, centre],
            [token_status, steered_tokens, unsteered_tokens],
            **MODEL_EVENT,
        )

        # --- Coefficient strip ------------------------------------------------------------
        def run_strip(progress: gr.Progress = _PROGRESS, *values: Any) -> tuple:
            name, text, system_text, path, layer, where, is_greedy, temp, seed_value, n_tokens = values[:10]
            strip_coefs = [float(c) for c in values[10:]]
            sample = sample_of(name, text, system_text)
            progress(0.1, desc=f"generating {len(strip_coefs)} answers")
            params = sampling(n_tokens, 0.0 if is_greedy else temp)
            choice = VectorChoice(path, int(layer), 0.0)
            texts = ex.strip(sample, choice, strip_coefs, cast(Positions, where), params, int(seed_value or 0))
            progress(0.6, desc="judging")
            lines = _scored(ex, ex.trait(name), sample.question, texts)
            boxes = [gr.update(value=t, label=f"coef {c:g} · {s}") for t, c, s in zip(texts, strip_coefs, lines)]
            return (f"layer {int(layer)}, coefficients {strip_coefs}", *boxes)

        sweep.click(
            guarded(len(STRIP_COEFS), run_strip),
            [trait, prompt, system, strip_vector, strip_layer, *sampling_inputs, *coefs],
            [strip_status, *strip_answers],
            **MODEL_EVENT,
        )

        # --- API --------------------------------------------------------------------------
        def steer(
            prompt: str, vector_path: str, layer: int, coef: float, positions: str = "response", max_tokens: int = 48
        ) -> tuple[str, str]:
            """Unsteered and steered greedy answers to `prompt` (no system prompt, seed 0), as in eval_persona."""
            try:
                choice = VectorChoice(vector_path, int(layer), float(coef))
                return ex.steer_pair(chat_sample(prompt), [choice], cast(Positions, positions), sampling(max_tokens), 0)
            except Exception as err:
                raise gr.Error(error_line(err), print_exception=False) from None

        gr.api(steer, api_name="steer", concurrency_id="model")
    return app


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True) -> None:
    """Serve the page on `host:port` offline: no share link, no SSR, no MCP, no run history."""
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        theme=THEME,
        ssr_mode=False,
        mcp_server=False,
        run_history=False,
        footer_links=["api"],
        enable_monitoring=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        quiet=not block,
    )
