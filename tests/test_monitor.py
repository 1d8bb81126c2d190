"""`python -m eval.monitor --backend`: the answers come from the backend the flag chooses.

On a machine without vLLM, `--backend vllm` falls back to HF with the logged reason; its files
must then equal an `--backend hf` run's, row for row (each run with its own empty caches, so
neither reads the other's answers).
"""

from __future__ import annotations

import logging

import pandas as pd
import torch

from eval.monitor import main as monitor_main
from persona.vectors import save_vector


def test_backend_vllm_without_vllm_falls_back_to_the_hf_answers(tiny_llama_dir, tmp_path, monkeypatch, caplog):
    from persona import vllm_backend

    monkeypatch.setattr(vllm_backend, "vllm_unusable_reason", lambda device: "vLLM is not installed")
    monkeypatch.setenv("PERSONA_DOTENV", str(tmp_path / "absent.env"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    torch.manual_seed(0)
    vector = tmp_path / "evil_response_avg_diff.pt"
    save_vector(vector, torch.randn(4, 64))
    argv = ["--trait", "evil", "--vector_path", str(vector), "--layer", "2", "--model", str(tiny_llama_dir)]
    argv += ["--device", "cpu", "--max_questions", "2", "--max_tokens", "4", "--judge_model", "likelihood"]
    samples = {}
    for backend in ("hf", "vllm"):
        monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / f"cache-{backend}"))
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert monitor_main([*argv, "--backend", backend, "--output_dir", str(tmp_path / backend)]) == 0
        fallback = "backend vllm: vLLM is not installed; generating with the HF backend instead"
        assert (fallback in caplog.text) == (backend == "vllm")
        samples[backend] = pd.read_csv(tmp_path / backend / "monitor_samples.csv", keep_default_na=False)
    assert len(samples["hf"]) == 11 * 2  # 11 conditions (none, 5 pos, 5 neg) x 2 questions
    assert samples["hf"]["answer"].str.len().gt(0).all()
    pd.testing.assert_frame_equal(samples["vllm"], samples["hf"])
