"""Worker for tests/test_ddp.py, launched by ``python -m torch.distributed.run --nproc_per_node=2``.

Trains the paper configuration (256 px, global batch 20 = 10 per process) for a few steps on in-memory
frame pairs with DistributedDataParallel over gloo, then each rank saves its G weights for comparison.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from tdd_lite import train as T
from tdd_lite import train_config as TC
from tests._tiny3dmm import random_model
from tests.test_train import FrameSet, PairSet


def main(out: str, steps: int) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    cfg = TC.get_config("paper", steps=steps, num_workers=0, eval_every=0, checkpoint_every=steps)
    tr = T.Trainer(cfg, random_model(), PairSet(n=40, size=256), FrameSet(n=4, size=256), out_dir=out,
                   device="cpu", quiet=True)
    assert tr.world == 2 and tr.local_batch == 10
    tr.fit()
    torch.save(tr.g_module.state_dict(), Path(out) / f"G_rank{tr.rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
