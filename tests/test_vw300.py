"""300VW reader, splits, frame cache and the check-data validator on folders the tests write."""

import json
import pickle
import shutil

import numpy as np
import pytest

from tdd_lite import cli
from tdd_lite.data import vw300
from tdd_lite.data.pts import PtsError, read_pts, write_pts
from tdd_lite.video_io import write_video
from tests._sequences import frames, landmarks

W, H, T = 64, 48, 6


def _frames(n=T):
    return frames(n, step=30)


def _landmarks(n=T, seed=0):
    return landmarks(n, seed)


@pytest.fixture(scope="module")
def good_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vw") / "root"
    root.mkdir()
    vw300.write_sequence(root / "001", _frames(), _landmarks(seed=1))
    vw300.write_sequence(root / "002", _frames(), _landmarks(seed=2))
    (root / "splits.json").write_text(json.dumps({"train": ["001"], "A": ["002"], "B": [], "C": []}))
    return root


@pytest.fixture
def root(good_root, tmp_path):
    r = tmp_path / "copy"
    shutil.copytree(good_root, r)
    return r


def test_official_splits_verbatim():
    s = vw300.OFFICIAL_SPLITS
    assert {k: len(v) for k, v in s.items()} == {"train": 50, "A": 31, "B": 19, "C": 14}
    ids = [v for vs in s.values() for v in vs]
    assert len(ids) == len(set(ids)) == 114 and all(len(v) == 3 and v.isdigit() for v in ids)
    assert s["train"][:3] == ("001", "002", "003") and s["C"][-1] == "562" and s["A"][0] == "114"
    assert "410" in s["C"] and "203" in s["B"]


def test_load_splits_official_or_file(tmp_path, good_root):
    assert vw300.load_splits(tmp_path) == vw300.OFFICIAL_SPLITS
    assert vw300.load_splits(good_root)["A"] == ("002",)
    assert vw300.split_videos(good_root, "test") == ["002"]
    with pytest.raises(KeyError, match="unknown split 'D'"):
        vw300.split_videos(good_root, "D")


def test_data_root_env(monkeypatch, good_root, tmp_path):
    monkeypatch.setenv(vw300.ENV_ROOT, str(good_root))
    assert vw300.data_root() == good_root
    assert [s.name for s in vw300.load_split(None, "train")] == ["001"]
    monkeypatch.delenv(vw300.ENV_ROOT)
    with pytest.raises(FileNotFoundError, match=vw300.ENV_ROOT):
        vw300.data_root()
    with pytest.raises(FileNotFoundError, match="not a directory"):
        vw300.data_root(tmp_path / "nope")


def test_sequence_roundtrip(good_root):
    seq = vw300.VideoSequence(good_root / "001")
    np.testing.assert_array_equal(seq.landmarks, _landmarks(seed=1))  # exact
    assert len(seq) == T and seq.frame_size == (W, H)
    frames = _frames()
    for k in [0, 1, 2, 5, 3, 3, 0]:  # sequential and random access
        img = seq.frame(k)
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
        assert np.abs(img.astype(int) - frames[k]).mean() < 4
        assert abs(int(img[..., 0].mean()) - (20 + 30 * k)) < 4  # the right frame, red channel = RGB order
    assert len(list(seq.frames())) == T
    with pytest.raises(IndexError, match="cannot decode frame 6"):
        seq.frame(6)
    seq.close()


def test_sequence_pickles_without_capture(good_root):
    seq = vw300.VideoSequence(good_root / "002")
    seq.frame(0)
    clone = pickle.loads(pickle.dumps(seq))
    assert clone._cap is None
    np.testing.assert_array_equal(clone.frame(2), seq.frame(2))


def test_frame_cache(good_root, tmp_path):
    seq = vw300.VideoSequence(good_root / "001", cache_dir=tmp_path / "cache")
    direct = [seq.frame(k) for k in range(T)]
    path = seq.build_cache()
    assert (path / "complete").read_text().strip() == str(T)
    assert sorted(p.name for p in path.glob("*.jpg"))[0] == "000001.jpg"
    assert not list((tmp_path / "cache").glob("*.partial-*"))
    for k in (4, 0):
        assert np.abs(seq.frame(k).astype(int) - direct[k]).mean() < 3
    seq.build_cache()  # second call is a no-op


def test_real_layout_header_variants(tmp_path):
    """Files as they appear in the 300VW release: version 1.0, odd spacing, CRLF, integer coordinates."""
    root = tmp_path / "300VW"
    folder = root / "114"
    (folder / "annot").mkdir(parents=True)
    write_video(folder / "vid.avi", _frames(4))
    lmk = np.round(_landmarks(4, seed=3), 3)
    lmk[2] = np.round(lmk[2])
    styles = [("version: 1\nn_points:  68\n", "\n", "{:.3f} {:.3f}"),
              ("version: 1.0\nn_points: 68\n", "\r\n", "{:.3f} {:.3f}"),
              ("version:1\nn_points:68\n", "\r\n", "{:.0f} {:.0f}"),
              ("  version:   1\nn_points:   68  \n", "\n", " {:.3f}  {:.3f} ")]
    for k, (header, eol, fmt) in enumerate(styles):
        body = "\n".join(fmt.format(x, y) for x, y in lmk[k])
        text = (header + "{\n" + body + "\n}\n").replace("\n", eol)
        (folder / "annot" / f"{k + 1:06d}.pts").write_bytes(text.encode())
    seq = vw300.load_split(root, ["114"])[0]
    np.testing.assert_allclose(seq.landmarks, lmk, atol=1e-9)
    report = vw300.validate(root)
    # no splits.json: the video present is checked; the 113 missing official ones are ONE summary warning ...
    assert report.ok and report.videos == 1 and len(report.warnings) == 1, report.format()
    assert "train 0/50, A 1/31, B 0/19, C 0/14 official videos present" in report.warnings[0].message
    # ... which --complete turns into one error
    strict = vw300.validate(root, complete=True)
    assert not strict.ok and len(strict.errors) == 1 and "not the full 300VW" in strict.errors[0].message
    assert vw300.validate(root, videos=["114"]).ok and not vw300.validate(root, videos=["114"]).issues


def test_good_root_passes_and_cli(good_root, capsys):
    rep = vw300.validate(good_root)
    assert rep.ok and rep.videos == 2 and rep.frames == 2 * T and not rep.issues, rep.format()
    assert cli.main(["check-data", str(good_root)]) == 0
    out = capsys.readouterr().out
    assert "OK: 0 errors, 0 warnings" in out


def _break(root, kind):
    v = root / "001"
    a = v / "annot"
    if kind == "missing video":
        (v / "vid.avi").unlink()
    elif kind == "empty video":
        (v / "vid.avi").write_bytes(b"")
    elif kind == "unreadable video":
        (v / "vid.avi").write_bytes(b"RIFF\x00\x00garbage" * 50)
    elif kind == "missing annot":
        shutil.rmtree(a)
    elif kind == "empty annot":
        shutil.rmtree(a)
        a.mkdir()
    elif kind == "count mismatch":
        (a / f"{T:06d}.pts").unlink()
    elif kind == "truncated pts":
        f = a / "000003.pts"
        f.write_text(f.read_text()[:200])
    elif kind == "nan pts":
        f = a / "000002.pts"
        lines = f.read_text().split("\n")
        lines[5] = "nan 12.0"
        f.write_text("\n".join(lines))
    elif kind == "outside frame":
        f = a / "000004.pts"
        p = read_pts(f)
        p[0] = (900.0, 20.0)
        write_pts(f, p)
    elif kind == "numbering gap":
        (a / "000003.pts").rename(a / f"{T + 1:06d}.pts")
    elif kind == "zero-based":
        for k in range(1, T + 1):
            (a / f"{k:06d}.pts").rename(a / f"{k - 1:06d}.pts")
    elif kind == "missing folder":
        shutil.rmtree(v)
    elif kind == "bad splits json":
        (root / "splits.json").write_text("{train: [001]")
    elif kind == "video in two splits":
        (root / "splits.json").write_text(json.dumps({"train": ["001"], "A": ["002", "001"]}))
    elif kind == "degenerate":
        f = a / "000005.pts"
        f.write_text("version: 1\nn_points: 68\n{\n" + "10 10\n" * 68 + "}\n")
    elif kind == "wrong point count":
        f = a / "000001.pts"
        f.write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n")
    elif kind == "no video folders":
        shutil.rmtree(root / "001")
        shutil.rmtree(root / "002")
    else:
        raise AssertionError(kind)


BROKEN = {
    # kind: (where the error is reported, message fragment)
    "missing video": ("001/vid.avi", "missing video file"),
    "empty video": ("001/vid.avi", "video file is empty"),
    "unreadable video": ("001/vid.avi", "unreadable video"),
    "missing annot": ("001/annot", "missing annotation folder"),
    "empty annot": ("001/annot", "no annotation files"),
    "count mismatch": ("001", f"frame/annotation count mismatch: video has {T} frames, annot/ has {T - 1}"),
    "truncated pts": ("001/annot/000003.pts", "bad .pts"),
    "nan pts": ("001/annot/000002.pts", "6: non-finite coordinate"),
    "outside frame": ("001/annot/000004.pts", "landmarks outside the 64x48 frame (e.g. point 1 at (900.0, 20.0))"),
    "numbering gap": ("001/annot", "annotation numbering has gaps: missing 000003.pts"),
    "zero-based": ("001/annot", "start at 000000.pts"),
    "missing folder": ("001", "missing video folder (listed in split 'train' of splits.json)"),
    "bad splits json": ("splits.json", "not valid JSON"),
    "video in two splits": ("splits.json", "video 001 is in both split 'train' and split 'A'"),
    "degenerate": ("001/annot/000005.pts", "degenerate landmarks"),
    "wrong point count": ("001/annot/000001.pts", "expected 68 points, found 3"),
    "no video folders": ("", "no NNN video folders found"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_folders_each_have_their_message(root, kind, capsys):
    _break(root, kind)
    where, fragment = BROKEN[kind]
    rep = vw300.validate(root)
    assert not rep.ok
    hits = [i for i in rep.errors if fragment in i.message and i.where == str(root / where).rstrip("/")]
    assert hits, f"{kind}: expected {fragment!r} at {where}\n{rep.format()}"
    assert cli.main(["check-data", str(root)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_truncated_pts_message_names_line(root):
    _break(root, "truncated pts")
    rep = vw300.validate(root)
    msg = [i.message for i in rep.errors if i.where.endswith("000003.pts")][0]
    assert "no closing '}'" in msg and "truncated" in msg


def test_warnings_do_not_fail(root):
    (root / "001" / "annot" / "notes.txt").write_text("x")
    (root / "README").write_text("x")
    (root / "001" / "vid.avi.bak").write_bytes(b"x")
    vw300.write_sequence(root / "003", _frames(2), _landmarks(2))
    rep = vw300.validate(root)
    assert rep.ok, rep.format()
    msgs = {(i.where.removeprefix(str(root) + "/"), i.message.split(" (")[0]) for i in rep.warnings}
    assert ("001/annot/notes.txt", "stray file in annot/") in msgs
    assert ("README", "stray entry in the data root") in msgs
    assert ("001/vid.avi.bak", "stray file or folder") in msgs
    assert ("003", "video is not in any split") in msgs


def test_skip_bad_frames(root, capsys):
    _break(root, "nan pts")
    _break(root, "outside frame")
    rep = vw300.validate(root, skip_bad=True)
    assert rep.ok and rep.skipped == {"001": [1, 3]}, rep.format()
    assert cli.main(["check-data", str(root), "--skip-bad-frames"]) == 0
    assert "skipped 2 bad frames" in capsys.readouterr().out
    seq = vw300.VideoSequence(root / "001", skip_bad=True)
    # the loader skips exactly the frames check-data skipped (one definition of a bad frame)
    assert seq.bad_frames == rep.skipped["001"] == [1, 3] and list(seq.valid_frames) == [0, 2, 4, 5]
    with pytest.raises(PtsError, match="000002.pts:6"):
        _ = vw300.VideoSequence(root / "001").landmarks


def test_cli_quick_and_video_subset(root, capsys, monkeypatch):
    _break(root, "count mismatch")
    assert cli.main(["check-data", str(root), "--quick"]) == 1  # the container's frame count is enough here
    assert "video has 6 frames, annot/ has 5" in capsys.readouterr().out
    assert cli.main(["check-data", str(root), "--videos", "002"]) == 0
    assert "1 videos" in capsys.readouterr().out
    monkeypatch.setenv(vw300.ENV_ROOT, str(root))
    assert cli.main(["check-data", "--videos", "002"]) == 0  # root from the environment


def test_cli_without_root(monkeypatch, capsys):
    monkeypatch.delenv(vw300.ENV_ROOT, raising=False)
    assert cli.main(["check-data"]) == 2
    assert vw300.ENV_ROOT in capsys.readouterr().err


def test_root_missing(tmp_path):
    rep = vw300.validate(tmp_path / "nothing")
    assert not rep.ok and "does not exist" in rep.errors[0].message
