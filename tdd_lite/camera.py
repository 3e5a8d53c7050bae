"""The 8 camera parameters: a 2x4 affine weak-perspective camera (the book's errata page, erratum 5).

The paper's eq. 3/8 project with ``v = f * P * R * S + t`` but never say what its 8 camera numbers are. We
read them as the row-major entries of the 2x4 matrix ``M = [f * P * R | t]``::

    camera = [m00, m01, m02, t_x,  m10, m11, m12, t_y]
    v      = M[:, :3] @ X + M[:, 3]          (per point X in model coordinates)

with ``P = [[1, 0, 0], [0, -1, 0]]`` the orthographic projection that also flips y (model y points up,
image y points down). ``v`` is in whatever 2D frame the camera was fitted to; in tdd_lite that is always
[0, 1] crop coordinates (x right, y down). Any affine 2x4 is allowed, so a network's free 8 outputs are a
valid camera; :func:`pose_from_camera` recovers the nearest ``(f, R, t)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

P = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _check_camera(camera: Tensor) -> Tensor:
    if camera.ndim != 2 or camera.shape[1] != 8:
        raise ValueError(f"camera must have shape (B, 8), got {tuple(camera.shape)}")
    return camera.reshape(-1, 2, 4)


def project(points: Tensor, camera: Tensor) -> Tensor:
    """Eq. 3/8: weak-perspective projection ``v = f P R X + t`` of (B, N, 3) points with (B, 8) cameras -> (B, N, 2)."""
    m = _check_camera(camera)
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[0] != m.shape[0]:
        raise ValueError(f"points must be (B={m.shape[0]}, N, 3), got {tuple(points.shape)}")
    return points @ m[:, :, :3].transpose(1, 2) + m[:, None, :, 3]


def euler_to_rotation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """Rotation matrices (B, 3, 3) ``R = R_z(roll) @ R_x(pitch) @ R_y(yaw)``, angles in radians.

    Yaw turns the head left/right (about y, up), pitch nods (about x), roll tilts in the image plane (about z).
    """
    angles = [torch.as_tensor(a) for a in (yaw, pitch, roll)]
    dtype = torch.float32
    for a in angles:  # keep float64 (gradient checks, pose fitting) when given; ints and floats -> float32
        if a.is_floating_point():
            dtype = torch.promote_types(dtype, a.dtype)
    yaw, pitch, roll = (a.to(dtype).reshape(-1) for a in angles)
    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    one, zero = torch.ones_like(cy), torch.zeros_like(cy)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).view(-1, 3, 3)
    rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ rx @ ry


def rotation_to_euler(rotation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`euler_to_rotation` for ``|pitch| < 90`` degrees: (yaw, pitch, roll) in radians."""
    r = rotation
    pitch = torch.asin(r[:, 2, 1].clamp(-1.0, 1.0))
    yaw = torch.atan2(-r[:, 2, 0], r[:, 2, 2])
    roll = torch.atan2(-r[:, 0, 1], r[:, 1, 1])
    return yaw, pitch, roll


def camera_from_pose(scale: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """Build (B, 8) cameras from ``f`` (B,), ``R`` (B, 3, 3) and ``t`` (B, 2): ``M = [f P R | t]``."""
    scale = torch.as_tensor(scale, dtype=rotation.dtype, device=rotation.device).reshape(-1, 1, 1)
    lin = scale * (P.to(rotation) @ rotation)
    return torch.cat([lin, translation.reshape(-1, 2, 1).to(rotation)], dim=2).reshape(-1, 8)


def pose_from_camera(camera: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Recover ``(f, R, t)`` from (B, 8) cameras; exact for cameras made by :func:`camera_from_pose`.

    ``f`` is the mean norm of the two rows of ``M[:, :3]``; ``R``'s first two rows are those rows with P's
    flip undone, made orthonormal by the polar decomposition (nearest rotation), third row their cross product.
    """
    m = _check_camera(camera)
    a = m[:, :, :3] * P.to(camera)[:, :2].diagonal()[None, :, None]  # undo the y flip
    f = a.norm(dim=2).mean(dim=1)
    u, _, vh = torch.linalg.svd(a, full_matrices=False)  # a = u s vh; nearest orthonormal 2x3 rows: u @ vh
    r12 = u @ vh
    r3 = torch.linalg.cross(r12[:, 0], r12[:, 1], dim=-1)
    return f, torch.cat([r12, r3[:, None]], dim=1), m[:, :, 3]


def look_at_crop(mean_points: Tensor, yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0,
                 fill: float = 0.75) -> Tensor:
    """A (1, 8) camera that puts the (N, 3) ``mean_points`` centred in a [0, 1] crop, spanning ``fill`` of it."""
    deg = math.pi / 180.0
    r = euler_to_rotation(torch.tensor([yaw_deg * deg]), torch.tensor([pitch_deg * deg]),
                          torch.tensor([roll_deg * deg]))
    pts = mean_points.reshape(-1, 3).to(r) @ r[0].T
    extent = (pts[:, :2].max(0).values - pts[:, :2].min(0).values).max()
    f = fill / extent
    centre = pts[:, :2].mean(0) * torch.tensor([1.0, -1.0])
    t = torch.tensor([0.5, 0.5]) - f * centre
    return camera_from_pose(f.reshape(1), r, t.reshape(1, 2))
