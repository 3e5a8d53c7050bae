"""Tracking-protocol NME of a G (tdd_lite.evaluate) against a hand-rolled replay of the protocol."""

import numpy as np
import pytest
import torch

from tdd_lite.data import crops
from tdd_lite.data.pairs import image_to_tensor
from tdd_lite.data.synth import generate
from tdd_lite.data.vw300 import load_split
from tdd_lite.evaluate import evaluate_tracking
from tdd_lite.metrics import nme
from tdd_lite.morphable import load_teaching_model
from tdd_lite.network import AlignmentNet, predict_landmarks


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "s", videos=4, frames=4, size=(96, 96), seed=3,
                    progress=False)


def test_tracking_nme_matches_a_manual_replay(data):
    torch.manual_seed(0)
    model = load_teaching_model()
    net = AlignmentNet.for_model(model).eval()
    # perturb G so consecutive boxes really depend on the estimates
    with torch.no_grad():
        net.head_camera[-1].bias[3] += 0.05
    r = evaluate_tracking(net, model, data, "A", 64, mode="gt", progress=False)
    seq = load_split(data, "A")[0]
    box = crops.box_from_landmarks(seq.landmarks[0])
    errs = []
    with torch.no_grad():
        for k, frame in enumerate(seq.frames()):
            img = image_to_tensor(crops.crop_image(frame, box, 64))
            pred01 = predict_landmarks(model, net(img[None]))[0].double().numpy()
            px = crops.from_crop(pred01, box)
            errs.append(float(nme(px, seq.landmarks[k])))
            box = crops.box_from_landmarks(px)
    assert r["frames"] == 4
    assert np.isclose(r["nme"], 100 * np.mean(errs), rtol=1e-4)
    assert r["nme"] > 0


def test_a_list_of_video_ids_is_the_same_as_the_split_name(data):
    torch.manual_seed(0)
    model = load_teaching_model()
    net = AlignmentNet.for_model(model).eval()
    by_name = evaluate_tracking(net, model, data, "A", 64, mode="gt", progress=False)
    ids = list(by_name["per_video"])
    by_ids = evaluate_tracking(net, model, data, ids, 64, mode="gt", progress=False)
    assert by_ids["frames"] == by_name["frames"] == 4
    assert np.isclose(by_ids["nme"], by_name["nme"], rtol=1e-6)  # the same computation, run twice


def test_skip_bad_scores_only_frames_with_a_readable_ground_truth(data, tmp_path):
    import shutil

    root = shutil.copytree(data, tmp_path / "s")
    seq = load_split(root, "A")[0]
    (seq.annot_dir / "000001.pts").write_text("not a pts file\n")  # the first frame: tracking starts at frame 1
    torch.manual_seed(0)
    model = load_teaching_model()
    net = AlignmentNet.for_model(model).eval()
    with pytest.raises(ValueError):
        evaluate_tracking(net, model, root, "A", 64, mode="gt", progress=False)
    r = evaluate_tracking(net, model, root, "A", 64, mode="gt", progress=False, skip_bad=True)
    assert r["frames"] == 3 and np.isfinite(r["nme"])
