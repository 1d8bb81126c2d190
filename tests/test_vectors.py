import json
import warnings

import pytest
import torch

from persona.steering import Steer, is_steered, steering
from persona.vectors import PersonaVector, VectorFileError, VectorShapeError, load_vector, metadata_path


def _tensor(seed: int, shape=(4, 8)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_arithmetic_matches_tensor_arithmetic():
    a, b = PersonaVector(_tensor(1), model="m", trait="evil"), PersonaVector(_tensor(2), model="m", trait="humor")
    torch.testing.assert_close((a + b).tensor, a.tensor + b.tensor)
    torch.testing.assert_close((a - b).tensor, a.tensor - b.tensor)
    torch.testing.assert_close((1.5 * a).tensor, 1.5 * a.tensor)
    torch.testing.assert_close((a * 2).tensor, 2 * a.tensor)
    torch.testing.assert_close((a / 4).tensor, a.tensor / 4)
    torch.testing.assert_close((-a).tensor, -a.tensor)
    combo = 2 * a - 0.5 * b
    assert combo.trait == "evil" and combo.model == "m"
    assert a.tensor.equal(_tensor(1)), "arithmetic must not modify its operands"


def test_arithmetic_refuses_shape_mismatch_and_warns_on_model_mismatch():
    a = PersonaVector(_tensor(1), model="qwen")
    with pytest.raises(VectorShapeError, match=r"\(4, 8\) and \(5, 8\)"):
        a + PersonaVector(_tensor(2, (5, 8)))
    with pytest.warns(UserWarning, match="different models.*'qwen'.*'llama'"):
        a + PersonaVector(_tensor(2), model="llama")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a + PersonaVector(_tensor(2))  # unknown model: nothing to warn about
    with pytest.raises(TypeError):
        a + 1.0


def test_at_cos_and_to():
    t = _tensor(3)
    v = PersonaVector(t)
    torch.testing.assert_close(v.at(2), t[2])
    assert v.num_layers == 3
    with pytest.raises(VectorShapeError, match="layer 4 is out of range.*0..3"):
        v.at(4)
    other = PersonaVector(_tensor(4))
    expected = float(t[1] @ other.tensor[1] / (t[1].norm() * other.tensor[1].norm()))
    assert v.cos(other, 1) == pytest.approx(expected, abs=1e-6)
    assert v.cos(-v, 1) == pytest.approx(-1.0, abs=1e-6)
    assert v.to(dtype=torch.float64).tensor.dtype == torch.float64


def test_round_trip_keeps_metadata_and_writes_a_bare_tensor(tmp_path):
    v = PersonaVector(
        _tensor(5), model="smollm2-135m", trait="evil", kind="response_avg", judge="likelihood", meta={"threshold": 50}
    )
    path = tmp_path / "evil_response_avg_diff.pt"
    meta_file = v.save(path)
    assert meta_file == tmp_path / "evil_vectors.json" == metadata_path(path)
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw, torch.Tensor) and raw.equal(v.tensor)  # the original study's format
    back = PersonaVector.load(path)
    assert back.tensor.equal(v.tensor)
    assert (back.model, back.trait, back.kind, back.judge) == ("smollm2-135m", "evil", "response_avg", "likelihood")
    assert back.meta["threshold"] == 50
    # a second kind of the same trait shares the metadata file
    PersonaVector(_tensor(6), model="smollm2-135m", trait="evil", kind="prompt_avg").save(
        tmp_path / "evil_prompt_avg_diff.pt"
    )
    files = json.loads(meta_file.read_text())["files"]
    assert files == {"response_avg": "evil_response_avg_diff.pt", "prompt_avg": "evil_prompt_avg_diff.pt"}


def test_loads_an_original_format_bare_tensor_without_metadata(tmp_path):
    path = tmp_path / "optimistic_prompt_last_diff.pt"
    torch.save(_tensor(7).half(), path)
    v = PersonaVector.load(path)
    assert v.tensor.dtype == torch.float32 and v.tensor.equal(_tensor(7).half().float())
    assert (v.trait, v.kind, v.model) == ("optimistic", "prompt_last", None)


def test_loads_the_reference_vectors(shared_dir):
    path = shared_dir / "reference" / "qwen3_4b_vectors" / "evil_response_avg_diff.pt"
    v = PersonaVector.load(path)
    assert v.shape == (37, 2560) and v.trait == "evil" and v.num_layers == 36


def test_refuses_corrupt_and_pickled_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a tensor")
    with pytest.raises(VectorFileError, match="bad.pt is not a readable tensor file"):
        load_vector(bad)

    class Payload:
        def __reduce__(self):
            return (print, ("payload ran",))

    evil = tmp_path / "evil.pt"
    torch.save({"vector": Payload()}, evil)
    with pytest.raises(VectorFileError, match="evil.pt is not a readable tensor file"):
        PersonaVector.load(evil)
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        PersonaVector.load(tmp_path / "missing.pt")
    with pytest.raises(VectorShapeError):
        PersonaVector(torch.zeros(2, 3, 4))


def _logits(lm, ids):
    with torch.no_grad():
        return lm.model(input_ids=ids).logits


def test_apply_and_attach_steer_like_steer_and_leave_no_hooks(tiny_lm):
    """Notebook use: `with vec.apply(...)` and `h = vec.attach(...); h.remove()` equal the Steer API."""
    ids = torch.tensor([[5, 17, 42, 99]])
    vec = PersonaVector(_tensor(8, (tiny_lm.num_layers + 1, tiny_lm.hidden_size)) * 3)
    plain = _logits(tiny_lm, ids)
    with steering(tiny_lm.model, [Steer(vec.tensor, 2, 1.5, "all")]):
        expected = _logits(tiny_lm, ids)
    assert not torch.allclose(expected, plain)

    with vec.apply(tiny_lm, layer=2, coef=1.5, positions="all"):  # a LoadedModel works too
        torch.testing.assert_close(_logits(tiny_lm, ids), expected)
        assert is_steered(tiny_lm.model)
    assert not is_steered(tiny_lm.model)
    torch.testing.assert_close(_logits(tiny_lm, ids), plain)

    handle = vec.attach(tiny_lm.model, layer=2, coef=1.5, positions="all")
    torch.testing.assert_close(_logits(tiny_lm, ids), expected)
    handle.remove()
    handle.remove()  # idempotent
    assert not handle.active and not is_steered(tiny_lm.model)
    torch.testing.assert_close(_logits(tiny_lm, ids), plain)
    blocks = tiny_lm.model.model.layers
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in blocks)


def test_apply_removes_hooks_when_the_block_raises(tiny_lm):
    vec = PersonaVector(torch.ones(tiny_lm.num_layers + 1, tiny_lm.hidden_size))
    with pytest.raises(RuntimeError, match="boom"):
        with vec.apply(tiny_lm.model, layer=1, coef=1.0):
            raise RuntimeError("boom")
    assert not is_steered(tiny_lm.model)


def test_steer_accepts_a_persona_vector_or_a_tensor(tiny_lm):
    t = _tensor(9, (tiny_lm.num_layers + 1, tiny_lm.hidden_size))
    ids = torch.tensor([[5, 17, 42]])
    with steering(tiny_lm.model, [PersonaVector(t).steer(1, 2.0, "all")]):
        a = _logits(tiny_lm, ids)
    with steering(tiny_lm.model, [Steer(t, 1, 2.0, "all")]):
        b = _logits(tiny_lm, ids)
    torch.testing.assert_close(a, b)
    with pytest.raises(VectorShapeError, match=r"shape \(3, 5\)"):
        with steering(tiny_lm.model, [PersonaVector(torch.zeros(3, 5)).steer(1)]):
            pass
