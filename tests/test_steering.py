import pytest
import torch

from persona.sites import decoder_layers, decoder_stack
from persona.steering import Steer, is_steered, steering
from persona.vectors import VectorShapeError


def _vector(lm, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(lm.num_layers + 1, lm.hidden_size, generator=g) * scale


def _logits(lm, ids, mask=None, steers=()):
    with torch.no_grad(), steering(lm.model, list(steers)):
        return lm.model(input_ids=ids, attention_mask=mask).logits


def _batch(lm, texts):
    lm.tokenizer.padding_side = "left"
    return lm.tokenizer(texts, return_tensors="pt", padding=True)


def _block_output(lm, layer, ids, mask=None, steers=()):
    """The residual stream `hidden_states[layer]` as the next computation reads it, after all steering hooks.

    Read at the input norm of block `layer` (steering at layer 0 is a pre-hook on that block itself), or at
    the LM head for the last layer.
    """
    seen = {}
    stack = decoder_stack(lm.model)
    target = stack.layers[layer].input_layernorm if layer < lm.num_layers else lm.model.lm_head
    handle = target.register_forward_pre_hook(lambda _m, args: seen.setdefault("h", args[0].clone()))
    try:
        _logits(lm, ids, mask, steers)
    finally:
        handle.remove()
    return seen["h"]


@pytest.mark.parametrize("layer", [0, 1, 3])
def test_response_steering_touches_only_last_prompt_position_and_generated_tokens(tiny_lm, layer):
    ids = torch.tensor([[5, 17, 42, 99, 7, 8]])
    steer = Steer(_vector(tiny_lm), layer=layer, coef=2.0, positions="response")
    plain, steered = _logits(tiny_lm, ids), _logits(tiny_lm, ids, steers=[steer])
    assert torch.equal(plain[:, :-1], steered[:, :-1])  # bit-identical before the last prompt token
    assert not torch.allclose(plain[:, -1], steered[:, -1])  # the first answer token is already steered

    # a decode step with a KV cache: the generated token's stream at `layer` gets exactly coef * v
    from transformers import DynamicCache

    stack = tiny_lm.model.model
    target = stack.layers[layer] if layer < tiny_lm.num_layers else tiny_lm.model.lm_head

    def decode_stream(steers):
        seen = []
        cache = DynamicCache(config=tiny_lm.model.config)
        with torch.no_grad(), steering(tiny_lm.model, steers):
            tiny_lm.model(input_ids=ids, cache=cache, use_cache=True)
            handle = target.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
            try:
                tiny_lm.model(input_ids=torch.tensor([[11]]), cache=cache, use_cache=True)
            finally:
                handle.remove()
        return seen[0][0, -1]

    plain_step = decode_stream([])
    torch.testing.assert_close(decode_stream([steer]) - plain_step, 2.0 * steer.vector[layer], atol=1e-4, rtol=1e-4)
    prompt_only = Steer(steer.vector, layer=layer, coef=2.0, positions="prompt")
    if layer > 0:  # prompt steering changes the cache of later layers but never the generated token itself
        torch.testing.assert_close(decode_stream([prompt_only]), plain_step, atol=1e-5, rtol=1e-5)


def test_prompt_steering_never_touches_padding(tiny_lm):
    texts = ["What is the capital of France?", "Hi"]
    enc = _batch(tiny_lm, texts)
    steer = Steer(_vector(tiny_lm), layer=2, coef=1.5, positions="prompt")
    batched = _logits(tiny_lm, enc.input_ids, enc.attention_mask, [steer])
    for row, text in enumerate(texts):
        alone = tiny_lm.tokenizer(text, return_tensors="pt")
        n = alone.input_ids.shape[1]
        single = _logits(tiny_lm, alone.input_ids, steers=[steer])
        torch.testing.assert_close(batched[row, -n:], single[0], atol=1e-5, rtol=1e-5)
    # padding positions keep their unsteered residual stream exactly
    pad = ~enc.attention_mask.bool()
    assert pad.any()
    h_plain = _block_output(tiny_lm, 2, enc.input_ids, enc.attention_mask)
    h_steer = _block_output(tiny_lm, 2, enc.input_ids, enc.attention_mask, [steer])
    assert torch.equal(h_plain[pad], h_steer[pad])
    assert not torch.allclose(h_plain[~pad], h_steer[~pad])


def test_prompt_steering_adds_exactly_coef_times_vector(tiny_lm):
    ids = torch.tensor([[5, 17, 42]])
    vec = _vector(tiny_lm)
    # steering at the last layer adds to hidden_states[L] (after the final norm): the LM head's input
    L = tiny_lm.num_layers
    plain = _block_output(tiny_lm, L, ids)
    steered = _block_output(tiny_lm, L, ids, steers=[Steer(vec, layer=L, coef=0.5, positions="all")])
    torch.testing.assert_close(steered - plain, (0.5 * vec[L]).expand_as(plain), atol=1e-5, rtol=1e-5)


def test_two_vectors_equal_their_sum(tiny_lm):
    ids = torch.tensor([[5, 17, 42, 99]])
    a, b = _vector(tiny_lm, 1), _vector(tiny_lm, 2)
    two = _logits(tiny_lm, ids, steers=[Steer(a, 2, 1.5, "all"), Steer(b, 2, -1.0, "all")])
    summed = _logits(tiny_lm, ids, steers=[Steer(1.5 * a - 1.0 * b, 2, 1.0, "all")])
    torch.testing.assert_close(two, summed, atol=1e-5, rtol=1e-5)


def test_per_row_coefficients_equal_separate_runs(tiny_lm):
    enc = _batch(tiny_lm, ["What is the capital of France?", "Treat them with respect"])
    vec = _vector(tiny_lm)
    coefs = torch.tensor([2.0, -1.0])
    batched = _logits(tiny_lm, enc.input_ids, enc.attention_mask, [Steer(vec, 1, coefs, "all")])
    for row in range(2):
        sep = _logits(tiny_lm, enc.input_ids, enc.attention_mask, [Steer(vec, 1, float(coefs[row]), "all")])
        torch.testing.assert_close(batched[row], sep[row], atol=1e-5, rtol=1e-5)


def test_steered_stream_matches_hidden_states_at_every_layer(family_lm):
    """What a steer adds at layer L is what `hidden_states[L]` reports, on every family, the last layer included."""
    ids = torch.tensor([[5, 17, 42]])
    vec = _vector(family_lm)
    for layer in range(family_lm.num_layers + 1):
        with torch.no_grad():
            plain = family_lm.model(input_ids=ids, output_hidden_states=True).hidden_states[layer]
        steered = _block_output(family_lm, layer, ids, steers=[Steer(vec, layer, 1.0, "all")])
        torch.testing.assert_close(steered, plain + vec[layer], atol=1e-4, rtol=1e-4)


def test_ablation_removes_the_component(tiny_lm):
    ids = torch.tensor([[5, 17, 42, 99]])
    vec = _vector(tiny_lm)
    unit = vec[2] / vec[2].norm()
    plain = _block_output(tiny_lm, 2, ids)
    ablated = _block_output(tiny_lm, 2, ids, steers=[Steer(vec, 2, positions="all", op="ablate")])
    assert (plain @ unit).abs().max() > 1e-2
    assert (ablated @ unit).abs().max() < 1e-5
    torch.testing.assert_close(ablated, plain - (plain @ unit).unsqueeze(-1) * unit, atol=1e-5, rtol=1e-5)


def test_hooks_removed_after_exception_and_interrupt(tiny_lm):
    layers = decoder_layers(tiny_lm.model)
    before = [len(layer._forward_hooks) for layer in layers]
    for exc in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exc):
            with steering(tiny_lm.model, [Steer(_vector(tiny_lm), 1, 1.0)]):
                assert is_steered(tiny_lm.model)
                raise exc()
        assert [len(layer._forward_hooks) for layer in layers] == before
        assert not is_steered(tiny_lm.model)
        assert not tiny_lm.model.model._forward_pre_hooks


def test_peft_wrapped_model_is_steered_like_the_base(tiny_lm):
    from peft import LoraConfig, get_peft_model

    ids = torch.tensor([[5, 17, 42, 99]])
    steer = Steer(_vector(tiny_lm), 2, 1.0, "all")
    expected = _logits(tiny_lm, ids, steers=[steer])
    wrapped = get_peft_model(tiny_lm.model, LoraConfig(r=2, target_modules=["q_proj"]))  # B=0: identity
    try:
        with torch.no_grad(), steering(wrapped, [steer]):
            got = wrapped(input_ids=ids).logits
        assert is_steered(wrapped) is False
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    finally:
        wrapped.unload()


def test_bad_vector_size_and_layer_are_clear_errors(tiny_lm):
    with pytest.raises(VectorShapeError, match=r"shape \(4, 32\).*\[4, 64\]"):
        with steering(tiny_lm.model, [Steer(torch.zeros(4, 32), 1)]):
            pass
    with pytest.raises(VectorShapeError, match="layer 9 is out of range.*0..3"):
        with steering(tiny_lm.model, [Steer(_vector(tiny_lm), 9)]):
            pass
    assert not is_steered(tiny_lm.model)
