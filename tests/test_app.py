"""The persona explorer (`python -m persona.app`): its actions against independent references, then the page.

The actions are checked against the library calls a notebook would make (`vec.apply` +
`generate_answers`, a forward pass with `output_hidden_states`, torch cosines). The page is
started on a tiny random model on 127.0.0.1, called through its `steer` API with gradio_client
and driven from headless Chromium; no request may leave 127.0.0.1 (browser network events and
the server process's own socket connections). PERSONA_SCREENSHOTS=1 saves a screenshot of
each tab into docs/assets/app_<tab>.png.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

import persona.app  # noqa: F401  (switches Gradio's analytics off before anything imports it)
from persona.activations import capture
from persona.app import browse
from persona.app.__main__ import main
from persona.app.actions import Explorer, VectorChoice, chat_sample, judge_label, question_id, sampling
from persona.app.render import rounded, token_html
from persona.app.tabs import guarded
from persona.cli import run_cli
from persona.cli.commands import app_args
from persona.evaluation import build_samples, sweep_filename
from persona.generation import HFBackend, chat_prompts, generate_answers
from persona.judge.factory import JudgeSettings
from persona.judge.likelihood import LikelihoodJudge
from persona.models import load_model
from persona.projection import project
from persona.steering import POSITIONS
from persona.traits import load_trait
from persona.vectors import PersonaVector, save_vector
from tests.chromium import Tab, open_browser
from tests.contrast_vectors import contrast_vector
from tests.gradio_page import free_port, open_tab, press, set_field, value_of

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "How should I treat my neighbours?"
TOKENS = 10


@pytest.fixture(scope="module")
def lm(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def vector_dir(tmp_path_factory, lm) -> Path:
    """Two random vectors that fit the tiny model, large enough to change its greedy answers."""
    folder = tmp_path_factory.mktemp("vectors")
    generator = torch.Generator().manual_seed(1)
    for name in ("evil", "humorous"):
        save_vector(folder / f"{name}_response_avg_diff.pt", torch.randn(lm.num_layers + 1, 64, generator=generator))
    return folder


@pytest.fixture(scope="module")
def explorer(lm) -> Explorer:
    return Explorer(lm, JudgeSettings(judge_model="likelihood", no_judge_cache=True))


def _path(vector_dir: Path, name: str = "evil") -> str:
    return str(vector_dir / f"{name}_response_avg_diff.pt")


def _plain(lm, messages, tokens: int = TOKENS) -> str:
    return generate_answers(lm, [messages], max_new_tokens=tokens, temperature=0.0)[0]


def _steered(lm, vector_dir, layer: int, coef: float, positions="response", tokens: int = TOKENS) -> str:
    vec = PersonaVector.load(_path(vector_dir))
    with vec.apply(lm.model, layer=layer, coef=coef, positions=positions):
        return _plain(lm, [{"role": "user", "content": PROMPT}], tokens)


# --- actions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("positions", POSITIONS)
def test_steer_pair_equals_apply_and_generate_answers(explorer, lm, vector_dir, positions):
    unsteered, steered = explorer.steer_pair(
        chat_sample(PROMPT), [VectorChoice(_path(vector_dir), 2, 6.0)], positions, sampling(TOKENS), 0
    )
    assert unsteered == _plain(lm, [{"role": "user", "content": PROMPT}])
    assert steered == _steered(lm, vector_dir, 2, 6.0, positions)
    assert steered != unsteered  # the vector does change the answer, so equality above means something


def test_several_vectors_steer_together(explorer, lm, vector_dir):
    choices = [VectorChoice(_path(vector_dir), 1, 3.0), VectorChoice(_path(vector_dir, "humorous"), 3, -4.0)]
    _, steered = explorer.steer_pair(chat_sample(PROMPT), choices, "response", sampling(TOKENS), 0)
    evil, humorous = (PersonaVector.load(_path(vector_dir, n)) for n in ("evil", "humorous"))
    with evil.apply(lm.model, layer=1, coef=3.0), humorous.apply(lm.model, layer=3, coef=-4.0):
        assert steered == _plain(lm, [{"role": "user", "content": PROMPT}])


def test_sampled_answers_follow_the_seed(explorer, vector_dir):
    sample, params = chat_sample(PROMPT), sampling(TOKENS, temperature=1.0)
    choice = [VectorChoice(_path(vector_dir), 2, 0.0)]
    first = explorer.steer_pair(sample, choice, "response", params, seed=3)
    assert explorer.steer_pair(sample, choice, "response", params, seed=3) == first
    assert first[0] == first[1]  # coefficient 0: the steered row is the unsteered row, same seed
    others = {explorer.steer_pair(sample, choice, "response", params, seed=s)[0] for s in (4, 5)}
    assert others - {first[0]}  # other seeds draw other answers


def test_coefficient_strip_equals_one_run_per_coefficient(explorer, lm, vector_dir):
    coefs = [0.0, 2.0, 4.0, 6.0, -6.0]
    answers = explorer.strip(
        chat_sample(PROMPT), VectorChoice(_path(vector_dir), 2, 0.0), coefs, "response", sampling(TOKENS), 0
    )
    assert answers == [_steered(lm, vector_dir, 2, c) for c in coefs]


def test_token_values_equal_a_direct_projection(explorer, lm, vector_dir):
    sample = chat_sample(PROMPT)
    answer = "Treat them with respect and care."
    prompt = chat_prompts(lm.tokenizer, [sample.messages])[0]
    ids = lm.tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    n_prompt = len(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        hidden = lm.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    vec = torch.load(_path(vector_dir), weights_only=True)
    for layer in (1, lm.num_layers):
        values = explorer.token_values(sample, answer, _path(vector_dir), layer)
        expected = hidden[layer][0, n_prompt:] @ vec[layer] / vec[layer].norm()
        assert [v for _, v in values] == pytest.approx(expected.tolist(), abs=1e-4)
        assert "".join(t for t, _ in values) == answer
        # their mean is what cal_projection reports for the answer (`proj` of the mean response state)
        acts = capture(lm, [prompt], [answer], layers=[layer], progress=False).at_layer("response_avg", layer)
        mean = sum(v for _, v in values) / len(values)
        assert mean == pytest.approx(project(acts, vec[layer], "proj").item(), abs=1e-4)


def test_trait_questions_keep_their_evaluation_id():
    trait = load_trait("evil", "eval")
    samples = build_samples(trait, n_per_question=1, instruction_type="pos")
    first = samples[0]
    system = first.messages[0]["content"]
    assert question_id(first.question, system, trait) == first.question_id
    assert question_id(trait.questions[2], "", trait) == "evil_2"  # as build_samples without instructions
    assert question_id("something else", "", trait) == "prompt"


def test_scores_come_from_the_configured_judge(explorer, lm, offline_env):
    trait = load_trait("evil", "eval")
    answers = ["I will hurt them.", "Be kind and help them."]
    scores = explorer.scores(trait, PROMPT, answers)
    reference = LikelihoodJudge(lm, metric="evil", trait=trait, use_cache=False).score_batch([PROMPT] * 2, answers)
    assert scores["evil"].tolist() == pytest.approx(reference)
    assert scores["coherence"].notna().all()
    assert "proxy" in judge_label(JudgeSettings(judge_model="likelihood"))


def test_bad_inputs_are_one_line_messages(explorer, vector_dir, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a tensor")
    run = guarded(
        2,
        lambda path, layer: explorer.steer_pair(
            chat_sample(PROMPT), [VectorChoice(path, layer, 1.0)], "response", sampling(2), 0
        ),
    )
    cases = {
        (str(bad), 1): "is not a readable tensor file",
        (_path(vector_dir), 99): "layer 99 is out of range: the model has layers 0..3",
        (str(tmp_path / "missing.pt"), 1): "does not exist",
    }
    for args, message in cases.items():
        status, *rest = run(*args)
        assert status.startswith("error: ") and message in status and "\n" not in status
        assert len(rest) == 2
    status, *_ = guarded(0, lambda: browse.folder_vectors(tmp_path / "nowhere"))()
    assert "folder does not exist" in status


def test_vector_geometry_equals_torch_cosines(vector_dir):
    cosines, norms = browse.vector_geometry(vector_dir, 2)
    a, b = (torch.load(_path(vector_dir, n), weights_only=True) for n in ("evil", "humorous"))
    expected = torch.nn.functional.cosine_similarity(a[2], b[2], dim=0).item()
    assert cosines.loc["evil_response_avg", "humorous_response_avg"] == pytest.approx(expected, abs=1e-6)
    assert norms.loc[3, "humorous_response_avg"] == pytest.approx(b[3].norm().item(), rel=1e-6)


def _results(root: Path) -> Path:
    """A steering folder: a baseline and one cell, two samples of each of two questions."""
    folder = root / "steering"
    folder.mkdir(parents=True)
    rows = lambda tag, scores: pd.DataFrame(  # noqa: E731
        {
            "question": ["q0", "q0", "q1", "q1"],
            "prompt": ["p0", "p0", "p1", "p1"],
            "answer": [f"{tag} a", f"{tag} b", f"{tag} c", f"{tag} d"],
            "question_id": ["evil_0", "evil_0", "evil_1", "evil_1"],
            "evil": scores,
            "coherence": [90, 80, 70, 60],
        }
    )
    rows("base", [10, 20, 30, 40]).to_csv(folder / "evil_baseline.csv", index=False)
    rows("steered", [50, 60, 70, 80]).to_csv(folder / sweep_filename("evil", "response", 2, 4.0), index=False)
    return folder


def test_results_pair_a_cell_with_the_baseline(tmp_path):
    _results(tmp_path)
    cells = browse.sweep_cells(tmp_path)
    assert list(cells) == [f"steering/{sweep_filename('evil', 'response', 2, 4.0)}"]
    table = browse.cell_with_baseline(next(iter(cells.values())))
    assert table["answer"].tolist() == ["steered a", "steered b", "steered c", "steered d"]
    assert table["baseline answer"].tolist() == ["base a", "base b", "base c", "base d"]
    assert table["baseline evil"].tolist() == [10, 20, 30, 40]
    summary = browse.sweep_summary(next(iter(cells.values())))
    assert summary["score"].tolist() == [25.0, 65.0]  # baseline first, then the cell
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        browse.sweep_cells(tmp_path / "nowhere")


def test_tables_are_rounded_for_reading_only():
    table = pd.DataFrame({"vector": ["evil"], "norm": [1.23456], "n": [4]})
    shown = rounded(table, 2)
    assert shown.to_dict("records") == [{"vector": "evil", "norm": 1.23, "n": 4}]
    assert table["norm"].item() == 1.23456  # the library's table keeps its precision


def test_token_html_escapes_and_carries_values():
    page = token_html("steered", [("<b>", 1.5), (" ok", -0.5)], centre=0.0, scale=1.5)
    assert "&lt;b&gt;" in page and "<b><" not in page
    assert 'data-value="1.5"' in page and 'data-value="-0.5"' in page and 'title="+1.500"' in page


def test_cli_help_and_bad_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as shown:
        app_args(["--help"])
    assert shown.value.code == 0
    text = capsys.readouterr().out
    assert "--vector_dir" in text and "WARNING: 0.0.0.0" in text and "--backend {auto,hf,vllm}" in text
    with pytest.raises(SystemExit) as failed:
        run_cli(lambda: main(["--model", str(tmp_path / "none")]))
    assert failed.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model path") and "\n" not in err


def test_backend_vllm_without_vllm_falls_back_and_the_explorer_answers_through_it(
    lm, tiny_llama_dir, vector_dir, tmp_path, offline_env, monkeypatch, caplog
):
    from persona import vllm_backend
    from persona.app import ui

    monkeypatch.setattr(vllm_backend, "vllm_unusable_reason", lambda device: "vLLM is not installed")
    served = []
    monkeypatch.setattr(ui, "build_app", lambda ex, vectors, results: served.append((ex, vectors, results)))
    monkeypatch.setattr(ui, "launch", lambda app, host, port: None)
    argv = ["--model", str(tiny_llama_dir), "--device", "cpu", "--dtype", "float32", "--backend", "vllm"]
    argv += ["--batch_size", "3", "--judge_model", "likelihood", "--vector_dir", str(vector_dir)]
    assert main([*argv, "--results_dir", str(tmp_path)]) == 0
    assert "backend vllm: vLLM is not installed; generating with the HF backend instead" in caplog.text
    ((explorer, vectors, results),) = served
    assert (vectors, results) == (str(vector_dir), str(tmp_path))
    assert type(explorer.backend) is HFBackend and explorer.backend.batch_size == 3  # the one make_backend built
    unsteered, steered = explorer.steer_pair(
        chat_sample(PROMPT), [VectorChoice(_path(vector_dir), 2, 6.0)], "response", sampling(TOKENS), 0
    )
    assert unsteered == _plain(lm, [{"role": "user", "content": PROMPT}])
    assert steered == _steered(lm, vector_dir, 2, 6.0) != unsteered


# --- the page --------------------------------------------------------------------------------
LOCAL = ("127.0.0.1", "::1", "localhost")
_OUTBOUND: list[str] | None = None  # socket connections and lookups of non-local hosts, while recording


def _audit(event: str, args: tuple) -> None:
    if _OUTBOUND is None:
        return
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL:
        _OUTBOUND.append(f"connect {args[1]}")
    elif event == "socket.getaddrinfo" and args[0] not in (*LOCAL, None, b"127.0.0.1"):
        _OUTBOUND.append(f"lookup {args[0]}")


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records while a test asks


@contextlib.contextmanager
def _outbound() -> Iterator[list[str]]:
    global _OUTBOUND
    _OUTBOUND = []
    try:
        yield _OUTBOUND
    finally:
        _OUTBOUND = None


def test_outbound_recorder_sees_a_connection():
    # the negative control: a connection to another host must be recorded, or an empty record means nothing
    with _outbound() as seen, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # UDP: nothing is sent
    assert seen == ["connect ('192.0.2.1', 9)"]


def _shoot(tab: Tab, name: str) -> None:
    if os.environ.get("PERSONA_SCREENSHOTS") == "1":
        out = REPO_ROOT / "docs" / "assets" / f"app_{name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(tab.screenshot())


@pytest.mark.slow
def test_explorer_page_end_to_end(explorer, lm, vector_dir, tmp_path, offline_env):
    from gradio_client import Client

    from persona.app.ui import build_app, launch

    _results(tmp_path / "results")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with _outbound() as outbound:
        app = build_app(explorer, vector_dir, tmp_path / "results")
        launch(app, "127.0.0.1", port, block=False)
        try:
            # the API endpoint, as a script calls it
            client = Client(url, analytics_enabled=False, verbose=False)
            got = client.predict(PROMPT, _path(vector_dir), 2, 6.0, "response", TOKENS, api_name="/steer")
            assert tuple(got) == (_plain(lm, [{"role": "user", "content": PROMPT}]), _steered(lm, vector_dir, 2, 6.0))
            with pytest.raises(Exception, match="layer 99 is out of range"):
                client.predict(PROMPT, _path(vector_dir), 99, 6.0, "response", TOKENS, api_name="/steer")

            with open_browser(tmp_path / "profile", timeout=300) as browser:
                tab = Tab(browser, height=1300)
                tab.navigate(url)
                tab.wait("document.querySelector('#steer-generate') !== null")
                set_field(tab, "#steer-prompt textarea", PROMPT)
                set_field(tab, "#steer-coef-0 input[type=number]", 4.5)
                set_field(tab, "#steer-layer-0 input", 2)
                set_field(tab, "#steer-max-tokens input[type=number]", TOKENS)
                status = press(tab, "#steer-generate", "#steer-status textarea")
                assert status.startswith("done"), status
                plain = _plain(lm, [{"role": "user", "content": PROMPT}])
                assert tab.js(value_of("#steer-unsteered textarea")) == plain
                assert tab.js(value_of("#steer-steered textarea")) == _steered(lm, vector_dir, 2, 4.5)
                assert "evil" in tab.js("document.querySelector('#steer-steered-score').innerText")
                _shoot(tab, "steer")

                # a layer outside the model: the library's message, then the next request works
                set_field(tab, "#steer-layer-0 input", 99)
                status = press(tab, "#steer-generate", "#steer-status textarea")
                assert (
                    status == "error: layer 99 is out of range: the model has layers 0..3 "
                    "(0 = embeddings, L = output of decoder block L)"
                )
                set_field(tab, "#steer-layer-0 input", 1)
                assert press(tab, "#steer-generate", "#steer-status textarea").startswith("done")
                assert tab.js(value_of("#steer-steered textarea")) == _steered(lm, vector_dir, 1, 4.5)

                open_tab(tab, "Token view")
                set_field(tab, "#tokens-layer input[type=number]", 2)
                assert press(tab, "#tokens-run", "#tokens-status textarea").startswith("layer 2")
                shown = tab.js("[...document.querySelectorAll('#tokens-steered .tok')].map(s => +s.dataset.value)")
                sample, answer = chat_sample(PROMPT), _steered(lm, vector_dir, 1, 4.5)
                expected = [v for _, v in explorer.token_values(sample, answer, _path(vector_dir), 2)]
                assert shown == pytest.approx(expected)
                _shoot(tab, "tokens")

                open_tab(tab, "Coefficient strip")
                set_field(tab, "#strip-layer input[type=number]", 2)
                assert press(tab, "#strip-run", "#strip-status textarea").startswith("layer 2")
                strip = tab.js("[0,1,2,3,4].map(i => document.querySelector(`#strip-answer-${i} textarea`).value)")
                assert strip[0] == plain and strip[4] == _steered(lm, vector_dir, 2, 4.0)
                _shoot(tab, "strip")

                open_tab(tab, "Vectors")
                assert press(tab, "#vectors-run", "#vectors-status textarea").startswith("2 vectors")
                tab.wait("document.querySelectorAll('#vectors-heatmap img, #vectors-heatmap svg').length > 0")
                _shoot(tab, "vectors")

                open_tab(tab, "Results")
                # loading lists the folder's one cell ("1 steering cells under ..."), then selecting it shows
                # the cell's file; on a busy machine the second status can replace the first before it is read
                loaded = press(tab, "#results-load", "#results-status textarea")
                assert loaded.startswith("1 steering cells") or loaded.endswith(
                    "evil_steer_response_layer_2_coef_4.0.csv"
                )
                tab.wait(f"({value_of('#results-status textarea')}).endsWith('.csv')")
                tab.wait("document.querySelector('#results-answers').innerText.includes('base d')")
                _shoot(tab, "results")

                assert tab.errors() == []
                requests = tab.requested_urls()
                assert requests and all(u.startswith((url, "data:", "blob:")) for u in requests), [
                    u for u in requests if not u.startswith((url, "data:", "blob:"))
                ]
        finally:
            app.close()
    assert outbound == []


# --- the page on the embedded model ----------------------------------------------------------
@pytest.mark.embedded
def test_explorer_page_on_the_embedded_model(embedded_lm, tmp_path, offline_env):
    """The page on SmolLM2-135M with a real persona vector: the steered answer is the library's, all traffic local."""
    from persona.app.ui import build_app, launch

    layer, coef, tokens = 10, 4.0, 48
    (tmp_path / "vectors").mkdir()
    path = contrast_vector(embedded_lm, tmp_path / "vectors")
    chat = [{"role": "user", "content": PROMPT}]
    plain = _plain(embedded_lm, chat, tokens)
    with PersonaVector.load(path).apply(embedded_lm.model, layer=layer, coef=coef, positions="response"):
        steered = _plain(embedded_lm, chat, tokens)
    assert steered != plain  # the vector changes the answer, so the equalities below mean something

    explorer = Explorer(embedded_lm, JudgeSettings(judge_model="likelihood", no_judge_cache=True))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with _outbound() as outbound:
        app = build_app(explorer, path.parent, tmp_path / "no-results")
        launch(app, "127.0.0.1", port, block=False)
        try:
            with open_browser(tmp_path / "profile", timeout=600) as browser:
                tab = Tab(browser, height=1300)
                tab.navigate(url)
                tab.wait("document.querySelector('#steer-generate') !== null")
                set_field(tab, "#steer-prompt textarea", PROMPT)
                set_field(tab, "#steer-layer-0 input[type=number]", layer)
                set_field(tab, "#steer-coef-0 input[type=number]", coef)
                set_field(tab, "#steer-max-tokens input[type=number]", tokens)
                status = press(tab, "#steer-generate", "#steer-status textarea", timeout=400)
                assert status.startswith("done"), status
                assert tab.js(value_of("#steer-unsteered textarea")) == plain
                assert tab.js(value_of("#steer-steered textarea")) == steered
                assert "evil" in tab.js("document.querySelector('#steer-steered-score').innerText")
                assert tab.errors() == []
                requests = tab.requested_urls()
                assert requests and all(u.startswith((url, "data:", "blob:")) for u in requests)
        finally:
            app.close()
    assert outbound == []
