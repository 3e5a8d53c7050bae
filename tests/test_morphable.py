"""MorphableModel (eq. 2 and 7): dense shapes, precomputed landmark rows, the std convention, errors, npz I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdd_lite.errors import DataError
from tdd_lite.morphable import (
    ModelArrays,
    MorphableModel,
    load_npz,
    load_teaching_model,
    orthonormalize,
    save_npz,
)

from ._tiny3dmm import random_model, tiny_arrays, tiny_model


def _direct_shape(a: ModelArrays, alpha_id, alpha_exp) -> np.ndarray:
    """Eq. 2/7 computed independently in float64 numpy: S = mean + A_id (s_id*a_id) + A_exp (s_exp*a_exp)."""
    flat = a.mean_shape.astype(np.float64).reshape(1, -1)
    if alpha_id is not None:
        flat = flat + (np.asarray(alpha_id, np.float64) * a.id_std) @ a.id_basis.astype(np.float64).T
    if alpha_exp is not None:
        flat = flat + (np.asarray(alpha_exp, np.float64) * a.exp_std) @ a.exp_basis.astype(np.float64).T
    return flat.reshape(flat.shape[0], -1, 3)


def _barycentric_arrays(seed: int = 0) -> ModelArrays:
    """A FLAME-like model: landmarks are barycentric points on triangles."""
    m = random_model(n_vertices=30, n_id=6, n_exp=4, seed=seed).to_arrays()
    rng = np.random.default_rng(seed)
    m.landmark_index = rng.integers(0, 30, (68, 3))
    w = rng.uniform(0.1, 1.0, (68, 3))
    m.landmark_weights = (w / w.sum(1, keepdims=True)).astype(np.float32)
    return m


def test_tiny_model_by_hand():
    m = tiny_model()
    a_id = torch.tensor([[1.0, -2.0]])
    a_exp = torch.tensor([[3.0]])
    s = m.shape(a_id, a_exp)[0]
    # id mode 0: vertex 0 x by std 2 * 1; id mode 1: vertex 1 y by std 1 * -2; exp: vertex 2 y by 0.5 * 3
    expect = torch.tensor([[2.0, 0.0, 0.0], [1.0, -2.0, 0.0], [0.0, 2.5, 0.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(s, expect)


@pytest.mark.parametrize("which", ["both", "id_only", "exp_only"])
def test_shape_matches_direct_computation_on_teaching_model(which):
    m = load_teaching_model()
    g = torch.Generator().manual_seed(0)
    a_id = torch.randn(3, m.n_id, generator=g)
    a_exp = torch.randn(3, m.n_exp, generator=g)
    a_id_used = None if which == "exp_only" else a_id
    a_exp_used = None if which == "id_only" else a_exp
    got = m.shape(a_id_used, a_exp_used).numpy()
    ref = _direct_shape(m.to_arrays(), None if a_id_used is None else a_id_used.numpy(),
                        None if a_exp_used is None else a_exp_used.numpy())
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_eq2_eq7_helpers_and_none_equals_zeros():
    m = load_teaching_model()
    g = torch.Generator().manual_seed(1)
    a_id, a_exp = torch.randn(2, m.n_id, generator=g), torch.randn(2, m.n_exp, generator=g)
    z_id, z_exp = m.zeros(2)
    torch.testing.assert_close(m.shape_exp_only(a_exp), m.shape(z_id, a_exp))  # eq. 2
    torch.testing.assert_close(m.shape_id_only(a_id), m.shape(a_id, z_exp))  # eq. 7
    torch.testing.assert_close(m.landmarks3d(None, a_exp), m.landmarks3d(z_id, a_exp))
    torch.testing.assert_close(m.landmarks3d(a_id, None), m.landmarks3d(a_id, z_exp))
    # linearity: S(a_id, a_exp) = S_id + S_exp - mean
    torch.testing.assert_close(m.shape(a_id, a_exp), m.shape_id_only(a_id) + m.shape_exp_only(a_exp)
                               - m.mean_shape, atol=1e-6, rtol=0)


@pytest.mark.parametrize("which", ["both", "id_only", "exp_only"])
def test_landmarks3d_equals_dense_shape_at_landmark_vertices(which):
    m = load_teaching_model()
    g = torch.Generator().manual_seed(2)
    a_id = None if which == "exp_only" else torch.randn(20, m.n_id, generator=g)
    a_exp = None if which == "id_only" else torch.randn(20, m.n_exp, generator=g)
    dense = m.shape(a_id, a_exp)
    lmk = m.landmarks3d(a_id, a_exp)
    assert lmk.shape == (20, 68, 3)
    torch.testing.assert_close(lmk, dense[:, torch.as_tensor(m.landmark_index)], atol=2e-6, rtol=0)
    torch.testing.assert_close(lmk, m.landmarks_from_shape(dense), atol=2e-6, rtol=0)


def test_barycentric_landmarks_match_direct_weighted_sum():
    arrays = _barycentric_arrays()
    m = MorphableModel(arrays)
    g = torch.Generator().manual_seed(3)
    a_id, a_exp = torch.randn(4, 6, generator=g), torch.randn(4, 4, generator=g)
    dense = _direct_shape(arrays, a_id.numpy(), a_exp.numpy())
    ref = np.einsum("blkc,lk->blc", dense[:, arrays.landmark_index], arrays.landmark_weights)
    np.testing.assert_allclose(m.landmarks3d(a_id, a_exp).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(m.landmarks_from_shape(m.shape(a_id, a_exp)).numpy(), ref, atol=1e-5)


def test_std_convention_one_unit_moves_by_one_std():
    """Orthonormal bases + alpha in std units: alpha = e_j moves the face by exactly std_j (Euclidean norm)."""
    m = load_teaching_model()
    for j in (0, 5, m.n_id - 1):
        a_id, a_exp = m.zeros(1)
        a_id[0, j] = 1.0
        moved = (m.shape(a_id, None) - m.mean_shape).double().norm().item()
        assert moved == pytest.approx(m.id_std[j].item(), rel=1e-4)
    for j in (0, m.n_exp - 1):
        a_id, a_exp = m.zeros(1)
        a_exp[0, j] = -2.0
        moved = (m.shape(None, a_exp) - m.mean_shape).double().norm().item()
        assert moved == pytest.approx(2.0 * m.exp_std[j].item(), rel=1e-4)


def test_landmark_gradients_gradcheck_float64():
    m = random_model(n_vertices=20, n_id=5, n_exp=3).double()
    a_id = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    a_exp = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m.landmarks3d, (a_id, a_exp))
    assert torch.autograd.gradcheck(m.shape, (a_id, a_exp))


def test_float64_parameters_on_float32_model():
    m = load_teaching_model()
    a_id, a_exp = m.zeros(2)
    out = m.landmarks3d(a_id.double(), a_exp.double())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, m.landmarks3d(a_id, a_exp))


def test_numpy_and_list_parameters_are_accepted():
    m = tiny_model()
    torch.testing.assert_close(m.shape(np.array([[1.0, 0.0]]), [[0.0]]), m.shape(torch.tensor([[1.0, 0.0]]),
                                                                              torch.zeros(1, 1)))


@pytest.mark.parametrize(("a_id", "a_exp", "match"), [
    (torch.zeros(2, 198), torch.zeros(2, 29), r"alpha_id must have shape \(B, 199\), got \(2, 198\)"),
    (torch.zeros(199), torch.zeros(1, 29), r"alpha_id must have shape \(B, 199\)"),
    (torch.zeros(2, 199), torch.zeros(2, 30), r"alpha_exp must have shape \(B, 29\)"),
    (torch.zeros(2, 199), torch.zeros(3, 29), "alpha_id has batch 2 but alpha_exp has batch 3"),
    (None, None, "give at least one of alpha_id, alpha_exp"),
])
def test_wrong_shapes_raise_clear_errors(a_id, a_exp, match):
    m = load_teaching_model()
    for fn in (m.shape, m.landmarks3d):
        with pytest.raises(ValueError, match=match):
            fn(a_id, a_exp)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_parameters_raise(bad):
    m = load_teaching_model()
    a_id, a_exp = m.zeros(3)
    a_exp[1, 7] = bad
    with pytest.raises(ValueError, match=r"alpha_exp contains NaN or infinite values \(first at index \[1, 7\]\)"):
        m.landmarks3d(a_id, a_exp)
    a_id[2, 0] = bad
    with pytest.raises(ValueError, match="alpha_id contains NaN or infinite"):
        m.shape(a_id, None)


def _set(name, value):
    return lambda a: setattr(a, name, value)


def _poke(name, index, value):
    def change(a):
        arr = np.array(getattr(a, name), dtype=np.float64 if isinstance(value, float) else None)
        arr[index] = value
        setattr(a, name, arr)
    return change


@pytest.mark.parametrize(("change", "match"), [
    (lambda a: setattr(a, "mean_shape", a.mean_shape[:, :2]), r"field 'mean_shape': shape \(4, 2\); expected \(N, 3\)"),
    (lambda a: setattr(a, "id_basis", a.id_basis[:-3]), r"field 'id_basis': shape \(9, 2\); expected \(3N=12, K\)"),
    (_set("exp_std", np.ones(2, np.float32)), r"field 'exp_std': shape \(2,\); expected \(1,\)"),
    (_set("triangles", np.array([[0, 1, 4]])), r"field 'triangles': 1 values outside \[0, 3\] \(first at index "
                                              r"\[0, 2\]: 4\)"),
    (_set("triangles", np.array([[0, 1]])), r"field 'triangles': shape \(1, 2\); expected \(T, 3\)"),
    (_set("landmark_index", np.arange(67)), r"field 'landmark_index': shape \(67,\)"),
    (_set("landmark_index", np.full(68, 4)), r"field 'landmark_index': 68 values outside \[0, 3\]"),
    (_set("landmark_index", np.zeros((68, 3), int)), r"field 'landmark_index': shape \(68, 3\); expected .* with "
                                                     "landmark_weights"),
    (_poke("landmark_index", 5, 1.5), r"field 'landmark_index': 1 non-integer values \(first at index \[5\]: 1.5\)"),
    (_set("landmark_index", np.full(68, True)), r"field 'landmark_index': dtype bool; expected integer"),
    (_poke("mean_shape", (2, 1), float("nan")), r"field 'mean_shape': 1 NaN or infinite values \(first at index "
                                                r"\[2, 1\]\)"),
    (_poke("id_basis", (0, 0), float("inf")), r"field 'id_basis': 1 NaN or infinite values"),
    (_poke("exp_basis", (3, 0), 1e39), r"field 'exp_basis': 1 values beyond float32's range"),
    (_set("id_std", np.array([-1.0, -2.0])), r"field 'id_std': 2 negative values \(first at index \[0\]\); "
                                            r"expected standard deviations > 0"),
    (_set("exp_std", np.array([0.0])), r"field 'exp_std': 1 zero values"),
    (_set("exp_std", np.array([np.nan])), r"field 'exp_std': 1 NaN or infinite"),
    (_set("mean_shape", np.zeros((4, 3), complex)), r"field 'mean_shape': dtype complex128; expected real numbers"),
])
def test_invalid_arrays_rejected(change, match):
    a = tiny_arrays()
    change(a)
    with pytest.raises(DataError, match=match):
        MorphableModel(a)


def test_invalid_barycentric_weights_rejected():
    a = _barycentric_arrays()
    a.landmark_weights = a.landmark_weights * 2
    with pytest.raises(DataError, match=r"field 'landmark_weights': 68 rows do not sum to 1"):
        MorphableModel(a)
    a = _barycentric_arrays()
    a.landmark_weights[3, 1] = np.nan
    with pytest.raises(DataError, match=r"field 'landmark_weights': 1 NaN or infinite values \(first at index "
                                        r"\[3, 1\]"):
        MorphableModel(a)


def test_orthonormalize_orthogonal_input_keeps_directions():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((30, 5)))
    scales = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    basis, std = orthonormalize(q * scales)
    np.testing.assert_allclose(basis.T @ basis, np.eye(5), atol=1e-6)
    np.testing.assert_allclose(std, scales, rtol=1e-6)
    np.testing.assert_allclose(basis * std, q * scales, atol=1e-6)
    basis2, std2 = orthonormalize(q, np.array([2.0, 2.0, 2.0, 2.0, 2.0]))
    np.testing.assert_allclose(std2, 2.0, rtol=1e-6)


def test_orthonormalize_general_input_spans_same_space():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 6))
    basis, std = orthonormalize(a)
    np.testing.assert_allclose(basis.T @ basis, np.eye(6), atol=1e-5)
    assert np.all(std > 0)
    # the columns of a lie in span(basis), and the shape covariance A A^T is preserved exactly
    np.testing.assert_allclose(basis @ (basis.T @ a), a, atol=1e-4)
    np.testing.assert_allclose((basis * std) @ (basis * std).T, a @ a.T, atol=1e-4)
    assert np.all(np.diff(std) <= 0)
    with pytest.raises(ValueError, match="linearly dependent"):
        orthonormalize(np.concatenate([a, a[:, :1] * 2], 1))
    with pytest.raises(ValueError, match="all-zero column"):
        orthonormalize(np.zeros((6, 2)))


def test_npz_round_trip_and_deterministic_bytes(tmp_path):
    arrays = _barycentric_arrays(seed=4)
    arrays.meta = {"b": 1, "a": [1, 2]}
    p1, p2 = tmp_path / "m1.npz", tmp_path / "m2.npz"
    save_npz(arrays, p1)
    save_npz(arrays, p2)
    assert p1.read_bytes() == p2.read_bytes()
    m = load_npz(p1)
    for k in ("mean_shape", "id_basis", "id_std", "exp_basis", "exp_std", "triangles", "landmark_index"):
        np.testing.assert_array_equal(getattr(m.to_arrays(), k), getattr(arrays, k))
    np.testing.assert_array_equal(m.landmark_weights, arrays.landmark_weights)
    assert m.meta == {"b": 1, "a": [1, 2]} and m.units == "m"
    assert not list(tmp_path.glob("*.tmp"))


def test_load_npz_errors_name_the_file(tmp_path):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_npz(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, mean_shape=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"partial.npz: not a tdd_lite model file, missing arrays"):
        load_npz(partial)
    good = tmp_path / "good.npz"
    save_npz(tiny_arrays(), good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.npz"):
        load_npz(truncated)
    with pytest.raises(ValueError, match="missing.npz"):
        load_npz(tmp_path / "missing.npz")


def test_teaching_model_copies_are_independent():
    a, b = load_teaching_model(), load_teaching_model()
    a.mean_shape += 1.0
    assert not torch.equal(a.mean_shape, b.mean_shape)
    assert torch.equal(b.mean_shape, load_teaching_model().mean_shape)


def test_model_moves_and_casts_as_a_module():
    m = tiny_model().double()
    assert m.lmk_id.dtype == torch.float64
    assert list(m.parameters()) == []
    assert "mean_shape" in dict(m.named_buffers())
