"""Frame and frame-pair datasets, the one-box pair protocol (erratum 7), workers, and the tracking cropper."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tdd_lite import track
from tdd_lite.camera import project
from tdd_lite.data import pairs, synth, vw300
from tdd_lite.data.crops import box_from_landmarks, crop_image, from_crop, to_crop

from .test_synth import small_model

S = 64


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def sroot(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("pairs") / "set"
    return synth.generate(out, videos=4, frames=10, size=(128, 112), seed=2, model=model, progress=False)


def test_frame_items(sroot):
    ds = pairs.FrameDataset(sroot, "A", size=S)  # eval split: no augmentation
    assert len(ds) == 10 and not ds.augment
    it = ds[3]
    assert set(it) == {"image", "gt_lmk", "box", "video", "frame"}
    assert it["image"].shape == (3, S, S) and it["image"].dtype == torch.float32
    assert 0 <= it["image"].min() and it["image"].max() <= 1
    assert it["gt_lmk"].shape == (68, 2) and it["box"].dtype == torch.float32
    seq = vw300.VideoSequence(sroot / it["video"])
    lmk = seq.landmarks[it["frame"]]
    box = box_from_landmarks(lmk)
    np.testing.assert_allclose(it["box"].numpy(), box, rtol=1e-6)
    np.testing.assert_allclose(it["gt_lmk"].numpy(), to_crop(lmk, box), atol=1e-6)
    assert (it["gt_lmk"] > 0).all() and (it["gt_lmk"] < 1).all()
    np.testing.assert_allclose(from_crop(it["gt_lmk"].double().numpy(), box), lmk, atol=1e-3)
    ref = crop_image(seq.frame(it["frame"]), box, S) / 255.0
    np.testing.assert_allclose(it["image"].numpy(), ref.transpose(2, 0, 1), atol=1e-6)


def test_train_augmentation_deterministic(sroot):
    a = pairs.FrameDataset(sroot, "train", size=S, seed=1)
    b = pairs.FrameDataset(sroot, "train", size=S, seed=1)
    c = pairs.FrameDataset(sroot, "train", size=S, seed=2)
    assert a.augment
    torch.testing.assert_close(a[4]["box"], b[4]["box"])
    assert not torch.allclose(a[4]["box"], c[4]["box"])
    a.set_epoch(1)
    assert not torch.allclose(a[4]["box"], b[4]["box"])
    lmk = vw300.VideoSequence(sroot / a[4]["video"]).landmarks[a[4]["frame"]]
    exact = box_from_landmarks(lmk)
    side = exact[2] - exact[0]
    assert np.abs(a[4]["box"].numpy() - exact).max() < 0.2 * side  # jitter is small
    off = pairs.FrameDataset(sroot, "train", size=S, augment=False)
    np.testing.assert_allclose(off[4]["box"].numpy(), exact, rtol=1e-6)


def test_pair_items_one_box_from_previous_frame(sroot):
    ds = pairs.FramePairDataset(sroot, "A", size=S, max_interval=6)
    assert len(ds) == 9  # frames 1..9 of the one A video
    seq = vw300.VideoSequence(sroot / ds[0]["video"])
    for i in range(len(ds)):
        it = ds[i]
        t, p = it["frame"], it["prev_frame"]
        assert it["interval"] == t - p and 1 <= it["interval"] <= min(6, t)
        box = box_from_landmarks(seq.landmarks[p])  # the previous frame's GT box, no jitter in eval
        np.testing.assert_allclose(it["box"].numpy(), box, rtol=1e-6)
        np.testing.assert_allclose(it["gt_lmk"].numpy(), to_crop(seq.landmarks[t], box), atol=1e-6)
        np.testing.assert_allclose(it["prev_gt_lmk"].numpy(), to_crop(seq.landmarks[p], box), atol=1e-6)
        # both images cropped with that one box
        np.testing.assert_allclose(it["image"].numpy(), crop_image(seq.frame(t), box, S).transpose(2, 0, 1) / 255,
                                   atol=1e-6)
        np.testing.assert_allclose(it["prev_image"].numpy(),
                                   crop_image(seq.frame(p), box, S).transpose(2, 0, 1) / 255, atol=1e-6)


def test_interval_distribution_uniform_and_clipped(sroot):
    ds = pairs.FramePairDataset(sroot, "train", size=16, max_interval=6)
    counts = np.zeros(7, int)
    for epoch in range(50):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            it = ds[i]
            t, d = it["frame"], it["interval"]
            assert 1 <= d <= min(6, t) and it["prev_frame"] == t - d
            if t >= 6:
                counts[d] += 1
            if t == 1:
                assert d == 1
    frac = counts[1:] / counts[1:].sum()
    assert counts.sum() >= 200 and np.abs(frac - 1 / 6).max() < 0.06, frac  # uniform on 1..6


def test_params_camera_in_crop_coordinates(sroot, model):
    ds = pairs.FramePairDataset(sroot, "train", size=S, with_params=True)
    it = ds[5]
    for pre in ("", "prev_"):
        lm3 = model.landmarks3d(it[pre + "alpha_id"][None], it[pre + "alpha_exp"][None])
        proj = project(lm3, it[pre + "camera"][None])[0]
        torch.testing.assert_close(proj, it[pre + "gt_lmk"], atol=1e-4, rtol=0)


def test_dataloader_two_workers_same_as_main_process(sroot):
    ds = pairs.FramePairDataset(sroot, "train", size=32, seed=3)
    ref = [ds[i] for i in range(8)]
    dl = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False, timeout=60)  # a fork deadlock fails, not hangs
    batches = list(dl)
    assert batches[0]["image"].shape == (4, 3, 32, 32) and batches[0]["video"][:1] == [ref[0]["video"]]
    got = torch.cat([b["prev_image"] for b in batches])[:8]
    torch.testing.assert_close(got, torch.stack([r["prev_image"] for r in ref]))
    torch.testing.assert_close(torch.cat([b["gt_lmk"] for b in batches])[:8], torch.stack([r["gt_lmk"] for r in ref]))


def test_frame_cache_path(sroot, tmp_path):
    ds = pairs.FramePairDataset(sroot, "A", size=S, cache_dir=tmp_path / "cache")
    plain = pairs.FramePairDataset(sroot, "A", size=S)
    assert (tmp_path / "cache" / ds.sequences[0].name / "complete").exists()
    assert (ds[3]["image"] - plain[3]["image"]).abs().mean() < 0.02  # JPEG re-encoding only


def test_skip_bad_frames_excluded(sroot, tmp_path):
    import shutil

    r = tmp_path / "bad"
    shutil.copytree(sroot, r)
    (r / "002" / "annot" / "000004.pts").write_text("version: 1\n{\n1 2\n")
    with pytest.raises(ValueError, match="000004.pts"):
        pairs.FrameDataset(r, ["002"], size=S)[0]
    ds = pairs.FrameDataset(r, ["002"], size=S, skip_bad=True)
    assert len(ds) == 9 and 3 not in [f for _, f in ds.index]
    pds = pairs.FramePairDataset(r, ["002"], size=S, skip_bad=True)
    assert all(pds[i]["prev_frame"] != 3 for i in range(len(pds)))


def test_tracking_cropper_gt_mode_with_perfect_predictor(sroot):
    seq = vw300.VideoSequence(sroot / "003")
    cropper = track.TrackingCropper(size=S, mode="gt")
    prev = None
    for k in range(5):
        x, box = cropper.next(seq.frame(k), gt_lmk=seq.landmarks[k])
        assert x.shape == (3, S, S)
        expected_box = box_from_landmarks(seq.landmarks[k if k == 0 else k - 1])
        np.testing.assert_allclose(box, expected_box, atol=1e-9)  # frame k is cropped from frame k-1's estimate
        px = cropper.update(to_crop(seq.landmarks[k], box))  # a perfect estimate
        np.testing.assert_allclose(px, seq.landmarks[k], atol=1e-9)
        prev = px
    assert cropper.first_source == "gt" and prev is not None
    cropper.next(seq.frame(5))
    with pytest.raises(RuntimeError, match="update"):
        cropper.next(seq.frame(6))


def test_tracking_cropper_fallbacks():
    blank = np.zeros((120, 160, 3), np.uint8)
    c = track.TrackingCropper(size=S, mode="haar", fallback="centre")
    _, box = c.next(blank)
    assert c.first_source == "fallback-centre"
    np.testing.assert_allclose(box, [44.0, 24.0, 116.0, 96.0])
    c = track.TrackingCropper(size=S, mode="haar", fallback="gt")
    lmk = np.random.default_rng(0).uniform(40, 80, (68, 2))
    _, box = c.next(blank, gt_lmk=lmk)
    assert c.first_source == "fallback-gt"
    np.testing.assert_allclose(box, box_from_landmarks(lmk))
    with pytest.raises(ValueError, match="NaN"):
        c.update(np.full((68, 2), np.nan))


def test_tracking_crops_generator(sroot):
    seq = vw300.VideoSequence(sroot / "001")
    boxes = []

    def predict(x):
        box = boxes[-1]
        return to_crop(seq.landmarks[len(boxes) - 1], box)

    out = []
    cropper_frames = (seq.frame(k) for k in range(4))
    gen = track.tracking_crops(cropper_frames, lambda x: predict(x), size=S, mode="gt", gt_landmarks=seq.landmarks)
    for px, _box in _intercept(gen, boxes):
        out.append(px)
    np.testing.assert_allclose(np.stack(out), seq.landmarks[:4], atol=1e-9)


def _intercept(gen, boxes):
    """Expose each frame's box to the predictor before it runs (the generator crops, then predicts)."""
    import tdd_lite.track as P

    orig = P.TrackingCropper.next

    def spy(self, image, gt=None):
        x, box = orig(self, image, gt)
        boxes.append(box)
        return x, box

    P.TrackingCropper.next = spy
    try:
        yield from gen
    finally:
        P.TrackingCropper.next = orig


def test_bad_arguments(sroot, tmp_path):
    import shutil

    with pytest.raises(ValueError, match="max_interval"):
        pairs.FramePairDataset(sroot, "A", max_interval=0)
    with pytest.raises(KeyError, match="unknown split"):
        pairs.FrameDataset(sroot, "val")
    shutil.copytree(sroot, tmp_path / "r")
    (tmp_path / "r" / "004" / "params.npz").unlink()
    with pytest.raises(FileNotFoundError, match="params.npz"):
        pairs.FrameDataset(tmp_path / "r", "C", with_params=True)
