"""Software rasteriser: coverage vs a direct inside test, the z-buffer, shading, image_vertices."""

import numpy as np
import pytest
import torch

from tdd_lite import render
from tdd_lite.camera import camera_from_pose, euler_to_rotation, project


def _inside_reference(tri2d, h, w):
    """Direct point-in-triangle test on every pixel centre (same-side test with cross products)."""
    ys, xs = np.mgrid[0:h, 0:w]
    p = np.stack([xs, ys], -1).astype(float)
    a, b, c = tri2d

    def cross(o, d, q):
        return (d[0] - o[0]) * (q[..., 1] - o[1]) - (d[1] - o[1]) * (q[..., 0] - o[0])

    s1, s2, s3 = cross(a, b, p), cross(b, c, p), cross(c, a, p)
    return ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))


@pytest.mark.parametrize("seed", range(5))
def test_single_triangle_coverage_matches_inside_test(seed):
    rng = np.random.default_rng(seed)
    tri2d = rng.uniform(-10, 70, size=(3, 2))  # may stick out of the 48x64 frame
    verts = np.concatenate([tri2d, np.zeros((3, 1))], 1)
    img, mask = render.render(verts, np.array([[0, 1, 2]]), size=(48, 64), return_mask=True)
    ref = _inside_reference(tri2d, 48, 64)
    # pixels within 1e-9 of an edge may go either way; there are none for random float vertices
    assert mask.sum() > 0 or ref.sum() == 0
    np.testing.assert_array_equal(mask, ref)
    assert (img[~mask] == 0).all() and (img[mask] > 0).all()


def test_winding_does_not_matter():
    tri2d = np.array([[5.3, 4.1], [30.2, 8.7], [12.9, 28.4]])
    v = np.concatenate([tri2d, np.zeros((3, 1))], 1)
    _, m1 = render.render(v, np.array([[0, 1, 2]]), size=(32, 32), return_mask=True)
    _, m2 = render.render(v, np.array([[0, 2, 1]]), size=(32, 32), return_mask=True)
    np.testing.assert_array_equal(m1, m2)


def test_zbuffer_picks_nearer_triangle():
    # two overlapping triangles, red behind (z = 0), green in front (z = 5); draw order both ways
    a = np.array([[2.0, 2.0, 0.0], [30.0, 2.0, 0.0], [2.0, 30.0, 0.0]])
    b = np.array([[6.0, 4.0, 5.0], [31.0, 12.0, 5.0], [10.0, 31.0, 5.0]])
    verts = np.concatenate([a, b])
    colors = np.array([[1, 0, 0]] * 3 + [[0, 1, 0]] * 3, float)
    for tris in (np.array([[0, 1, 2], [3, 4, 5]]), np.array([[3, 4, 5], [0, 1, 2]])):
        img = render.render(verts, tris, size=(33, 33), colors=colors, ambient=1.0, diffuse=0.0)
        in_b = _inside_reference(b[:, :2], 33, 33)
        in_a = _inside_reference(a[:, :2], 33, 33)
        assert (img[in_b][:, 1] == 255).all() and (img[in_b][:, 0] == 0).all()
        assert (img[in_a & ~in_b][:, 0] == 255).all()


def test_zbuffer_interpolated_depth_intersecting_triangles():
    # a tilted triangle crosses a flat one: the nearer one must win per pixel, not per triangle
    flat = np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 40.0, 0.0]])
    tilt = np.array([[0.0, 0.0, -10.0], [40.0, 0.0, 10.0], [0.0, 40.0, -10.0]])  # z = x/2 - 10
    verts = np.concatenate([flat, tilt])
    colors = np.array([[1, 0, 0]] * 3 + [[0, 0, 1]] * 3, float)
    img = render.render(verts, np.array([[0, 1, 2], [3, 4, 5]]), size=(41, 41), colors=colors,
                        ambient=1.0, diffuse=0.0)
    assert (img[5, 3] == [255, 0, 0]).all()  # x=3: tilt z = -8.5 < 0 -> flat wins
    assert (img[5, 30] == [0, 0, 255]).all()  # x=30: tilt z = 5 > 0 -> tilted wins
    _, _, _, zbuf = render.rasterize(verts, np.array([[0, 1, 2], [3, 4, 5]]), 41, 41)
    assert np.isclose(zbuf[5, 30], 5.0) and np.isclose(zbuf[5, 3], 0.0)


def test_lambertian_shading_value():
    v = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 20.0, 0.0]])  # normal = +z (toward viewer)
    light = np.array([0.6, 0.0, 0.8])  # n . l = 0.8
    img = render.render(v, np.array([[0, 1, 2]]), size=(21, 21), colors=(0.5, 0.25, 1.0), light_dir=light,
                        ambient=0.2, diffuse=0.5)
    k = 0.2 + 0.5 * 0.8
    expected = np.clip(np.array([0.5, 0.25, 1.0]) * k, 0, 1) * 255  # 76.5, 38.25, 153
    # The red channel sits exactly on a rounding boundary (76.5): the last bit of n.l, which another CPU's
    # arithmetic may change, decides 76 or 77. One grey level is the quantisation step, so allow it.
    np.testing.assert_allclose(img[3, 3].astype(float), expected, atol=0.5 + 1e-9)


def test_background_image_kept_outside():
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    v = np.array([[2.0, 2.0, 0.0], [10.0, 2.0, 0.0], [2.0, 10.0, 0.0]])
    img, mask = render.render(v, np.array([[0, 1, 2]]), background=bg, return_mask=True)
    assert img.shape == bg.shape and img.dtype == np.uint8
    np.testing.assert_array_equal(img[~mask], bg[~mask])
    assert (img[mask] != bg[mask]).any()


def test_image_vertices_matches_projection_and_depth():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    r = euler_to_rotation(torch.tensor([0.4]), torch.tensor([-0.2]), torch.tensor([0.1])).double()
    cam = camera_from_pose(torch.tensor([30.0], dtype=torch.float64), r, torch.tensor([[100.0, 80.0]]).double())
    iv = render.image_vertices(x, cam[0])
    np.testing.assert_allclose(iv[:, :2], project(torch.from_numpy(x)[None], cam)[0].numpy(), atol=1e-9)
    np.testing.assert_allclose(iv[:, 2], 30.0 * (x @ r[0].numpy().T)[:, 2], atol=1e-5)  # R built in float32


def test_front_of_sphere_occludes_back():
    # points on a sphere: rendered colour comes from the near hemisphere (z-buffer on a closed mesh)
    n = 24
    th, ph = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n))
    p = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    idx = np.arange(p.shape[0]).reshape(2 * n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    verts = p * 20 + np.array([32.0, 32.0, 0.0])
    colors = np.where(p[:, 2:3] > 0, [0.0, 1.0, 0.0], [1.0, 0.0, 0.0])
    img = render.render(verts, tris, size=(64, 64), colors=colors, ambient=1.0, diffuse=0.0)
    centre = img[24:40, 24:40].reshape(-1, 3)
    assert (centre[:, 1] > 200).all() and (centre[:, 0] < 50).all()


def test_draw_landmarks_marks_pixels():
    img = np.zeros((40, 40, 3), np.uint8)
    out = render.draw_landmarks(img, np.array([[10.0, 20.0], [30.0, 5.0]]), color=(255, 0, 0), radius=2)
    assert out[20, 10, 0] == 255 and out[5, 30, 0] == 255 and out[35, 35, 0] == 0
    assert img.sum() == 0  # input untouched


def test_bad_input_raises():
    with pytest.raises(ValueError, match="vertices"):
        render.render(np.zeros((3, 2)), np.array([[0, 1, 2]]), size=(4, 4))
    with pytest.raises(ValueError, match="triangles"):
        render.render(np.zeros((3, 3)), np.array([[0, 1, 3]]), size=(4, 4))
    with pytest.raises(ValueError, match="NaN"):
        render.render(np.full((3, 3), np.nan), np.array([[0, 1, 2]]), size=(4, 4))
