"""Eq. 2-5, 7-10, 12-13 against values computed by hand on the tiny model (tests/_tiny3dmm.py)."""

import pytest
import torch

from tdd_lite import displacement as disp
from tests._tiny3dmm import tiny_model

# camera: f = 2, R = I, t = (0.5, 0.5): u = 2 x + 0.5, v = -2 y + 0.5  (P flips y)
CAM = torch.tensor([[2.0, 0, 0, 0.5, 0, -2.0, 0, 0.5]])
A_ID = torch.tensor([[0.5, -1.0]])  # vertex 0: x += 0.5*2 = 1 ; vertex 1: y += -1*1 = -1
A_EXP = torch.tensor([[2.0]])  # vertex 2: y += 2*0.5 = 1


def by_vertex(xy4):
    """(4, 2) per-vertex 2D points -> (1, 68, 2) landmark set (landmark k = vertex k % 4)."""
    return torch.tensor(xy4, dtype=torch.float32)[torch.arange(68) % 4][None]


# Hand projection of each vertex: mean (0,0,0),(1,0,0),(0,1,0),(1,1,1)
#   full face  S:     (1,0,0),(1,-1,0),(0,2,0),(1,1,1) -> (2.5,0.5),(2.5,2.5),(0.5,-3.5),(2.5,-1.5)
#   S_exp (eq. 2):    (0,0,0),(1,0,0),(0,2,0),(1,1,1)  -> (0.5,0.5),(2.5,0.5),(0.5,-3.5),(2.5,-1.5)
#   S_id  (eq. 7):    (1,0,0),(1,-1,0),(0,1,0),(1,1,1) -> (2.5,0.5),(2.5,2.5),(0.5,-1.5),(2.5,-1.5)
V = by_vertex([(2.5, 0.5), (2.5, 2.5), (0.5, -3.5), (2.5, -1.5)])
V_EXP = by_vertex([(0.5, 0.5), (2.5, 0.5), (0.5, -3.5), (2.5, -1.5)])
V_ID = by_vertex([(2.5, 0.5), (2.5, 2.5), (0.5, -1.5), (2.5, -1.5)])
U = by_vertex([(0.4, 0.6), (0.3, 0.2), (0.9, 0.1), (0.5, 0.5)])
U_PREV = by_vertex([(0.4, 0.5), (0.2, 0.2), (0.9, 0.3), (0.5, 0.5)])


@pytest.fixture
def model():
    return tiny_model()


def test_pred_lmk_full_face(model):
    assert torch.allclose(disp.pred_lmk(model, A_ID, A_EXP, CAM), V)


def test_eq2_3_pred_lmk_exp_only(model):
    assert torch.allclose(disp.pred_lmk_exp_only(model, A_EXP, CAM), V_EXP)


def test_eq7_8_pred_lmk_id_only(model):
    assert torch.allclose(disp.pred_lmk_id_only(model, A_ID, CAM), V_ID)


def test_eq4_eq5_identity_displacements(model):
    v_exp = disp.pred_lmk_exp_only(model, A_EXP, CAM)
    v = disp.pred_lmk(model, A_ID, A_EXP, CAM)
    assert torch.allclose(disp.real_id_disp(U, v_exp), U - V_EXP)
    fake = disp.fake_id_disp(v, v_exp)
    # v - v_exp is the projected identity offset only: vertex 0 moved +1 in x -> +2 in u; vertex 1 moved -1 in y
    # -> +2 in v (y flipped); vertices 2, 3 not moved by identity.
    assert torch.allclose(fake, by_vertex([(2.0, 0.0), (0.0, 2.0), (0.0, 0.0), (0.0, 0.0)]))


def test_eq9_eq10_expression_displacements(model):
    v_id = disp.pred_lmk_id_only(model, A_ID, CAM)
    v = disp.pred_lmk(model, A_ID, A_EXP, CAM)
    assert torch.allclose(disp.real_exp_disp(U, v_id), U - V_ID)
    # expression moved vertex 2 by +1 in y -> -2 in v
    assert torch.allclose(disp.fake_exp_disp(v, v_id), by_vertex([(0, 0), (0, 0), (0.0, -2.0), (0, 0)]))


def test_eq12_eq13_temporal_displacements(model):
    assert torch.allclose(disp.real_temporal_disp(U, U_PREV), by_vertex([(0, 0.1), (0.1, 0), (0, -0.2), (0, 0)]),
                          atol=1e-6)
    v = disp.pred_lmk(model, A_ID, A_EXP, CAM)
    v_prev = disp.pred_lmk(model, A_ID, torch.zeros(1, 1), CAM)  # previous frame: same face, neutral expression
    assert torch.allclose(disp.fake_temporal_disp(v, v_prev), by_vertex([(0, 0), (0, 0), (0.0, -2.0), (0, 0)]))


def test_all_displacements_matches_the_single_functions(model):
    out = disp.all_displacements(model, (A_ID, A_EXP, CAM), (A_ID, torch.zeros(1, 1), CAM), U, U_PREV)
    assert torch.allclose(out["real_id_disp"], U - V_EXP)
    assert torch.allclose(out["fake_id_disp"], V - V_EXP)
    assert torch.allclose(out["real_exp_disp"], U - V_ID)
    assert torch.allclose(out["fake_exp_disp"], V - V_ID)
    assert torch.allclose(out["real_temporal_disp"], U - U_PREV)
    assert set(out) >= {"prev_pred_lmk", "fake_temporal_disp"}
    assert "real_temporal_disp" not in disp.all_displacements(model, (A_ID, A_EXP, CAM), None, U, None)


def test_translation_cancels_in_model_displacements(model):
    """v - v_exp does not depend on t (same camera in eq. 3 and eq. 1), so a shifted face has the same x_z,ID."""
    cam2 = CAM.clone()
    cam2[0, 3] += 0.3
    cam2[0, 7] -= 0.2
    d1 = disp.fake_id_disp(disp.pred_lmk(model, A_ID, A_EXP, CAM), disp.pred_lmk_exp_only(model, A_EXP, CAM))
    d2 = disp.fake_id_disp(disp.pred_lmk(model, A_ID, A_EXP, cam2), disp.pred_lmk_exp_only(model, A_EXP, cam2))
    assert torch.allclose(d1, d2)


@pytest.mark.parametrize("bad", [torch.zeros(1, 67, 2), torch.zeros(68, 2), torch.zeros(1, 68, 3)])
def test_bad_shapes_raise(bad):
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        disp.real_temporal_disp(bad, U)


def test_batch_mismatch_raises():
    with pytest.raises(ValueError, match="batch"):
        disp.fake_temporal_disp(U.expand(2, -1, -1), U)


def test_rebox_landmarks_round_trip_and_closed_form():
    pytest.importorskip("tdd_lite.data.crops")
    torch.manual_seed(0)
    lmk = torch.rand(3, 68, 2)
    a = torch.tensor([[10.0, 20.0, 110.0, 120.0], [0.0, 0.0, 50.0, 50.0], [5.0, 5.0, 205.0, 205.0]])
    b = torch.tensor([[30.0, 10.0, 130.0, 110.0], [10.0, 10.0, 90.0, 90.0], [0.0, 0.0, 100.0, 100.0]])
    out = disp.rebox_landmarks(lmk, a, b)
    # closed form: pixel = x0 + u * side; u' = (pixel - x0') / side'
    pix = a[:, None, :2] + lmk * (a[:, None, 2:] - a[:, None, :2])
    expect = (pix - b[:, None, :2]) / (b[:, None, 2:] - b[:, None, :2])
    assert torch.allclose(out, expect, atol=1e-5)
    assert torch.allclose(disp.rebox_landmarks(out, b, a), lmk, atol=1e-5)


def test_true_displacements_are_the_projected_offsets_and_eq4_9_at_a_perfect_g(model):
    """Our extension: with an affine camera the true identity displacement is P(S_bar + A_id a) - P(S_bar), whatever
    the expression (and likewise for expression); at G = the truth the paper's eq. 4/9 give the same."""
    x_id, x_ed = disp.true_id_exp_disp(model, A_ID, A_EXP, CAM)
    zero_id, zero_exp = torch.zeros_like(A_ID), torch.zeros_like(A_EXP)
    mean = disp.pred_lmk(model, zero_id, zero_exp, CAM)
    assert torch.allclose(x_id, disp.pred_lmk(model, A_ID, zero_exp, CAM) - mean)
    assert torch.allclose(x_ed, disp.pred_lmk(model, zero_id, A_EXP, CAM) - mean)
    assert torch.allclose(x_id, V - V_EXP) and torch.allclose(x_ed, V - V_ID)  # the hand projections above
    u_true = disp.pred_lmk(model, A_ID, A_EXP, CAM)
    assert torch.allclose(disp.real_id_disp(u_true, V_EXP), x_id)
    assert torch.allclose(disp.real_exp_disp(u_true, V_ID), x_ed)


def test_rebox_landmarks_is_the_data_layers_crop_convention():
    """rebox_landmarks (model layer, its own arithmetic) agrees with the data layer's from_crop -> to_crop."""
    from tdd_lite.data import crops

    torch.manual_seed(1)
    lmk = torch.rand(2, 68, 2, dtype=torch.float64)
    a = torch.tensor([[3.0, 7.0, 83.0, 87.0], [-20.0, 10.0, 140.0, 170.0]], dtype=torch.float64)
    b = torch.tensor([[10.0, 0.0, 70.0, 60.0], [0.0, 0.0, 300.0, 300.0]], dtype=torch.float64)
    torch.testing.assert_close(disp.rebox_landmarks(lmk, a, b), crops.to_crop(crops.from_crop(lmk, a), b),
                               atol=1e-12, rtol=0)
