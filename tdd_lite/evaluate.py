"""NME of a trained G under the paper's test protocol (section 4.1): tracking crops on whole test videos.

Per video: the first frame is cropped from a face detector (``mode="haar"``, OpenCV's cascade standing in for
MTCNN; or ``mode="gt"`` from the ground truth, for controlled experiments), every later frame from the
previous frame's *estimate* (:class:`tdd_lite.data.pairs.TrackingCropper`). The estimate is mapped back to
image pixels and compared with the 300VW annotation; NME is normalised by sqrt(w*h) of the ground-truth
landmarks' bounding box (the paper's metric, :func:`tdd_lite.metrics.nme`), averaged over all frames of a
category (300VW's A, B, C).

Usage::

    python -m tdd_lite.evaluate CHECKPOINT --data ROOT [--splits A B C] [--size 256] [--mode haar|gt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from tdd_lite.config import pick_device


@torch.no_grad()
def evaluate_tracking(net: torch.nn.Module, model3dmm, root: str | Path, split: str, size: int,
                      mode: str = "haar", device: str | torch.device = "cpu", max_frames: int | None = None,
                      progress: bool = True) -> dict:
    """Run tracking over every video of ``split``; returns ``{"nme": mean %, "per_video": {...}, "frames": n}``."""
    from tqdm.auto import tqdm

    from tdd_lite.data.pairs import TrackingCropper
    from tdd_lite.data.vw300 import load_split
    from tdd_lite.metrics import nme
    from tdd_lite.network import predict_landmarks

    device = torch.device(device)
    net = net.to(device).eval()
    model3dmm = model3dmm.to(device)
    per_video, errors = {}, []
    for seq in tqdm(load_split(root, split), desc=f"track {split}", disable=not progress):
        cropper = TrackingCropper(size=size, mode=mode)
        gt_all = seq.landmarks
        errs = []
        for k, frame in enumerate(seq.frames()):
            if max_frames is not None and k >= max_frames:
                break
            image, _ = cropper.next(frame, gt_lmk=gt_all[k])
            pred01 = predict_landmarks(model3dmm, net(image[None].to(device)))[0]
            pred_px = cropper.update(pred01.cpu())
            if np.isfinite(gt_all[k]).all():
                errs.append(float(nme(pred_px, gt_all[k])))
        per_video[seq.name] = 100.0 * float(np.mean(errs)) if errs else float("nan")
        errors += errs
    return {"nme": 100.0 * float(np.mean(errors)) if errors else float("nan"), "per_video": per_video,
            "frames": len(errors)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--splits", nargs="+", default=["A", "B", "C"])
    p.add_argument("--size", type=int, default=None, help="crop size (default: the checkpoint's image_size)")
    p.add_argument("--mode", choices=("haar", "gt"), default="haar")
    p.add_argument("--device", default=None)
    p.add_argument("--max-frames", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    from tdd_lite.morphable import load_teaching_model
    from tdd_lite.train import load_alignment_net, load_checkpoint

    state = load_checkpoint(args.checkpoint)
    size = args.size or int(state["config"]["image_size"])
    model = load_teaching_model()
    net = load_alignment_net(args.checkpoint, model)
    device = pick_device(args.device)
    for split in args.splits:
        r = evaluate_tracking(net, model, args.data, split, size, args.mode, device, args.max_frames)
        print(f"{split}: NME {r['nme']:.3f}% over {r['frames']} frames ({len(r['per_video'])} videos)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tdd_lite.evaluate", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
