"""A trained G under the paper's test protocol (section 4.1): tracking on whole test videos, every metric.

Per video: the first frame is cropped from a face detector (``detector="mtcnn"``, the paper's; ``"haar"``; or
``"gt"``, the ground-truth box, for controlled experiments), every later frame from the previous frame's
*estimate* (:class:`tdd_lite.track.Tracker`; ``redetect="never"`` is the paper's protocol exactly, ``"auto"``
re-detects a lost face). The estimates are mapped back to image pixels and compared with the 300VW annotation
with every metric of :mod:`tdd_lite.metrics` (NME normalised by sqrt(w*h) of the ground-truth box, the paper's
number; dNME, jitter, lag, lost tracks, ...; on Synth300VW also the 3D metrics from ``params.npz``), optionally
after a stabiliser (:mod:`tdd_lite.filters`, applied to the tracked stream; the crops always come from the raw
estimates). ``gt_crops=True`` adds the convenient protocol for comparison: every frame cropped from its own
ground-truth box (what the trainer's validation NME measures), which hides tracking failures.

Usage::

    tdd-lite evaluate [CHECKPOINT] --data ROOT [--splits A B C | --videos ID ... | --all] [--detector mtcnn]
                      [--redetect auto|never] [--filters none one-euro kalman ...] [--out DIR]
                      [--max-frames N] [--skip-bad-frames]

The videos are checked first with the same code as ``tdd-lite check-data --quick``. The command never exits
0 with a NaN result, zero frames or an empty split: those are errors (exit 1), as is a ``--size`` that
contradicts the checkpoint's ``image_size``. ``--out DIR`` writes ``report.md``/``.csv``/``.json`` and
``ced.png`` (:mod:`tdd_lite.report`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from tdd_lite.config import device_name, pick_device
from tdd_lite.errors import CheckpointError, DataError, UsageError, crop_size, positive_int

GT_CROPS = "GT crops"


def method_name(filter_name: str) -> str:
    """The report's row name for tracking followed by a stabiliser."""
    return "tracking" if filter_name == "none" else f"tracking + {filter_name}"


def _params(seq) -> dict | None:
    """Synth300VW's true parameters (``params.npz``) of a sequence, or None for real 300VW."""
    path = Path(seq.path) / "params.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _stack_params(params: list[tuple]) -> dict[str, np.ndarray]:
    """Per-frame (alpha_id, alpha_exp, camera) tuples -> ``{"alpha_id": (T, K), ...}`` (NaN where missing)."""
    ref = next(p for p in params if p is not None)
    out = {}
    for i, key in enumerate(("alpha_id", "alpha_exp", "camera")):
        out[key] = np.stack([np.asarray(p[i], np.float64) if p is not None else np.full(ref[i].shape, np.nan)
                             for p in params])
    return out


@torch.no_grad()
def gt_crop_landmarks(predict, frames: list[np.ndarray], gt: np.ndarray, size: int, with_params: bool = False,
                      chunk: int = 32):
    """The convenient protocol: each frame cropped from its own ground-truth box (NaN where gt is missing);
    with ``with_params`` also G's parameters per frame (:func:`_stack_params`). A predictor with a ``batch``
    method (:func:`tdd_lite.track.net_predictor`) runs ``chunk`` crops per forward pass."""
    from tdd_lite.data.crops import box_from_landmarks, crop_image, from_crop
    from tdd_lite.track import image_to_tensor

    out = np.full(gt.shape, np.nan)
    params: list = [None] * len(frames)
    todo = [k for k in range(len(frames)) if np.isfinite(gt[k]).all()]
    boxes = {k: box_from_landmarks(gt[k]) for k in todo}
    batch = getattr(predict, "batch", None)
    if batch is None:
        for k in todo:
            out[k] = from_crop(predict(image_to_tensor(crop_image(frames[k], boxes[k], size)))[0], boxes[k])
            params[k] = getattr(predict, "last", None)
    else:
        for i in range(0, len(todo), chunk):
            ks = todo[i:i + chunk]
            lmk01, fit = batch(torch.stack([image_to_tensor(crop_image(frames[k], boxes[k], size)) for k in ks]))
            for j, k in enumerate(ks):
                out[k] = from_crop(lmk01[j], boxes[k])
                params[k] = tuple(f[j] for f in fit)
    if not with_params:
        return out
    return out, (_stack_params(params) if any(p is not None for p in params) else None)


def evaluate_videos(net: torch.nn.Module, model3dmm, root: str | Path, groups: dict[str, list[str]], size: int,
                    detector: str = "mtcnn", redetect: str = "auto", filters: Iterable[str] = ("none",),
                    device: str | torch.device = "cpu", max_frames: int | None = None, progress: bool = True,
                    skip_bad: bool = False, gt_crops: bool = True, keep_streams: bool = False) -> dict:
    """Track every video of every group (category -> ids) and compute every metric (the report's layout).

    Returns ``{"meta", "methods": {name: {"categories", "videos", "frame_nme"}}}`` (:mod:`tdd_lite.report`);
    with ``keep_streams`` also ``"streams": {video: {"gt", "tracking", <filter>..., "status"}}`` (pixels).
    A NaN/inf estimate (unusable weights) is a :class:`CheckpointError`.
    """
    from tqdm.auto import tqdm

    from tdd_lite.data.vw300 import load_split
    from tdd_lite.filters import make_filter
    from tdd_lite.metrics import category_metrics, frame_nme, video_metrics
    from tdd_lite.track import Tracker, net_predictor

    filters = list(dict.fromkeys(filters))
    filter_objs = {f: make_filter(f) for f in filters}
    predict = net_predictor(net, model3dmm, device)
    names = [method_name(f) for f in filters] + ([GT_CROPS] if gt_crops else [])
    methods = {n: {"categories": {}, "videos": {}, "frame_nme": {}} for n in names}
    streams: dict[str, dict] = {}
    n_frames = 0
    t_track = t_det = 0.0
    redetections = lost = 0
    first_sources: dict[str, int] = {}
    for cat, ids in groups.items():
        rows: dict[str, list[dict]] = {n: [] for n in names}
        for seq in tqdm(load_split(root, ids, skip_bad=skip_bad), desc=f"evaluate {cat}", disable=not progress):
            gt = seq.landmarks
            valid = np.isfinite(gt).all(axis=(1, 2))
            if not valid.any():
                continue
            start = int(np.argmax(valid))  # the detector / gt box needs a frame to start from
            stop = len(gt) if max_frames is None else min(len(gt), start + max_frames)
            frames = [f for k, f in enumerate(seq.frames()) if start <= k < stop]
            gt = gt[start:stop]
            stop = start + len(frames)
            tracker = Tracker(predict, size, detector=detector, redetect=redetect,
                              fallback="gt" if detector != "gt" else "centre")
            params: list[tuple] = []  # G's (alpha_id, alpha_exp, camera) of each frame's final estimate
            r = tracker.run(frames, gt, on_step=lambda k, f, st, acc=params: acc.append(predict.last))
            if not np.isfinite(r.landmarks).all():
                k = int(np.argwhere(~np.isfinite(r.landmarks).all(axis=(1, 2)))[0, 0])
                raise CheckpointError(f"the network's estimate is NaN/inf on video {seq.name} frame {start + k}: "
                                      f"its weights are unusable")
            n_frames += len(frames)
            t_track += r.seconds
            t_det += r.detector_seconds
            redetections += r.redetections
            lost += r.lost_frames
            first_sources[r.source[0]] = first_sources.get(r.source[0], 0) + 1
            truth = _params(seq)
            still = None
            if truth is not None:
                truth = {k: (v[start:stop] if getattr(v, "ndim", 0) >= 1 and len(v) == len(seq) else v)
                         for k, v in truth.items()}
                if "still" in truth:
                    m = np.asarray(truth["still"], bool)
                    edges = np.flatnonzero(np.diff(np.r_[0, m.astype(int), 0]))
                    still = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
            outputs = {method_name(f): (filter_objs[f].apply(r.landmarks) if f != "none" else r.landmarks)
                       for f in filters}
            fitted = {"tracking": _stack_params(params)}
            if gt_crops:
                outputs[GT_CROPS], fitted[GT_CROPS] = gt_crop_landmarks(predict, frames, gt, size, with_params=True)
            for name, pred in outputs.items():
                fit = fitted.get(name)
                usable = truth is not None and fit is not None and all(np.isfinite(v).all() for v in fit.values())
                p3d = dict(model=model3dmm, params_pred=fit, params_true=truth) if usable else {}
                row = video_metrics(pred, gt, still_segments=still, **p3d)
                row["category"] = cat
                rows[name].append(row)
                methods[name]["videos"][seq.name] = row
                methods[name]["frame_nme"].setdefault(cat, []).extend(
                    float(e) for e in frame_nme(pred, gt)[valid[start:stop]])
            if keep_streams:
                streams[seq.name] = {"category": cat, "start": start, "gt": gt, "status": r.status,
                                     "boxes": r.boxes, **outputs}
        for name in names:
            if rows[name]:
                methods[name]["categories"][cat] = category_metrics(rows[name])
    if n_frames == 0:
        ids = [v for vs in groups.values() for v in vs]
        raise DataError(f"{root}: no frame with a usable ground truth in video(s) {' '.join(ids[:8])}"
                        f"{' ...' if len(ids) > 8 else ''}; NME is undefined")
    meta = {"detector": detector, "redetect": redetect, "image_size": size, "frames": n_frames,
            "tracking_fps": round(n_frames / t_track, 2) if t_track > 0 else None,
            "detector_seconds": round(t_det, 3), "redetections": redetections, "lost_frames": lost,
            "first_frame_sources": first_sources, "device": str(device)}
    out = {"meta": meta, "methods": methods}
    if keep_streams:
        out["streams"] = streams
    return out


def save_streams(streams: dict[str, dict], out: Path) -> Path:
    """``OUT/streams.npz``: per video ``VID/gt``, ``VID/<method>`` (T, 68, 2) float32, ``VID/status``, atomic."""
    from tdd_lite.files import atomic_write

    arrays = {}
    for vid, st in streams.items():
        for key, val in st.items():
            if key in ("category", "start"):
                arrays[f"{vid}/{key}"] = np.asarray(val)
            elif key == "status":
                arrays[f"{vid}/status"] = np.asarray(val, dtype="U10")
            else:
                arrays[f"{vid}/{key}"] = np.asarray(val, np.float32)
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write(out / "streams.npz", lambda tmp: np.savez_compressed(tmp, **arrays))


def load_streams(path: str | Path) -> dict[str, dict]:
    """Read :func:`save_streams`' file back: ``{video: {"gt", method..., "status", "category"}}``."""
    out: dict[str, dict] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            vid, name = key.split("/", 1)
            val = z[key]
            out.setdefault(vid, {})[name] = val.tolist() if name in ("status", "category", "start") else val
    return out


def evaluate_tracking(net: torch.nn.Module, model3dmm, root: str | Path, videos: str | Iterable[str], size: int,
                      mode: str = "haar", device: str | torch.device = "cpu", max_frames: int | None = None,
                      progress: bool = True, skip_bad: bool = False, label: str | None = None,
                      redetect: str = "never") -> dict:
    """The paper's protocol on ``videos`` (ids or a split name), NME only: ``{"nme": %, "per_video", "frames"}``.

    ``mode`` is the first-frame detector (``haar``, ``mtcnn``, ``gt``); ``redetect="never"`` by default (the
    paper). A thin wrapper over :func:`evaluate_videos` for notebooks and quick checks.
    """
    label = label or (videos if isinstance(videos, str) else "videos")
    if isinstance(videos, str):
        from tdd_lite.data.vw300 import split_videos

        ids = split_videos(root, videos)
    else:
        ids = list(videos)
    r = evaluate_videos(net, model3dmm, root, {label: ids}, size, detector=mode, redetect=redetect,
                        device=device, max_frames=max_frames, progress=progress, skip_bad=skip_bad, gt_crops=False)
    m = r["methods"]["tracking"]
    cat = m["categories"][label]
    return {"nme": 100.0 * cat["nme"], "per_video": {v: 100.0 * row["nme"] for v, row in m["videos"].items()},
            "frames": cat["frames"]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="a tdd-lite train checkpoint (OUT/checkpoint.pt) or a reference-format .pt with its .json "
                        "sidecar (default: the shipped reference model, tdd_lite/assets/reference_g.pt)")
    p.add_argument("--data", required=True, help="300VW-layout folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                       help="test categories (default: A B C; 'test' = A+B+C)")
    which.add_argument("--videos", nargs="+", default=None, metavar="ID", help="these video folders, as one group")
    which.add_argument("--all", action="store_true", help="every NNN/ video folder of --data, as one group")
    p.add_argument("--size", type=crop_size, default=None,
                   help="crop size, 32..1024 (default and only accepted value: the checkpoint's image_size)")
    p.add_argument("--detector", "--mode", dest="detector", choices=("mtcnn", "haar", "gt"), default="mtcnn",
                   help="first-frame crop: mtcnn (the paper's, default), haar, or gt (the true box; controlled "
                        "experiments)")
    p.add_argument("--redetect", choices=("auto", "never"), default="auto",
                   help="auto: re-detect a lost face (default); never: the paper's protocol exactly")
    p.add_argument("--filters", nargs="+", default=["none"], metavar="NAME",
                   help="stabilisers to compare (tdd_lite.filters): none centred moving one-euro "
                        "one-euro-mediapipe kalman (default: none)")
    p.add_argument("--no-gt-crops", action="store_true",
                   help="skip the ground-truth-crop comparison row (each frame cropped from its own true box)")
    p.add_argument("--out", default=None, help="write report.md/.csv/.json and ced.png into this folder")
    p.add_argument("--save-streams", nargs="+", default=None, metavar="ID",
                   help="with --out: also write these videos' landmark streams (truth, every method, status) "
                        "to OUT/streams.npz (float32, compressed), for plots")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:N (default: TDD_DEVICE/CUDA)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="at most N frames per video (>= 1)")
    p.add_argument("--skip-bad-frames", action="store_true",
                   help="skip frames with a bad .pts (as `check-data --skip-bad-frames`) instead of failing")


def run(args: argparse.Namespace) -> int:
    """``tdd-lite evaluate``: every user error is a TddError (one line from ``tdd_lite.cli``)."""
    from tdd_lite.data.vw300 import require_valid, select_videos
    from tdd_lite.morphable import load_teaching_model
    from tdd_lite.reference import resolve_net

    device = pick_device(args.device)
    model = load_teaching_model()
    # no checkpoint: the shipped reference model (verified by its SHA-256 before it is read)
    net, trained, described = resolve_net(args.checkpoint, model)
    if args.size is not None and args.size != trained:
        raise CheckpointError(f"--size {args.size} contradicts {described}: G was trained on {trained} px crops "
                              f"(omit --size or pass --size {trained})")
    size = trained
    data = Path(args.data)
    if data.exists() and not data.is_dir():
        raise DataError(f"--data {data}: is a file, expected a 300VW-layout folder")
    groups = select_videos(data, splits=args.splits, videos=args.videos, all_videos=args.all)
    require_valid(data, [v for ids in groups.values() for v in ids], skip_bad=args.skip_bad_frames,
                  command="evaluate")
    from tdd_lite.filters import make_filter

    for f in args.filters:
        make_filter(f)  # an unknown name is a usage error before any work
    t0 = time.time()
    results = evaluate_videos(net, model, data, groups, size, detector=args.detector, redetect=args.redetect,
                              filters=args.filters, device=device, max_frames=args.max_frames,
                              progress=not args.no_progress, skip_bad=args.skip_bad_frames,
                              gt_crops=not args.no_gt_crops, keep_streams=bool(args.save_streams))
    streams = results.pop("streams", {})
    results["meta"].update(checkpoint=described, data=str(data), wall_seconds=round(time.time() - t0, 1))
    for name, ids in groups.items():
        row = results["methods"]["tracking" if "none" in args.filters else
                                 next(iter(results["methods"]))]["categories"].get(name)
        if row is None or row["frames"] == 0 or row["nme"] is None or not np.isfinite(row["nme"]):
            raise DataError(f"{name}: no frame with a usable ground truth among {len(ids)} video(s) "
                            f"({' '.join(ids[:8])}); NME is undefined")
    for mname, m in results["methods"].items():
        for cat, row in m["categories"].items():
            extra = "" if mname == GT_CROPS else f", dNME {100 * row['dnme']:.3f}%" if row["dnme"] is not None else ""
            print(f"{cat}: {mname}: NME {100 * row['nme']:.3f}% over {row['frames']} frames ({row['videos']} videos)"
                  f"{extra}, lost tracks {row['lost_tracks']}")
    meta = results["meta"]
    print(f"tracking {meta['tracking_fps']} frames/s, {meta['redetections']} re-detections, "
          f"{meta['lost_frames']} frames lost; first frames from {meta['first_frame_sources']}")
    if args.out:
        from tdd_lite.report import write_report

        paths = write_report(results, args.out)
        print(f"report: {paths['md']} (+ .csv, .json, ced.png)")
        if args.save_streams:
            missing = [v for v in args.save_streams if v not in streams]
            if missing:
                raise UsageError(f"--save-streams {' '.join(missing)}: not among the evaluated videos")
            print(f"streams: {save_streams({v: streams[v] for v in args.save_streams}, Path(args.out))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tdd_lite.evaluate``: the same one-line errors as ``tdd-lite evaluate``."""
    from tdd_lite.cli import module_main

    return module_main("python -m tdd_lite.evaluate", add_arguments, run, argv,
                       description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
