"""``tdd-lite track``: a Synth300VW video and an image folder written by OpenCV, outputs readable by check-data;
bad input is one line and leaves existing folders alone."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from tdd_lite.data import synth, vw300
from tdd_lite.data.pts import read_pts
from tests._cli import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny Synth300VW set and a smoke checkpoint trained on it by the real command."""
    base = tmp_path_factory.mktemp("trackcli")
    data = synth.generate(base / "synth", videos=6, frames=10, size=(200, 200), seed=2, progress=False)
    r = run_cli("train", "--config", "smoke", "--data", data, "--out", base / "run",
                env={"TDD_WORK_DIR": str(base / "work")}, timeout=600)
    assert r.code == 0, r.text
    return base, data, base / "run" / "checkpoint.pt"


def _overlay_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_track_a_synth_video_and_the_same_frames_as_an_image_folder(setup):
    base, data, ckpt = setup
    seq = vw300.VideoSequence(data / "001")
    out = base / "out" / "001"
    r = run_cli("track", data / "001" / "vid.avi", "--checkpoint", ckpt, "--out", out, "--detector", "haar",
                "--no-progress")
    assert r.code == 0, r.text
    info = json.loads((out / "track.json").read_text())
    assert info["frames"] == len(seq) == len(list((out / "annot").glob("*.pts")))
    assert len(info["boxes"]) == len(seq) and info["status"][0] == "detected"
    assert _overlay_frames(out / "overlay.mp4") == len(seq)
    lmk = np.stack([read_pts(out / "annot" / f"{k + 1:06d}.pts") for k in range(len(seq))])
    assert np.isfinite(lmk).all()
    # the output is one 300VW video folder: the validator reads it (a smoke-trained G may put a jaw point
    # beyond the frame, which check-data calls a bad frame: skip those)
    chk = run_cli("check-data", base / "out", "--videos", "001", "--skip-bad-frames")
    assert chk.code == 0 and f"{len(seq)} annotated frames checked" in chk.text, chk.text
    # the same frames as PNGs written by OpenCV: the same landmarks (lossless frames, same network)
    folder = base / "frames"
    folder.mkdir()
    for k, f in enumerate(seq.frames()):
        cv2.imwrite(str(folder / f"{k:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out2 = base / "out2" / "001"
    r = run_cli("track", folder, "--checkpoint", ckpt, "--out", out2, "--detector", "haar", "--mesh",
                "--filter", "one-euro", "--no-progress")
    assert r.code == 0, r.text
    info2 = json.loads((out2 / "track.json").read_text())
    np.testing.assert_allclose(np.array(info2["boxes"]), np.array(info["boxes"]), atol=0.01)
    lmk2 = np.stack([read_pts(out2 / "annot" / f"{k + 1:06d}.pts") for k in range(len(seq))])
    assert np.abs(lmk2 - lmk).max() > 0  # the One Euro filter changed the written landmarks ...
    np.testing.assert_allclose(lmk2[0], lmk[0], atol=1e-3)  # ... but not the first frame (its state starts there)


def test_track_refuses_to_replace_what_it_did_not_make(setup):
    base, data, ckpt = setup
    mine = base / "users_folder"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    r = run_cli("track", data / "002" / "vid.avi", "--checkpoint", ckpt, "--out", mine, "--overwrite",
                "--detector", "haar", "--no-progress")
    assert_one_line_error(r, 2, "not a tdd-lite track output", "tdd-lite track")
    assert (mine / "thesis.tex").read_text() == "precious"
    assert not list(base.glob("*users_folder.partial-*"))


def _fifo(base):
    p = base / "fifo.avi"
    if not p.exists():
        os.mkfifo(p)
    return p


BAD = [  # (args after "track", expected exit, phrase)
    (lambda b, d, c: [b / "missing.avi", "--checkpoint", c, "--out", b / "o1"], 1, "no such video"),
    (lambda b, d, c: [_fifo(b), "--checkpoint", c, "--out", b / "o2"], 1, "not a regular file"),
    (lambda b, d, c: [d / "splits.json", "--checkpoint", c, "--out", b / "o3"], 1, "cannot open this as a video"),
    (lambda b, d, c: [d / "001" / "annot", "--checkpoint", c, "--out", b / "o4"], 1, "no images"),
    (lambda b, d, c: [d / "001" / "vid.avi", "--checkpoint", c, "--out", b / "o5", "--filter", "butter"], 2,
     "butter"),
    (lambda b, d, c: [d / "001" / "vid.avi", "--checkpoint", c, "--out", b / "o6", "--max-frames", "0"], 2,
     "--max-frames"),
    (lambda b, d, c: [d / "001" / "vid.avi", "--checkpoint", b / "nope.pt", "--out", b / "o7"], 1, "nope.pt"),
    (lambda b, d, c: [d / "001" / "vid.avi", "--checkpoint", c, "--out", d / "001" / "vid.avi"], 2,
     "not a folder"),
    (lambda b, d, c: [d / "001" / "vid.avi", "--checkpoint", c, "--out", d], 2, "not empty"),
    (lambda b, d, c: [d / "001" / "vid.avi", "--checkpoint", c, "--out", b / "o8", "--detector", "yolo"], 2,
     "--detector"),
    (lambda b, d, c: [d / "001" / "vid.avi", "--checkpoint", c, "--out", b / "o9", "--fps", "-3"], 2, "--fps"),
    # --checkpoint may be omitted (the shipped reference model: tests/test_reference.py); --out may not
    (lambda b, d, c: [d / "001" / "vid.avi", "--checkpoint", c], 2, "--out"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_track_invocations(setup, i):
    base, data, ckpt = setup
    make, code, phrase = BAD[i]
    before = sorted(p.name for p in data.rglob("*"))
    r = run_cli("track", *make(base, data, ckpt), "--no-progress", timeout=120)
    assert_one_line_error(r, code, phrase)
    assert sorted(p.name for p in data.rglob("*")) == before  # nothing of the data set touched
