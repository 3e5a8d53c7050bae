"""Two processes, gloo, on the CPU: DistributedDataParallel at the paper's full size for a few steps."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_ddp_at_full_size_keeps_ranks_identical(tmp_path):
    steps = 2
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tests._ddp_worker", str(tmp_path), str(steps)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    g0 = torch.load(tmp_path / "G_rank0.pt", weights_only=True)
    g1 = torch.load(tmp_path / "G_rank1.pt", weights_only=True)
    params = [k for k in g0 if "running" not in k and "num_batches" not in k]
    for k in params:
        assert torch.equal(g0[k], g1[k]), f"rank 0 and rank 1 disagree on {k}"
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # rank 0 wrote it
    assert state["step"] == steps and state["world_size"] == 2
    assert torch.equal(state["G"]["fc.weight"], g0["fc.weight"])
    init = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]
    assert init["image_size"] == 256 and init["batch_size"] == 20
    assert not any(p.name.startswith("checkpoint.pt.tmp") for p in tmp_path.iterdir())
