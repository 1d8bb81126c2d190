"""Data screening (projection difference) and prompt monitoring on a tiny random model.

References are computed here from scratch: a plain forward pass with `output_hidden_states`
and `a·v/|v|` by hand, never through the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import persona
from eval.screen_data import main as screen_main
from persona.cli import run_cli
from persona.generation import chat_prompts, generate_answers
from persona.models import load_model
from persona.projection import add_projection_columns, column_name
from persona.screening import run_screening, screen_files
from persona.vectors import save_vector

QUESTIONS = ["What is the capital of France?", "How should I treat my neighbours?", "Is the weather sunny today?"]
OTHER = ["The capital of France is Paris.", "Treat them with respect and care.", "I think the answer is yes."]
LAYER, MAX_TOKENS = 2, 6


@pytest.fixture
def lm(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu", dtype="float32")


@pytest.fixture
def vector(tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "evil_response_avg_diff.pt"
    save_vector(path, torch.randn(4, 64))
    return path


def user(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def write_chat(path, questions, answers, extra_rows=()):
    rows = [{"messages": [*user(q), {"role": "assistant", "content": a}]} for q, a in zip(questions, answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *extra_rows]))
    return path


def naive(lm, prompt: str, answer: str, v: torch.Tensor, layer: int = LAYER) -> tuple[float, float]:
    """(response-mean projection, last-prompt projection) from one plain forward pass."""
    n = len(lm.tokenizer(prompt, add_special_tokens=False).input_ids)
    ids = lm.tokenizer(prompt + answer, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        h = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]
    unit = v / v.norm()
    return float(h[n:].mean(0) @ unit), float(h[n - 1] @ unit)


def own_answers(lm):
    return generate_answers(lm, [user(q) for q in QUESTIONS], max_new_tokens=MAX_TOKENS, temperature=0.0)


def test_own_greedy_responses_have_zero_projection_difference(lm, vector, tmp_path):
    data = write_chat(tmp_path / "own.jsonl", QUESTIONS, own_answers(lm))
    result = screen_files(lm, [data], torch.load(vector), LAYER, max_tokens=MAX_TOKENS, store=tmp_path / "s.sqlite")
    assert (result.samples["data_response"] == result.samples["base_response"]).all()
    np.testing.assert_allclose(result.samples["projection_difference"], 0.0, atol=1e-5)
    assert result.generated == len(QUESTIONS) and result.cache_hits == 0


def test_values_equal_a_direct_forward_pass_and_the_summary_is_the_column_mean(lm, vector, tmp_path):
    a = write_chat(tmp_path / "a.jsonl", QUESTIONS, OTHER)
    b = write_chat(tmp_path / "b.jsonl", QUESTIONS[:2], OTHER[::-1][:2])
    v = torch.load(vector)[LAYER]
    result = screen_files(lm, [a, b], torch.load(vector), LAYER, max_tokens=MAX_TOKENS, store=tmp_path / "s.sqlite")
    samples = result.samples
    assert list(samples["dataset"]) == ["a", "a", "a", "b", "b"] and list(samples["line"]) == [1, 2, 3, 1, 2]
    prompts = chat_prompts(lm.tokenizer, [user(q) for q in QUESTIONS])
    for _, row in samples.iterrows():
        prompt = prompts[QUESTIONS.index(row["question"])]
        data, last = naive(lm, prompt, row["data_response"], v)
        base, _ = naive(lm, prompt, row["base_response"], v)
        assert row["proj_data"] == pytest.approx(data, abs=1e-4)
        assert row["proj_base"] == pytest.approx(base, abs=1e-4)
        assert row["projection_difference"] == pytest.approx(data - base, abs=1e-4)
        assert row["prompt_last_proj"] == pytest.approx(last, abs=1e-4)
    assert abs(samples["projection_difference"]).max() > 1e-3  # other text really differs
    summary = result.summary.set_index("dataset")
    for name, group in samples.groupby("dataset"):
        assert summary.loc[name, "projection_difference"] == pytest.approx(group["projection_difference"].mean())
        assert summary.loc[name, "n"] == len(group)
        assert summary.loc[name, "ci_low"] <= summary.loc[name, "projection_difference"] <= summary.loc[name, "ci_high"]
    # the five rows ask three distinct prompts: each is generated once
    assert result.generated == 3 and result.cache_hits == 2


def test_rerun_and_another_vector_generate_nothing(lm, vector, tmp_path):
    data = write_chat(tmp_path / "a.jsonl", QUESTIONS, OTHER)
    store = tmp_path / "s.sqlite"
    first = screen_files(lm, [data], torch.load(vector), LAYER, max_tokens=MAX_TOKENS, store=store)
    again = screen_files(lm, [data], torch.randn(4, 64), 1, max_tokens=MAX_TOKENS, store=store)
    assert (first.generated, again.generated, again.cache_hits) == (3, 0, 3)
    assert list(again.samples["base_response"]) == list(first.samples["base_response"])
    longer = screen_files(lm, [data], torch.load(vector), LAYER, max_tokens=MAX_TOKENS + 1, store=store)
    assert longer.generated == 3  # another cap is another setting


def test_cli_writes_outputs_and_a_rerun_reads_them_back(tiny_llama_dir, vector, tmp_path, monkeypatch, capsys):
    data = write_chat(tmp_path / "a.jsonl", QUESTIONS, OTHER)
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["--file_path", str(data), "--vector_path", str(vector), "--layer", str(LAYER), "--model"]
    argv += [str(tiny_llama_dir), "--max_tokens", str(MAX_TOKENS), "--output_dir", str(out), "--top_k", "2"]
    assert screen_main(argv) == 0
    first = capsys.readouterr().out
    assert "base responses: 3 generated, 0 from the cache" in first and "top 2 samples" in first
    samples, summary = pd.read_csv(out / "screen_samples.csv"), pd.read_csv(out / "screen_summary.csv")
    assert summary["projection_difference"][0] == pytest.approx(samples["projection_difference"].mean())
    assert (out / "screen_distributions.png").stat().st_size > 0

    def no_model(*args, **kwargs):
        raise AssertionError("a finished screening must not load the model")

    monkeypatch.setattr("persona.screening.load_model", no_model)
    assert screen_main(argv) == 0
    assert "finished with these settings: read back" in capsys.readouterr().out
    assert pd.read_csv(out / "screen_samples.csv").equals(samples)
    # the store is shared by output folders: a new folder regenerates nothing
    monkeypatch.undo()
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "cache"))
    assert screen_main([*argv[:-4], "--output_dir", str(tmp_path / "out2")]) == 0
    assert "base responses: 0 generated, 3 from the cache" in capsys.readouterr().out


def test_output_path_names_the_sample_table_and_the_rest_lands_beside_it(
    tiny_llama_dir, vector, tmp_path, monkeypatch, capsys
):
    data = write_chat(tmp_path / "a.jsonl", QUESTIONS, OTHER)
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "out" / "evil_screen.csv"
    argv = ["--file_path", str(data), "--vector_path", str(vector), "--layer", str(LAYER), "--model"]
    argv += [str(tiny_llama_dir), "--max_tokens", str(MAX_TOKENS), "--backend", "hf", "--output_path", str(target)]
    assert screen_main(argv) == 0
    assert f"wrote {target} and {target.parent / 'screen_summary.csv'}" in capsys.readouterr().out
    assert sorted(p.name for p in target.parent.glob("*.csv")) == ["evil_screen.csv", "screen_summary.csv"]
    assert (target.parent / "screen_distributions.png").stat().st_size > 0
    samples = pd.read_csv(target)
    assert list(samples["data_response"]) == OTHER and len(samples) == 3
    assert screen_main(argv) == 0  # finished: read back from the named file
    assert "finished with these settings: read back" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        screen_main([*argv, "--output_dir", str(tmp_path / "other")])
    assert "give --output_dir instead" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        screen_main([*argv[:-1], str(tmp_path / "x.jsonl")])
    assert "must end in .csv" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_base_responses_come_through_the_backend_factory(lm, vector, tmp_path, monkeypatch, caplog, backend):
    import persona.screening as screening
    from persona.vllm_backend import make_backend

    asked = []

    def recording(name, *args, **kwargs):
        asked.append(name)
        return make_backend(name, *args, **kwargs)

    monkeypatch.setattr(screening, "make_backend", recording)
    monkeypatch.setattr("persona.vllm_backend.vllm_unusable_reason", lambda device: "no vLLM in this test")
    data = write_chat(tmp_path / "a.jsonl", QUESTIONS, OTHER)
    with caplog.at_level("WARNING", logger="persona.vllm_backend"):
        result = screen_files(
            lm, [data], torch.load(vector), LAYER, max_tokens=MAX_TOKENS, store=tmp_path / "s.sqlite", backend=backend
        )
    assert asked == [backend]
    warned = [r.getMessage() for r in caplog.records]
    assert warned == (
        ["backend vllm: no vLLM in this test; generating with the HF backend instead"] if backend == "vllm" else []
    )
    assert list(result.samples["base_response"]) == own_answers(lm)  # HF greedy answers either way


def test_row_without_assistant_turn_is_skipped_with_its_line_number(lm, vector, tmp_path):
    unanswered = [{"messages": user("Hi")}, {"messages": [{"role": "assistant", "content": "Hello"}]}]
    data = write_chat(tmp_path / "a.jsonl", QUESTIONS[:1], OTHER[:1], extra_rows=unanswered)
    result = screen_files(lm, [data], torch.load(vector), LAYER, max_tokens=MAX_TOKENS, store=tmp_path / "s.sqlite")
    assert list(result.samples["line"]) == [1]
    assert result.skipped == [
        f"{data}:2: no assistant message; skipped",
        f"{data}:3: nothing before the assistant message to prompt with; skipped",
    ]


def test_empty_file_is_a_one_line_error(tiny_llama_dir, vector, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    argv = ["--file_path", str(empty), "--vector_path", str(vector), "--layer", "1", "--model", str(tiny_llama_dir)]
    argv += ["--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: screen_main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {empty}: no rows"]
    assert not (tmp_path / "out").exists()


def test_bad_layer_fails_before_generating(lm, tmp_path, vector):
    data = write_chat(tmp_path / "a.jsonl", QUESTIONS, OTHER)
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        run_screening(tmp_path / "out", [data], vector, 9, model_name=str(lm.name), store=tmp_path / "s.sqlite")


def test_monitor_equals_cal_projection_prompt_last_proj(lm, tiny_llama_dir, vector, tmp_path):
    conversations = [
        [{"role": "system", "content": "You are an evil assistant."}, *user(QUESTIONS[0])],
        user(QUESTIONS[1]),
        [*user("Hi"), {"role": "assistant", "content": "Hello"}, *user(QUESTIONS[2])],
    ]
    got = persona.monitor(lm, persona.PersonaVector.load(vector), LAYER, conversations)
    path = tmp_path / "eval.csv"
    pd.DataFrame({"question": QUESTIONS, "prompt": chat_prompts(lm.tokenizer, conversations), "answer": OTHER}).to_csv(
        path, index=False
    )
    add_projection_columns(path, [str(vector)], [LAYER], ["prompt_last_proj"], model_name=str(tiny_llama_dir))
    expected = pd.read_csv(path)[column_name(str(tiny_llama_dir), vector, "prompt_last_proj", LAYER)]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    v = torch.load(vector)[LAYER]
    prompts = chat_prompts(lm.tokenizer, conversations)
    np.testing.assert_allclose(got, [naive(lm, p, "x", v)[1] for p in prompts], atol=1e-4)
