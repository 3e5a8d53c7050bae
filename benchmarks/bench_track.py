"""Tracking end to end versus bare G inference on the same crops, at 256 px (paper) and 64 px (fast config).

End to end (what ``tdd-lite track`` does per frame): decode the frame from the video, crop it from the previous
estimate's box, run G (batch 1), project the 68 landmarks, map them to pixels, re-detection checks, and a causal
stabiliser (One Euro) on the stream. Bare: only G's forward pass (batch 1) on the very crops the tracker made,
already in memory. Both in one process, one thread, interleaved, best of a few repeats; the ratio (bare time /
end-to-end time, i.e. end-to-end frames/s as a fraction of bare frames/s) is what to compare across machines.
The first frame's box comes from the ground truth so the one-off detector call (MTCNN) is timed separately.
Run: ``.venv/bin/python benchmarks/bench_track.py [--checkpoint C] [--frames 150]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tdd_lite.data import synth, vw300  # noqa: E402
from tdd_lite.filters import make_filter  # noqa: E402
from tdd_lite.morphable import load_teaching_model  # noqa: E402
from tdd_lite.network import AlignmentNet  # noqa: E402
from tdd_lite.track import Tracker, net_predictor  # noqa: E402

torch.set_num_threads(1)
REPEATS = 3


def end_to_end(seq: vw300.VideoSequence, predict, size: int) -> tuple[float, list[torch.Tensor]]:
    """Seconds for the whole video, decode included; returns the crops G saw (for the bare run)."""
    crops: list[torch.Tensor] = []

    def recording(image: torch.Tensor):
        crops.append(image)
        return predict(image)

    one_euro = make_filter("one-euro")
    one_euro.reset()
    gt = seq.landmarks
    tracker = Tracker(recording, size, detector="gt", redetect="auto")
    t0 = time.perf_counter()
    for k, frame in enumerate(seq.frames()):
        step = tracker.step(frame, gt[k] if k == 0 else None)
        one_euro.step(step.landmarks)
    return time.perf_counter() - t0, crops


def bare(net: torch.nn.Module, crops: list[torch.Tensor]) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        for c in crops:
            net(c[None])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a trained checkpoint (default: an untrained G; speed is the same)")
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    model = load_teaching_model()
    with tempfile.TemporaryDirectory() as tmp:
        root = synth.generate(f"{tmp}/s", videos=1, frames=args.frames, size=(480, 360), seed=7, categories=["B"],
                              progress=False)
        seq = vw300.VideoSequence(root / "001")
        print(f"one Synth300VW video, {len(seq)} frames of 480x360 (the full-mode size); torch {torch.__version__}, "
              "1 thread")
        for size in (256, 64):
            if args.checkpoint:
                from tdd_lite.checkpoint import load_alignment_net

                net = load_alignment_net(args.checkpoint, model)
            else:
                net = AlignmentNet(n_id=model.n_id, n_exp=model.n_exp).eval()
            predict = net_predictor(net, model)
            best_e2e, best_bare = float("inf"), float("inf")
            for _ in range(REPEATS):
                t_e2e, crops = end_to_end(seq, predict, size)
                best_e2e = min(best_e2e, t_e2e)
                best_bare = min(best_bare, bare(net, crops))
            n = len(seq)
            print(f"{size:3d} px: end to end {n / best_e2e:7.1f} frames/s, bare G {n / best_bare:7.1f} frames/s, "
                  f"ratio {best_bare / best_e2e:.2f} (end-to-end / bare frames/s)")
        from tdd_lite.data.detect import detect_box, mtcnn_available

        if mtcnn_available():
            frame = seq.frame(0)
            detect_box(frame, "mtcnn")
            t0 = time.perf_counter()
            for _ in range(3):
                detect_box(frame, "mtcnn")
            print(f"first-frame detector (MTCNN, once per video or per re-detection): "
                  f"{(time.perf_counter() - t0) / 3 * 1e3:.0f} ms")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
