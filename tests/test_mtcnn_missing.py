"""Without facenet-pytorch (not a declared dependency: its metadata pins an old torch, so it is installed with
``pip install --no-deps facenet-pytorch==2.6.0``), asking for the paper's MTCNN detector stops before any work
with one line giving that command; ``--detector haar`` still runs. The missing package is simulated in a
subprocess (``sys.modules['facenet_pytorch'] = None`` makes every import of it fail), whatever this venv has."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from tests._cli import ROOT

PIP = "pip install --no-deps facenet-pytorch==2.6.0"
BLOCK = "import sys; sys.modules['facenet_pytorch'] = None\n"


def _run(code: str, timeout: float = 300, block: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TDD_DEBUG"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(TDD_FAST="1", OMP_NUM_THREADS="1")
    script = (BLOCK if block else "") + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def _frames(folder, n=3):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        cv2.imwrite(str(folder / f"{k:04d}.png"), rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    return folder


def test_library_says_the_pip_command():
    r = _run("""
        import numpy as np
        from tdd_lite.data import detect
        from tdd_lite.errors import UsageError
        from tdd_lite.track import Tracker
        assert not detect.mtcnn_available()
        for call in (lambda: Tracker(lambda x: None, size=32, detector="mtcnn"),
                     lambda: detect.detect_box(np.zeros((64, 64, 3), np.uint8), mode="mtcnn")):
            try:
                call()
            except UsageError as e:
                print(e)
            else:
                raise SystemExit("no UsageError")
        Tracker(lambda x: None, size=32, detector="haar")  # the other detectors need nothing more
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(PIP in line and "--detector haar" in line for line in lines), r.stdout


def test_track_without_facenet_is_one_line_and_writes_nothing(tmp_path):
    frames = _frames(tmp_path / "frames")
    out = tmp_path / "out"
    r = _run(f"""
        import sys
        from tdd_lite.cli import main
        sys.exit(main(["track", {str(frames)!r}, "--out", {str(out)!r}, "--no-progress"]))
    """)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tdd-lite track: error: detector 'mtcnn'"), r.stderr
    assert PIP in err[0] and "Traceback" not in r.stderr
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_track_with_haar_runs_without_facenet(tmp_path):
    frames = _frames(tmp_path / "frames")
    out = tmp_path / "out"
    r = _run(f"""
        import sys
        from tdd_lite.cli import main
        code = main(["track", {str(frames)!r}, "--out", {str(out)!r}, "--detector", "haar", "--no-progress",
                     "--no-overlay"])
        assert "facenet_pytorch" not in [m for m in sys.modules if sys.modules[m] is not None]
        sys.exit(code)
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads((out / "track.json").read_text())
    assert info["detector"] == "haar" and info["frames"] == 3


def test_facenet_without_requests_names_the_missing_module():
    """facenet-pytorch installed --no-deps imports ``requests`` (a declared dependency for that reason): were it
    missing, the line names it instead of claiming facenet-pytorch is absent."""
    r = _run("""
        import importlib.util, sys
        if importlib.util.find_spec("facenet_pytorch") is None:
            print("SKIP")
            raise SystemExit(0)
        sys.modules["requests"] = None
        from tdd_lite.data import detect
        try:
            detect.require_mtcnn()
        except ValueError as e:
            print(e)
    """, block=False)
    if r.stdout.strip() == "SKIP":
        pytest.skip("facenet-pytorch not installed here")
    assert r.returncode == 0, r.stderr
    assert "installed but does not import" in r.stdout and "pip install requests" in r.stdout, r.stdout
