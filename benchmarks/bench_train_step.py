"""One full adversarial training step versus the bare ResNet-18 forward+backward on the same frames.

Prints, at 256 px (the paper) and at the fast-mode size:

* ``t_full``: one :meth:`tdd_lite.train.Trainer.train_step` (batch B pairs: G on I and I' = 2B images, the
  3DMM + projection, six displacements, three D updates, the G update with its Adam step);
* ``t_bare(2B)``: torchvision ResNet-18 trunk forward + backward on the same 2B images (loss = sum of the
  pooled features; no optimizer) -- the fair, per-image comparison (target: ratio <= 1.15);
* ``t_bare(B)``: the same on the B current frames only -- the per-step comparison a reader might naively
  make; the full step is ~2x that because it must run G on the previous frame too (Fig. 2);
* images/s and achieved FLOP/s of the full step as a fraction of this machine's measured float32 matmul peak
  (peak: the best of several large square matmuls; ResNet-18 FLOPs counted by torch.utils.flop_counter).

Usage: ``python benchmarks/bench_train_step.py [--batch 20] [--sizes 256 64] [--reps 3] [--device cpu]``.
On a shared CPU the numbers move by 10-20% between runs; take the median of ``--reps``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from tdd_lite import train as T
from tdd_lite import train_config as TC
from tdd_lite.config import describe_run, pick_device


def matmul_peak(device: torch.device, reps: int = 5) -> dict[str, float]:
    """Best float32 GEMM throughput in FLOP/s, two ways: ``torch.matmul`` (BLAS, e.g. MKL) on 2048 and 4096
    square matrices, and the same GEMM run by oneDNN as a 1x1 convolution (channels-last), the library the
    ResNet's convolutions use. ``peak`` is the larger: on some CPUs (e.g. AMD with MKL) BLAS sgemm does not use
    the widest vector units and the convolutions would otherwise appear to exceed "peak"."""
    out = {}
    for n in (2048, 4096):
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        out[f"matmul_{n}"] = 2 * n**3 / _best(lambda a=a, b=b: a @ b, device, reps)
    n, hw = 2048, (32, 64)
    x = torch.randn(1, n, *hw, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1, device=device).contiguous(memory_format=torch.channels_last)
    out["conv1x1_gemm"] = 2 * n * n * hw[0] * hw[1] / _best(lambda: torch.nn.functional.conv2d(x, w), device, reps)
    out["peak"] = max(out.values())
    return out


def _best(fn, device: torch.device, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bare_backbone(device: torch.device):
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Identity()
    return net.to(device).to(memory_format=torch.channels_last).train()


def bare_step(net, images: torch.Tensor):
    def fn():
        net.zero_grad(set_to_none=True)
        net(images.contiguous(memory_format=torch.channels_last)).sum().backward()
    return fn


def count_flops(net, images: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as fc:
        net(images.contiguous(memory_format=torch.channels_last)).sum().backward()
    net.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def make_batch(b: int, size: int, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    lmk = 0.2 + 0.6 * torch.rand(b, 68, 2, generator=g)
    return {"image": torch.rand(b, 3, size, size, generator=g).to(device),
            "prev_image": torch.rand(b, 3, size, size, generator=g).to(device),
            "gt_lmk": lmk.to(device), "prev_gt_lmk": (lmk + 0.01).to(device)}


class _Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return 1000

    def __getitem__(self, i):
        raise RuntimeError("the benchmark feeds batches directly")


def bench(size: int, batch: int, reps: int, device: torch.device, peak: float, model3dmm) -> dict:
    cfg = TC.get_config("paper", image_size=size, batch_size=batch, num_workers=0, steps=10_000)
    tr = T.Trainer(cfg, model3dmm, _Pairs(), None, out_dir="/tmp/tdd_bench_unused", device=device, quiet=True)
    data = make_batch(batch, size, device)
    t_full = _time(lambda: tr.train_step(data), device, reps)
    net = bare_backbone(device)
    both = torch.cat([data["image"], data["prev_image"]])
    t_bare2 = _time(bare_step(net, both), device, reps)
    t_bare1 = _time(bare_step(net, data["image"]), device, reps)
    flops_2b = count_flops(net, both)
    return {"size": size, "batch": batch, "t_full": t_full, "t_bare_2B": t_bare2, "t_bare_B": t_bare1,
            "ratio_per_image": t_full / t_bare2, "ratio_per_step": t_full / t_bare1,
            "images_per_s": 2 * batch / t_full, "flops_step": flops_2b,
            "peak_fraction": flops_2b / t_full / peak, "bare_peak_fraction": flops_2b / t_bare2 / peak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, TC.get_config("fast").image_size])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    print(describe_run())
    print(f"torch threads: {torch.get_num_threads()}")
    from tdd_lite.morphable import load_teaching_model

    model3dmm = load_teaching_model()
    peaks = matmul_peak(device)
    peak = peaks["peak"]
    print("float32 GEMM peak, best of 5: " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peaks.items()) + " GFLOP/s")
    for size in args.sizes:
        r = bench(size, args.batch, args.reps, device, peak, model3dmm)
        print(f"\n{size} px, batch {r['batch']} pairs ({2 * r['batch']} images through G per step):")
        print(f"  full adversarial step        {r['t_full'] * 1e3:9.1f} ms")
        print(f"  bare ResNet-18 fwd+bwd, 2B   {r['t_bare_2B'] * 1e3:9.1f} ms   "
              f"ratio per image {r['ratio_per_image']:.3f}  (target <= 1.15)")
        print(f"  bare ResNet-18 fwd+bwd, B    {r['t_bare_B'] * 1e3:9.1f} ms   "
              f"ratio per step  {r['ratio_per_step']:.3f}  (~2 expected: G also runs on I')")
        print(f"  throughput {r['images_per_s']:.1f} images/s; ResNet-18 fwd+bwd {r['flops_step'] / 1e9:.1f} GFLOP "
              f"per step -> {r['peak_fraction'] * 100:.1f}% of matmul peak "
              f"(bare backbone: {r['bare_peak_fraction'] * 100:.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
