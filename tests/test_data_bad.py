"""Broken data folders and unsafe synth invocations, one table row each (issue 8, items 3, 5 and 7).

Every row breaks a small valid folder this file writes, runs ``tdd-lite check-data`` the way a user does
(subprocess, tests/_cli.py), and checks the exit status, a phrase of the message and "no traceback". The same
folders then go through :func:`vw300.require_valid` (what ``train``/``evaluate`` call before the first step):
it must reject exactly what ``check-data`` rejects, and the loader (:class:`vw300.VideoSequence`) must refuse the
same bad frames. The synth rows check that a refused ``--overwrite`` deletes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tdd_lite import files
from tdd_lite.data import synth, vw300
from tdd_lite.data.pts import PtsError, format_pts, read_pts, write_pts
from tdd_lite.errors import DataError
from tests._sequences import frames, landmarks

sys.path.insert(0, str(Path(__file__).parent))
from _cli import ROOT, assert_one_line_error, run_cli  # noqa: E402

W, H, T = 64, 48, 12


def _frames(n=T):
    return frames(n, step=15)


def _landmarks(n=T, seed=0):
    return landmarks(n, seed)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Two valid videos (001 train, 002 A) and a splits.json; and a copy without splits.json."""
    base = tmp_path_factory.mktemp("tpl")
    root = base / "root"
    root.mkdir()
    vw300.write_sequence(root / "001", _frames(), _landmarks(seed=1))
    vw300.write_sequence(root / "002", _frames(), _landmarks(seed=2))
    (root / "splits.json").write_text(json.dumps({"train": ["001"], "A": ["002"]}))
    assert vw300.validate(root).ok and vw300.validate(root, quick=True).ok
    return root


def _pts_line(root, vid="001", frame=3, line=5, text="nan 12.0"):
    f = root / vid / "annot" / f"{frame:06d}.pts"
    lines = f.read_text().split("\n")
    lines[line - 1] = text
    f.write_text("\n".join(lines))


def _header(root, value, vid="001", frame=2):
    f = root / vid / "annot" / f"{frame:06d}.pts"
    f.write_text(f.read_text().replace("n_points:  68", f"n_points: {value}"))


def _points(root, p, vid="001", frame=4):
    (root / vid / "annot" / f"{frame:06d}.pts").write_text(format_pts(np.asarray(p, float)))


def _fifo(path):
    path.unlink() if path.exists() else None
    os.mkfifo(path)


def _truncate_video(root, vid="001", frac=0.5):
    v = root / vid / "vid.avi"
    data = v.read_bytes()
    v.write_bytes(data[: int(len(data) * frac)])


def _three_videos(root):
    """A user's own partial copy of 300VW: three official test videos, no splits.json."""
    (root / "splits.json").unlink()
    (root / "001").rename(root / "114")
    (root / "002").rename(root / "203")
    vw300.write_sequence(root / "410", _frames(), _landmarks(seed=3))


def _partial_root(root):
    """What an interrupted synth leaves: a *.partial-* folder carrying synth's marker."""
    (root / files.PARTIAL_MARKER).write_text(json.dumps({"maker": "tdd_lite synth", "pid": 1, "host": "x"}))
    return "new root", root.rename(root.with_name("set.partial-1-abcd"))


def _collinear(n=68):
    t = np.linspace(0, 1, n)
    return np.stack([15 + 30 * t, 10 + 25 * t], 1)


def _rm(path):
    import shutil

    shutil.rmtree(path) if path.is_dir() else path.unlink()


# name: (builder(root) -> optional new root, extra check-data args, exit status, phrase, the loader of 001 must
#        refuse it (None: not a landmark-loading problem), require_valid must agree with check-data)
CASES = {
    # splits.json (the issue: `{}` passed check-data, then train crashed)
    "splits empty object": (lambda r: (r / "splits.json").write_text("{}"), [], 1, "no splits (an empty object)",
                            None, True),
    "splits all empty": (lambda r: (r / "splits.json").write_text('{"train": [], "A": []}'), [], 1,
                         "every split is empty", None, True),
    "splits unknown id": (lambda r: (r / "splits.json").write_text('{"train": ["001", "abc"], "A": ["002"]}'), [],
                          1, "not a video folder name", None, True),
    "splits missing folder": (lambda r: (r / "splits.json").write_text('{"train": ["001", "007"], "A": ["002"]}'),
                              [], 1, "missing video folder (listed in split 'train'", None, True),
    "splits not json": (lambda r: (r / "splits.json").write_text("{train: [001]"), [], 1, "not valid JSON", None,
                        True),
    "splits a list": (lambda r: (r / "splits.json").write_text('["001"]'), [], 1, "expected a JSON object", None,
                      True),
    "splits in two": (lambda r: (r / "splits.json").write_text('{"train": ["001"], "A": ["002", "001"]}'), [], 1,
                      "in both split", None, True),
    "splits fifo": (lambda r: _fifo(r / "splits.json"), [], 1, "is a FIFO", None, True),
    # videos
    "truncated video quick": (_truncate_video, ["--quick"], 1, "001/vid.avi: unreadable video", None, True),
    "truncated video": (_truncate_video, [], 1, "001/vid.avi", None, True),
    "truncated video 90% quick": (lambda r: _truncate_video(r, frac=0.9), ["--quick"], 1, "last frame", None, True),
    "missing video": (lambda r: (r / "001" / "vid.avi").unlink(), [], 1, "missing video file", None, True),
    "empty video": (lambda r: (r / "001" / "vid.avi").write_bytes(b""), [], 1, "video file is empty", None, True),
    "garbage video": (lambda r: (r / "001" / "vid.avi").write_bytes(b"RIFF\0\0junk" * 64), [], 1,
                      "unreadable video", None, True),
    "video fifo": (lambda r: _fifo(r / "001" / "vid.avi"), [], 1, "is a FIFO", None, True),
    "video is a folder": (lambda r: ((r / "001" / "vid.avi").unlink(), (r / "001" / "vid.avi").mkdir()), [], 1,
                          "is a folder", None, True),
    "count mismatch": (lambda r: (r / "001" / "annot" / f"{T:06d}.pts").unlink(), [], 1,
                       f"video has {T} frames, annot/ has {T - 1}", True, True),
    # annotation folder
    "missing annot": (lambda r: _rm(r / "001" / "annot"), [], 1, "missing annotation folder", True, True),
    "numbering gap": (lambda r: (r / "001" / "annot" / "000003.pts").rename(r / "001" / "annot" / "000099.pts"),
                      [], 1, "missing 000003.pts", True, True),
    # .pts content
    "nan pts": (lambda r: _pts_line(r), [], 1, "non-finite coordinate", True, True),
    "inf coordinate": (lambda r: _pts_line(r, text="1.0 inf"), [], 1, "non-finite coordinate", True, True),
    "coordinate underscore": (lambda r: _pts_line(r, text="1_000 20.0"), [], 1, "non-numeric", True, True),
    "coordinate arabic digits": (lambda r: _pts_line(r, text="\u0661\u0662.5 20.0"), [], 1, "non-numeric", True,
                                 True),
    "coordinate hex float": (lambda r: _pts_line(r, text="0x1p4 20.0"), [], 1, "non-numeric", True, True),
    "n_points inf": (lambda r: _header(r, "inf"), [], 1, "n_points is not a number", True, True),
    "n_points 68.9": (lambda r: _header(r, "68.9"), [], 1, "n_points is not a number", True, True),
    "n_points 3_1.5": (lambda r: _header(r, "3_1.5"), [], 1, "n_points is not a number", True, True),
    "n_points arabic-indic": (lambda r: _header(r, "\u0666\u0668"), [], 1, "n_points is not a number", True, True),
    "n_points zero": (lambda r: _header(r, "0"), [], 1, "out of range", True, True),
    "n_points huge": (lambda r: _header(r, "9" * 40), [], 1, "out of range", True, True),
    "wrong point count": (lambda r: (r / "001" / "annot" / "000001.pts").write_text(
        "version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n"), [], 1, "expected 68 points, found 3", True, True),
    "pts not utf-8": (lambda r: (r / "001" / "annot" / "000002.pts").write_bytes(b"\xff\xfe\x00junk"), [], 1,
                      "not a text file", True, True),
    "pts fifo": (lambda r: _fifo(r / "001" / "annot" / "000002.pts"), [], 1, "is a FIFO", True, True),
    "pts device": (lambda r: ((r / "001" / "annot" / "000002.pts").unlink(),
                              (r / "001" / "annot" / "000002.pts").symlink_to("/dev/zero")), [], 1, "a device",
                   True, True),
    "pts is a folder": (lambda r: ((r / "001" / "annot" / "000002.pts").unlink(),
                                   (r / "001" / "annot" / "000002.pts").mkdir()), [], 1, "is a folder", True, True),
    "pts huge": (lambda r: (r / "001" / "annot" / "000002.pts").write_bytes(b" " * (2 << 20)), [], 1,
                 "more than the", True, True),
    # degenerate faces (the issue: 1e-5 px faces and 68 collinear points passed and poisoned training)
    "face 1e-5 px wide": (lambda r: _points(r, np.stack([30 + 1e-5 * np.linspace(0, 1, 68),
                                                         np.linspace(10, 38, 68)], 1)), [], 1,
                          "degenerate landmarks: the face box", True, True),
    "face one spot": (lambda r: _points(r, np.full((68, 2), 20.0)), [], 1, "degenerate landmarks", True, True),
    "collinear points": (lambda r: _points(r, _collinear()), [], 1, "all points on one line", True, True),
    "outside frame": (lambda r: _points(r, _landmarks(1)[0] + [900, 0]), [], 1, "landmarks outside the 64x48",
                      True, True),
    # --skip-bad-frames: check-data and the loader skip the same frames (and train/evaluate accept the option)
    "nan pts skipped": (lambda r: _pts_line(r), ["--skip-bad-frames"], 0, "skipped 1 bad frames", False, True),
    "collinear skipped": (lambda r: _points(r, _collinear()), ["--skip-bad-frames"], 0, "skipped 1 bad frames",
                          False, True),
    # whole folders
    "three videos, no splits.json": (_three_videos, [], 0, "not the full 300VW: train 0/50, A 1/31, B 1/19, C 1/14",
                                     None, True),
    "three videos --complete": (_three_videos, ["--complete"], 1, "not the full 300VW", None, False),
    "interrupted synth output": (_partial_root, [], 1, "unfinished output of an interrupted run", None, True),
    "no video folders": (lambda r: (_rm(r / "001"), _rm(r / "002")), [], 1, "no NNN video folders", None, True),
    "root missing": (lambda r: _rm(r), [], 1, "is not a directory", None, True),
}


def _make(template, tmp_path, name) -> Path:
    import shutil

    root = tmp_path / "root"
    shutil.copytree(template, root, symlinks=True)
    new = CASES[name][0](root)
    return new[1] if isinstance(new, tuple) and new and new[0] == "new root" else root


def _check_data(root, args):
    return run_cli("check-data", str(root), *args, timeout=60)


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_data_on_broken_folder(template, tmp_path, name):
    _, args, code, phrase, _, _ = CASES[name]
    root = _make(template, tmp_path, name)
    r = _check_data(root, args)
    assert not r.has_traceback, r.text
    if code:
        assert_one_line_error(r, code, phrase, prog="tdd-lite check-data")
        assert "OK:" not in r.out
    else:
        assert r.code == 0, r.text
        assert phrase in r.out, r.out
        assert "OK: 0 errors" in r.out


def test_three_videos_exactly_one_warning_line(template, tmp_path):
    """The acceptance line: a 300VW-layout folder with three videos and no splits.json passes with ONE warning."""
    root = _make(template, tmp_path, "three videos, no splits.json")
    r = _check_data(root, [])
    assert r.code == 0 and not r.has_traceback, r.text
    warnings = [ln for ln in r.text.splitlines() if "WARNING" in ln or "warning" in ln.split(":")[0].lower()]
    assert len(warnings) == 1 and "pass --complete to require all" in warnings[0], r.text
    assert "OK: 0 errors, 1 warnings" in r.out and "3 videos" in r.out


def test_quick_says_what_it_does_not_check(template):
    r = _check_data(template, ["--quick"])
    assert r.code == 0 and "NOTE" in r.out and "not decoded" in r.out, r.text


def _videos_check_data_uses(root: Path) -> list[str]:
    ids = set()
    if root.is_dir():
        ids |= {p.name for p in root.iterdir() if p.is_dir() and vw300.VIDEO_NAME.match(p.name)}
        try:
            f = root / "splits.json"
            text = f.read_text() if f.is_file() else "{}"  # never open a FIFO here (it would block the test)
            ids |= {v for vs in json.loads(text).values() for v in vs if isinstance(v, str)}
        except (OSError, ValueError, AttributeError, TypeError):
            pass
    return sorted(ids)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[5]))
def test_require_valid_agrees_with_check_data(template, tmp_path, name):
    """``train``/``evaluate``'s pre-run check rejects exactly what check-data rejects (and says why)."""
    _, args, code, phrase, loader_refuses, _ = CASES[name]
    root = _make(template, tmp_path, name)
    skip = "--skip-bad-frames" in args
    if code:
        with pytest.raises(DataError) as e:
            vw300.require_valid(root, _videos_check_data_uses(root), skip_bad=skip)
        assert phrase.lower() in str(e.value).lower()
        if "check-data" in str(e.value):
            assert "run `tdd-lite check-data" in str(e.value)
    else:
        vw300.require_valid(root, _videos_check_data_uses(root), skip_bad=skip)
    if loader_refuses is True:  # the loader refuses the same frames
        with pytest.raises(DataError):
            _ = vw300.VideoSequence(root / "001").landmarks
    elif loader_refuses is False:  # ... and with skip_bad skips exactly the ones check-data skipped
        rep = vw300.validate(root, skip_bad=True)
        seq = vw300.VideoSequence(root / "001", skip_bad=True)
        assert len(seq.bad_frames) == 1 and seq.bad_frames == rep.skipped["001"]
        assert seq.bad_frames[0] not in seq.valid_frames and len(seq.valid_frames) == T - 1
        assert np.isfinite(seq.landmarks[seq.valid_frames]).all()


def test_good_folder_passes_everything(template):
    assert _check_data(template, []).code == 0
    for v in ("001", "002"):
        vw300.require_valid(template, [v])
        seq = vw300.VideoSequence(template / v)
        assert len(seq) == T and not seq.bad_frames


def test_select_videos(template, tmp_path):
    assert vw300.select_videos(template, splits=["train", "A"]) == {"train": ["001"], "A": ["002"]}
    assert vw300.select_videos(template, videos=["002"]) == {"videos": ["002"]}
    assert vw300.select_videos(template, all_videos=True) == {"all": ["001", "002"]}
    root = _make(template, tmp_path, "three videos, no splits.json")
    assert vw300.select_videos(root) == {"A": ["114"], "B": ["203"], "C": ["410"]}
    (root / "410").rename(root / "999")
    with pytest.raises(DataError, match="split 'C'"):
        vw300.select_videos(root)
    with pytest.raises(DataError, match="007: video folder does not exist"):
        vw300.select_videos(root, videos=["114", "007"])
    from tdd_lite.errors import UsageError

    with pytest.raises(UsageError, match="cannot be combined"):
        vw300.select_videos(root, videos=["114"], all_videos=True)
    with pytest.raises(DataError, match="unknown split 'D'"):
        vw300.select_videos(template, splits=["D"])
    (template.parent / "t2").mkdir()
    with pytest.raises(DataError, match="no NNN/ video folders"):
        vw300.select_videos(template.parent / "t2", all_videos=True)


def test_pts_parser_rejects_what_float_accepts():
    good = format_pts(_landmarks(1)[0])
    for bad in ("68.9", "inf", "3_1.5", "\u0666\u0668", "-68", "0", "6 8", "1e2"):
        with pytest.raises(PtsError, match="n_points"):
            from tdd_lite.data.pts import parse_pts

            parse_pts(good.replace("n_points:  68", f"n_points: {bad}"), "x.pts")
    for ok in ("68", "+68", "068"):
        from tdd_lite.data.pts import parse_pts

        assert parse_pts(good.replace("n_points:  68", f"n_points: {ok}")).shape == (68, 2)


# ------------------------------------------------------------------------------------------- synth
def _user_folder(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    return d


def _fake_marker(tmp_path):
    d = _user_folder(tmp_path)
    (d / "synth300vw.json").write_text('{"format": "something else"}')
    return d


def _set_with_user_file(tmp_path):
    d = tmp_path / "set"
    synth.generate(d, videos=1, frames=2, size=(64, 64), model=_small_model(), progress=False)
    (d / "001" / "my_notes.txt").write_text("mine")
    return d


def _legacy_looking_set_with_extra(tmp_path):
    d = tmp_path / "legacy"
    d.mkdir()
    (d / "synth.json").write_text(json.dumps({"format_version": 2, "model_sha256": "0"}))
    (d / "photos").mkdir()
    (d / "photos" / "a.jpg").write_bytes(b"x")
    return d


def _a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    return f


def _symlink_to_set(tmp_path):
    d = tmp_path / "real"
    synth.generate(d, videos=1, frames=2, size=(64, 64), model=_small_model(), progress=False)
    link = tmp_path / "link"
    link.symlink_to(d)
    return link


def _vw300_data(tmp_path):
    d = tmp_path / "300VW"
    vw300.write_sequence(d / "114", _frames(3), _landmarks(3))
    return d


def _existing(tmp_path):
    d = tmp_path / "exists"
    d.mkdir()
    (d / "keep").write_text("x")
    return d


def _small_model():
    from test_synth import small_model

    return small_model()


def _snapshot(path: Path) -> dict:
    """Every file under path (following nothing) with its bytes: 'still exists afterwards'."""
    if path.is_symlink() or path.is_file():
        return {str(path): path.read_bytes() if path.is_file() else os.readlink(path)}
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} | {str(path): b"<dir>"}


# name: (argv after "synth" with OUT for the target, target builder or None, exit status, phrase)
SYNTH_CASES = {
    "videos 0": (["OUT", "--videos", "0"], None, 2, "from 1 to 999"),
    "videos negative": (["OUT", "--videos", "-3"], None, 2, "from 1 to 999"),
    "videos 1000": (["OUT", "--videos", "1000"], None, 2, "from 1 to 999"),
    "videos text": (["OUT", "--videos", "abc"], None, 2, "not a whole number"),
    "frames 1": (["OUT", "--frames", "1"], None, 2, "from 2 to"),
    "frames float": (["OUT", "--frames", "1.5"], None, 2, "not a whole number"),
    "size 1000000x1000000": (["OUT", "--size", "1000000x1000000"], None, 2, "8K"),
    "size 0x0": (["OUT", "--size", "0x0"], None, 2, "each side must be"),
    "size 16x16": (["OUT", "--size", "16x16"], None, 2, "at least 32"),
    "size word": (["OUT", "--size", "big"], None, 2, "expected WxH"),
    "seed negative": (["OUT", "--seed", "-1"], None, 2, ">= 0"),
    "exists without --overwrite": (["OUT"], _existing, 2, "exists; pass"),
    "overwrite user folder": (["OUT", "--overwrite"], _user_folder, 2, "no synth300vw.json marker"),
    "overwrite fake marker": (["OUT", "--overwrite"], _fake_marker, 2, "is not a Synth300VW marker"),
    "overwrite set with user file": (["OUT", "--overwrite"], _set_with_user_file, 2, "my_notes.txt"),
    "overwrite legacy-looking folder": (["OUT", "--overwrite"], _legacy_looking_set_with_extra, 2, "photos"),
    "overwrite a file": (["OUT", "--overwrite"], _a_file, 2, "not a folder"),
    "overwrite a symlink": (["OUT", "--overwrite"], _symlink_to_set, 2, "symbolic link"),
    "overwrite 300VW data": (["OUT", "--overwrite"], _vw300_data, 2, "no synth300vw.json marker"),
    "parent is a file": (["PARENT_FILE/out"], None, 1, "file.txt"),
}


@pytest.mark.parametrize("name", sorted(SYNTH_CASES))
def test_synth_bad_invocation_deletes_nothing(tmp_path, name):
    argv, build, code, phrase = SYNTH_CASES[name]
    target = build(tmp_path) if build else tmp_path / "new"
    parent_file = _a_file(tmp_path)
    argv = [str(target) if a == "OUT" else a.replace("PARENT_FILE", str(parent_file)) for a in argv]
    before = {**_snapshot(tmp_path)}
    if target.is_symlink():
        before |= _snapshot(target.resolve())
    r = run_cli("synth", *argv, "--no-progress", timeout=120)
    assert_one_line_error(r, code, phrase, prog="tdd-lite synth")
    after = {**_snapshot(tmp_path)}
    if target.is_symlink():
        after |= _snapshot(target.resolve())
    assert after == before  # the target and every file in it still exist, unchanged; nothing new was made


def test_overwrite_replaces_a_synth_set(tmp_path):
    out = tmp_path / "set"
    synth.generate(out, videos=1, frames=2, size=(64, 64), seed=1, model=_small_model(), progress=False)
    assert synth.synth_set_problem(out) is None
    synth.generate(out, videos=2, frames=2, size=(64, 64), seed=2, model=_small_model(), progress=False,
                   overwrite=True)
    assert json.loads((out / "synth.json").read_text())["seed"] == 2 and (out / "002").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no old/partial folder left
    assert vw300.validate(out).ok


def test_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = synth.generate(tmp_path / "u", videos=1, frames=2, size=(64, 64), model=_small_model(),
                             progress=False)
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    dirs = {k for k in modes if (out / k).is_dir()}
    assert all(modes[k] == 0o750 for k in dirs), modes
    assert all(m == 0o640 for k, m in modes.items() if k not in dirs), modes


_CHILD = r"""
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from test_synth import small_model
from tdd_lite.data import synth

def hook(i):
    print("video", i, flush=True)
    time.sleep(60)

synth.generate({out!r}, videos=3, frames=2, size=(64, 64), model=small_model(), progress=False, on_video=hook)
"""


def _start_child(out: Path) -> subprocess.Popen:
    code = _CHILD.format(root=str(ROOT), tests=str(Path(__file__).parent), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    line = p.stdout.readline()
    assert line.startswith("video 0"), (line, p.stderr.read() if p.poll() is not None else "")
    return p


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sigkill_leaves_a_marked_partial_that_the_next_run_removes(tmp_path):
    out = tmp_path / "set"
    mine = tmp_path / "set.partial-123-mine"  # a folder synth did not make (no marker), named like a partial
    mine.mkdir()
    (mine / "data.txt").write_text("not synth's")
    p = _start_child(out)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    partials = [d for d in tmp_path.glob("set.partial-*") if d != mine]
    assert len(partials) == 1 and not out.exists()
    info = json.loads((partials[0] / files.PARTIAL_MARKER).read_text())
    assert info["pid"] == p.pid and info["maker"] == "tdd_lite synth"
    # nothing a later command accepts as data is left behind
    r = _check_data(partials[0], [])
    assert_one_line_error(r, 1, "unfinished output of an interrupted run")
    with pytest.raises(DataError, match="unfinished"):
        vw300.select_videos(partials[0], all_videos=True)
    # a partial of a live process (this one) is not touched either
    live = files.make_partial_dir(out, "tdd_lite synth")
    synth.generate(out, videos=1, frames=2, size=(64, 64), model=_small_model(), progress=False)
    assert not partials[0].exists()
    assert (mine / "data.txt").read_text() == "not synth's" and live.is_dir()
    assert vw300.validate(out).ok
    files.remove_partial(live)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set", mine.name]


def test_sigterm_cleans_up_at_once(tmp_path):
    out = tmp_path / "set"
    p = _start_child(out)
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []  # the partial folder is gone without waiting for the next run


def test_ensure_synth_removes_stale_partials(tmp_path, monkeypatch):
    monkeypatch.setenv("TDD_FAST", "1")
    out = tmp_path / "d"
    stale = files.make_partial_dir(out, "tdd_lite synth")
    (stale / "001").mkdir()
    info = json.loads((stale / files.PARTIAL_MARKER).read_text())
    (stale / files.PARTIAL_MARKER).write_text(json.dumps({**info, "pid": _dead_pid()}))
    synth.ensure_synth(out, seed=0, videos=1, frames=2, size=(64, 64), model=_small_model(), progress=False)
    assert not stale.exists() and vw300.validate(out).ok


def test_frame_cache_removes_stale_temp_only(template, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = files.make_partial_dir(cache / "001", "tdd_lite frame cache")
    info = json.loads((stale / files.PARTIAL_MARKER).read_text())
    (stale / files.PARTIAL_MARKER).write_text(json.dumps({**info, "pid": _dead_pid()}))
    (stale / "000001.jpg").write_bytes(b"half")
    foreign = cache / "001.partial-77-user"
    foreign.mkdir()
    seq = vw300.VideoSequence(template / "001", cache_dir=cache)
    path = seq.build_cache()
    assert not stale.exists() and foreign.is_dir()
    assert sorted(p.name for p in cache.iterdir()) == ["001", foreign.name]
    assert (path / "complete").read_text().strip() == str(T) and not (path / files.PARTIAL_MARKER).exists()
    assert abs(float(seq.frame(5)[..., 0].mean()) - (20 + 15 * 5)) < 4


def test_write_pts_honours_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_pts(tmp_path / "a.pts", _landmarks(1)[0])
    finally:
        os.umask(old)
    assert (tmp_path / "a.pts").stat().st_mode & 0o777 == 0o600
    old = os.umask(0o022)
    try:
        write_pts(tmp_path / "b.pts", _landmarks(1)[0])
    finally:
        os.umask(old)
    assert (tmp_path / "b.pts").stat().st_mode & 0o777 == 0o644
    np.testing.assert_array_equal(read_pts(tmp_path / "b.pts"), _landmarks(1)[0])


def test_counts():
    """The numbers the issue asks for (reported in the note): broken folders and synth invocations."""
    assert len(CASES) >= 30 and len(SYNTH_CASES) >= 10
    print(f"broken data folders: {len(CASES)}, synth invocations: {len(SYNTH_CASES)}")
