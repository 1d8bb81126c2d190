"""Extraction methods on synthetic activations with a planted direction, against direct and sklearn references."""

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from persona.extraction_methods import METHODS, get_method, register_method
from persona.vectors import metadata_filename, metadata_path, parse_vector_filename, vector_filename

N, LAYERS, HIDDEN = 1000, 3, 8
FAST_PROBE = {"cs": 5, "folds": 3}


def planted(spread: float, seed: int = 0, shift: float = 2.0, noise: float = 1.0, n: int = N):
    """pos_i = x_i + s_i d, neg_i = x_i' with s_i = shift + spread * N(0, 1): `spread` 0 is a pure mean shift.

    The classes overlap (shift 2 noise sd): well-separated classes make a logistic regression's
    weights follow a few boundary points instead of the planted direction.
    """
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(LAYERS, HIDDEN, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    s = shift + spread * torch.randn(n, 1, 1, generator=g)
    pos = noise * torch.randn(n, LAYERS, HIDDEN, generator=g) + s * d
    neg = noise * torch.randn(n, LAYERS, HIDDEN, generator=g)
    return pos, neg, d


def cos(a, b):
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


@pytest.mark.parametrize(
    "name, options", [("mean_diff", {}), ("pca_diff", {}), ("pca_diff", {"center": True}), ("probe", FAST_PROBE)]
)
def test_every_method_recovers_the_planted_direction(name, options):
    pos, neg, d = planted(spread=1.5, shift=1.5, n=2000)
    v = get_method(name)(pos, neg, options)
    assert v.shape == (LAYERS, HIDDEN) and v.dtype == torch.float32
    assert (cos(v, d) > 0.99).all(), cos(v, d)


def test_centred_pca_misses_a_pure_mean_shift_while_the_others_find_it():
    pos, neg, d = planted(spread=0.0)
    for name, options in (("mean_diff", {}), ("pca_diff", {}), ("probe", FAST_PROBE)):
        assert (cos(get_method(name)(pos, neg, options), d) > 0.99).all(), name
    centred = get_method("pca_diff")(pos, neg, {"center": True})
    assert (cos(centred, d).abs() < 0.7).all() and cos(
        centred, d
    ).abs().mean() < 0.5  # the differences' mean is all the signal, and centring removes it


@pytest.mark.parametrize("name", ["pca_diff", "probe"])
def test_sign_puts_pos_above_neg_and_norm_is_the_mean_differences(name):
    pos, neg, _ = planted(spread=1.0, seed=1, n=200)
    for a, b in ((pos, neg), (neg, pos)):  # swapping the sides flips the vector
        v = get_method(name)(a, b, FAST_PROBE if name == "probe" else {})
        diff = a.mean(0) - b.mean(0)
        assert ((a @ v.T).diagonal(dim1=-2, dim2=-1).mean(0) > (b @ v.T).diagonal(dim1=-2, dim2=-1).mean(0)).all()
        torch.testing.assert_close(v.norm(dim=-1), diff.norm(dim=-1), rtol=1e-5, atol=1e-6)


def test_peer_mean_diff_is_the_direct_mean_difference_and_centred_pca_is_sklearn_pca():
    pos, neg, _ = planted(spread=2.0, seed=2)
    direct = pos.double().numpy().mean(0) - neg.double().numpy().mean(0)
    np.testing.assert_allclose(get_method("mean_diff")(pos, neg).numpy(), direct, rtol=1e-5, atol=1e-6)
    ours = get_method("pca_diff")(pos, neg, {"center": True}).double().numpy()
    for layer in range(LAYERS):
        diffs = (pos[:, layer] - neg[:, layer]).double().numpy()
        ref = PCA(n_components=1).fit(diffs).components_[0]
        ref = ref if ref @ direct[layer] >= 0 else -ref  # sklearn's sign is arbitrary: align with pos - neg
        np.testing.assert_allclose(ours[layer] / np.linalg.norm(ours[layer]), ref, atol=1e-6)


def test_a_layer_where_pos_equals_neg_gives_zeros_not_nan():
    pos, neg, _ = planted(spread=1.0, n=50)
    neg[:, 0] = pos[:, 0]
    for name in ("pca_diff", "probe"):
        v = get_method(name)(pos, neg, FAST_PROBE if name == "probe" else {})
        assert torch.isfinite(v).all() and (v[0] == 0).all()


def test_options_are_checked_against_the_signature_and_recorded_with_defaults():
    assert get_method("pca_diff").options() == {"center": False}
    assert get_method("probe").options({"folds": 3}) == {"folds": 3, "cs": 10, "max_iter": 1000}
    with pytest.raises(ValueError, match=r"'pca_diff' has no option 'centre'; its options are \['center'\]"):
        get_method("pca_diff").options({"centre": True})
    with pytest.raises(ValueError, match="unknown extraction method 'pca'.*mean_diff"):
        get_method("pca")


@pytest.fixture
def toy_method():
    @register_method("toy_scaled", suffix="toy")
    def toy(pos, neg, *, scale: float = 1.0):
        return scale * (pos.mean(0) - neg.mean(0))

    yield "toy_scaled"
    METHODS.pop("toy_scaled")


def test_a_registered_method_is_named_checked_and_refused_twice(toy_method):
    pos, neg, _ = planted(spread=1.0)
    torch.testing.assert_close(get_method(toy_method)(pos, neg, {"scale": 2.0}), 2 * (pos.mean(0) - neg.mean(0)))
    assert vector_filename("evil", "response_avg", toy_method) == "evil_response_avg_toy.pt"
    assert metadata_filename("evil", toy_method) == "evil_toy_vectors.json"
    with pytest.raises(ValueError, match="already registered"):
        register_method("other", suffix="toy")(lambda pos, neg: pos[0])
    with pytest.raises(ValueError, match="already registered"):
        register_method("probe")(lambda pos, neg: pos[0])

    @register_method("bad_shape")
    def bad(pos, neg):
        return pos

    try:
        with pytest.raises(ValueError, match=r"'bad_shape' returned \(1000, 3, 8\), expected \(3, 8\)"):
            get_method("bad_shape")(pos, neg)
    finally:
        METHODS.pop("bad_shape")


def test_file_names_keep_mean_diff_and_give_other_methods_their_suffix():
    assert vector_filename("evil", "response_avg") == "evil_response_avg_diff.pt"
    assert vector_filename("evil_2", "prompt_last", "pca_diff") == "evil_2_prompt_last_pca.pt"
    assert vector_filename("evil", "prompt_avg", "probe") == "evil_prompt_avg_probe.pt"
    assert (
        metadata_filename("evil") == "evil_vectors.json"
        and metadata_filename("evil", "probe") == "evil_probe_vectors.json"
    )
    assert parse_vector_filename("v/evil_2_response_avg_pca.pt") == {
        "trait": "evil_2",
        "kind": "response_avg",
        "suffix": "pca",
    }
    assert metadata_path("v/evil_2_response_avg_pca.pt").name == "evil_2_pca_vectors.json"
    assert metadata_path("v/evil_response_avg_diff.pt").name == "evil_vectors.json"
    assert metadata_path("v/steer.pt") is None
    with pytest.raises(ValueError, match="unknown vector kind"):
        vector_filename("evil", "response", "probe")
