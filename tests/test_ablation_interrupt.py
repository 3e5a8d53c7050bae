"""`kill -9` of `tdd-lite ablation` while a run trains: its worker dies with it and writes nothing afterwards;
the next call resumes the same folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests._cli import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]


def test_kill_9_of_the_parent_takes_the_workers_with_it(tmp_path):
    from tdd_lite.data.synth import generate

    data = generate(tmp_path / "data", videos=4, frames=20, size=(64, 64), seed=3, progress=False)
    long = generate(tmp_path / "long", videos=4, frames=114, size=(64, 64), seed=4, progress=False)
    out = tmp_path / "grid"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TDD_FAST": "1"}
    env.pop("TDD_DEBUG", None)
    # --init-from: no untrained row; --steps 100000: the run trains far longer than this test waits
    cmd = [sys.executable, "-m", "tdd_lite.cli", "ablation", str(out), "--train-data", str(data), "--eval-data",
           str(long), "--seeds", "0", "1", "--configs", "none", "--jobs", "2", "--preset", "smoke", "--steps",
           "100000", "--eval-frames", "5", "--init-from", str(ROOT / "tdd_lite" / "assets" / "reference_g.pt")]
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        workers: list[psutil.Process] = []
        while time.time() < deadline:  # both workers started and training (their checkpoints appear)
            workers = [c for c in psutil.Process(parent.pid).children() if "python" in c.name().lower()]
            if len(workers) >= 2 and len(list(out.glob("runs/*/metrics.jsonl"))) >= 2:
                break
            assert parent.poll() is None, parent.stderr.read().decode()
            time.sleep(0.5)
        assert len(workers) >= 2, "the workers did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers still running 10 s after kill -9 of the parent: {alive}"
        time.sleep(3)
        assert not list(out.glob("runs/*/result.json")), "a worker wrote a result after its parent died"
    finally:  # only the processes this test started, by id
        if parent.poll() is None:
            parent.kill()
        for w in workers:
            if w.is_running():
                w.kill()
    # the same folder again: the marker of the killed run does not block it (its process is gone)
    r = subprocess.run([sys.executable, "-m", "tdd_lite.cli", "ablation", str(out), "--only-summary"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no finished run" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert Path(out / ".tdd_lite-output.json").is_file()
