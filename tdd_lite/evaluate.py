"""NME of a trained G under the paper's test protocol (section 4.1): tracking crops on whole test videos.

Per video: the first frame is cropped from a face detector (``mode="haar"``, OpenCV's cascade standing in for
MTCNN; or ``mode="gt"`` from the ground truth, for controlled experiments), every later frame from the
previous frame's *estimate* (:class:`tdd_lite.data.pairs.TrackingCropper`). The estimate is mapped back to
image pixels and compared with the 300VW annotation; NME is normalised by sqrt(w*h) of the ground-truth
landmarks' bounding box (the paper's metric, :func:`tdd_lite.metrics.nme`), averaged over all frames of a
category (300VW's A, B, C).

Usage::

    tdd-lite evaluate CHECKPOINT --data ROOT [--splits A B C | --videos ID ... | --all] [--size 256]
                      [--mode haar|gt] [--max-frames N] [--skip-bad-frames]

The videos are checked first with the same code as ``tdd-lite check-data --quick``. The command never exits
0 with a NaN result, zero frames or an empty split: those are errors (exit 1), as is a ``--size`` that
contradicts the checkpoint's ``image_size``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from tdd_lite.config import device_name, pick_device
from tdd_lite.errors import CheckpointError, DataError, crop_size, positive_int


@torch.no_grad()
def evaluate_tracking(net: torch.nn.Module, model3dmm, root: str | Path, videos: str | Iterable[str], size: int,
                      mode: str = "haar", device: str | torch.device = "cpu", max_frames: int | None = None,
                      progress: bool = True, skip_bad: bool = False, label: str | None = None) -> dict:
    """Run tracking over ``videos`` (a list of video ids, or a split name such as ``"A"``).

    Returns ``{"nme": mean %, "per_video": {id: %}, "frames": n}``; ``frames`` counts the frames with a
    finite ground truth (with ``skip_bad``, frames whose ``.pts`` is unreadable are tracked but not scored).
    A NaN/inf estimate (unusable weights) is a :class:`CheckpointError`.
    """
    from tqdm.auto import tqdm

    from tdd_lite.data.pairs import TrackingCropper
    from tdd_lite.data.vw300 import load_split
    from tdd_lite.metrics import nme
    from tdd_lite.network import predict_landmarks

    if label is None:
        label = videos if isinstance(videos, str) else "videos"
    device = torch.device(device)
    net = net.to(device).eval()
    model3dmm = model3dmm.to(device)
    per_video, errors = {}, []
    for seq in tqdm(load_split(root, videos, skip_bad=skip_bad), desc=f"track {label}", disable=not progress):
        cropper = TrackingCropper(size=size, mode=mode)
        gt_all = seq.landmarks
        valid = np.isfinite(gt_all).all(axis=(1, 2))
        start = int(np.argmax(valid)) if valid.any() else len(gt_all)  # gt mode needs a scored first frame
        errs = []
        for k, frame in enumerate(seq.frames()):
            if k < start:
                continue
            if max_frames is not None and k - start >= max_frames:
                break
            image, _ = cropper.next(frame, gt_lmk=gt_all[k] if valid[k] else None)
            pred = predict_landmarks(model3dmm, net(image[None].to(device)))[0]
            if not torch.isfinite(pred).all():
                raise CheckpointError(f"the network's estimate is NaN/inf on video {seq.name} frame {k}: "
                                      f"its weights are unusable")
            pred_px = cropper.update(pred.cpu())
            if valid[k]:
                errs.append(float(nme(pred_px, gt_all[k])))
        per_video[seq.name] = 100.0 * float(np.mean(errs)) if errs else float("nan")
        errors += errs
    return {"nme": 100.0 * float(np.mean(errors)) if errors else float("nan"), "per_video": per_video,
            "frames": len(errors)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a tdd-lite train checkpoint (OUT/checkpoint.pt)")
    p.add_argument("--data", required=True, help="300VW-layout folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                       help="test categories (default: A B C; 'test' = A+B+C)")
    which.add_argument("--videos", nargs="+", default=None, metavar="ID", help="these video folders, as one group")
    which.add_argument("--all", action="store_true", help="every NNN/ video folder of --data, as one group")
    p.add_argument("--size", type=crop_size, default=None,
                   help="crop size, 32..1024 (default and only accepted value: the checkpoint's image_size)")
    p.add_argument("--mode", choices=("haar", "gt"), default="haar", help="first-frame crop (default: haar)")
    p.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:N (default: TDD_DEVICE/CUDA)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="at most N frames per video (>= 1)")
    p.add_argument("--skip-bad-frames", action="store_true",
                   help="skip frames with a bad .pts (as `check-data --skip-bad-frames`) instead of failing")


def run(args: argparse.Namespace) -> int:
    """``tdd-lite evaluate``: every user error is a TddError (one line from ``tdd_lite.cli``)."""
    from tdd_lite.data.vw300 import require_valid, select_videos
    from tdd_lite.morphable import load_teaching_model
    from tdd_lite.train import load_alignment_net, load_checkpoint

    device = pick_device(args.device)
    ckpt = Path(args.checkpoint)
    state = load_checkpoint(ckpt)
    trained = int(state["config"]["image_size"])
    if args.size is not None and args.size != trained:
        raise CheckpointError(f"--size {args.size} contradicts {ckpt}: G was trained on {trained} px crops "
                              f"(omit --size or pass --size {trained})")
    size = trained
    data = Path(args.data)
    if data.exists() and not data.is_dir():
        raise DataError(f"--data {data}: is a file, expected a 300VW-layout folder")
    groups = select_videos(data, splits=args.splits, videos=args.videos, all_videos=args.all)
    require_valid(data, [v for ids in groups.values() for v in ids], skip_bad=args.skip_bad_frames,
                  command="evaluate")
    model = load_teaching_model()
    net = load_alignment_net(ckpt, model, state=state)
    for name, ids in groups.items():
        r = evaluate_tracking(net, model, data, ids, size, args.mode, device, args.max_frames,
                              skip_bad=args.skip_bad_frames, label=name)
        if r["frames"] == 0 or not np.isfinite(r["nme"]):
            raise DataError(f"{name}: no frame with a usable ground truth among {len(ids)} video(s) "
                            f"({' '.join(ids[:8])}); NME is undefined")
        print(f"{name}: NME {r['nme']:.3f}% over {r['frames']} frames ({len(r['per_video'])} videos)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tdd_lite.evaluate``: the same one-line errors as ``tdd-lite evaluate``."""
    from tdd_lite.cli import module_main

    return module_main("python -m tdd_lite.evaluate", add_arguments, run, argv,
                       description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
