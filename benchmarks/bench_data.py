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


def trainer_pairs_per_second(root, size: int, config: str, reps: int = 2) -> float:
    """Pairs per second the training step consumes (``Trainer.train_step`` on batches of this data)."""
    from tdd_lite import train as T
    from tdd_lite import train_config as TC
    from tdd_lite.morphable import load_teaching_model

    cfg = TC.get_config(config, image_size=size)
    ds = pairs.FramePairDataset(root, "train", size=size, max_interval=cfg.max_interval)
    with tempfile.TemporaryDirectory() as out:
        trainer = T.Trainer(cfg, load_teaching_model(), ds, None, out_dir=out, device="cpu", quiet=True)
        batch = T._stack_batch([ds[i % len(ds)] for i in range(cfg.batch_size)])
        trainer.train_step(batch)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            trainer.train_step(batch)
        return reps * cfg.batch_size / (time.perf_counter() - t0)


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
        best = {}
        for size in (256, 64):
            ds = pairs.FramePairDataset(root, "train", size=size, cache_dir=cache)
            best[size] = max(pairs_per_second(ds, w, n_pairs=200) for w in (0, 2))
    print("training step consumption (CPU, batch 20; Trainer.train_step):")
    for size, config in ((64, "fast"), (256, "paper")):
        try:
            need = trainer_pairs_per_second(root, size, config)
        except Exception as e:  # the trainer is another module: report, do not hide the data numbers
            print(f"  {size}px: trainer unavailable ({type(e).__name__}: {e})")
            continue
        print(f"  {size:3d}px ({config}): consumes {need:7.1f} pairs/s; best data rate {best[size]:7.1f} pairs/s "
              f"-> data/consumption = {best[size] / need:.1f}x ({'OK' if best[size] > need else 'DATA-BOUND'})")


if __name__ == "__main__":
    main()
