"""The tracking protocol: exact with an oracle G, drift without re-detection, re-detection triggers, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tdd_lite.data.crops import box_from_landmarks, landmark_bbox, to_crop
from tdd_lite.errors import DataError, UsageError
from tdd_lite.track import Tracker, TrackingCropper

H, W = 240, 320


def _face(cx: float, cy: float, side: float) -> np.ndarray:
    """68 points spread over a face-like ellipse of the given centre and size (deterministic)."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    r = 0.5 * side * (0.6 + 0.4 * np.cos(3 * t) ** 2)
    return np.stack([cx + r * np.cos(t), cy + 0.9 * r * np.sin(t)], 1)


def _video(n: int = 40, speed: float = 2.0) -> np.ndarray:
    """Ground truth of a face moving right at ``speed`` px/frame."""
    return np.stack([_face(100 + speed * k, 120, 80) for k in range(n)])


PRIOR01 = to_crop(_face(0.5, 0.5, 1.0), np.array([0.0, 0.0, 1.0, 1.0]))  # a unit face in crop coordinates


class Oracle:
    """A stand-in for G that knows the truth and returns it in the tracker's current crop's [0, 1] coordinates,
    pulled by ``w`` towards a prior face (centred, side ``prior_side`` of the crop): the bias of a regressor
    that has learnt where faces usually sit in its crops, which makes a tracker lag and shrink."""

    def __init__(self, gt: np.ndarray, w: float = 0.0, prior_side: float = 0.5, alpha: float = 0.0):
        self.gt, self.w, self.prior_side, self.alpha, self.tracker = gt, w, prior_side, alpha, None

    def __call__(self, image):
        k, box = self.tracker.frame_index, self.tracker.crop_box
        prior = 0.5 + self.prior_side * (PRIOR01 - 0.5)
        return (1 - self.w) * to_crop(self.gt[k], box) + self.w * prior, np.full(5, self.alpha)


class _OracleTracker(Tracker):
    """The tracker with the crop being estimated exposed to the oracle (a G sees only the crop, not its box)."""

    def estimate(self, image, box):
        self.crop_box = np.asarray(box, np.float64)
        return super().estimate(image, box)


def _tracker(oracle: Oracle, **kw) -> Tracker:
    t = _OracleTracker(oracle, size=32, detector="gt", **kw)
    oracle.tracker = t
    return t


FRAMES = [np.zeros((H, W, 3), np.uint8)] * 40


def test_oracle_tracks_exactly_and_every_crop_is_the_previous_estimate():
    gt = _video()
    o = Oracle(gt)
    r = _tracker(o).run(FRAMES, gt)
    np.testing.assert_allclose(r.landmarks, gt, atol=1e-9)
    assert r.status == ["detected"] + ["tracked"] * 39 and r.redetections == 0
    for k in range(1, 40):  # the paper's protocol: frame k is cropped from the estimate of frame k-1
        np.testing.assert_allclose(r.boxes[k], box_from_landmarks(r.landmarks[k - 1]))


def test_biased_regressor_drifts_without_redetection_and_recovers_with_it():
    gt = _video()
    side = lambda lm: np.ptp(lm[:, 0])  # noqa: E731
    # feedback: each crop comes from an estimate that is too small, so the next estimate is smaller still
    never = _tracker(Oracle(gt, w=0.9, prior_side=0.5), redetect="never").run(FRAMES, gt)
    assert side(never.landmarks[-1]) < 0.45 * side(gt[-1])
    assert set(never.status[1:]) == {"tracked"}
    auto = _tracker(Oracle(gt, w=0.9, prior_side=0.5), redetect="auto", max_scale_jump=1.3).run(FRAMES, gt)
    assert auto.redetections >= 1 and "size-jump" in auto.reasons
    # re-detection restarts from the detector's box whenever the size collapses: never as small as without it
    assert min(side(auto.landmarks[k]) / side(gt[k]) for k in range(40)) > 0.6


def test_face_leaving_the_frame_triggers_outside():
    gt = _video(n=40, speed=8.0)  # leaves the 320-px frame after ~30 frames
    r = _tracker(Oracle(gt), min_inside=0.5).run(FRAMES, gt)
    k = next(i for i in range(40) if r.reasons[i] == "outside")
    x0, y0, x1, y1 = landmark_bbox(gt[k])
    assert (min(x1, W) - max(x0, 0)) / (x1 - x0) < 0.5
    assert all(r.reasons[i] != "outside" for i in range(k))


def test_implausible_shape_triggers_redetection():
    gt = _video(n=5)
    r = _tracker(Oracle(gt, alpha=4.0), max_alpha_rms=2.5).run(FRAMES[:5], gt)
    assert r.reasons[1:] == ["shape"] * 4
    # the detector's re-crop still gives an implausible face: the frames are reported lost, not tracked
    assert r.status[1:] == ["lost"] * 4 and r.lost_frames == 4


def test_never_reproduces_the_bare_cropper():
    gt = _video()
    o = Oracle(gt, w=0.3)
    r = _tracker(o, redetect="never").run(FRAMES, gt)
    c = TrackingCropper(size=32, mode="gt")
    for k in range(40):
        _, box = c.next(FRAMES[k], gt[k])
        np.testing.assert_allclose(box, r.boxes[k])
        o.tracker.crop_box, o.tracker.frame_index = box, k
        c.update(o(None)[0])


def test_bad_input():
    gt = _video(n=3)
    with pytest.raises(UsageError, match="detector 'yolo'"):
        Tracker(Oracle(gt), size=32, detector="yolo")
    with pytest.raises(UsageError, match="redetect"):
        Tracker(Oracle(gt), size=32, redetect="sometimes")
    t = _tracker(Oracle(gt))
    with pytest.raises(UsageError, match="uint8 RGB"):
        t.step(np.zeros((H, W), np.uint8), gt[0])
    with pytest.raises(DataError, match="no frames"):
        t.run([], gt)


def test_nan_estimate_never_places_a_crop():
    gt = _video(n=6)

    class NanOnce(Oracle):
        def __call__(self, image):
            p, a = super().__call__(image)
            return (p * np.nan if self.tracker.frame_index == 2 else p), a

    o = NanOnce(gt)
    r = _tracker(o, redetect="never").run(FRAMES[:6], gt)
    assert np.isnan(r.landmarks[2]).all() and np.isfinite(r.boxes).all()
    np.testing.assert_allclose(r.boxes[3], r.boxes[2])  # the crop is kept
    np.testing.assert_allclose(r.landmarks[5], gt[5], atol=1e-9)


def test_periodic_check_catches_a_steady_but_wrong_track():
    """A G that always answers 'the face is where the crop is' never moves: no size jump, never outside the
    frame; only the periodic detector check (every ``verify_every`` frames) notices the track is elsewhere."""
    gt = _video(n=70, speed=3.0)
    frames = [np.zeros((H, W, 3), np.uint8)] * 70
    stuck = _tracker(Oracle(gt, w=1.0, prior_side=1 / 1.4), redetect="auto", verify_every=0).run(frames, gt)
    assert stuck.redetections == 0
    assert np.abs(stuck.landmarks[-1] - gt[-1]).max() > 100  # left 200 px behind
    r = _tracker(Oracle(gt, w=1.0, prior_side=1 / 1.4), redetect="auto", verify_every=30).run(frames, gt)
    assert [k for k in range(70) if r.reasons[k] == "verify"] == [30, 60]
    assert r.status[30] == r.status[60] == "redetected"
    np.testing.assert_allclose(r.landmarks[30].mean(0), gt[30].mean(0), atol=1.0)  # back on the face
