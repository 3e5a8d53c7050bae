"""The six landmark displacements the three discriminators read (paper section 3.2, eq. 2-5, 7-10, 12-13).

Every landmark set here is (B, 68, 2) in [0, 1] crop coordinates (x right, y down), the frame the network's
camera projects into, so ground truth ``U`` and predictions ``v`` are directly comparable (the paper:
"both the ground-truth and estimated landmarks are normalized to the range of [0, 1] before computing the
difference").

=====================  ==========================  =============================================
paper symbol           function                    meaning
=====================  ==========================  =============================================
v(:, l)      (eq. 1)   :func:`pred_lmk`            full face: mean + identity + expression
v_exp(:, l)  (eq. 2-3) :func:`pred_lmk_exp_only`   face *without identity*: mean + expression
v_id(:, l)   (eq. 7-8) :func:`pred_lmk_id_only`    face *without expression*: mean + identity
x_ID         (eq. 4)   :func:`real_id_disp`        U - v_exp   (real input of D_ID)
x_z,ID       (eq. 5)   :func:`fake_id_disp`        v - v_exp   (fake input of D_ID)
x_ED         (eq. 9)   :func:`real_exp_disp`       U - v_id    (real input of D_ED)
x_z,ED       (eq. 10)  :func:`fake_exp_disp`       v - v_id    (fake input of D_ED)
x_TD         (eq. 12)  :func:`real_temporal_disp`  U - U'      (real input of D_TD)
x_z,TD       (eq. 13)  :func:`fake_temporal_disp`  v - v'      (fake input of D_TD)
=====================  ==========================  =============================================

Notes a careful reader needs:

* Eq. 3 and eq. 8 project with the *same* camera ``(f, R, t)`` as the full face: only the shape changes.
  With our affine camera (:mod:`tdd_lite.camera`, erratum 5) that is simply ``project(., camera)`` with G's
  camera, no need to split it into ``f, R, t``.
* Eq. 2 writes the mean as S-tilde and eq. 7 as S-bar: both are the mean shape (erratum 3); eq. 9/10/12/13
  print ``(:, 1)`` where the landmark index ``(:, l)`` is meant.
* Because the projection is linear, ``v - v_exp`` is exactly the projected *identity* offset
  ``f P R A_id alpha_id`` (the translation cancels), and ``v - v_id`` the projected *expression* offset.
  The real inputs replace the prediction ``v`` by the ground truth ``U``: "how far the identity (resp.
  expression) would have to move the landmarks to reach the truth".
* Erratum 7 (temporal pair in one frame): ``U - U'`` only means motion if both live in the same coordinate
  frame. Our pair dataset crops both frames with the *previous* frame's box (as tracking does), so ``U, U',
  v, v'`` share that box and eq. 12/13 are plain differences. For landmarks expressed in different boxes use
  :func:`rebox_landmarks` first.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tdd_lite.camera import project
from tdd_lite.morphable import N_LANDMARKS, MorphableModel


def _check_lmk(name: str, x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[1:] != (N_LANDMARKS, 2):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, 68, 2) tensor in [0, 1] crop coordinates, got {shape}")
    return x


def _diff(a_name: str, a: Tensor, b_name: str, b: Tensor) -> Tensor:
    _check_lmk(a_name, a)
    _check_lmk(b_name, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{a_name} has batch {a.shape[0]} but {b_name} has batch {b.shape[0]}")
    return a - b


# ------------------------------------------------------------------ projected landmark sets (eq. 1, 3, 8)
def pred_lmk(model3dmm: MorphableModel, alpha_id: Tensor, alpha_exp: Tensor, camera: Tensor) -> Tensor:
    """``v(:, l)``: landmarks of ``S = S_bar + A_id alpha_id + A_exp alpha_exp`` projected by ``camera``."""
    return project(model3dmm.landmarks3d(alpha_id, alpha_exp), camera)


def pred_lmk_exp_only(model3dmm: MorphableModel, alpha_exp: Tensor, camera: Tensor) -> Tensor:
    """Eq. 2-3, ``v_exp(:, l)``: landmarks of ``S_exp = S_bar + A_exp alpha_exp`` (no identity), same camera."""
    return project(model3dmm.landmarks3d(None, alpha_exp), camera)


def pred_lmk_id_only(model3dmm: MorphableModel, alpha_id: Tensor, camera: Tensor) -> Tensor:
    """Eq. 7-8, ``v_id(:, l)``: landmarks of ``S_id = S_bar + A_id alpha_id`` (no expression), same camera."""
    return project(model3dmm.landmarks3d(alpha_id, None), camera)


# --------------------------------------------------------------------------------- displacements
def real_id_disp(gt_lmk: Tensor, pred_lmk_exp_only: Tensor) -> Tensor:
    """Eq. 4, ``x_ID = U - v_exp(:, l)``: the real input of the identity discriminator (B, 68, 2)."""
    return _diff("gt_lmk", gt_lmk, "pred_lmk_exp_only", pred_lmk_exp_only)


def fake_id_disp(pred_lmk: Tensor, pred_lmk_exp_only: Tensor) -> Tensor:
    """Eq. 5, ``x_z,ID = v(:, l) - v_exp(:, l)``: the fake input of the identity discriminator (B, 68, 2)."""
    return _diff("pred_lmk", pred_lmk, "pred_lmk_exp_only", pred_lmk_exp_only)


def real_exp_disp(gt_lmk: Tensor, pred_lmk_id_only: Tensor) -> Tensor:
    """Eq. 9, ``x_ED = U - v_id(:, l)``: the real input of the expression discriminator (B, 68, 2)."""
    return _diff("gt_lmk", gt_lmk, "pred_lmk_id_only", pred_lmk_id_only)


def fake_exp_disp(pred_lmk: Tensor, pred_lmk_id_only: Tensor) -> Tensor:
    """Eq. 10, ``x_z,ED = v(:, l) - v_id(:, l)``: the fake input of the expression discriminator (B, 68, 2)."""
    return _diff("pred_lmk", pred_lmk, "pred_lmk_id_only", pred_lmk_id_only)


def real_temporal_disp(gt_lmk: Tensor, prev_gt_lmk: Tensor) -> Tensor:
    """Eq. 12, ``x_TD = U - U'``: true frame-to-frame motion, both in ONE crop box (erratum 7) (B, 68, 2)."""
    return _diff("gt_lmk", gt_lmk, "prev_gt_lmk", prev_gt_lmk)


def fake_temporal_disp(pred_lmk: Tensor, prev_pred_lmk: Tensor) -> Tensor:
    """Eq. 13, ``x_z,TD = v(:, l) - v'(:, l)``: predicted motion, both in ONE crop box (erratum 7) (B, 68, 2)."""
    return _diff("pred_lmk", pred_lmk, "prev_pred_lmk", prev_pred_lmk)


# ------------------------------------------------------------------------------------- helpers
def rebox_landmarks(lmk: Tensor, from_box: Tensor, to_box: Tensor) -> Tensor:
    """Re-express (B, 68, 2) crop-coordinate landmarks of ``from_box`` in the crop coordinates of ``to_box``.

    Boxes are (B, 4) ``(x0, y0, x1, y1)`` in image pixels. The data layer's convention
    (:func:`tdd_lite.data.crops.from_crop` then :func:`tdd_lite.data.crops.to_crop`): image pixels
    ``x = u (x1 - x0) + x0``, then ``u' = (x - x0') / (x1' - x0')``. Use it when the two frames of a temporal
    pair were cropped with different boxes (erratum 7); the training pairs in this repository share one box and
    do not need it.
    """
    _check_lmk("lmk", lmk)
    from_box = torch.as_tensor(from_box, dtype=lmk.dtype, device=lmk.device).reshape(-1, 4)
    to_box = torch.as_tensor(to_box, dtype=lmk.dtype, device=lmk.device).reshape(-1, 4)
    px = lmk * (from_box[:, None, 2:4] - from_box[:, None, 0:2]) + from_box[:, None, 0:2]
    return (px - to_box[:, None, 0:2]) / (to_box[:, None, 2:4] - to_box[:, None, 0:2])


def all_displacements(model3dmm: MorphableModel, outputs: tuple[Tensor, Tensor, Tensor],
                      prev_outputs: tuple[Tensor, Tensor, Tensor] | None, gt_lmk: Tensor,
                      prev_gt_lmk: Tensor | None) -> dict[str, Tensor]:
    """Everything the three discriminators need for one batch, by paper name.

    ``outputs``/``prev_outputs`` are G's ``(alpha_id, alpha_exp, camera)`` for I and I' (Fig. 2: the same G).
    Returns ``pred_lmk`` (v), ``pred_lmk_exp_only``, ``pred_lmk_id_only``, the six ID/ED displacements and,
    when the previous frame is given, ``prev_pred_lmk`` (v') and the two temporal ones.
    """
    alpha_id, alpha_exp, camera = outputs
    v = pred_lmk(model3dmm, alpha_id, alpha_exp, camera)
    v_exp = pred_lmk_exp_only(model3dmm, alpha_exp, camera)
    v_id = pred_lmk_id_only(model3dmm, alpha_id, camera)
    out = {
        "pred_lmk": v, "pred_lmk_exp_only": v_exp, "pred_lmk_id_only": v_id,
        "real_id_disp": real_id_disp(gt_lmk, v_exp), "fake_id_disp": fake_id_disp(v, v_exp),
        "real_exp_disp": real_exp_disp(gt_lmk, v_id), "fake_exp_disp": fake_exp_disp(v, v_id),
    }
    if prev_outputs is not None:
        if prev_gt_lmk is None:
            raise ValueError("prev_outputs given without prev_gt_lmk (U')")
        v_prev = pred_lmk(model3dmm, *prev_outputs)
        out["prev_pred_lmk"] = v_prev
        out["real_temporal_disp"] = real_temporal_disp(gt_lmk, prev_gt_lmk)
        out["fake_temporal_disp"] = fake_temporal_disp(v, v_prev)
    return out


# ------------------------------------------------------------------ beyond the paper: real inputs from the truth
def true_id_exp_disp(model3dmm: MorphableModel, alpha_id: Tensor, alpha_exp: Tensor,
                     camera: Tensor) -> tuple[Tensor, Tensor]:
    """Our extension (not the paper's eq. 4/9): the *true* identity and expression displacements of a frame whose
    parameters are known (Synth300VW), ``v*(:, l) - v*_exp(:, l)`` and ``v*(:, l) - v*_id(:, l)`` with eq. 1, 3
    and 8 evaluated at the true ``alpha_id``, ``alpha_exp`` and camera.

    The paper's real inputs ``U - v_exp`` and ``U - v_id`` mix G's own estimate (its camera, its other
    coefficients) into what the discriminator is told is real; these do not: they are what identity (resp.
    expression) really moves the landmarks by, in this crop. Same shape and frame as eq. 4/9, (B, 68, 2).
    """
    v = pred_lmk(model3dmm, alpha_id, alpha_exp, camera)
    return v - pred_lmk_exp_only(model3dmm, alpha_exp, camera), v - pred_lmk_id_only(model3dmm, alpha_id, camera)
