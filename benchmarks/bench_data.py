"""Data loading speed: frame pairs per second delivered by FramePairDataset through a DataLoader.

Measured at 256 px (paper) and at the fast-mode training size (64 px, ``tdd_lite.train`` config ``fast``), with
0 and 2 workers, decoding the MJPG videos directly and through the one-time JPEG frame cache. Data is the
default Synth300VW set of the current mode (generated under ``_build/data`` if missing).
Run: ``TDD_FAST=1 .venv/bin/python benchmarks/bench_data.py``.
"""

from __future__ import annotations

import os
import tempfile
import time

import cv2
import torch
from torch.utils.data import DataLoader

from tdd_lite.data import pairs, synth

cv2.setNumThreads(1)
torch.set_num_threads(1)


def pairs_per_second(ds, workers: int, n_pairs: int, batch: int = 20) -> float:
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                    generator=torch.Generator().manual_seed(0))
    it = iter(dl)
    next(it)  # warm-up: worker start, first decode
    t0 = time.perf_counter()
    n = 0
    while n < n_pairs:
        try:
            n += len(next(it)["image"])
        except StopIteration:
            it = iter(dl)
    return n / (time.perf_counter() - t0)


def main() -> None:
    root = synth.ensure_synth(progress=False)
    print(f"data: {root} ({os.cpu_count()} CPUs on this machine, shared)")
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        pairs.FramePairDataset(root, "train", size=64, cache_dir=cache)
        print(f"one-time frame cache build: {time.perf_counter() - t0:.2f} s")
        print(f"{'size':>5} {'source':>7} {'workers':>7} {'pairs/s':>9}")
        for size in (256, 64):
            for source in ("video", "cache"):
                ds = pairs.FramePairDataset(root, "train", size=size, cache_dir=cache if source == "cache" else None)
                for workers in (0, 2):
                    pps = pairs_per_second(ds, workers, n_pairs=200)
                    print(f"{size:5d} {source:>7} {workers:7d} {pps:9.1f}")
    print("compare with the trainer's consumption (benchmarks/ of the training step): data must not be the "
          "bottleneck")


if __name__ == "__main__":
    main()
