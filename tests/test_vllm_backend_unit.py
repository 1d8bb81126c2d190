"""vLLM backend logic that needs no vLLM: the per-token table, the hooks' arithmetic on a vLLM-shaped
stand-in model, backend choice and the model directory handed to vLLM."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from persona import vllm_backend
from persona.generation import HFBackend
from persona.steering import Steer
from persona.vllm_backend import make_backend, vllm_model_dir
from persona.vllm_steering import _TokenTable, steering_in_vllm, unsteerable_reason

HIDDEN = 4


def fake_runner(model: nn.Module | None = None) -> SimpleNamespace:
    """One step of a vLLM batch: request "a" (row 2, prompt 4) prefills positions 0-3, request "b" (row 0,
    prompt 3) decodes position 5, then one padding token."""

    def state(row: int, prompt: int) -> SimpleNamespace:
        return SimpleNamespace(
            sampling_params=SimpleNamespace(extra_args={"persona_row": row}), num_prompt_tokens=prompt
        )

    return SimpleNamespace(
        input_batch=SimpleNamespace(num_reqs=2, req_ids=["a", "b", None]),
        requests={"a": state(2, 4), "b": state(0, 3)},
        query_start_loc=SimpleNamespace(cpu=torch.tensor([0, 4, 5, 5], dtype=torch.int32)),
        get_model=lambda: model,
    )


POSITIONS = torch.tensor([0, 1, 2, 3, 5, 0])  # the last entry is padding


def test_token_table_masks_and_per_row_coefficients():
    table = _TokenTable(fake_runner())
    table.refresh(POSITIONS)
    assert table.rows.tolist() == [2, 2, 2, 2, 0, -1]
    assert table.masks["response"].tolist() == [False, False, False, True, True, False]
    assert table.masks["prompt"].tolist() == [True, True, True, True, False, False]
    assert table.masks["all"].tolist() == [True, True, True, True, True, False]
    like = torch.zeros(6, HIDDEN)
    per_row = table.coefficients(Steer(torch.ones(HIDDEN), 1, torch.tensor([10.0, 20.0, 30.0])), like)
    assert per_row.squeeze(-1).tolist() == [0, 0, 0, 30, 10, 0]
    scalar = table.coefficients(Steer(torch.ones(HIDDEN), 1, 2.0, positions="prompt"), like)
    assert scalar.squeeze(-1).tolist() == [2, 2, 2, 2, 0, 0]


class Block(nn.Module):
    """vLLM's decoder-layer convention: `(positions, hidden_states, residual) -> (mlp_out, residual)`."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, positions, hidden_states, residual):
        stream = hidden_states if residual is None else hidden_states + residual
        return stream * self.scale, stream


class Norm(nn.Module):
    def forward(self, hidden_states, residual):
        stream = hidden_states + residual
        return stream / stream.norm(dim=-1, keepdim=True), stream


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Block(0.5), Block(2.0)])
        self.norm = Norm()
        self.embed = nn.Embedding(1, HIDDEN)  # gives the stand-in a parameter dtype/device

    def forward(self, positions, hidden):
        residual = None
        for layer in self.layers:
            hidden, residual = layer(positions, hidden, residual)
        return self.norm(hidden, residual)[0]


class CausalLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = Stack()

    def forward(self, positions, hidden):
        return self.model(positions, hidden)


def residuals(model: CausalLM, hidden: torch.Tensor) -> list[torch.Tensor]:
    """hidden_states[0..2] of the stand-in: block-0 input, block-0 output stream, final-norm output."""
    out0, res0 = model.model.layers[0](POSITIONS, hidden, None)
    out1, res1 = model.model.layers[1](POSITIONS, out0, res0)
    return [hidden, out0 + res0, model.model.norm(out1, res1)[0]]


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_hooks_add_to_the_stream_once_at_the_steered_tokens(layer):
    torch.manual_seed(0)
    model, hidden = CausalLM(), torch.randn(6, HIDDEN)
    direction = torch.tensor([1.0, -2.0, 0.5, 3.0])
    steer = Steer(direction, layer, torch.tensor([10.0, 20.0, 30.0]))
    with torch.no_grad():
        plain = model(POSITIONS, hidden)
        with steering_in_vllm(fake_runner(model), [steer], [direction]):
            steered = model(POSITIONS, hidden)
        # expected: recompute by hand, adding the change to hidden_states[layer] at the response tokens
        coef = torch.tensor([0, 0, 0, 30.0, 10.0, 0]).unsqueeze(-1)
        expected_stream = residuals(model, hidden)[layer] + coef * direction
        if layer == 0:
            out0, res0 = model.model.layers[0](POSITIONS, expected_stream, None)
            out1, res1 = model.model.layers[1](POSITIONS, out0, res0)
            expected = model.model.norm(out1, res1)[0]
        elif layer == 1:  # the stream after block 0 feeds block 1 (as mlp_out + residual)
            out1, res1 = model.model.layers[1](POSITIONS, expected_stream, torch.zeros_like(hidden))
            expected = model.model.norm(out1, res1)[0]
        else:
            expected = expected_stream
    torch.testing.assert_close(steered, expected)
    assert torch.equal(steered[[0, 1, 2, 5]], plain[[0, 1, 2, 5]])  # tokens that `response` leaves alone
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # hooks removed


def test_ablation_removes_the_component_of_the_whole_stream():
    torch.manual_seed(1)
    model, hidden = CausalLM(), torch.randn(6, HIDDEN)
    unit = torch.tensor([0.0, 0.6, 0.8, 0.0])
    steer = Steer(unit, 1, 1.0, positions="all", op="ablate")
    captured = {}

    def record(_module, args):
        captured["stream"] = args[1] + args[2]

    model.model.layers[1].register_forward_pre_hook(record)
    with torch.no_grad(), steering_in_vllm(fake_runner(model), [steer], [unit]):
        model(POSITIONS, hidden)
    stream = captured["stream"]
    real = stream[:5]
    torch.testing.assert_close(real @ unit, torch.zeros(5), atol=1e-5, rtol=0)
    plain = residuals(model, hidden)[1]
    torch.testing.assert_close(stream[5], plain[5])  # padding untouched


def test_unsteerable_reason():
    assert unsteerable_reason(CausalLM()) is None
    other = CausalLM()
    other.model.layers = nn.ModuleList([nn.Linear(HIDDEN, HIDDEN)])
    assert "Linear" in unsteerable_reason(other)


def test_make_backend_without_vllm(tiny_lm, monkeypatch, caplog):
    monkeypatch.setattr(vllm_backend, "vllm_unusable_reason", lambda device: "vLLM is not installed")
    assert isinstance(make_backend("auto", tiny_lm), HFBackend)
    assert isinstance(make_backend("hf", tiny_lm), HFBackend)
    assert isinstance(make_backend("vllm", tiny_lm), HFBackend)  # falls back, and says why
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in warned] == [
        "backend vllm: vLLM is not installed; generating with the HF backend instead"
    ]
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend("tgi", tiny_lm)


def test_model_dir_is_the_source_folder_or_an_exported_copy(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "plain"
    tiny_lm.model.save_pretrained(source)
    monkeypatch.setattr(tiny_lm.model.config, "_name_or_path", str(source))
    assert vllm_model_dir(replace(tiny_lm, name=str(source))) == source
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    merged = replace(tiny_lm, name=str(adapter))  # merged LoRA: the weights in memory are not those in `source`
    exported = vllm_model_dir(merged)
    assert exported.parent == tmp_path / "cache" / "vllm-models"
    assert (exported / "config.json").is_file() and (exported / "tokenizer_config.json").is_file()
    reloaded = type(tiny_lm.model).from_pretrained(exported)
    for (name, a), (_, b) in zip(tiny_lm.model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert vllm_model_dir(merged) == exported  # saved once
