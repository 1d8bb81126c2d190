"""`python -m eval.monitor --backend`: the answers come from the backend the flag chooses.

On a machine without vLLM, `--backend vllm` falls back to HF with the logged reason; its files
must then equal an `--backend hf` run's, row for row (each run with its own empty caches, so
neither reads the other's answers).
"""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from eval.monitor import main as monitor_main
from persona.monitoring import condition_table
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


def test_condition_table_gives_each_condition_a_question_clustered_score_interval():
    """Two conditions, two questions with two samples each: the interval is the t interval of the
    per-question means (samples of one question share its cluster), cut to the 0-100 scale."""
    rows = []
    for condition, scores in (("pos_0", [[80, 90], [40, 50], [60, 70]]), ("none", [[0, 10], [0, 0], [95, 99]])):
        for q, samples in enumerate(scores):
            rows += [
                {"condition": condition, "question_id": f"evil_{q}_{condition}", "evil": s, "prompt_last_proj": 1.0}
                for s in samples
            ]
    table = condition_table(pd.DataFrame(rows), "evil").set_index("condition")
    means = [85.0, 45.0, 65.0]
    se = pd.Series(means).std(ddof=1) / math.sqrt(3)
    low, high = scipy_stats.t.interval(0.95, 2, 65.0, se)
    assert table.loc["pos_0", "evil"] == 65.0 and table.loc["pos_0", "n_questions"] == 3
    assert (table.loc["pos_0", "evil_ci_low"], table.loc["pos_0", "evil_ci_high"]) == pytest.approx(
        (low, min(high, 100.0))
    )
    assert high > 100 and table.loc["none", "evil_ci_low"] == 0.0  # raw t bounds past the scale are cut
