"""persona.generation on tiny models: batch independence, min_new_tokens, a model's generation_config
cannot change sampling, the static-cache path equals the default one; `random:` model specs."""

import pytest
import torch
from transformers import AutoConfig

from persona.generation import HFBackend, SamplingParams, chat_prompts
from persona.models import ModelLoadError, load_model, random_config_path
from persona.steering import Steer

QUESTIONS = [
    "What is the capital of France?",
    "How should I treat my neighbours?",
    "Is it sunny today?",
    "What do you think?",
    "Numbers: 0 1 2 3",
]
SAMPLED = SamplingParams(max_new_tokens=8, temperature=1.0)


def prompts(lm, questions=QUESTIONS):
    return chat_prompts(lm.tokenizer, [[{"role": "user", "content": q}] for q in questions])


def test_an_answer_ignores_its_batch_mates(tiny_lm):
    ps, seeds = prompts(tiny_lm), [101, 102, 103, 104, 105]
    full = HFBackend(tiny_lm, batch_size=5).generate(ps, SAMPLED, seeds)
    for row in (0, 2, 4):
        alone = HFBackend(tiny_lm, batch_size=1).generate([ps[row]], SAMPLED, [seeds[row]])
        assert alone == [full[row]]
    # other batch-mates and batch sizes: the same row seed gives the same answer
    mates = HFBackend(tiny_lm, batch_size=3).generate([ps[4], ps[0], ps[0], ps[2]], SAMPLED, [999, 101, 7, 103])
    assert mates[1] == full[0] and mates[3] == full[2]
    assert mates[2] != full[0]  # ... and the seed matters


def eos_loving(lm, calls: list):
    """Make the stop token the overwhelming favourite at every step; count the forward passes."""
    bump = torch.zeros(lm.model.config.vocab_size)
    bump[lm.tokenizer.eos_token_id] = 100.0

    def hook(_module, _inputs, out):
        calls.append(1)
        return out + bump

    return lm.model.get_output_embeddings().register_forward_hook(hook)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("min_new_tokens", [0, 3])
def test_min_new_tokens_holds_back_the_stop_token(tiny_lm, temperature, min_new_tokens):
    calls: list = []
    handle = eos_loving(tiny_lm, calls)
    try:
        answers = HFBackend(tiny_lm, batch_size=2).generate(
            prompts(tiny_lm)[:2], SamplingParams(10, temperature, min_new_tokens=min_new_tokens), [1, 2]
        )
    finally:
        handle.remove()
    # min_new_tokens answer tokens, then the stop token: one forward pass per generated token
    assert len(calls) == min_new_tokens + 1
    assert all(bool(a) == (min_new_tokens > 0) for a in answers)


def test_model_generation_config_cannot_change_sampling(tiny_lm):
    ps = prompts(tiny_lm)
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    plain = HFBackend(tiny_lm).generate(ps, params, [0] * len(ps))
    ids = [tiny_lm.tokenizer(a, add_special_tokens=False)["input_ids"] for a in plain]
    assert any(len(set(i)) < len(i) for i in ids)  # a repetition penalty would have had work to do
    config = tiny_lm.model.generation_config
    config.repetition_penalty, config.no_repeat_ngram_size = 50.0, 1
    try:
        assert HFBackend(tiny_lm).generate(ps, params, [0] * len(ps)) == plain
    finally:
        config.repetition_penalty, config.no_repeat_ngram_size = 1.0, 0


@pytest.mark.parametrize("positions", ["response", "all"])
def test_static_cache_path_equals_default_path(tiny_lm, positions):
    """The CUDA fast path's static cache (compiled only on CUDA) changes nothing, steered or not."""
    ps = prompts(tiny_lm)
    vec = torch.randn(tiny_lm.num_layers + 1, tiny_lm.hidden_size, generator=torch.Generator().manual_seed(3)) * 4

    def factory(rows):
        return [Steer(vec, 2, torch.tensor([float(r) - 2 for r in rows]), positions)]

    seeds = [11, 12, 13, 14, 15]
    default = HFBackend(tiny_lm, batch_size=3, fast=False).generate(ps, SAMPLED, seeds, factory)
    static = HFBackend(tiny_lm, batch_size=3, fast=True).generate(ps, SAMPLED, seeds, factory)
    assert static == default
    assert default != HFBackend(tiny_lm, batch_size=3).generate(ps, SAMPLED, seeds)  # steering did something


def test_shipped_qwen3_4b_config_has_the_study_model_shape():
    config = AutoConfig.from_pretrained(random_config_path("random:qwen3-4b"))
    assert config.model_type == "qwen3" and config.architectures == ["Qwen3ForCausalLM"]
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (36, 2560, 9728)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (32, 8, 128)
    assert config.vocab_size == 151936 and config.tie_word_embeddings


def test_unknown_random_config_names_the_shipped_ones():
    with pytest.raises(ModelLoadError, match="qwen3-4b"):
        random_config_path("random:nope")


@pytest.mark.embedded
def test_random_model_spec_builds_seeded_weights_with_the_embedded_tokenizer():
    a = load_model("random:tiny-qwen3", device="cpu")
    b = load_model("random:tiny-qwen3", device="cpu")
    assert (a.num_layers, a.hidden_size) == (2, 64)
    assert len(a.tokenizer) == 49152 and a.tokenizer.padding_side == "left"
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    answer = HFBackend(a).generate(prompts(a, QUESTIONS[:1]), SamplingParams(4, 1.0), [0])
    assert answer[0]
