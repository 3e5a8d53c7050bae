"""The ipywidgets face explorer, driven headless: slider values re-render and move the drawn landmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tdd_lite.camera import camera_from_pose, euler_to_rotation, pose_from_camera, project
from tdd_lite.morphable import load_teaching_model
from tdd_lite.widgets import FaceExplorer, crop_to_pixels, face_camera

pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def model():
    return load_teaching_model()


def _direct_landmarks(model, alpha_id, alpha_exp, yaw, pitch, roll, size, fill=0.6):
    """Independent computation: eq. 2/7 at the landmark vertices (dense shape), then v = f P R X + t in pixels."""
    dense = model.shape(alpha_id, alpha_exp)[0].double()
    pts = dense[torch.as_tensor(model.landmark_index)]
    cam = face_camera(model, yaw, pitch, roll, fill=fill).double()
    f, r, t = pose_from_camera(cam)
    p = torch.tensor([[1.0, 0, 0], [0, -1.0, 0]], dtype=torch.float64)
    uv = f[0] * (p @ r[0] @ pts.T).T + t[0]  # [0, 1] crop coordinates
    return (uv * size - 0.5).numpy()


def test_sliders_rerender_and_landmarks_match_direct_computation(model):
    ex = FaceExplorer(model, n_id=3, n_exp=3, size=128)
    assert set(ex.sliders) == {"id_0", "id_1", "id_2", "exp_0", "exp_1", "exp_2", "yaw", "pitch", "roll"}
    renders, img0, lmk0 = ex.renders, ex.last_image.copy(), ex.last_landmarks.copy()
    assert img0.shape == (128, 128, 3) and lmk0.shape == (68, 2)
    assert len(ex.image.value) > 100 and ex.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    z_id, z_exp = model.zeros(1)
    np.testing.assert_allclose(lmk0, _direct_landmarks(model, z_id, z_exp, 0, 0, 0, 128), atol=1e-3)

    ex.sliders["exp_0"].value = 2.0
    assert ex.renders == renders + 1
    assert not np.array_equal(ex.last_image, img0)
    a_exp = z_exp.clone()
    a_exp[0, 0] = 2.0
    np.testing.assert_allclose(ex.last_landmarks, _direct_landmarks(model, z_id, a_exp, 0, 0, 0, 128), atol=1e-3)
    # expression mode 0 (mostly jawOpen) opens the mouth: inner lips 62 (top) and 66 (bottom) part, image y down
    gap = lambda l: l[66, 1] - l[62, 1]  # noqa: E731
    assert gap(ex.last_landmarks) > gap(lmk0) + 2.0
    # the identity slider changes the landmarks, and only through the identity term
    ex.sliders["id_1"].value = -1.5
    a_id = z_id.clone()
    a_id[0, 1] = -1.5
    np.testing.assert_allclose(ex.last_landmarks, _direct_landmarks(model, a_id, a_exp, 0, 0, 0, 128), atol=1e-3)
    ex.sliders["yaw"].value = 30.0
    ex.sliders["roll"].value = -10.0
    np.testing.assert_allclose(ex.last_landmarks, _direct_landmarks(model, a_id, a_exp, 30, 0, -10, 128),
                               atol=1e-3)


def test_yaw_turns_the_nose_to_image_right(model):
    ex = FaceExplorer(model, n_id=1, n_exp=1, size=96)
    nose0 = ex.last_landmarks[30, 0] - ex.last_landmarks[27:31, 0].mean()
    ex.sliders["yaw"].value = 40.0
    nose1 = ex.last_landmarks[30, 0] - ex.last_landmarks[27, 0]
    assert nose1 > nose0 + 3.0
    assert ex.parameters()[2].shape == (1, 8)


def test_face_camera_scale_is_pose_independent_and_centred(model):
    for yaw, pitch, roll in ((0, 0, 0), (50, -20, 15)):
        cam = face_camera(model, yaw, pitch, roll, fill=0.6)
        f, r, _ = pose_from_camera(cam)
        ref = euler_to_rotation(torch.tensor([math.radians(yaw)]), torch.tensor([math.radians(pitch)]),
                                torch.tensor([math.radians(roll)]))
        torch.testing.assert_close(r, ref, atol=1e-5, rtol=0)
        uv = project(model.lmk_mean[None], cam)[0]
        torch.testing.assert_close(uv.mean(0), torch.tensor([0.5, 0.5]), atol=1e-5, rtol=0)
        assert f.item() == pytest.approx(face_camera(model).reshape(2, 4)[0, 0].item() / 0.7 * 0.6, rel=1e-4)
    pix = crop_to_pixels(camera_from_pose(torch.ones(1), torch.eye(3)[None], torch.zeros(1, 2)), 10)
    assert project(torch.zeros(1, 1, 3), pix)[0, 0].tolist() == [-0.5, -0.5]


def test_explorer_image_keeps_its_aspect_and_says_it_needs_a_kernel(model):
    import ipywidgets as w

    from tdd_lite.widgets import LIVE_NOTE

    ex = FaceExplorer(model, n_id=4, n_exp=4, size=160)
    lay = ex.image.layout
    assert (lay.width, lay.height, lay.flex) == ("160px", "160px", "0 0 auto"), (lay.width, lay.height, lay.flex)
    row = ex.widget.children[0]
    assert isinstance(row, w.HBox) and row.layout.align_items == "flex-start"   # the row does not stretch it
    notes = [c for c in ex.widget.children if isinstance(c, w.HTML)]
    assert notes and "make lab" in notes[0].value and LIVE_NOTE in notes[0].value


def _truth(model, seed=0, yaw=20.0):
    from tdd_lite.camera import look_at_crop

    g = torch.Generator().manual_seed(seed)
    a_id, a_exp = torch.randn(1, model.n_id, generator=g), torch.zeros(1, model.n_exp)
    a_exp[0, :3] = torch.tensor([2.0, -1.0, 1.0])
    return a_id, a_exp, look_at_crop(model.lmk_mean, yaw_deg=yaw, fill=0.7)


def test_displacement_explorer_draws_the_library_displacements(model):
    from tdd_lite import displacement as disp
    from tdd_lite.widgets import DisplacementExplorer

    truth = _truth(model)
    ex = DisplacementExplorer(model, truth, n_id=2, n_exp=2, size=200)
    assert ex.last_image.shape == (200, 200, 3) and ex.image.layout.height == "200px"
    assert ex.last["fake"].abs().max() < 1e-7                       # prediction identity 0
    U = disp.pred_lmk(model, *truth)[0]
    ex.sliders["id_1"].value = 2.0
    ex.sliders["exp_0"].value = 1.0
    a_id, a_exp = model.zeros(1)
    a_id[0, 1], a_exp[0, 0] = 2.0, 1.0
    cam = truth[2]
    # independent computation: project eq. 2 / 7 by hand with M = camera as a 2 x 4 matrix
    m = cam.reshape(2, 4)
    proj = lambda X: X[0] @ m[:, :3].T + m[:, 3]  # noqa: E731
    v = proj(model.landmarks3d(a_id, a_exp))
    v_exp, v_id = proj(model.landmarks3d(None, a_exp)), proj(model.landmarks3d(a_id, None))
    torch.testing.assert_close(ex.last["fake"], v - v_exp, atol=1e-6, rtol=0)
    torch.testing.assert_close(ex.last["real"], U - v_exp, atol=1e-6, rtol=0)
    renders = ex.renders
    ex.sliders["which"].value = "ED"
    assert ex.renders == renders + 1
    torch.testing.assert_close(ex.last["fake"], v - v_id, atol=1e-6, rtol=0)
    assert "crop units" in ex.readout.value


def test_discriminator_explorer_moves_the_prediction_away_from_the_truth(model):
    from tdd_lite import displacement as disp
    from tdd_lite.discriminators import DisplacementDiscriminator
    from tdd_lite.widgets import DiscriminatorExplorer

    torch.manual_seed(0)
    ds = {k: DisplacementDiscriminator() for k in ("id", "exp", "temporal")}
    truth, prev = _truth(model), _truth(model, yaw=10.0)
    ex = DiscriminatorExplorer(model, ds, truth, prev, size=300)
    for k, (p_fake, p_real) in ex.last_probs.items():               # perfect prediction: fake == real
        assert abs(p_fake - p_real) < 1e-6, k
    ex.sliders["identity"].value = 1.0
    cur, prev_out = ex.prediction()
    assert cur[0].abs().max() == 0 and torch.equal(cur[1], truth[1])
    x = disp.all_displacements(model, cur, prev_out, disp.pred_lmk(model, *truth), disp.pred_lmk(model, *prev))
    assert x["fake_id_disp"].abs().max() < 1e-7
    with torch.no_grad():
        expect = torch.sigmoid(ds["id"].eval()(torch.zeros(1, 68, 2))).item()
    assert ex.last_probs["id"][0] == pytest.approx(expect, abs=1e-6)  # D_ID sees a zero displacement
    ex.sliders["motion"].value = 1.0
    x = disp.all_displacements(model, *ex.prediction(), disp.pred_lmk(model, *truth), disp.pred_lmk(model, *prev))
    assert x["fake_temporal_disp"].abs().max() < 1e-6                 # the prediction does not move
    assert ex.last_image.shape[:2] == (int(300 * 0.55), 300)


def test_discriminator_explorer_legend_hides_no_bar(model):
    """Every bar at full height (each D answers 1): the legend overlaps no bar and lies inside the picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.patches import Rectangle

    from tdd_lite.widgets import DiscriminatorExplorer

    class Sure(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 1), 12.0)   # sigmoid(12) ~ 1: real and fake bars reach the top

    ex = DiscriminatorExplorer(model, {k: Sure() for k in ("id", "exp", "temporal")}, _truth(model),
                               _truth(model, yaw=10.0), size=440)
    with torch.no_grad():
        pred = project(model.landmarks3d(*ex.prediction()[0][:2]), ex.truth[2])[0]
    fig = ex.figure(pred)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax_b = fig.axes[1]
    bars = [p for p in ax_b.patches if isinstance(p, Rectangle) and p.get_height() > 0.99]
    assert len(bars) == 6, len(bars)
    legend = ax_b.get_legend().get_window_extent(renderer)
    for bar in bars:
        assert not legend.overlaps(bar.get_window_extent(renderer)), "the legend hides a bar"
    page = fig.bbox
    assert page.x0 <= legend.x0 and legend.x1 <= page.x1 and page.y0 <= legend.y0 and legend.y1 <= page.y1
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_slider_labels_and_readouts_are_never_cut_off(model):
    # labels at their natural width, inside a fixed width that also keeps sliders + picture within the page column
    from tdd_lite.discriminators import DisplacementDiscriminator
    from tdd_lite.widgets import SLIDER_WIDTH, DiscriminatorExplorer, DisplacementExplorer

    ds = {k: DisplacementDiscriminator() for k in ("id", "exp", "temporal")}
    explorers = [FaceExplorer(model, n_id=2, n_exp=2, size=96),
                 DisplacementExplorer(model, _truth(model), n_id=1, n_exp=1, size=96),
                 DiscriminatorExplorer(model, ds, _truth(model), _truth(model, yaw=10.0), size=96)]
    for ex in explorers:
        for s in ex.sliders.values():
            assert s.style.description_width == "initial" and s.layout.width == SLIDER_WIDTH
    assert int(SLIDER_WIDTH.removesuffix("px")) + 440 <= 750   # the widest explorer picture (440 px) beside it
