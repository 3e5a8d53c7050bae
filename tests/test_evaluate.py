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
