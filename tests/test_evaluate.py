"""Tracking-protocol NME of a G (tdd_lite.evaluate) against a hand-rolled replay of the protocol."""

import numpy as np
import pytest
import torch

from tdd_lite.data import crops
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
            img = crops.crop_tensor(frame, box, 64)
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


def test_evaluate_videos_rows_agree_with_the_metrics_and_the_report(data, tmp_path):
    """evaluate_videos: the category row is the metrics of the pooled frames, filters add rows, the GT-crop row
    is the convenient protocol; the written report's tables are the JSON's numbers."""
    import csv
    import json

    from tdd_lite.evaluate import GT_CROPS, evaluate_videos
    from tdd_lite.filters import make_filter
    from tdd_lite.metrics import nme as nme_fn
    from tdd_lite.report import write_report

    torch.manual_seed(0)
    model = load_teaching_model()
    net = AlignmentNet.for_model(model).eval()
    ids = load_split(data, "A")
    groups = {"A": [s.name for s in ids]}
    r = evaluate_videos(net, model, data, groups, 64, detector="gt", redetect="never",
                        filters=["none", "moving"], progress=False, keep_streams=True)
    assert set(r["methods"]) == {"tracking", "tracking + moving", GT_CROPS}
    for name in r["methods"]:
        frames = np.concatenate([[float(nme_fn(p, g)) for p, g in zip(s[name], s["gt"])]
                                 for s in r["streams"].values()])
        assert np.isclose(r["methods"][name]["categories"]["A"]["nme"], frames.mean(), rtol=1e-9)
    s = next(iter(r["streams"].values()))
    np.testing.assert_allclose(s["tracking + moving"], make_filter("moving").apply(s["tracking"]))
    # Synth300VW's params.npz: the 3D metrics of G's own parameters (tracking, GT crops), none for a filter
    cats = {n: m["categories"]["A"] for n, m in r["methods"].items()}
    assert cats["tracking"]["identity_spread"] is not None and cats[GT_CROPS]["expression_error"] is not None
    assert cats["tracking + moving"]["identity_spread"] is None
    # the GT-crop row crops every frame from its own true box (the replay above does that by hand)
    seq = ids[0]
    box = crops.box_from_landmarks(seq.landmarks[2])
    img = crops.crop_tensor(seq.frame(2), box, 64)
    with torch.no_grad():
        px = crops.from_crop(predict_landmarks(model, net(img[None]))[0].double().numpy(), box)
    np.testing.assert_allclose(r["streams"][seq.name][GT_CROPS][2], px, atol=1e-4)
    del r["streams"]
    paths = write_report(r, tmp_path / "rep")
    assert paths["ced"].stat().st_size > 1000
    back = json.loads(paths["json"].read_text())
    assert back["methods"]["tracking"]["categories"]["A"]["nme"] == pytest.approx(
        r["methods"]["tracking"]["categories"]["A"]["nme"])
    rows = list(csv.DictReader(paths["csv"].open()))
    cat = [x for x in rows if x["method"] == "tracking" and x["level"] == "category"][0]
    assert float(cat["nme"]) == pytest.approx(r["methods"]["tracking"]["categories"]["A"]["nme"])
    md = paths["md"].read_text()
    assert f"| tracking | {100 * r['methods']['tracking']['categories']['A']['nme']:.3f} |" in md


def test_batched_ground_truth_crops_agree_with_one_crop_at_a_time(data):
    from tdd_lite.evaluate import gt_crop_landmarks
    from tdd_lite.track import net_predictor

    torch.manual_seed(0)
    model = load_teaching_model()
    predict = net_predictor(AlignmentNet.for_model(model), model)
    seq = load_split(data, "A")[0]
    frames = list(seq.frames())
    gt = seq.landmarks.copy()
    gt[1] = np.nan  # a frame without annotation stays NaN in both
    batched, p_b = gt_crop_landmarks(predict, frames, gt, 64, with_params=True, chunk=2)

    def one_at_a_time(image):
        out = predict(image)
        one_at_a_time.last = predict.last
        return out

    single, p_s = gt_crop_landmarks(one_at_a_time, frames, gt, 64, with_params=True)  # no .batch attribute
    assert np.isnan(batched[1]).all() and np.isnan(single[1]).all()
    ok = np.isfinite(gt).all(axis=(1, 2))
    # batched convolutions may sum in another order: agree to float32 rounding, in pixels
    np.testing.assert_allclose(batched[ok], single[ok], atol=1e-3)
    for key in ("alpha_id", "alpha_exp", "camera"):
        np.testing.assert_allclose(p_b[key][ok], p_s[key][ok], atol=1e-4)


def test_table2_markdown_formats_each_category_and_refuses_unknown_methods():
    from tdd_lite import report

    cats = {c: {"nme": v, "dnme": v / 10, "jitter_ratio": 2 * v * 100, "lag": 0.5, "lost_tracks": i}
            for i, (c, v) in enumerate((("A", 0.0123), ("B", 0.0456), ("C", 0.0789)))}
    res = {"methods": {"tracking": {"categories": cats}}}
    rows = report.table2_rows(res, {"tracking": "G, raw"}, fps=12.345)
    md = report.table2_markdown(rows)
    line = md.splitlines()[2]
    assert line.startswith("| G, raw | 1.23 / 4.56 / 7.89 | 0.12 / 0.46 / 0.79 | 2.46 / 9.12 / 15.78 | "
                           "0.50 / 0.50 / 0.50 | 0 / 1 / 2 | 12.3 |")
    with pytest.raises(KeyError, match="one-euro"):
        report.table2_rows(res, {"tracking + one-euro": "x"})
