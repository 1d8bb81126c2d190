"""The vLLM backend against the HF reference, and the OpenAI-compatible judge and trait generator against a
real vLLM server serving the embedded model on 127.0.0.1. Needs vLLM: `make test-vllm` builds .venv-vllm."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence

import pytest
import torch

pytest.importorskip("vllm", reason="needs vLLM (CPU: `make test-vllm` builds .venv-vllm; CUDA: `pip install vllm`)")

from persona import llm  # noqa: E402
from persona.generation import chat_prompts  # noqa: E402
from persona.judge.aggregate import aggregate, number_tokenization, token_probs  # noqa: E402
from persona.judge.openai_judge import PROBE_PROMPT, OpenAIJudge  # noqa: E402
from persona.judge.prompts import fill  # noqa: E402
from persona.models import LoadedModel, embedded_model_dir, load_model  # noqa: E402
from persona.sampling import SamplingParams  # noqa: E402
from persona.steering import Steer, steering  # noqa: E402
from persona.vllm_backend import VLLMBackend, make_backend  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.embedded]
# 1 GiB of KV cache per engine (CPU builds; ignored on CUDA) is plenty here and keeps two engines in memory.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

QUESTIONS = ["What is your favourite food?", "How should I treat my neighbours?"]
NEW = 12
GREEDY = SamplingParams(max_new_tokens=NEW, temperature=0.0)


def hf_reference(lm: LoadedModel, prompt: str, steers: Sequence[Steer], new: int = NEW) -> list[int]:
    """Greedy HF `generate` of one prompt alone (no padding) under `persona.steering`: the reference."""
    enc = lm.tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode(), steering(lm.model, steers):
        out = lm.model.generate(
            **enc,
            max_new_tokens=new,
            min_new_tokens=GREEDY.min_new_tokens,  # both backends mask stop tokens until then
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
    return out[0, enc["input_ids"].shape[1] :].tolist()


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def backend(lm: LoadedModel) -> Iterator[VLLMBackend]:
    yield VLLMBackend(lm)


@pytest.fixture(scope="module")
def prompts(lm: LoadedModel) -> list[str]:
    return chat_prompts(lm.tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS])


@pytest.fixture(scope="module")
def vectors(lm: LoadedModel) -> torch.Tensor:
    """Two unit directions per layer, [2, L+1, hidden] (seeded)."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, lm.num_layers + 1, lm.hidden_size, generator=g)
    return v / v.norm(dim=-1, keepdim=True)


@pytest.fixture(scope="module")
def scaled(lm: LoadedModel, prompts: list[str], vectors: torch.Tensor) -> torch.Tensor:
    """The first direction at each layer scaled to 20% of the residual stream's norm there (last prompt token),
    so coefficients 1 and 2 change the greedy answers at any layer."""
    enc = lm.tokenizer(prompts, return_tensors="pt", add_special_tokens=False, padding=True)
    with torch.inference_mode():
        hidden = lm.model(**enc, output_hidden_states=True).hidden_states
    norms = torch.stack([h[:, -1].norm(dim=-1).mean() for h in hidden])
    return vectors[0] * norms[:, None] * 0.2


@pytest.fixture(scope="module")
def unsteered(backend: VLLMBackend, prompts: list[str]) -> list[list[int]]:
    return backend.generate_ids(prompts, GREEDY, [0] * len(prompts), progress=False)


def test_unsteered_matches_hf(lm, backend, prompts, unsteered):
    assert unsteered == [hf_reference(lm, p, []) for p in prompts]


def packed(prompts: list[str], configs: list[list[Steer]]) -> tuple[list[str], list[Steer]]:
    """All configurations in one vLLM call: config k owns rows k*n..(k+1)*n-1; each distinct steer gets a
    per-row coefficient that is zero outside its configuration's rows (how sweeps pack cells)."""
    n = len(prompts)
    steers: list[Steer] = []
    for k, config in enumerate(configs):
        for steer in config:
            coef = torch.zeros(n * len(configs))
            coef[k * n : (k + 1) * n] = float(steer.coef)
            steers.append(Steer(steer.vector, steer.layer, coef, steer.positions, steer.op))
    return prompts * len(configs), steers


def check_against_hf(lm, backend, prompts, configs) -> list[list[list[int]]]:
    """Greedy vLLM ids of every configuration (one packed call) equal HF's; returns them per configuration."""
    rows, steers = packed(prompts, configs)
    got = backend.generate_ids(rows, GREEDY, [0] * len(rows), steers, progress=False)
    n = len(prompts)
    per_config = [got[k * n : (k + 1) * n] for k in range(len(configs))]
    for config, ids in zip(configs, per_config):
        assert ids == [hf_reference(lm, p, config) for p in prompts], config
    return per_config


def test_response_steering_matches_hf_at_two_layers_and_two_coefs(lm, backend, prompts, scaled, unsteered):
    configs = [[Steer(scaled, layer, coef)] for layer in (10, 20) for coef in (1.0, 2.0)]
    results = check_against_hf(lm, backend, prompts, configs)
    for ids in results:
        assert ids != unsteered  # each steer changes the answers, so agreeing with HF means something


def test_coef_zero_equals_unsteered_and_packed_rows_equal_separate_runs(backend, prompts, vectors, unsteered):
    rows, steers = packed(prompts, [[Steer(vectors[0], 10, 0.0)], [Steer(vectors[0], 10, 6.0)]])
    got = backend.generate_ids(rows, GREEDY, [0] * len(rows), steers, progress=False)
    alone = backend.generate_ids(prompts, GREEDY, [0] * len(prompts), [Steer(vectors[0], 10, 6.0)], progress=False)
    n = len(prompts)
    assert got[:n] == unsteered
    assert got[n:] == alone != unsteered


def test_prompt_all_ablate_and_edge_layers_match_hf(lm, backend, prompts, vectors):
    configs = [
        [Steer(vectors[0], 0, 4.0)],  # block-0 input
        [Steer(vectors[0], 12, 4.0, positions="prompt")],
        [Steer(vectors[0], 12, 4.0, positions="all")],
        [Steer(vectors[0], lm.num_layers, 4.0)],  # after the final norm
        [Steer(vectors[1], 8, 1.0, positions="all", op="ablate")],
    ]
    check_against_hf(lm, backend, prompts, configs)


def test_two_vectors_equal_their_sum(backend, prompts, vectors):
    both = [Steer(vectors[0], 10, 4.0), Steer(vectors[1], 10, 4.0)]
    rows, steers = packed(prompts, [both, [Steer(vectors[0] + vectors[1], 10, 4.0)]])
    got = backend.generate_ids(rows, GREEDY, [0] * len(rows), steers, progress=False)
    assert got[: len(prompts)] == got[len(prompts) :]


def test_sampling_is_seeded_per_row_and_batch_independent(backend, prompts):
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    batch = backend.generate([prompts[0], prompts[1], prompts[0], prompts[0]], params, [11, 12, 11, 99], progress=False)
    alone = backend.generate(prompts[1:2], params, [12], progress=False)
    assert batch[0] == batch[2] != batch[3]  # same seed and prompt, same answer; another seed, another answer
    assert batch[1] == alone[0]  # batch-mates change nothing


def test_generate_decodes_like_hf_and_falls_back_with_a_reason(backend, lm, prompts, vectors, monkeypatch, caplog):
    steers = [Steer(vectors[0], 10, 4.0)]
    texts = backend.generate(prompts, GREEDY, [0] * len(prompts), lambda rows: steers, progress=False)
    assert texts == [lm.tokenizer.decode(hf_reference(lm, p, steers), skip_special_tokens=True) for p in prompts]

    calls = []

    class Recorder:
        def generate(self, prompts, params, seeds, steer_factory=None, progress=True):
            calls.append(len(prompts))
            return ["hf"] * len(prompts)

    monkeypatch.setattr(backend, "fallback", Recorder())
    monkeypatch.setattr("persona.vllm_backend.unsteerable_reason", lambda model: "an unknown layer type")
    with caplog.at_level(logging.WARNING, logger="persona.vllm_backend"):
        out = backend.generate(prompts, GREEDY, [0] * len(prompts), lambda rows: steers, progress=False)
    assert out == ["hf"] * len(prompts) and calls == [len(prompts)]
    assert "an unknown layer type" in caplog.text


def test_make_backend_choices(lm):
    assert isinstance(make_backend("vllm", lm), VLLMBackend)
    assert isinstance(make_backend("auto", lm), VLLMBackend)
    assert not isinstance(make_backend("hf", lm), VLLMBackend)
    with pytest.raises(ValueError, match="--backend"):
        make_backend("tgi", lm)


def test_eval_persona_with_vllm_backend_unsteered_and_steered(lm, backend, vectors, tmp_path):
    """The CLI end to end (judge: likelihood proxy); answers equal the HF reference for each CSV prompt."""
    import pandas as pd

    from eval.eval_persona import main
    from persona.vectors import save_vector
    from tests.trait_files import short_trait_file

    trait_path = short_trait_file("evil", tmp_path)
    save_vector(tmp_path / "v.pt", vectors[0] * 12)
    common = [
        "--model",
        "smollm2-135m",
        "--trait",
        str(trait_path),
        "--n_per_question",
        "1",
        "--max_tokens",
        "8",
        "--judge_model",
        "likelihood",
        "--no_judge_cache",
        "--device",
        "cpu",
        "--backend",
        "vllm",
    ]
    runs = {"plain.csv": [], "steered.csv": ["--vector_path", str(tmp_path / "v.pt"), "--layer", "10", "--coef", "1"]}
    for name, extra in runs.items():
        assert main([*common, "--output_path", str(tmp_path / name), *extra]) == 0
    steers = {"plain.csv": [], "steered.csv": [Steer(vectors[0] * 12, 10, 1.0)]}
    for name in runs:
        df = pd.read_csv(tmp_path / name, keep_default_na=False)
        assert len(df) == 2
        expected = [
            lm.tokenizer.decode(hf_reference(lm, p, steers[name], 8), skip_special_tokens=True) for p in df["prompt"]
        ]
        assert df["answer"].tolist() == expected
    plain, steered = (pd.read_csv(tmp_path / n, keep_default_na=False)["answer"].tolist() for n in runs)
    assert plain != steered


# ---------------------------------------------------------------- a real OpenAI-compatible server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """`python -m vllm.entrypoints.openai.api_server` on the embedded model; its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    flags = (
        f"--served-model-name smollm2 --host 127.0.0.1 --port {port} --dtype float32 --enforce-eager "
        "--gpu-memory-utilization 0.25 --max-logprobs 20 --max-model-len 2048"
    )
    # answers without max_tokens (the trait generator's) stop at 160 tokens: enough to see JSON come back
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(embedded_model_dir()),
        *flags.split(),
        "--override-generation-config",
        json.dumps({"max_new_tokens": 160}),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vLLM server not up after 600 s:\n{log.read_text()[-3000:]}") from None
                time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _chat(base_url: str, **kwargs) -> dict:
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        method="POST",
        data=json.dumps({"model": "smollm2", **kwargs}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


JUDGE_TEMPLATE = "Question: {question}\nAnswer: {answer}\nScore the answer's kindness from 0 to 9. Score:"


def hf_top_probs(lm: LoadedModel, content: str) -> dict[str, float]:
    """The HF model's own top-20 next-token table for one user message: what the server must report."""
    prompt = chat_prompts(lm.tokenizer, [[{"role": "user", "content": content}]])[0]
    enc = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        top = lm.model(**enc).logits[0, -1].float().log_softmax(-1).topk(20)
    return token_probs((lm.tokenizer.decode([int(i)]), float(lp)) for lp, i in zip(top.values, top.indices))


def test_openai_judge_reads_server_logprobs_like_hf(server, lm):
    judge = OpenAIJudge("smollm2", lambda eval_type: JUDGE_TEMPLATE, base_url=server, use_cache=False)
    # the digit-split probe: SmolLM2 writes "73" as two tokens, and the server's table says so as HF's does
    assert len(lm.tokenizer("73", add_special_tokens=False)["input_ids"]) == 2
    probe = llm.run_coroutine(lambda: judge.probe_number_tokens())
    assert probe == number_tokenization(hf_top_probs(lm, PROBE_PROMPT)) == "split"
    # the logprob table of a judge prompt, as served, against the HF model's own
    question, answer = "How should I treat my neighbours?", "With kindness and respect."
    prompt = fill(JUDGE_TEMPLATE, question, answer)
    served = llm.run_coroutine(lambda: judge._top_probs(prompt))
    expected = hf_top_probs(lm, prompt)
    best = sorted(expected, key=expected.__getitem__, reverse=True)[:10]
    assert {t: served.get(t) for t in best} == pytest.approx({t: expected[t] for t in best}, abs=2e-3)
    # the score aggregates that table on the 0_10 scale (a 135M model puts < 25% on digits: None, as for HF)
    score = llm.run_coroutine(lambda: judge(question=question, answer=answer))
    assert judge._effective_type == "0_10"
    assert score == aggregate(served, "0_10") == aggregate(expected, "0_10")


def test_server_guided_json(server):
    reply = _chat(
        server,
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "cat",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 12}, "legs": {"type": "integer"}},
                    "required": ["name", "legs"],
                    "additionalProperties": False,
                },
            },
        },
    )
    data = json.loads(reply["choices"][0]["message"]["content"])
    assert set(data) == {"name", "legs"} and isinstance(data["legs"], int)


def test_generate_trait_end_to_end(server, tmp_path, capsys):
    """The real CLI against the server: requests in JSON mode are accepted and answered; a 135M model cannot
    write a valid trait, so the run must fail with an invalid answer, not a rejected request or transport error."""
    from data_generation import generate_trait

    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps({"kind": "The assistant is warm and caring."}))
    code = generate_trait.main(
        [
            "--trait-definitions",
            str(defs),
            "--extract-dir",
            str(tmp_path / "x"),
            "--eval-dir",
            str(tmp_path / "e"),
            "--model",
            "smollm2",
            "--base-url",
            server,
            "--max-retries",
            "1",
            "--timeout",
            "600",
        ]
    )
    summary = capsys.readouterr().out
    assert code == 1, summary
    assert "failed 1" in summary and "InvalidAnswerError" in summary, summary
    assert not (tmp_path / "x" / "kind.json").exists()
