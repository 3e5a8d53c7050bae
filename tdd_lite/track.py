"""The paper's test protocol (section 4.1): track a face through a video one frame at a time.

Frame 0 is cropped from a face detector (MTCNN in the paper; :mod:`tdd_lite.data.detect`), every later frame from
the box of the previous frame's *estimate*. A tracker that loses the face never finds it again, so
:class:`Tracker` also **re-detects** when the estimate looks lost (``redetect="auto"``):

* ``outside``: less than ``min_inside`` of the estimate's landmark box lies inside the frame;
* ``size-jump``: the landmark box's side changed by more than ``max_scale_jump`` (ratio) from the last frame;
* ``shape`` (off by default): the estimate's identity coefficients leave the prior (RMS of alpha_id over
  ``max_alpha_rms`` standard deviations). Measured on the ``fast`` checkpoint it does not separate: G's alpha_id
  RMS is 19-25 std on true face crops (5th-95th percentile; the truth is ~1) and 24-40 on random crops, so
  nothing regularises identity towards the prior and this is no confidence signal yet;
* ``invalid``: the estimate is not finite;
* ``verify``: every ``verify_every`` frames the detector runs anyway and its box overlaps the estimate's box
  by less than ``min_verify_iou`` (IoU): the tracker is following something else (e.g. it started from a false
  detection). This check is what catches a track that is wrong but steady, which none of the above see. Until
  the main detector has confirmed the track once (the first crop came from a fallback: Haar after MTCNN found
  nothing, or a centred guess), the check runs on every frame.

On a trigger the detector runs on the same frame and the frame is estimated again from the detector's box
(status ``redetected``); if the detector finds nothing the estimate is kept and the status is ``lost``.
``redetect="never"`` reproduces the paper's protocol exactly (no checks, never a second look).

The command ``tdd-lite track VIDEO --checkpoint C --out DIR`` runs it on any video OpenCV reads or a folder of
images and writes ``DIR/vid.avi`` + ``DIR/annot/%06d.pts`` (one 300VW video folder: ``check-data`` and
``evaluate --videos`` read it), ``DIR/overlay.mp4`` and ``DIR/track.json``.

Usage::

    tracker = Tracker(net_predictor(net, model3dmm), size=64, detector="mtcnn")
    result = tracker.run(frames, gt_landmarks=None)       # or tracker.step(frame) per frame
    result.landmarks  # (T, 68, 2) image pixels; result.status, result.boxes, result.redetections
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tdd_lite.config import pick_device
from tdd_lite.data.crops import (
    DEFAULT_ENLARGE,
    box_from_landmarks,
    camera_from_crop,
    crop_tensor,
    from_crop,
    landmark_bbox,
    square_box,
)
from tdd_lite.data.detect import DETECTORS, box_iou, detect_box, require_mtcnn
from tdd_lite.data.pts import write_pts
from tdd_lite.errors import DataError, UsageError, positive_float, positive_int
from tdd_lite.files import PARTIAL_MARKER, make_partial_dir, remove_partial, remove_stale_partials
from tdd_lite.filters import make_filter
from tdd_lite.morphable import load_teaching_model
from tdd_lite.network import predict_landmarks
from tdd_lite.reference import resolve_net
from tdd_lite.render import draw_landmarks, image_vertices, render
from tdd_lite.video_io import FrameSource, VideoWriter

REDETECT = ("auto", "never")
STATUSES = ("detected", "tracked", "redetected", "lost")

# Output of a predictor: (68, 2) landmarks in the crop's [0, 1] coordinates and, optionally, alpha_id (K,).
Prediction = tuple[np.ndarray, np.ndarray | None]


class NetPredictor:
    """Batch-1 inference with G: crop tensor (3, S, S) -> (v(:, l) in [0, 1] crop coordinates, alpha_id).

    :attr:`last` holds G's outputs of the latest call, ``(alpha_id, alpha_exp, camera in crop coordinates)``
    (float64, CPU), for callers that draw the mesh or keep the parameters; :meth:`batch` runs many crops at once.
    """

    def __init__(self, net: torch.nn.Module, model3dmm, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.model3dmm = model3dmm.to(self.device)
        self.last: tuple[torch.Tensor, ...] | None = None

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> Prediction:
        out = self.net(image[None].to(self.device))
        lmk = predict_landmarks(self.model3dmm, out)[0]
        self.last = tuple(o[0].double().cpu() for o in out)  # (alpha_id, alpha_exp, camera in crop coords)
        return lmk.double().cpu().numpy(), self.last[0].numpy()

    @torch.no_grad()
    def batch(self, images: torch.Tensor) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """(N, 3, S, S) -> (landmarks01 (N, 68, 2), (alpha_id, alpha_exp, camera) each (N, ...)): the same
        network on many crops at once (the ground-truth-crop protocol has no frame-to-frame dependency)."""
        out = self.net(images.to(self.device))
        return (predict_landmarks(self.model3dmm, out).double().cpu().numpy(),
                tuple(o.double().cpu().numpy() for o in out))


def net_predictor(net: torch.nn.Module, model3dmm, device: str | torch.device = "cpu") -> NetPredictor:
    """G as a tracker's ``predict`` (:class:`NetPredictor`)."""
    return NetPredictor(net, model3dmm, device)


@dataclass
class TrackStep:
    """One frame's result: landmarks (68, 2) in image pixels, the crop box they were estimated in, status, what
    placed the crop."""

    landmarks: np.ndarray
    box: np.ndarray
    status: str
    source: str
    reason: str | None = None


@dataclass
class TrackResult:
    """A whole video: ``landmarks`` (T, 68, 2) px, ``boxes`` (T, 4), per-frame ``status``/``source``/``reason``."""

    landmarks: np.ndarray
    boxes: np.ndarray
    status: list[str]
    source: list[str]
    reasons: list[str | None]
    seconds: float
    detector_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def redetections(self) -> int:
        return sum(s == "redetected" for s in self.status)

    @property
    def lost_frames(self) -> int:
        return sum(s == "lost" for s in self.status)

    @property
    def fps(self) -> float:
        return len(self.status) / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        return {"frames": len(self.status), "boxes": np.round(self.boxes, 3).tolist(), "status": self.status,
                "source": self.source, "reasons": self.reasons, "redetections": self.redetections,
                "lost_frames": self.lost_frames, "seconds": round(self.seconds, 4),
                "detector_seconds": round(self.detector_seconds, 4), "fps": round(self.fps, 2), **self.extra}



@dataclass
class FaceLocator:
    """Where a track's crop comes from when there is no previous estimate: the detector's box, else a fallback.

    ``detector``: ``"mtcnn"``, ``"haar"`` or ``"gt"`` (the ground-truth box); ``backup``: a second detector tried
    when the first finds nothing (``"haar"`` after MTCNN), or None; ``fallback`` (first frame only, when no detector
    found a face): ``"gt"`` (the ground-truth box when given and finite) or anything else for a centred square of
    60% of the shorter side. :meth:`locate` returns ``(box or None, source)``; :attr:`seconds` sums its time.
    Shared by :class:`Tracker` and :class:`TrackingCropper`.
    """

    detector: str
    enlarge: float = DEFAULT_ENLARGE
    fallback: str = "centre"
    backup: str | None = None
    seconds: float = 0.0

    def locate(self, image: np.ndarray, gt_lmk: np.ndarray | None, first: bool, primary_only: bool = False
               ) -> tuple[np.ndarray | None, str]:
        """``primary_only``: no backup detector (a periodic check trusts only the main detector); ``first``:
        a fallback box when no detector finds a face (later frames get ``(None, "none")``)."""
        t0 = time.perf_counter()
        try:
            gt_ok = gt_lmk is not None and bool(np.isfinite(gt_lmk).all())
            if self.detector == "gt":
                return (detect_box(image, "gt", gt_lmk, self.enlarge), "gt") if gt_ok else (None, "gt-missing")
            box = detect_box(image, self.detector, enlarge=self.enlarge)
            if box is not None:
                return box, self.detector
            if self.backup is not None and not primary_only:
                box = detect_box(image, self.backup, enlarge=self.enlarge)
                if box is not None:
                    return box, self.backup
            if not first:
                return None, "none"
            if self.fallback == "gt" and gt_ok:
                return detect_box(image, "gt", gt_lmk, self.enlarge), "fallback-gt"
            h, w = image.shape[:2]
            return square_box(np.float64(w / 2), np.float64(h / 2), np.float64(0.6 * min(h, w))), "fallback-centre"
        finally:
            self.seconds += time.perf_counter() - t0


class _TrackCore:
    """What :class:`Tracker` and :class:`TrackingCropper` share (the paper's protocol): the first crop from a
    :class:`FaceLocator`, every crop as G's input (:func:`~tdd_lite.data.crops.crop_tensor`), and the next crop
    from an estimate (the enlarged square box of its landmarks)."""

    def __init__(self, size: int, locator: FaceLocator, border: str):
        self.size, self.locator, self.border = int(size), locator, border
        self.enlarge = locator.enlarge

    def crop(self, image: np.ndarray, box: np.ndarray) -> torch.Tensor:
        """The ``(3, S, S)`` input of G for ``box`` of ``image``."""
        return crop_tensor(image, box, self.size, self.border)

    def box_after(self, lmk_px: np.ndarray) -> np.ndarray:
        """The crop of the next frame from this frame's estimate (68, 2) in image pixels."""
        return np.asarray(box_from_landmarks(lmk_px, self.enlarge), np.float64)


class Tracker(_TrackCore):
    """Landmarks frame by frame under the tracking protocol, with optional re-detection (see module docstring).

    ``predict``: crop tensor (3, S, S) -> ``(landmarks01 (68, 2), alpha_id or None)`` (:func:`net_predictor`).
    ``detector``: ``"mtcnn"`` (the paper's), ``"haar"``, or ``"gt"`` (the ground-truth box; controlled
    experiments only: needs ``gt_lmk`` in :meth:`step`). When the detector finds nothing on the first frame,
    ``fallback`` decides: ``"haar"`` (try the cascade; then a centred box), ``"centre"`` (a centred square of
    60% of the shorter side) or ``"gt"`` (the ground-truth box when given). :attr:`first_source` records it.
    """

    def __init__(self, predict: Callable[[torch.Tensor], Prediction], size: int, detector: str = "mtcnn",
                 redetect: str = "auto", enlarge: float = DEFAULT_ENLARGE, fallback: str = "haar",
                 min_inside: float = 0.5, max_scale_jump: float = 1.35, max_alpha_rms: float | None = None,
                 verify_every: int = 30, min_verify_iou: float = 0.3, border: str = "replicate"):
        if detector not in DETECTORS:
            raise UsageError(f"detector {detector!r}: expected one of {', '.join(DETECTORS)}")
        if detector == "mtcnn":
            require_mtcnn()  # one line naming the pip command, before any frame is read
        if redetect not in REDETECT:
            raise UsageError(f"redetect {redetect!r}: expected one of {', '.join(REDETECT)}")
        if fallback not in ("haar", "centre", "gt"):
            raise UsageError(f"fallback {fallback!r}: expected haar, centre or gt")
        if not (0 < min_inside <= 1 and max_scale_jump > 1 and (max_alpha_rms is None or max_alpha_rms > 0)
                and enlarge > 0):
            raise UsageError("tracker thresholds: need 0 < min_inside <= 1, max_scale_jump > 1, max_alpha_rms > 0")
        super().__init__(size, FaceLocator(detector, enlarge, fallback, "haar" if detector == "mtcnn" else None),
                         border)
        self.predict, self.detector, self.redetect, self.fallback = predict, detector, redetect, fallback
        self.min_inside, self.max_scale_jump, self.max_alpha_rms = min_inside, max_scale_jump, max_alpha_rms
        if verify_every < 0 or not 0 <= min_verify_iou < 1:
            raise UsageError("tracker thresholds: need verify_every >= 0 (0 = off) and 0 <= min_verify_iou < 1")
        self.verify_every, self.min_verify_iou = int(verify_every), float(min_verify_iou)
        self.reset()

    def reset(self) -> None:
        """Start a new video."""
        self.next_box: np.ndarray | None = None
        self.last_side: float | None = None
        self.first_source: str | None = None
        self.confirmed = False  # has the main detector seen this track?
        self.frame_index = -1
        self.locator.seconds = 0.0

    @property
    def detector_seconds(self) -> float:
        """Seconds spent in the face detector since :meth:`reset`."""
        return self.locator.seconds

    # ------------------------------------------------------------------------------------------ detection
    def detect(self, image: np.ndarray, gt_lmk: np.ndarray | None, first: bool, primary_only: bool = False
               ) -> tuple[np.ndarray | None, str]:
        """A crop box from the detector (and, on the first frame, the fallback): ``(box or None, source)``.
        ``primary_only``: no Haar fallback after MTCNN (the periodic check trusts only the main detector)."""
        return self.locator.locate(image, gt_lmk, first, primary_only)

    def estimate(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """G's estimate in the crop ``box`` of ``image``: ``(landmarks (68, 2) in image pixels, alpha_id or None)``."""
        lmk01, alpha_id = self.predict(self.crop(image, box))
        return from_crop(np.asarray(lmk01, np.float64).reshape(-1, 2), box), alpha_id

    def lost_reason(self, lmk_px: np.ndarray, alpha_id: np.ndarray | None, image_shape: tuple[int, ...]
                    ) -> str | None:
        """Why this estimate looks lost (``outside``, ``size-jump``, ``shape``, ``invalid``), or None."""
        if not np.isfinite(lmk_px).all():
            return "invalid"
        x0, y0, x1, y1 = landmark_bbox(lmk_px)
        h, w = image_shape[:2]
        area = max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)
        inside = max(0.0, min(x1, w) - max(x0, 0)) * max(0.0, min(y1, h) - max(y0, 0)) / area
        if inside < self.min_inside:
            return "outside"
        side = max(x1 - x0, y1 - y0)
        if self.last_side is not None and not (1 / self.max_scale_jump <= side / self.last_side
                                               <= self.max_scale_jump):
            return "size-jump"
        if (self.max_alpha_rms is not None and alpha_id is not None
                and float(np.sqrt(np.mean(np.square(alpha_id)))) > self.max_alpha_rms):
            return "shape"
        return None

    # ------------------------------------------------------------------------------------------- one frame
    def step(self, image: np.ndarray, gt_lmk: np.ndarray | None = None) -> TrackStep:
        """Estimate the landmarks of the next frame (H, W, 3) uint8 RGB; ``gt_lmk`` only for ``detector="gt"``
        or the ``"gt"`` fallback."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UsageError(f"frame {self.frame_index + 1}: expected an (H, W, 3) uint8 RGB image, "
                             f"got {image.dtype}{tuple(image.shape)}")
        self.frame_index += 1
        first = self.next_box is None
        if first:
            box, source = self.detect(image, gt_lmk, first=True)
            self.first_source = source
            self.confirmed = source == self.detector
            status = "detected"
        else:
            box, source, status = self.next_box, "previous", "tracked"
        lmk, alpha_id = self.estimate(image, box)
        reason = None
        if self.redetect == "auto":
            reason = self.lost_reason(lmk, alpha_id, image.shape)
            new_box = None
            due = self.verify_every and (not self.confirmed or self.frame_index % self.verify_every == 0)
            if reason is None and not first and due:
                new_box, new_source = self.detect(image, gt_lmk, first=False, primary_only=True)
                if new_box is not None and np.isfinite(lmk).all() and \
                        box_iou(new_box, box_from_landmarks(lmk, self.enlarge)) < self.min_verify_iou:
                    reason = "verify"
                else:
                    self.confirmed = self.confirmed or new_box is not None
                    new_box = None
            if reason is not None and not first:
                if new_box is None:
                    new_box, new_source = self.detect(image, gt_lmk, first=False)
                if new_box is not None:
                    box, source, status = new_box, new_source, "redetected"
                    self.confirmed = self.confirmed or new_source == self.detector
                    lmk, alpha_id = self.estimate(image, box)
                    reason2 = self.lost_reason(lmk, alpha_id, image.shape)
                    if reason2 is not None and reason2 != "size-jump":
                        status = "lost"
                else:
                    status = "lost"
        if np.isfinite(lmk).all() and status != "lost":
            self.next_box = self.box_after(lmk)
            x0, y0, x1, y1 = landmark_bbox(lmk)
            self.last_side = float(max(x1 - x0, y1 - y0))
        elif self.next_box is None or not np.isfinite(lmk).all():
            # keep the crop we had (never place a crop from a non-finite estimate)
            self.next_box = np.asarray(box, np.float64)
        return TrackStep(lmk, np.asarray(box, np.float64), status, source, reason)

    # ------------------------------------------------------------------------------------------ whole video
    def run(self, frames: Iterable[np.ndarray], gt_landmarks: np.ndarray | None = None,
            max_frames: int | None = None, progress: bool = False, desc: str = "track",
            on_step: Callable[[int, np.ndarray, TrackStep], None] | None = None) -> TrackResult:
        """Track every frame (up to ``max_frames``); ``on_step(k, frame, step)`` is called after each frame."""
        self.reset()
        steps: list[TrackStep] = []
        total = None if gt_landmarks is None else len(gt_landmarks)
        if max_frames is not None:
            total = max_frames if total is None else min(total, max_frames)
        t0 = time.perf_counter()
        with tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False) as bar:
            for k, frame in enumerate(frames):
                if max_frames is not None and k >= max_frames:
                    break
                gt = None if gt_landmarks is None or k >= len(gt_landmarks) else gt_landmarks[k]
                s = self.step(frame, gt)
                steps.append(s)
                if on_step is not None:
                    on_step(k, frame, s)
                bar.update(1)
        seconds = time.perf_counter() - t0
        if not steps:
            raise DataError("no frames to track (empty video or max_frames = 0)")
        return TrackResult(np.stack([s.landmarks for s in steps]), np.stack([s.box for s in steps]),
                           [s.status for s in steps], [s.source for s in steps], [s.reason for s in steps],
                           seconds, self.detector_seconds)


class TrackingCropper(_TrackCore):
    """The bare protocol without re-detection, driven by the caller (kept for notebook 02 and the tests):
    ``image, box = cropper.next(frame, gt_lmk)``, then ``pred_px = cropper.update(pred01)``.

    ``mode``: ``"haar"``, ``"mtcnn"`` or ``"gt"``; ``fallback``: ``"gt"`` (the ground-truth box when given) or
    ``"centre"`` when the detector finds nothing on the first frame; :attr:`first_source` records which.
    """

    def __init__(self, size: int = 256, mode: str = "haar", enlarge: float = DEFAULT_ENLARGE,
                 fallback: str = "gt", border: str = "replicate"):
        if mode not in ("haar", "gt", "mtcnn"):
            raise ValueError(f"mode must be 'haar', 'mtcnn' or 'gt', got {mode!r}")
        if fallback not in ("gt", "centre"):
            raise ValueError(f"fallback must be 'gt' or 'centre', got {fallback!r}")
        super().__init__(size, FaceLocator(mode, enlarge, fallback), border)
        self.mode, self.fallback = mode, fallback
        self.reset()

    def reset(self) -> None:
        """Start a new video."""
        self.box: np.ndarray | None = None
        self.next_box: np.ndarray | None = None
        self.first_source: str | None = None
        self.frame_index = -1

    def first_box(self, image: np.ndarray, gt_lmk: np.ndarray | None = None) -> np.ndarray:
        box, self.first_source = self.locator.locate(image, gt_lmk, first=True)
        if box is None:  # mode "gt" without (finite) ground truth
            raise ValueError("mode='gt' needs gt_lmk, the finite (68, 2) ground-truth landmarks of this frame")
        return box

    def next(self, image: np.ndarray, gt_lmk: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Crop the next frame: ``((3, S, S) float32 tensor, box)``. Call :meth:`update` before the next one."""
        if self.frame_index < 0:
            box = self.first_box(image, gt_lmk)
        elif self.next_box is None:
            raise RuntimeError("TrackingCropper.update(pred) must be called after each next()")
        else:
            box = self.next_box
        self.frame_index += 1
        self.box, self.next_box = np.asarray(box, dtype=np.float64), None
        return self.crop(image, self.box), self.box.copy()

    def update(self, pred_lmk01: np.ndarray | torch.Tensor) -> np.ndarray:
        """Record this frame's estimate (68, 2) in crop coordinates; returns it in image pixels."""
        if self.box is None:
            raise RuntimeError("call next() first")
        p = pred_lmk01.detach().cpu().double().numpy() if isinstance(pred_lmk01, torch.Tensor) else \
            np.asarray(pred_lmk01, dtype=np.float64)
        px = from_crop(p.reshape(-1, 2), self.box)
        if not np.isfinite(px).all():
            raise ValueError(f"frame {self.frame_index}: the estimate contains NaN/inf; cannot place the next crop")
        self.next_box = self.box_after(px)
        return px


def tracking_crops(frames: Iterable[np.ndarray], predict, size: int = 256, mode: str = "haar",
                   gt_landmarks: np.ndarray | None = None, **kwargs) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Run the bare protocol over ``frames`` with ``predict(image (3,S,S)) -> (68, 2) crop coords``;
    yields ``(pred_px (68, 2), box)`` per frame."""
    cropper = TrackingCropper(size, mode, **kwargs)
    for k, img in enumerate(frames):
        gt = None if gt_landmarks is None else gt_landmarks[k]
        x, box = cropper.next(img, gt)
        yield cropper.update(predict(x)), box


# ============================================================================================ the command
TRACK_MARKER = "track.json"


def add_arguments(p) -> None:
    p.add_argument("video", help="a video file OpenCV reads, or a folder of images (sorted by name)")
    p.add_argument("--checkpoint", default=None,
                   help="a trainer checkpoint (tdd-lite train) or a reference-format .pt with its .json sidecar "
                        "(default: the shipped reference model, tdd_lite/assets/reference_g.pt)")
    p.add_argument("--out", required=True, help="output folder (a 300VW video folder: vid.avi, annot/, ...)")
    p.add_argument("--filter", default="none", help="stabiliser on the output landmarks (tdd_lite.filters): "
                   "none, centred, moving, one-euro, one-euro-mediapipe, kalman (default none)")
    p.add_argument("--detector", choices=("mtcnn", "haar"), default="mtcnn",
                   help="first-frame / re-detection face detector (default mtcnn, the paper's)")
    p.add_argument("--redetect", choices=REDETECT, default="auto",
                   help="auto: re-detect when the estimate is lost; never: the paper's protocol exactly")
    p.add_argument("--mesh", action="store_true", help="draw the fitted 3D mesh in the overlay video")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    p.add_argument("--max-frames", type=positive_int, default=None, help="track at most this many frames")
    p.add_argument("--fps", type=positive_float, default=None, help="frame rate of an image folder (default 30)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if present)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is an earlier tdd-lite track output")
    p.add_argument("--no-progress", action="store_true")


def _prepare_out(out: Path, overwrite: bool) -> Path:
    """A fresh partial folder beside ``out`` (:func:`tdd_lite.files.make_partial_dir`, the same mechanism
    as synth: marked, removed by the next run once its process is gone); refuses to replace anything that is not
    an earlier track output."""
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise UsageError(f"--out {out}: exists and is not a folder")
        if any(out.iterdir()):
            if not overwrite:
                raise UsageError(f"--out {out}: exists and is not empty (pass --overwrite to replace an earlier "
                                 "track output)")
            if not (out / TRACK_MARKER).is_file():
                raise UsageError(f"--out {out}: not a tdd-lite track output (no {TRACK_MARKER}); refusing to "
                                 "replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = make_partial_dir(out, "tdd-lite track")
    (tmp / "annot").mkdir()
    return tmp


def _mesh_overlay(frame: np.ndarray, model3dmm, outputs, box: np.ndarray, triangles) -> np.ndarray:
    alpha_id, alpha_exp, cam01 = outputs
    shape = model3dmm.shape(alpha_id[None].to(model3dmm.mean_shape), alpha_exp[None].to(model3dmm.mean_shape))[0]
    cam = camera_from_crop(cam01.numpy(), np.asarray(box, np.float64))
    drawn = render(image_vertices(shape, cam), triangles, background=frame)
    return (0.5 * frame + 0.5 * drawn).astype(np.uint8)


def run(args) -> int:
    if args.detector == "mtcnn":
        require_mtcnn()  # before the video or the network is opened
    filt = make_filter(args.filter)
    source = FrameSource(args.video, fps=args.fps)
    model = load_teaching_model()
    # no --checkpoint: the shipped reference model (verified by its SHA-256 before it is read)
    net, size, described = resolve_net(args.checkpoint, model)
    device = pick_device(args.device)
    predict = net_predictor(net, model, device)
    out = Path(args.out)
    tmp = _prepare_out(out, args.overwrite)
    overlay = None if args.no_overlay else VideoWriter(tmp / "overlay.mp4", source.fps)
    video = VideoWriter(tmp / "vid.avi", source.fps)  # MJPG .avi: the 300VW layout's vid.avi
    mesh_steps: list = []
    frame_size: list[int] = []
    try:
        tracker = Tracker(predict, size, detector=args.detector, redetect=args.redetect)

        def keep(k: int, frame: np.ndarray, step: TrackStep) -> None:  # stream: no video is held in memory
            video.write(frame)
            frame_size[:] = [int(frame.shape[1]), int(frame.shape[0])]
            if args.mesh and overlay is not None:
                mesh_steps.append((predict.last, step.box))

        result = tracker.run(source, max_frames=args.max_frames, progress=not args.no_progress,
                             desc=f"track {source.path.name}", on_step=keep)
        raw = result.landmarks
        bad = [k for k in range(len(raw)) if not np.isfinite(raw[k]).all()]
        if bad:
            raise DataError(f"{args.video}: frame {bad[0]}: G produced a non-finite estimate "
                            f"({len(bad)} frames); the checkpoint may be broken")
        lmk = filt.apply(raw) if args.filter != "none" else raw
        for k, p in enumerate(lmk):
            write_pts(tmp / "annot" / f"{k + 1:06d}.pts", p)
        video.close()
        if overlay is not None:  # second pass over the input: the filtered landmarks are known only now
            tri = np.asarray(model.triangles)
            for k, frame in enumerate(source):
                if k >= len(lmk):
                    break
                img = _mesh_overlay(frame, model, *mesh_steps[k], tri) if args.mesh else frame
                colour = (255, 40, 40) if result.status[k] == "lost" else (255, 230, 0)  # yellow; red when lost
                overlay.write(draw_landmarks(img, lmk[k], color=colour, connect=True))
            overlay.close()
        info = {"tool": "tdd-lite track", "video": str(args.video), "checkpoint": described,
                "image_size": size, "detector": args.detector, "redetect": args.redetect, "filter": args.filter,
                "filter_lookahead": int(filt.lookahead), "first_source": tracker.first_source,
                "frame_size": frame_size, "fps_input": source.fps,
                **result.to_json()}
        (tmp / TRACK_MARKER).write_text(json.dumps(info, sort_keys=True) + "\n")
        (tmp / PARTIAL_MARKER).unlink()  # finished: no longer a partial folder
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        video.close(keep=False)
        if overlay is not None:
            overlay.close(keep=False)
        remove_partial(tmp)
        raise
    print(f"{len(lmk)} frames at {result.fps:.1f} frames/s ({result.redetections} re-detections, "
          f"{result.lost_frames} lost) -> {out}/annot, {out}/{TRACK_MARKER}"
          + ("" if args.no_overlay else f", {out}/overlay.mp4"))
    return 0

