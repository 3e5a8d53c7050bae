"""The one video writer and the one video reader (:mod:`tdd_lite.video_io`): a round trip keeps the frames (within
what Motion-JPEG loses), a failure mid-write leaves neither a temporary file nor half a video, and a killed writer's
temporary file is recognised as stale by :func:`tdd_lite.files.remove_stale_temp_files`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from tdd_lite.errors import DataError, MissingDataError
from tdd_lite.files import remove_stale_temp_files
from tdd_lite.video_io import FrameSource, VideoWriter, count_frames, open_video, read_frames, video_header, write_video
from tests._sequences import H, W, frames

from .conftest import ROOT

T = 6
STEP = 30  # the red channel of frame k is the flat level 20 + STEP * k (tests/_sequences.py)

# Tolerances of the lossy round trip (mean and max absolute error in levels, and how far the median of the flat red
# channel may move), per codec. MJPG stores each frame as one JPEG (FFmpeg's encoder, YCbCr 4:2:0): an independent
# JPEG round trip of these frames through cv2.imencode/imdecode at quality 75 errs by 1.2 levels on average and 9
# at most, and the MJPG files measured 1.7 and 8, the red level 1 off (the G and B gradients' chroma, subsampled,
# leaks into R). mp4v (MPEG-4 part 2, the overlay's codec) measured 2.4, 14 and 3. We allow about twice that: far
# below what a real fault produces (RGB and BGR swapped: ~60 levels on average; one frame late: the red channel
# 30 levels off everywhere).
TOLERANCE = {"MJPG": (3.0, 16, 3), "mp4v": (5.0, 28, 6)}


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def _check_round_trip(written, read, fourcc="MJPG"):
    mean_tol, max_tol, level_tol = TOLERANCE[fourcc]
    assert len(read) == len(written) == T
    for k, (a, b) in enumerate(zip(written, read)):
        assert b.shape == (H, W, 3) and b.dtype == np.uint8
        err = np.abs(b.astype(np.int32) - a.astype(np.int32))
        assert err.mean() <= mean_tol and err.max() <= max_tol, (k, err.mean(), err.max())
        assert abs(float(np.median(b[..., 0])) - (20 + STEP * k)) <= level_tol, k  # frame k, in order, R is R


@pytest.mark.parametrize("name", ["vid.avi", "overlay.mp4"])
def test_writer_and_reader_round_trip(tmp_path, name):
    written = frames(T, step=STEP)
    path = tmp_path / name
    with VideoWriter(path, fps=25.0) as writer:
        for f in written:
            writer.write(f)
            assert not path.exists() and len(_temps(tmp_path)) == 1  # the frames go to a temporary file ...
    assert writer.frames == T and sorted(p.name for p in tmp_path.iterdir()) == [name]  # ... renamed at the end
    assert writer.fourcc == ("mp4v" if name.endswith(".mp4") else "MJPG")
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FOURCC) > 0
    header = video_header(path)
    assert (header.frames, header.width, header.height) == (T, W, H) and header.fps == pytest.approx(25.0)
    assert count_frames(path) == count_frames(path, quick=True) == (T, W, H)
    source = FrameSource(path)
    assert len(source) == T and source.fps == pytest.approx(25.0)
    _check_round_trip(written, list(source), writer.fourcc)
    _check_round_trip(written, list(read_frames(path)), writer.fourcc)


def test_write_video_is_the_writer(tmp_path):
    written = frames(T, step=STEP)
    assert write_video(tmp_path / "vid.avi", iter(written)) == T
    _check_round_trip(written, list(read_frames(tmp_path / "vid.avi")))
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(tmp_path / "none.avi", [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vid.avi"]


def test_an_exception_mid_write_leaves_no_temp_file_and_no_half_video(tmp_path):
    path = tmp_path / "vid.avi"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, fps=30.0) as writer:
            for k, f in enumerate(frames(T)):
                if k == 3:
                    assert len(_temps(tmp_path)) == 1  # three frames are on disk, in the temporary file
                    raise RuntimeError("boom")
                writer.write(f)
    assert list(tmp_path.iterdir()) == []

    def failing():
        yield from frames(3)
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        write_video(path, failing())
    assert list(tmp_path.iterdir()) == []
    # an earlier video at the destination survives a failed rewrite byte for byte
    write_video(path, frames(2))
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="decoder died"):
        write_video(path, failing())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["vid.avi"]


def test_a_frame_of_another_size_or_type_is_refused_not_dropped(tmp_path):
    path = tmp_path / "vid.avi"
    small = frames(1)[0][:20, :30]
    with pytest.raises(ValueError, match="frame 1 is 30x20, the first frame was 64x48"):
        write_video(path, [frames(1)[0], small])
    with pytest.raises(ValueError, match=r"frame 0 must be \(H, W, 3\) uint8"):
        write_video(path, [frames(1)[0].astype(np.float32)])
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_leaves_a_temp_file_that_is_recognised_as_stale(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from tdd_lite.video_io import VideoWriter
        from tests._sequences import frames
        w = VideoWriter({str(tmp_path / "vid.avi")!r}, fps=30.0)
        for f in frames(3):
            w.write(f)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(".vid.tmp-") and left[0].endswith(".avi")
    assert not (tmp_path / "vid.avi").exists()
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == left and list(tmp_path.iterdir()) == []


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(MissingDataError, match="missing.avi: video missing"):
        open_video(tmp_path / "missing.avi")
    fifo = tmp_path / "fifo.avi"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="fifo.avi: is a FIFO, not a regular file"):
        open_video(fifo)  # refused without opening: this would block otherwise
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(DataError, match="empty.avi: empty file"):
        open_video(tmp_path / "empty.avi")
    (tmp_path / "junk.avi").write_bytes(b"RIFF\0\0junk" * 64)
    with pytest.raises(DataError, match="junk.avi: OpenCV cannot open this as a video"):
        FrameSource(tmp_path / "junk.avi")
    with pytest.raises(DataError, match="no such video file or image folder"):
        FrameSource(tmp_path / "nothing")
