"""Crop protocol: boxes, jitter, cropping and the [0, 1] crop coordinates (numpy and torch)."""

import cv2
import numpy as np
import pytest
import torch

from tdd_lite.data import crops


def _lmk(rng, n=68, batch=()):
    c = rng.uniform(80, 160, size=batch + (1, 2))
    return c + rng.normal(0, 30, size=batch + (n, 2))


def test_box_from_landmarks_square_centred_enlarged():
    lmk = np.array([[10.0, 20.0], [50.0, 30.0], [30.0, 40.0]])
    box = crops.box_from_landmarks(lmk, enlarge=1.5)
    # bbox 10..50 x 20..40: centre (30, 30), longer side 40 -> side 60
    np.testing.assert_allclose(box, [0.0, 0.0, 60.0, 60.0])
    assert crops.landmark_bbox(lmk).tolist() == [10.0, 20.0, 50.0, 40.0]


def test_box_batched_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    lmk = _lmk(rng, batch=(3, 2))
    b_np = crops.box_from_landmarks(lmk)
    b_t = crops.box_from_landmarks(torch.from_numpy(lmk))
    assert b_np.shape == (3, 2, 4)
    np.testing.assert_allclose(b_t.numpy(), b_np)
    side = b_np[..., 2] - b_np[..., 0]
    np.testing.assert_allclose(side, b_np[..., 3] - b_np[..., 1])
    # every landmark inside its box
    u = crops.to_crop(lmk, b_np)
    assert (u > 0).all() and (u < 1).all()


def test_to_from_crop_inverse_numpy_torch_batched():
    rng = np.random.default_rng(1)
    lmk = _lmk(rng, batch=(4,))
    box = crops.box_from_landmarks(lmk)
    u = crops.to_crop(lmk, box)
    # hand computation for one point
    assert np.isclose(u[2, 5, 0], (lmk[2, 5, 0] - box[2, 0]) / (box[2, 2] - box[2, 0]))
    np.testing.assert_allclose(crops.from_crop(u, box), lmk, rtol=0, atol=1e-10)
    ut = crops.to_crop(torch.from_numpy(lmk), torch.from_numpy(box))
    np.testing.assert_allclose(ut.numpy(), u)
    np.testing.assert_allclose(crops.from_crop(ut, torch.from_numpy(box)).numpy(), lmk, atol=1e-10)


def test_to_crop_differentiable():
    rng = np.random.default_rng(2)
    p = torch.tensor(_lmk(rng, n=5), requires_grad=True)
    box = torch.tensor([10.0, 20.0, 210.0, 220.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: crops.to_crop(a, b), (p, box))
    assert torch.autograd.gradcheck(lambda a, b: crops.from_crop(a, b), (p / 100, box))


def test_jitter_box_bounds_and_determinism():
    box = np.array([100.0, 100.0, 200.0, 200.0])
    a = crops.jitter_box(np.tile(box, (1000, 1)), np.random.default_rng(3), shift=0.1, scale=0.2)
    b = crops.jitter_box(np.tile(box, (1000, 1)), np.random.default_rng(3), shift=0.1, scale=0.2)
    np.testing.assert_array_equal(a, b)
    side = a[:, 2] - a[:, 0]
    np.testing.assert_allclose(side, a[:, 3] - a[:, 1])
    assert side.min() >= 80 - 1e-9 and side.max() <= 120 + 1e-9 and side.std() > 5
    c = (a[:, :2] + a[:, 2:]) / 2
    assert np.abs(c - 150).max() <= 10 + 1e-9 and c.std() > 2


def test_crop_image_maps_landmark_pixel_to_crop_coordinate():
    # A single bright pixel at image (x=70, y=40) must land at crop coordinate to_crop((70, 40), box).
    img = np.zeros((120, 160, 3), np.uint8)
    img[40, 70] = 255
    box = np.array([49.5, 19.5, 89.5, 59.5])  # 40 px box (pixel edges) -> 40 px crop: identity scale
    crop = crops.crop_image(img, box, 40)
    u = crops.to_crop(np.array([[70.0, 40.0]]), box)[0]
    # crop pixel j covers [j/S, (j+1)/S]; its centre is (j+0.5)/S
    j, i = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])[::-1]
    assert crop[i, j, 0] == 255
    assert abs((j + 0.5) / 40 - u[0]) < 1e-9 and abs((i + 0.5) / 40 - u[1]) < 1e-9


def test_crop_image_upscale_matches_direct_resize():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    box = np.array([-0.5, -0.5, 63.5, 63.5])  # the whole image (pixel edges)
    crop = crops.crop_image(img, box, 128)
    ref = cv2.resize(img, (128, 128), interpolation=cv2.INTER_LINEAR)
    # interior matches OpenCV's resize, which uses the same half-pixel-centre convention
    assert np.abs(crop[2:-2, 2:-2].astype(int) - ref[2:-2, 2:-2].astype(int)).max() <= 1


def test_crop_box_partly_outside_frame():
    img = np.full((50, 50, 3), 200, np.uint8)
    img[:, :25] = 10
    box = np.array([-50.0, -50.0, 50.0, 50.0])
    rep = crops.crop_image(img, box, 20, border="replicate")
    con = crops.crop_image(img, box, 20, border="constant")
    assert rep.shape == (20, 20, 3) and rep.dtype == np.uint8
    assert con[0, 0].tolist() == [0, 0, 0]  # outside -> black
    assert rep[0, 0].tolist() == [10, 10, 10]  # outside -> nearest edge pixel
    assert rep[0, 19].tolist() == [200, 200, 200]


@pytest.mark.parametrize("box", [[0, 0, 0, 10], [np.nan, 0, 10, 10], [0, 0, 10]])
def test_crop_bad_box_raises(box):
    with pytest.raises(ValueError, match="box"):
        crops.crop_image(np.zeros((10, 10, 3), np.uint8), np.array(box, float), 8)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(\.\.\., N, 2\)"):
        crops.to_crop(np.zeros((68, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="box"):
        crops.from_crop(np.zeros((68, 2)), np.zeros(3))


def test_camera_to_crop_matches_to_crop_of_projection():
    from tdd_lite.camera import camera_from_pose, euler_to_rotation, project

    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(2, 30, 3)))
    r = euler_to_rotation(torch.tensor([0.3, -0.5]), torch.tensor([0.1, 0.2]), torch.tensor([0.0, 0.3])).double()
    t = torch.tensor([[120.0, 90.0], [200.0, 150.0]]).double()
    cam = camera_from_pose(torch.tensor([40.0, 55.0]).double(), r, t)
    box = torch.tensor([[60.0, 30.0, 180.0, 150.0], [100.0, 40.0, 300.0, 240.0]], dtype=torch.float64)
    expect = crops.to_crop(project(x, cam), box)
    np.testing.assert_allclose(project(x, crops.camera_to_crop(cam, box)).numpy(), expect.numpy(), atol=1e-12)
    np.testing.assert_allclose(crops.camera_to_crop(cam.numpy(), box.numpy()), crops.camera_to_crop(cam, box).numpy())
    with pytest.raises(ValueError, match="camera"):
        crops.camera_to_crop(np.zeros(7), np.zeros(4))


def test_camera_from_crop_is_the_inverse_and_matches_from_crop_of_projection():
    from tdd_lite.camera import project

    g = torch.Generator().manual_seed(3)
    cam = torch.randn(5, 8, generator=g, dtype=torch.float64)
    box = torch.tensor([[10.0, 20.0, 110.0, 120.0]], dtype=torch.float64).expand(5, 4)
    x = torch.randn(5, 68, 3, generator=g, dtype=torch.float64)
    back = crops.camera_from_crop(crops.camera_to_crop(cam, box), box)
    np.testing.assert_allclose(back.numpy(), cam.numpy(), atol=1e-12)
    # independent: projecting with the image camera == mapping the crop projection back to pixels
    np.testing.assert_allclose(project(x, crops.camera_from_crop(cam, box)).numpy(),
                               crops.from_crop(project(x, cam), box).numpy(), atol=1e-10)
