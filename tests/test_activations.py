import math

import pytest
import torch

from persona.activations import capture, encode_pairs
from persona.models import decoder_layers
from persona.vectors import VECTOR_KINDS

QUESTIONS = ["What is the capital of France?", "Hi", "How should I treat my neighbours? Be honest and kind, please."]
ANSWERS = [
    "The capital of France is Paris.",
    "I think the answer is yes, but it depends on the details of the situation. Numbers: 1 2 3 4 5",
    "Treat them with respect and care.",
]


def chat(tokenizer, questions):
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]


def naive(model, tokenizer, prompt, answer, n_prompt=None):
    """Reference: one sample, full forward with every hidden state, no batching."""
    ids = tokenizer(prompt + answer, add_special_tokens=False, return_tensors="pt").input_ids
    if n_prompt is None:
        n_prompt = len(tokenizer(prompt, add_special_tokens=False).input_ids)
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    return {
        "prompt_avg": torch.stack([h[0, :n_prompt].mean(0) for h in hidden]),
        "response_avg": torch.stack([h[0, n_prompt:].mean(0) for h in hidden]),
        "prompt_last": torch.stack([h[0, n_prompt - 1] for h in hidden]),
    }


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_batched_capture_equals_naive_per_sample_loop(tiny_lm, padding_side, batch_size):
    prompts = chat(tiny_lm.tokenizer, QUESTIONS)
    acts = capture(tiny_lm, prompts, ANSWERS, batch_size=batch_size, padding_side=padding_side, progress=False)
    assert acts.layers == tuple(range(tiny_lm.num_layers + 1))
    for i, (p, a) in enumerate(zip(prompts, ANSWERS)):
        expected = naive(tiny_lm.model, tiny_lm.tokenizer, p, a)
        for kind in VECTOR_KINDS:
            torch.testing.assert_close(acts[kind][i], expected[kind], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_capture_equals_hidden_states_on_every_family(family_lm, padding_side):
    """Every layer's hook site reports `hidden_states[L]`, also where embeddings are scaled (Gemma)."""
    prompts = chat(family_lm.tokenizer, QUESTIONS)
    acts = capture(family_lm, prompts, ANSWERS, batch_size=2, padding_side=padding_side, progress=False)
    for i, (p, a) in enumerate(zip(prompts, ANSWERS)):
        expected = naive(family_lm.model, family_lm.tokenizer, p, a)
        for kind in VECTOR_KINDS:
            torch.testing.assert_close(acts[kind][i], expected[kind], atol=1e-4, rtol=1e-4)


def test_mean_reduction_equals_mean_of_naive_samples(tiny_lm):
    prompts = chat(tiny_lm.tokenizer, QUESTIONS)
    means = capture(tiny_lm, prompts, ANSWERS, batch_size=2, reduce="mean", progress=False)
    per_sample = [naive(tiny_lm.model, tiny_lm.tokenizer, p, a) for p, a in zip(prompts, ANSWERS)]
    for kind in VECTOR_KINDS:
        assert means[kind].shape == (tiny_lm.num_layers + 1, tiny_lm.hidden_size)
        torch.testing.assert_close(
            means[kind], torch.stack([s[kind] for s in per_sample]).mean(0), atol=1e-5, rtol=1e-5
        )
    assert means.counts == {kind: 3 for kind in VECTOR_KINDS}


def test_only_needed_blocks_run_and_never_the_lm_head(tiny_lm):
    calls = {}
    blocks = decoder_layers(tiny_lm.model)
    handles = [
        m.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, m in [
            ("block0", blocks[0]),
            ("block1", blocks[1]),
            ("block2", blocks[2]),
            ("lm_head", tiny_lm.model.lm_head),
        ]
    ]
    try:
        prompts = chat(tiny_lm.tokenizer, QUESTIONS)
        acts = capture(tiny_lm, prompts, ANSWERS, layers=[2, 1], batch_size=8, progress=False)
        assert calls == {"block0": 1, "block1": 1}
        full = capture(tiny_lm, prompts, ANSWERS, batch_size=8, progress=False)
        assert "lm_head" not in calls and calls["block2"] == 1
    finally:
        for h in handles:
            h.remove()
    assert acts.layers == (1, 2)
    torch.testing.assert_close(acts.at_layer("response_avg", 2), full.at_layer("response_avg", 2))


def test_seam_merge_gives_answer_text_to_the_response(tiny_lm):
    tok = tiny_lm.tokenizer
    prompt = chat(tok, ["Where is it?"])[0] + "The capital of France is Pa"
    answer = "ris."
    alone = tok(prompt, add_special_tokens=False).input_ids
    joint = tok(prompt + answer, add_special_tokens=False).input_ids
    assert joint[: len(alone)] != alone, "precondition: this tokenizer merges across the seam"
    k = next(i for i, (x, y) in enumerate(zip(joint, alone)) if x != y)
    assert [e.n_prompt for e in encode_pairs(tok, [prompt], [answer])] == [k]

    acts = capture(tiny_lm, [prompt], [answer], progress=False)
    expected = naive(tiny_lm.model, tok, prompt, answer, n_prompt=k)
    for kind in VECTOR_KINDS:
        torch.testing.assert_close(acts[kind][0], expected[kind], atol=1e-5, rtol=1e-5)
    # the prompt part never sees answer text: it equals the prompt-only run's first k tokens
    prompt_only = naive(tiny_lm.model, tok, prompt, "", n_prompt=k)
    torch.testing.assert_close(acts["prompt_avg"][0], prompt_only["prompt_avg"], atol=1e-5, rtol=1e-5)


def test_no_merge_prompt_part_is_the_prompts_own_tokens(tiny_tokenizer):
    prompts = chat(tiny_tokenizer, QUESTIONS)
    encoded = encode_pairs(tiny_tokenizer, prompts, ANSWERS)
    assert [e.n_prompt for e in encoded] == [
        len(tiny_tokenizer(p, add_special_tokens=False).input_ids) for p in prompts
    ]


def test_missing_answers_give_nan_responses_not_a_crash(tiny_lm):
    prompts = chat(tiny_lm.tokenizer, QUESTIONS[:2]) + [None]
    answers = [None, math.nan, "Paris."]
    acts = capture(tiny_lm, prompts, answers, batch_size=2, progress=False)
    assert acts["response_avg"][:2].isnan().all()
    assert acts["prompt_last"][:2].isfinite().all() and acts["prompt_avg"][:2].isfinite().all()
    assert acts["prompt_avg"][2].isnan().all() and acts["response_avg"][2].isfinite().all()
    expected = naive(tiny_lm.model, tiny_lm.tokenizer, prompts[0], "")
    torch.testing.assert_close(acts["prompt_last"][0], expected["prompt_last"], atol=1e-5, rtol=1e-5)
    assert acts.counts == {"prompt_avg": 2, "response_avg": 1, "prompt_last": 2}

    means = capture(tiny_lm, prompts, answers, reduce="mean", progress=False)
    torch.testing.assert_close(means["response_avg"], acts["response_avg"][2])  # the only answered row


def test_peft_wrapped_model_matches_naive_loop(tiny_lm):
    from peft import LoraConfig, get_peft_model

    prompts = chat(tiny_lm.tokenizer, QUESTIONS)
    wrapped = get_peft_model(
        tiny_lm.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lm = type(tiny_lm)(wrapped, tiny_lm.tokenizer, "peft", tiny_lm.num_layers, tiny_lm.hidden_size)
    acts = capture(lm, prompts, ANSWERS, layers=[1, 3], progress=False)
    expected = naive(wrapped, tiny_lm.tokenizer, prompts[1], ANSWERS[1])
    torch.testing.assert_close(acts.at_layer("response_avg", 3)[1], expected["response_avg"][3], atol=1e-5, rtol=1e-5)


def test_bad_layers_and_lengths_are_clear_errors(tiny_lm):
    with pytest.raises(ValueError, match=r"out of range: the model has layers 0..3"):
        capture(tiny_lm, ["a"], ["b"], layers=[4], progress=False)
    with pytest.raises(ValueError, match="2 prompts but 1 answers"):
        capture(tiny_lm, ["a", "b"], ["c"], progress=False)


@pytest.mark.embedded
def test_embedded_model_capture_equals_naive_loop(embedded_lm):
    prompts = chat(embedded_lm.tokenizer, QUESTIONS[:2])
    acts = capture(embedded_lm, prompts, ANSWERS[:2], layers=[0, 15, 30], batch_size=2, progress=False)
    for i in range(2):
        expected = naive(embedded_lm.model, embedded_lm.tokenizer, prompts[i], ANSWERS[i])
        for kind in VECTOR_KINDS:
            torch.testing.assert_close(acts[kind][i], expected[kind][[0, 15, 30]], atol=1e-5, rtol=1e-5)
