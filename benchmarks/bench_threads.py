"""Threads on a busy machine: frames/s of tracking-style inference and steps/s of training with torch's
default thread count (one per core), with ``tdd_lite.config.default_threads`` (idle cores only) and with one
thread, while other processes keep cores busy.

torch's OpenMP threads spin-wait at the end of every parallel region; when another process holds a core, each
op waits until the descheduled thread runs again. Small 64 px work (batch-1 inference, a training step) has
thousands of such regions per second, so it suffers most.

Each setting runs in a fresh subprocess (a torch thread pool cannot shrink reliably once started) for a fixed
wall time; the competitors are pure-Python busy loops, one per core minus ``--free`` (default: leave one core
free, the situation of a laptop running one other job). ``--competitors 0`` measures an idle machine.

Usage: ``python benchmarks/bench_threads.py [--seconds 8] [--competitors N]``. Prints absolute rates (noisy on
a shared machine) and, per workload, the ratio of each setting to one thread (measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

WORKER = r"""
import json, os, sys, time
import torch
mode, threads, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
from tdd_lite.config import default_threads
n = default_threads() if threads == "policy" else (len(os.sched_getaffinity(0)) if threads == "all" else int(threads))
torch.set_num_threads(n)
torch.manual_seed(0)
if mode == "track":
    from tdd_lite.morphable import load_teaching_model
    from tdd_lite.network import AlignmentNet, predict_landmarks
    model = load_teaching_model()
    net = AlignmentNet.for_model(model).eval()
    x = torch.rand(1, 3, 64, 64)
    def work():
        with torch.no_grad():
            predict_landmarks(model, net(x))
else:
    from tdd_lite import train as T
    from tdd_lite import train_config as TC
    from tdd_lite.morphable import load_teaching_model
    class Pairs(torch.utils.data.Dataset):
        def __len__(self): return 40
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            lmk = 0.2 + 0.6 * torch.rand(68, 2, generator=g)
            return {"image": torch.rand(3, 64, 64, generator=g), "prev_image": torch.rand(3, 64, 64, generator=g),
                    "gt_lmk": lmk, "prev_gt_lmk": lmk, "interval": 1}
    cfg = TC.get_config("reference", eval_every=0, train_split="train")
    tr = T.Trainer(cfg, load_teaching_model(), Pairs(), None, out_dir="/tmp/bench-threads", device="cpu", quiet=True)
    batch = T._stack_batch([tr.train_set[i] for i in range(cfg.batch_size)])
    def work():
        tr.train_step(batch)
work()  # warm-up
done, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    work()
    done += 1
print(json.dumps({"threads": n, "rate": done / (time.perf_counter() - t0)}))
"""


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(10_000):
            x += 1


def run_setting(mode: str, threads: str, seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "TDD_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", WORKER, mode, threads, str(seconds)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    cores = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0, help="wall seconds per setting (default 8)")
    p.add_argument("--competitors", type=int, default=max(cores - 1, 1),
                   help=f"busy-loop processes beside the measurement (default {max(cores - 1, 1)}: one core left)")
    args = p.parse_args()
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.competitors)]
    for s in spinners:
        s.start()
    time.sleep(2.0 if spinners else 0.0)  # let the load average see them (default_threads reads it)
    try:
        print(f"{cores} cores, {args.competitors} competing busy-loop process(es), 1-min load "
              f"{os.getloadavg()[0]:.2f}, {args.seconds:g} s per setting")
        for mode, unit in (("track", "frames/s (batch-1 G at 64 px)"), ("train", "steps/s (reference step)")):
            rows = {t: run_setting(mode, t, args.seconds) for t in ("all", "policy", "1")}
            one = rows["1"]["rate"]
            print(f"{mode}: {unit}")
            for name, label in (("all", "torch default (one per core)"), ("policy", "default_threads()"),
                                ("1", "one thread")):
                r = rows[name]
                print(f"  {label:30s} {r['threads']:>2d} thread(s): {r['rate']:8.2f}   ratio to one thread "
                      f"{r['rate'] / one:5.2f}")
    finally:
        stop.set()
        for s in spinners:
            s.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
