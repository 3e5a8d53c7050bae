"""The 8-parameter weak-perspective camera (eq. 3/8, the book's errata page, erratum 5), against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from tdd_lite.camera import (
    camera_from_pose,
    euler_to_rotation,
    look_at_crop,
    pose_from_camera,
    project,
    rotation_to_euler,
)

P_NP = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])




def _random_pose(b: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    yaw = (torch.rand(b, generator=g, dtype=dtype) - 0.5) * 2.4  # +-69 degrees
    pitch = (torch.rand(b, generator=g, dtype=dtype) - 0.5) * 1.6
    roll = (torch.rand(b, generator=g, dtype=dtype) - 0.5) * 1.6
    f = 2.0 + 5.0 * torch.rand(b, generator=g, dtype=dtype)
    t = torch.rand(b, 2, generator=g, dtype=dtype)
    return yaw, pitch, roll, f, t


def test_project_equals_per_point_loop():
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(3, 5, 3, generator=g, dtype=torch.float64)
    cam = torch.randn(3, 8, generator=g, dtype=torch.float64)
    out = project(pts, cam)
    assert out.shape == (3, 5, 2)
    for b in range(3):
        m = cam[b].numpy().reshape(2, 4)
        for n in range(5):
            expect = m[:, :3] @ pts[b, n].numpy() + m[:, 3]
            np.testing.assert_allclose(out[b, n].numpy(), expect, rtol=0, atol=1e-12)


def test_camera_from_pose_projects_f_P_R_X_plus_t():
    yaw, pitch, roll, f, t = _random_pose(4)
    r = euler_to_rotation(yaw, pitch, roll)
    cam = camera_from_pose(f, r, t)
    pts = torch.randn(4, 7, 3, dtype=torch.float64)
    out = project(pts, cam).numpy()
    for b in range(4):
        direct = f[b].item() * (P_NP @ r[b].numpy() @ pts[b].numpy().T).T + t[b].numpy()
        np.testing.assert_allclose(out[b], direct, atol=1e-12)


def test_euler_matches_scipy_and_is_a_rotation():
    yaw, pitch, roll, *_ = _random_pose(6, seed=2)
    r = euler_to_rotation(yaw, pitch, roll).numpy()
    # R = R_z(roll) R_x(pitch) R_y(yaw): extrinsic rotations y, then x, then z
    ref = Rotation.from_euler("yxz", torch.stack([yaw, pitch, roll], 1).numpy()).as_matrix()
    np.testing.assert_allclose(r, ref, atol=1e-12)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_euler_keeps_float64_and_defaults_to_float32():
    assert euler_to_rotation(torch.tensor([0.1], dtype=torch.float64), 0.0, 0.0).dtype == torch.float64
    assert euler_to_rotation(0.1, 0.2, 0.3).dtype == torch.float32


def test_positive_yaw_turns_the_nose_to_image_right_and_positive_pitch_lifts_it():
    nose = torch.tensor([[[0.0, 0.0, 1.0]]])
    cam_yaw = camera_from_pose(torch.tensor([1.0]), euler_to_rotation(0.3, 0.0, 0.0), torch.zeros(1, 2))
    assert project(nose, cam_yaw)[0, 0, 0] > 0  # image x right
    cam_pitch = camera_from_pose(torch.tensor([1.0]), euler_to_rotation(0.0, -0.3, 0.0), torch.zeros(1, 2))
    # R_x(-0.3) rotates +z toward +y (model up), which is image up (smaller y)
    assert project(nose, cam_pitch)[0, 0, 1] < 0


def test_model_up_is_image_down_flip():
    up = torch.tensor([[[0.0, 1.0, 0.0]]])
    cam = camera_from_pose(torch.tensor([2.0]), torch.eye(3)[None], torch.tensor([[0.5, 0.5]]))
    np.testing.assert_allclose(project(up, cam)[0, 0].numpy(), [0.5, -1.5])


def test_rotation_to_euler_inverts():
    yaw, pitch, roll, *_ = _random_pose(8, seed=3)
    y2, p2, r2 = rotation_to_euler(euler_to_rotation(yaw, pitch, roll))
    for a, b in ((yaw, y2), (pitch, p2), (roll, r2)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-10)


def test_pose_from_camera_inverts_camera_from_pose():
    yaw, pitch, roll, f, t = _random_pose(5, seed=4)
    r = euler_to_rotation(yaw, pitch, roll)
    f2, r2, t2 = pose_from_camera(camera_from_pose(f, r, t))
    np.testing.assert_allclose(f2.numpy(), f.numpy(), atol=1e-10)
    np.testing.assert_allclose(r2.numpy(), r.numpy(), atol=1e-10)
    np.testing.assert_allclose(t2.numpy(), t.numpy(), atol=1e-12)


def test_pose_from_general_affine_camera_is_nearest_rotation():
    g = torch.Generator().manual_seed(5)
    cam = torch.randn(16, 8, generator=g, dtype=torch.float64)
    f, r, t = pose_from_camera(cam)
    rn = r.numpy()
    np.testing.assert_allclose(rn @ rn.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rn.shape), atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(rn), 1.0, atol=1e-10)
    m = cam.numpy().reshape(-1, 2, 4)
    np.testing.assert_allclose(f.numpy(), np.linalg.norm(m[:, :, :3], axis=2).mean(1), atol=1e-12)
    np.testing.assert_allclose(t.numpy(), m[:, :, 3], atol=1e-12)
    # nearest: no other orthonormal 2x3 (tried: random rotations) is closer to the unflipped rows
    a = m[:, :, :3] * np.array([1.0, -1.0])[None, :, None]
    best = np.linalg.norm(a - rn[:, :2] * np.linalg.norm(a, axis=2, keepdims=True).mean(1, keepdims=True), axis=(1, 2))
    for seed in range(20):
        q = Rotation.random(16, random_state=seed).as_matrix()[:, :2]
        other = np.linalg.norm(a - q * np.linalg.norm(a, axis=2, keepdims=True).mean(1, keepdims=True), axis=(1, 2))
        assert np.all(best <= other + 1e-9)


def test_project_gradcheck_float64():
    g = torch.Generator().manual_seed(6)
    pts = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    cam = torch.randn(2, 8, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(project, (pts, cam))


def test_pose_chain_gradcheck_float64():
    """Gradients through euler angles -> R -> camera -> projection (what a pose fit differentiates)."""

    def f(yaw, pitch, roll, scale, t, pts):
        return project(pts, camera_from_pose(scale, euler_to_rotation(yaw, pitch, roll), t))

    g = torch.Generator().manual_seed(7)
    args = [torch.rand(2, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    args += [torch.rand(2, 2, generator=g, dtype=torch.float64, requires_grad=True),
             torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(f, tuple(args))


def test_project_finite_differences_by_hand():
    """A central difference on one camera entry equals the point coordinate it multiplies (linear map)."""
    pts = torch.tensor([[[0.3, -0.2, 0.7]]], dtype=torch.float64)
    cam = torch.tensor([[1.0, 0.1, 0.2, 0.5, -0.1, -1.0, 0.3, 0.4]], dtype=torch.float64)
    h = 1e-6
    for j, (row, expect) in enumerate([(0, 0.3), (0, -0.2), (0, 0.7), (0, 1.0), (1, 0.3), (1, -0.2), (1, 0.7),
                                       (1, 1.0)]):
        e = torch.zeros_like(cam)
        e[0, j] = h
        d = (project(pts, cam + e) - project(pts, cam - e))[0, 0, row].item() / (2 * h)
        assert math.isclose(d, expect, abs_tol=1e-8)


def test_look_at_crop_centres_and_fills():
    g = torch.Generator().manual_seed(8)
    pts = torch.randn(200, 3, generator=g) * torch.tensor([0.07, 0.09, 0.05])
    for yaw in (0.0, 30.0, -60.0):
        cam = look_at_crop(pts, yaw_deg=yaw, pitch_deg=10.0, fill=0.6)
        uv = project(pts[None], cam)[0]
        np.testing.assert_allclose(uv.mean(0).numpy(), [0.5, 0.5], atol=1e-5)
        extent = (uv.max(0).values - uv.min(0).values).max().item()
        assert math.isclose(extent, 0.6, rel_tol=1e-4)
        f, r, _ = pose_from_camera(cam)
        y, p, _ = rotation_to_euler(r)
        assert math.isclose(math.degrees(y.item()), yaw, abs_tol=1e-3)
        assert math.isclose(math.degrees(p.item()), 10.0, abs_tol=1e-3)


@pytest.mark.parametrize(("pts_shape", "cam_shape", "match"), [
    ((2, 5, 3), (2, 7), "camera must have shape"),
    ((2, 5, 3), (8,), "camera must have shape"),
    ((2, 5, 2), (2, 8), "points must be"),
    ((3, 5, 3), (2, 8), "points must be"),
    ((5, 3), (1, 8), "points must be"),
])
def test_project_rejects_wrong_shapes(pts_shape, cam_shape, match):
    with pytest.raises(ValueError, match=match):
        project(torch.zeros(pts_shape), torch.zeros(cam_shape))
