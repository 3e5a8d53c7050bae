"""Peers on the same frames: off-the-shelf 68-point landmarkers scored with the project's video metrics.

A number means little without a baseline a practitioner would reach for first. This module runs such peers on
the very frames ``tdd-lite evaluate`` tracks and scores their landmark streams with the same functions
(:func:`tdd_lite.metrics.video_metrics` per video, :func:`tdd_lite.metrics.category_metrics` per category):
NME (bbox), dNME, jitter ratio, lag, lost tracks, ...

Peers (the optional extra ``peers``: ``pip install -e ".[peers]"``, i.e. ``dlib-bin`` and
``face-recognition-models``; MediaPipe needs its own environment, see below):

* ``dlib-frame`` -- **dlib (per frame)**: dlib's HOG frontal face detector (``dlib.get_frontal_face_detector``)
  on every frame, the largest detection, then dlib's 68-point shape predictor
  (``shape_predictor_68_face_landmarks.dat``, shipped by ``face-recognition-models``). It uses the same
  68-point iBUG markup as 300VW and was trained on the iBUG 300-W *photographs* (still images, not video).
  A frame where the detector finds nothing keeps the previous frame's landmarks (status ``missed``).
* ``dlib-tracked`` -- **dlib (tracked)**: the paper's tracking protocol (section 4.1) with dlib: the detector
  on the first frame, then every later frame's box comes from the previous frame's landmarks
  (:data:`DLIB_RECT_FROM_LMK` turns the landmarks' bounding box into a box shaped like the detector's, the box
  the shape predictor was trained on). Re-detection follows the rules of :class:`tdd_lite.track.Tracker`
  (``redetect="auto"``, same thresholds): the detector runs again when less than half of the landmarks' box is
  inside the frame (``outside``), when that box's side changes by more than 1.35x from one frame to the next
  (``size-jump``), and every 30 frames as a check (``verify``: a detection overlapping the tracked box by less
  than IoU 0.3 replaces it). A trigger whose detector run finds nothing keeps the estimate (status ``lost``).
  A first frame without a face starts from the fallback shape (below); until the detector has seen a face it
  runs on every frame and those frames count as ``fallback``. dlib's predictor was trained on detector boxes
  only, and fed back its own landmarks' box it drifts on turned faces (results/peers/README.md): this mode
  measures what the paper's protocol does to a landmarker not trained for it.
* ``mediapipe`` -- **MediaPipe FaceMesh** 0.10.21, the legacy ``mp.solutions.face_mesh`` API (its .tflite
  models ship inside the wheel: nothing is downloaded; the newer tasks API downloads a model) in video mode
  (``static_image_mode=False``: its own detector on the first frame, then it tracks from the previous
  landmarks, the same protocol). It needs ``numpy<2``, so it runs in a separate environment through
  ``tools/run_mediapipe_peer.py`` (``--mediapipe-python``); the raw 468 points come back in an ``.npz``.
  **Its 68 points are an approximation**: :data:`MEDIAPIPE_TO_IBUG68` picks, for each iBUG point, the FaceMesh
  vertex at the same place on the face. Eyes, brows, nose and lips correspond well; the jaw does not: FaceMesh's
  face-oval vertices are fixed points of its surface mesh, while iBUG's 17 jaw points are the visible outline
  of the face (on a turned head they slide to the occluding contour), and FaceMesh has no vertex spaced like
  them. Its NME is therefore an upper bound of what the model itself would score with a learned 468->68 map.

Frames before the first detection (the detector found no face yet) get the fallback shape
:func:`fallback_landmarks`: the teaching 3DMM's mean face, frontal, in the centred box of
:class:`tdd_lite.track.Tracker`'s ``fallback="centre"`` (a square of 60% of the shorter image side). Such
frames, and every ``missed``/``lost`` frame, are **scored like any other** (nothing is dropped) and counted in
``missed_frames``; a long run of them shows up in ``lost_tracks``/``lost_frames`` (NME > 0.2 for >= 10 frames).

Frames/s (``fps``) count the peer's own work (detector + predictor, or FaceMesh's ``process``), not video
decoding. Like ``evaluate``, each video starts at its first frame with a ground truth.

Usage::

    python -m tdd_lite.peers --data ROOT --splits A B C --out DIR \\
        [--peers dlib-frame dlib-tracked mediapipe] [--mediapipe-python /path/to/mp-venv/bin/python]

writes ``DIR/peers.json`` (``rows``: one per method and category with ``nme, dnme, jitter_ratio, lag,
lost_tracks, lost_frames, missed_frames, frames, videos, fps``; ``methods``: the :mod:`tdd_lite.report` layout,
so the rows can be merged into ``evaluate``'s report) and ``DIR/peers.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tdd_lite.commands import module_main
from tdd_lite.data.crops import DEFAULT_ENLARGE
from tdd_lite.data.detect import box_iou
from tdd_lite.data.vw300 import load_split, require_valid, select_videos
from tdd_lite.errors import DataError, UsageError, positive_int
from tdd_lite.files import atomic_write
from tdd_lite.metrics import category_metrics, frame_nme, video_metrics
from tdd_lite.morphable import load_teaching_model
from tdd_lite.report import fmt, paper_table

PEERS = ("dlib-frame", "dlib-tracked", "mediapipe")
METHOD_NAMES = {"dlib-frame": "dlib (per frame)", "dlib-tracked": "dlib (tracked)",
                "mediapipe": "MediaPipe FaceMesh (68 of 468)"}
DLIB_EXTRA = "pip install dlib-bin face-recognition-models"
MEDIAPIPE_VERSION = "0.10.21"
MEDIAPIPE_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "run_mediapipe_peer.py"
PEER_STATUSES = ("detected", "tracked", "redetected", "missed", "lost", "fallback")
MISSED = ("missed", "lost", "fallback")  # frames without a fresh face: counted in missed_frames

# ------------------------------------------------------------------------------------------------ MediaPipe
# iBUG 68 (0-based) -> FaceMesh vertex (0..467). "Right" = the subject's right = the image's left for a face
# looking at the camera, as in iBUG. Written from FaceMesh's contours (mediapipe's FACEMESH_FACE_OVAL, _LIPS,
# _LEFT_EYE, ...: each iBUG point takes the contour vertex at its place, left/right symmetric), then checked
# without ground truth against dlib's 68 points on 724 Synth300VW *training* frames (median distance of each
# vertex to dlib's point, in units of sqrt(w*h) of dlib's box): for 30 of the 51 non-jaw points the table's
# vertex is the nearest of all 468, for 44 it is within 0.01 of the nearest (at most 0.014); for 10 of the 17
# jaw points too (the nearest of the other 7 lie inside the face oval). That check moved the lower lip (55, 59),
# the inner lip (61, 63, 65, 67) and the jaw's sides to the neighbouring contour vertex dlib agreed with.
# An approximation (module docstring): the jaw (FaceMesh's face oval, not iBUG's visible outline) is the
# weakest part.
MEDIAPIPE_TO_IBUG68: tuple[int, ...] = (
    # jaw 0-16, image left -> chin (8) -> image right: vertices of FaceMesh's face oval
    127, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 356,
    # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer): the brows' upper edge
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30 (nasion -> tip), lower nose 31-35 (right ala -> subnasale -> left ala)
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # right eye 36-41 (outer corner, upper lid x2, inner corner, lower lid x2), left eye 42-47 (inner first)
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # outer lips 48-59 (right corner, upper lip, left corner, lower lip back)
    61, 40, 37, 0, 267, 270, 291, 405, 314, 17, 84, 181,
    # inner lips 60-67 (right corner, upper, left corner, lower)
    78, 82, 13, 312, 308, 317, 14, 87,
)


def mediapipe_to_ibug68(points468: np.ndarray) -> np.ndarray:
    """FaceMesh landmarks ``(..., 468 or 478, 2)`` -> the approximate iBUG 68 ``(..., 68, 2)``."""
    p = np.asarray(points468)
    if p.ndim < 2 or p.shape[-2] < 468:
        raise DataError(f"expected FaceMesh landmarks of shape (..., 468, 2), got {p.shape}")
    return p[..., list(MEDIAPIPE_TO_IBUG68), :]


# ------------------------------------------------------------------------------------------------ results
@dataclass
class PeerResult:
    """One video: ``landmarks`` (T, 68, 2) image pixels (finite everywhere), per-frame ``status``, the peer's
    own processing ``seconds``."""

    landmarks: np.ndarray
    status: list[str]
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def missed_frames(self) -> int:
        return sum(s in MISSED for s in self.status)

    @property
    def redetections(self) -> int:
        return sum(s == "redetected" for s in self.status)

    @property
    def fps(self) -> float:
        return len(self.status) / self.seconds if self.seconds > 0 else float("inf")


_TEMPLATE: list[np.ndarray] = []


def _mean_face() -> np.ndarray:
    """The teaching 3DMM's mean 68 landmarks, frontal, in image orientation (y down), unit longer side."""
    if not _TEMPLATE:
        x = load_teaching_model().lmk_mean.detach().cpu().double().numpy().reshape(-1, 3)[:, :2] * [1.0, -1.0]
        x = x - (x.min(0) + x.max(0)) / 2
        _TEMPLATE.append(x / float((x.max(0) - x.min(0)).max()))
    return _TEMPLATE[0]


def fallback_landmarks(height: int, width: int) -> np.ndarray:
    """The shape given to frames before a peer's first detection: the mean face in the Tracker's centred box
    (a square of 60% of the shorter side, i.e. landmarks spanning 60% / 1.4 of it), ``(68, 2)`` pixels."""
    side = 0.6 * min(height, width) / DEFAULT_ENLARGE
    return _mean_face() * side + [(width - 1) / 2, (height - 1) / 2]


def fill_missing(landmarks: np.ndarray, found: np.ndarray, height: int, width: int) -> tuple[np.ndarray, list[str]]:
    """Frames without a face (``found`` False or non-finite landmarks): the previous frame's landmarks
    (``missed``), or :func:`fallback_landmarks` before the first face (``fallback``). Returns (landmarks,
    status) with ``detected`` for the frames that had one."""
    out = np.array(landmarks, np.float64, copy=True)
    ok = np.asarray(found, bool) & np.isfinite(out).all(axis=(1, 2))
    status: list[str] = []
    prev = None
    for t in range(len(out)):
        if ok[t]:
            prev = out[t]
            status.append("detected")
        elif prev is None:
            out[t] = fallback_landmarks(height, width)
            status.append("fallback")
        else:
            out[t] = prev
            status.append("missed")
    return out, status


# ------------------------------------------------------------------------------------------------ dlib
def _extra_error(what: str) -> UsageError:
    return UsageError(f"peer 'dlib' needs the 'peers' extra ({what}): {DLIB_EXTRA} "
                      "(or pip install -e \".[peers]\")")


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise _extra_error("dlib is not installed") from None
    return dlib


def shape_predictor_path() -> Path:
    """``shape_predictor_68_face_landmarks.dat`` inside the ``face_recognition_models`` package, found
    **without importing it** (its ``__init__`` imports ``pkg_resources``, which new setuptools removed)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise _extra_error("face-recognition-models is not installed")
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(str(Path(spec.origin).parent))
    for folder in folders:
        path = Path(folder) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise _extra_error(f"no models/shape_predictor_68_face_landmarks.dat in {folders[0] if folders else spec.name}")


_DLIB: dict[str, object] = {}


def dlib_models():
    """(HOG frontal face detector, 68-point shape predictor), loaded once per process."""
    if "detector" not in _DLIB:
        dlib = _import_dlib()
        path = shape_predictor_path()
        _DLIB["predictor"] = dlib.shape_predictor(str(path))
        _DLIB["detector"] = dlib.get_frontal_face_detector()
    return _DLIB["detector"], _DLIB["predictor"]


def dlib_version() -> str | None:
    try:
        return _import_dlib().__version__
    except UsageError:
        return None


@dataclass(frozen=True)
class RectFromLandmarks:
    """Landmarks' bounding box (width w, height h, centre c) -> a box shaped like the HOG detector's (always
    square): side ``scale * sqrt(w * h)``, centre ``c + (dx, dy) * sqrt(w * h)``."""

    dx: float
    dy: float
    scale: float

    def apply(self, lmk: np.ndarray) -> np.ndarray:
        (x0, y0), (x1, y1) = lmk.min(axis=0), lmk.max(axis=0)
        d = float(np.sqrt(max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)))
        cx, cy = (x0 + x1) / 2 + self.dx * d, (y0 + y1) / 2 + self.dy * d
        half = self.scale * d / 2
        return np.array([cx - half, cy - half, cx + half, cy + half])


# Fitted with fit_rect_from_landmarks (medians) on dlib's own output, no ground truth: frames 0, 10, 20 of the
# first 100 videos of a Synth300VW training set (seed 1000, 256x256, 25 frames each; the test set was not used);
# the HOG detector fired on 219 of the 300 frames. Its box is square (a face turning sideways narrows the
# landmarks' box, not the detector's), ~2% larger than sqrt(w*h) of the landmarks' box and ~11% of it higher
# (it covers the brows' upper margin, not the chin's tip).
DLIB_RECT_FROM_LMK = RectFromLandmarks(dx=0.021, dy=-0.112, scale=1.018)


def _rect(dlib, box: np.ndarray):
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))


def _box(r) -> np.ndarray:
    return np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64)


def _largest(dets) -> object | None:
    return max(dets, key=lambda r: r.width() * r.height()) if len(dets) else None


def _shape(predictor, image: np.ndarray, rect) -> np.ndarray:
    s = predictor(image, rect)
    return np.array([(p.x, p.y) for p in s.parts()], np.float64)


def fit_rect_from_landmarks(frames: Iterable[np.ndarray], upsample: int = 0) -> tuple[RectFromLandmarks, int]:
    """Median geometry of dlib's detections relative to dlib's own landmarks' box (:class:`RectFromLandmarks`),
    over the ``frames`` (RGB uint8) where the detector fires: ``(mapping, frames used)``. No ground truth."""
    detector, predictor = dlib_models()
    rows = []
    for img in frames:
        r = _largest(detector(img, upsample))
        if r is None:
            continue
        p = _shape(predictor, img, r)
        (x0, y0), (x1, y1) = p.min(0), p.max(0)
        if x1 <= x0 or y1 <= y0:
            continue
        d = np.sqrt((x1 - x0) * (y1 - y0))
        b = _box(r)
        rows.append(((b[0] + b[2] - x0 - x1) / 2 / d, (b[1] + b[3] - y0 - y1) / 2 / d,
                     np.sqrt((b[2] - b[0]) * (b[3] - b[1])) / d))
    if not rows:
        raise DataError("the dlib detector fired on none of the frames; cannot fit the box mapping")
    m = np.median(np.array(rows), axis=0)
    return RectFromLandmarks(*(round(float(v), 3) for v in m)), len(rows)


class DlibPeer:
    """dlib's detector + 68-point shape predictor, per frame (``mode="frame"``) or under the tracking protocol
    (``mode="tracked"``): see the module docstring. ``upsample``: the detector's image upsampling (0: faces
    from about 80 px; 1 finds smaller faces at ~4x the detector time)."""

    def __init__(self, mode: str = "frame", upsample: int = 0, min_inside: float = 0.5,
                 max_scale_jump: float = 1.35, verify_every: int = 30, min_verify_iou: float = 0.3,
                 rect_from_lmk: RectFromLandmarks = DLIB_RECT_FROM_LMK):
        if mode not in ("frame", "tracked"):
            raise UsageError(f"dlib peer mode {mode!r}: expected 'frame' or 'tracked'")
        self.mode, self.upsample = mode, int(upsample)
        self.min_inside, self.max_scale_jump = min_inside, max_scale_jump
        self.verify_every, self.min_verify_iou = int(verify_every), min_verify_iou
        self.rect_from_lmk = rect_from_lmk
        self.detector, self.predictor = dlib_models()
        self.dlib = _import_dlib()

    def _detect(self, image: np.ndarray):
        return _largest(self.detector(image, self.upsample))

    def _lost_reason(self, lmk: np.ndarray, last_side: float | None, shape: tuple[int, ...]) -> str | None:
        (x0, y0), (x1, y1) = lmk.min(0), lmk.max(0)
        h, w = shape[:2]
        area = max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)
        inside = max(0.0, min(x1, w) - max(x0, 0)) * max(0.0, min(y1, h) - max(y0, 0)) / area
        if inside < self.min_inside:
            return "outside"
        side = max(x1 - x0, y1 - y0)
        if last_side is not None and not 1 / self.max_scale_jump <= side / last_side <= self.max_scale_jump:
            return "size-jump"
        return None

    def run(self, frames: Iterable[np.ndarray]) -> PeerResult:
        """Landmarks of every frame (RGB uint8 ``(H, W, 3)``)."""
        out: list[np.ndarray] = []
        status: list[str] = []
        reasons: dict[str, int] = {}
        seconds = 0.0
        prev: np.ndarray | None = None  # previous landmarks
        last_side: float | None = None
        confirmed = False  # has the detector seen the current track (not only a fallback)?
        for k, img in enumerate(frames):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise UsageError(f"frame {k}: expected an (H, W, 3) uint8 RGB image, got {img.dtype}{img.shape}")
            t0 = time.perf_counter()
            if self.mode == "frame" or prev is None:
                r = self._detect(img)
                if r is not None:
                    lmk, st = _shape(self.predictor, img, r), "detected"
                    confirmed = True
                elif prev is not None:
                    lmk, st = prev, "missed"  # per frame only: tracking runs the detector first when prev is None
                else:
                    lmk, st = fallback_landmarks(*img.shape[:2]), "fallback"
                    if self.mode == "tracked":  # start tracking from the fallback shape (the Tracker's rule)
                        lmk = _shape(self.predictor, img, _rect(self.dlib, self.rect_from_lmk.apply(lmk)))
            else:
                box = self.rect_from_lmk.apply(prev)
                lmk, st = _shape(self.predictor, img, _rect(self.dlib, box)), "tracked"
                reason = self._lost_reason(lmk, last_side, img.shape)
                due = self.verify_every and (not confirmed or k % self.verify_every == 0)
                r = None
                if reason is None and due:
                    r = self._detect(img)
                    if r is not None and box_iou(_box(r), self.rect_from_lmk.apply(lmk)) < self.min_verify_iou:
                        reason = "verify"
                    else:
                        confirmed = confirmed or r is not None
                        r = None
                if reason is not None:
                    reasons[reason] = reasons.get(reason, 0) + 1
                    if r is None:
                        r = self._detect(img)
                    if r is not None:
                        lmk, st = _shape(self.predictor, img, r), "redetected"
                        confirmed = True
                    else:
                        st = "lost"
                if st == "tracked" and not confirmed:
                    st = "fallback"  # still following the centred fallback shape: the detector never saw a face
            seconds += time.perf_counter() - t0
            if st in ("detected", "tracked", "redetected") or (st == "fallback" and self.mode == "tracked"):
                # the next frame starts from here (a per-frame fallback shape is never carried as a face)
                (x0, y0), (x1, y1) = lmk.min(0), lmk.max(0)
                last_side = float(max(x1 - x0, y1 - y0))
                prev = lmk
            out.append(lmk)
            status.append(st)
        if not out:
            raise DataError("no frames to run the peer on (empty video)")
        return PeerResult(np.stack(out), status, seconds, {"redetect_reasons": reasons})


# ------------------------------------------------------------------------------------------------ MediaPipe
def mediapipe_python(explicit: str | None) -> str | None:
    """The Python that runs FaceMesh: ``explicit``, else this interpreter when it has mediapipe, else None."""
    if explicit:
        return explicit
    try:
        if importlib.util.find_spec("mediapipe") is not None:
            return sys.executable
    except (ImportError, ValueError):
        pass
    return None


def run_mediapipe(python: str, root: str | Path, videos: dict[str, tuple[int, int]], out_npz: Path,
                  progress: bool = False) -> dict:
    """Run ``tools/run_mediapipe_peer.py`` with ``python`` on ``videos`` (id -> (start, stop) frames); return
    ``{"meta": {...}, "videos": {id: {"points468" (T, 468, 2) px, NaN = no face, "seconds", "size"}}}``."""
    if not MEDIAPIPE_SCRIPT.is_file():
        raise DataError(f"{MEDIAPIPE_SCRIPT}: the MediaPipe runner is missing (a source checkout has it)")
    cmd = [python, str(MEDIAPIPE_SCRIPT), "--data", str(root), "--out", str(out_npz),
           "--videos", *[f"{v}:{a}:{b}" for v, (a, b) in videos.items()]]
    if progress:
        cmd.append("--progress")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    lines: list[str] = []
    try:
        with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
            for line in proc.stderr:  # TFLite's log lines are dropped; the runner's progress lines are shown
                lines.append(line.rstrip())
                if progress and line.startswith("mediapipe "):
                    print(line.rstrip(), file=sys.stderr, flush=True)
    except OSError as e:
        raise UsageError(f"--mediapipe-python {python}: cannot run it ({e.strerror or e})") from None
    if proc.returncode != 0:
        lines = [ln for ln in lines if ln.strip()]
        raise DataError(f"MediaPipe runner failed (exit {proc.returncode}): {lines[-1] if lines else 'no message'}")
    out: dict = {"meta": {}, "videos": {}}
    with np.load(out_npz, allow_pickle=False) as z:
        for key in z.files:
            head, name = key.split("/", 1)
            if head == "meta":
                out["meta"][name] = z[key].item()
            else:
                out["videos"].setdefault(head, {})[name] = z[key]
    return out


class MediaPipeUnavailable(Exception):
    """MediaPipe cannot run here: the peer is skipped with a one-line message."""


def check_mediapipe(python: str | None) -> str:
    """The mediapipe version ``python`` imports, or :class:`MediaPipeUnavailable` saying why not."""
    if python is None:
        raise MediaPipeUnavailable(
            f"no Python with mediapipe here; give --mediapipe-python PY (a separate environment: mediapipe=="
            f"{MEDIAPIPE_VERSION} needs numpy<2; see tools/run_mediapipe_peer.py)")
    try:
        proc = subprocess.run([python, "-c", "import mediapipe, numpy; print(mediapipe.__version__, "
                               "numpy.__version__)"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MediaPipeUnavailable(f"--mediapipe-python {python}: cannot run it ({e})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise MediaPipeUnavailable(f"--mediapipe-python {python} cannot import mediapipe ({last})")
    return proc.stdout.split()[0]


# ------------------------------------------------------------------------------------------------ scoring
def still_segments(seq) -> list[tuple[int, int]] | None:
    """Synth300VW's still segments ``(start, stop)`` from ``params.npz`` ``still`` (None for real 300VW)."""
    path = Path(seq.path) / "params.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        if "still" not in z.files:
            return None
        m = np.asarray(z["still"], bool)
    edges = np.flatnonzero(np.diff(np.r_[0, m.astype(int), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _clip_segments(segs: list[tuple[int, int]] | None, start: int, stop: int) -> list[tuple[int, int]] | None:
    if segs is None:
        return None
    out = [(max(a, start) - start, min(b, stop) - start) for a, b in segs]
    return [(a, b) for a, b in out if b - a >= 1]


def score_streams(streams: dict[str, dict]) -> dict:
    """Score peer streams with the project's metrics, in the :mod:`tdd_lite.report` layout.

    ``streams``: ``{video: {"category", "gt" (T, 68, 2), "pred" (T, 68, 2), "status" [T], "seconds",
    "still" (optional segments)}}``. Returns ``{"categories": {cat: category_metrics row + fps,
    missed_frames, redetections, seconds}, "videos": {video: video_metrics row + category, fps,
    missed_frames}, "frame_nme": {cat: [per-frame NME of frames with ground truth]}}``.
    """
    rows: dict[str, list[dict]] = {}
    res: dict = {"categories": {}, "videos": {}, "frame_nme": {}}
    for vid, st in streams.items():
        cat = st["category"]
        pred, gt = np.asarray(st["pred"], np.float64), np.asarray(st["gt"], np.float64)
        row = video_metrics(pred, gt, still_segments=st.get("still"))
        status = list(st.get("status", []))
        row.update(category=cat, missed_frames=sum(s in MISSED for s in status),
                   redetections=sum(s == "redetected" for s in status), seconds=float(st.get("seconds", 0.0)),
                   processed=len(status))
        row["fps"] = row["processed"] / row["seconds"] if row["seconds"] > 0 else None
        rows.setdefault(cat, []).append(row)
        res["videos"][vid] = row
        e = frame_nme(pred, gt)
        res["frame_nme"].setdefault(cat, []).extend(float(x) for x in e[np.isfinite(e)])
    for cat, rs in rows.items():
        c = category_metrics(rs)
        secs = sum(r["seconds"] for r in rs)
        c.update(missed_frames=sum(r["missed_frames"] for r in rs), redetections=sum(r["redetections"] for r in rs),
                 seconds=round(secs, 3), fps=(sum(r["processed"] for r in rs) / secs if secs > 0 else None))
        res["categories"][cat] = c
    return res


ROW_KEYS = ("nme", "dnme", "jitter_ratio", "lag", "lost_tracks", "lost_frames", "missed_frames", "frames",
            "videos", "fps")


def flat_rows(methods: dict[str, dict]) -> list[dict]:
    """``[{method, category, nme, dnme, jitter_ratio, lag, lost_tracks, lost_frames, missed_frames, frames,
    videos, fps}]`` (fractions, as in every results dict; x100 for %)."""
    out = []
    for name, m in methods.items():
        for cat, row in m["categories"].items():
            out.append({"method": name, "category": cat, **{k: row.get(k) for k in ROW_KEYS}})
    return out


# ------------------------------------------------------------------------------------------------ driver
def _load(root: Path, groups: dict[str, list[str]], skip_bad: bool, max_frames: int | None) -> list[dict]:
    """Per video: sequence, category, (start, stop) like ``evaluate`` (first frame with ground truth)."""
    items = []
    for cat, ids in groups.items():
        for seq in load_split(root, ids, skip_bad=skip_bad):
            gt = seq.landmarks
            valid = np.isfinite(gt).all(axis=(1, 2))
            if not valid.any():
                continue
            start = int(np.argmax(valid))
            stop = len(gt) if max_frames is None else min(len(gt), start + max_frames)
            items.append({"seq": seq, "category": cat, "start": start, "stop": stop})
    if not items:
        ids = [v for vs in groups.values() for v in vs]
        raise DataError(f"{root}: no frame with a usable ground truth in video(s) {' '.join(ids[:8])}"
                        f"{' ...' if len(ids) > 8 else ''}; NME is undefined")
    return items


def _frames(item: dict) -> list[np.ndarray]:
    frames = [f for k, f in enumerate(item["seq"].frames()) if item["start"] <= k < item["stop"]]
    if not frames:
        raise DataError(f"{item['seq'].video_path}: no frame could be decoded")
    return frames


def run_peers(root: str | Path, groups: dict[str, list[str]], peers: Iterable[str] = PEERS,
              mediapipe_py: str | None = None, upsample: int = 0, max_frames: int | None = None,
              skip_bad: bool = False, progress: bool = True,
              say: Callable[[str], None] = print) -> dict:
    """Run each peer on every video of ``groups`` (category -> ids) and score it (:func:`score_streams`).

    Returns ``{"meta", "methods": {name: report-layout entry}, "rows": flat_rows, "skipped": {peer: why}}``.
    A missing dlib is a :class:`UsageError` naming the extra; an unavailable MediaPipe is skipped with one line
    through ``say``.
    """
    peers = list(dict.fromkeys(peers))
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise UsageError(f"unknown peer {unknown[0]!r}: expected one of {', '.join(PEERS)}")
    root = Path(root)
    items = _load(root, groups, skip_bad, max_frames)
    meta: dict = {"data": str(root), "videos": len(items), "upsample": upsample,
                  "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs",
                  "python": platform.python_version(), "numpy": np.__version__}
    methods: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    dlib_peers = [p for p in peers if p.startswith("dlib")]
    if dlib_peers:
        dlib_models()  # a missing extra is one line before any work
        meta["dlib"] = dlib_version()
        meta["shape_predictor"] = shape_predictor_path().name
        meta["dlib_rect_from_landmarks"] = vars(DLIB_RECT_FROM_LMK)
    mp_points: dict | None = None
    if "mediapipe" in peers:
        py = mediapipe_python(mediapipe_py)
        try:
            meta["mediapipe"] = check_mediapipe(py)
        except MediaPipeUnavailable as e:
            skipped["mediapipe"] = str(e)
            say(f"peer 'mediapipe' skipped: {e}")
        else:
            with tempfile.TemporaryDirectory(prefix="tdd_lite-mediapipe-") as tmp:
                t0 = time.perf_counter()
                mp_points = run_mediapipe(py, root, {it["seq"].name: (it["start"], it["stop"]) for it in items},
                                          Path(tmp) / "mediapipe.npz", progress=progress)
                meta["mediapipe_wall_seconds"] = round(time.perf_counter() - t0, 1)
            meta["mediapipe_python"] = py
            meta.update({f"mediapipe_env_{k}": v for k, v in mp_points["meta"].items()})
    streams: dict[str, dict[str, dict]] = {p: {} for p in peers if p not in skipped}
    t_all = time.perf_counter()
    for it in tqdm(items, desc="peers", disable=not progress):
        seq, start, stop = it["seq"], it["start"], it["stop"]
        gt = seq.landmarks[start:stop]
        still = _clip_segments(still_segments(seq), start, stop)
        frames = _frames(it) if dlib_peers else None
        if frames is not None and len(frames) != len(gt):
            raise DataError(f"{seq.video_path}: decoded {len(frames)} frames from {start} on, the annotations "
                            f"have {len(gt)}")
        for p in dlib_peers:
            r = DlibPeer("frame" if p == "dlib-frame" else "tracked", upsample=upsample).run(frames)
            streams[p][seq.name] = {"category": it["category"], "gt": gt, "pred": r.landmarks,
                                    "status": r.status, "seconds": r.seconds, "still": still}
        if mp_points is not None:
            v = mp_points["videos"].get(seq.name)
            if v is None:
                raise DataError(f"the MediaPipe runner returned nothing for video {seq.name}")
            pts = np.asarray(v["points468"], np.float64)
            if len(pts) != len(gt):
                raise DataError(f"{seq.video_path}: MediaPipe decoded {len(pts)} frames from {start} on, the "
                                f"annotations have {len(gt)}")
            w, h = (int(x) for x in v["size"])
            found = np.isfinite(pts).all(axis=(1, 2))
            lmk, status = fill_missing(mediapipe_to_ibug68(pts), found, h, w)
            streams["mediapipe"][seq.name] = {"category": it["category"], "gt": gt, "pred": lmk,
                                              "status": status, "seconds": float(v["seconds"]), "still": still}
    meta["wall_seconds"] = round(time.perf_counter() - t_all + meta.get("mediapipe_wall_seconds", 0.0), 1)
    for p, st in streams.items():
        methods[METHOD_NAMES[p]] = score_streams(st)
    meta["frames"] = sum(it["stop"] - it["start"] for it in items)
    return {"meta": meta, "methods": methods, "rows": flat_rows(methods), "skipped": skipped}


# ------------------------------------------------------------------------------------------------ output
_MD_COLS = (("nme", "NME %", "pct"), ("dnme", "dNME %", "pct"), ("jitter_ratio", "jitter", "num"),
            ("lag", "lag (frames)", "num"), ("lost_tracks", "lost tracks", "int"),
            ("lost_frames", "lost frames", "int"), ("missed_frames", "missed frames", "int"),
            ("frames", "frames", "int"), ("videos", "videos", "int"), ("fps", "frames/s", "fps"))


def markdown(results: dict) -> str:
    meta = results["meta"]
    parts = ["# Peers on the same frames", "",
             "Off-the-shelf 68-point landmarkers on the test videos, scored with `tdd_lite.metrics` exactly like "
             "`tdd-lite evaluate` (NME normalised by sqrt(w*h) of the ground-truth box). Frames without a "
             "detection are scored (previous landmarks carried, or the centred mean face before the first) and "
             "counted as missed frames. MediaPipe's 68 points are an approximation (a fixed 468->68 index table; "
             "its jaw is not iBUG's).", "",
             "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in meta.items() if not isinstance(v, dict)]
    parts.append("")
    for peer, why in results.get("skipped", {}).items():
        parts += [f"Skipped: {peer}: {why}", ""]
    if results["methods"]:
        parts += ["## NME (%) by category", "", paper_table(results), ""]
        parts += ["## Every metric", "", "| method | category | " + " | ".join(h for _, h, _ in _MD_COLS) + " |",
                  "|---|---|" + "---|" * len(_MD_COLS)]
        for row in results["rows"]:
            cells = [fmt(row[k], kd) if kd != "fps" else "-" if row[k] is None else f"{row[k]:.1f}"
                     for k, _, kd in _MD_COLS]
            parts.append(f"| {row['method']} | {row['category']} | " + " | ".join(cells) + " |")
        parts += ["", "## Per video", "", "| method | video | category | NME % | dNME % | jitter | lost tracks | "
                  "missed frames | frames/s |", "|---|---|---|---|---|---|---|---|---|"]
        for name, m in results["methods"].items():
            for vid, r in m["videos"].items():
                fps = "-" if r["fps"] is None else f"{r['fps']:.1f}"
                parts.append(f"| {name} | {vid} | {r['category']} | {fmt(r['nme'], 'pct')} | {fmt(r['dnme'], 'pct')} "
                             f"| {fmt(r['jitter_ratio'], 'num')} | {r['lost_tracks']} | {r['missed_frames']} | {fps} |")
    return "\n".join(parts) + "\n"


def write_peers(results: dict, out: str | os.PathLike) -> dict[str, Path]:
    """``OUT/peers.json`` (without the per-frame NME lists) and ``OUT/peers.md``, each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    slim = {**results, "methods": {n: {k: v for k, v in m.items() if k != "frame_nme"}
                                   for n, m in results["methods"].items()}}
    paths = {"json": out / "peers.json", "md": out / "peers.md"}
    atomic_write(paths["json"], json.dumps(slim, indent=1, default=float) + "\n")
    atomic_write(paths["md"], markdown(results))
    return paths


# ------------------------------------------------------------------------------------------------ command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="300VW-layout folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                       help="test categories (default: A B C; 'test' = A+B+C)")
    which.add_argument("--videos", nargs="+", default=None, metavar="ID", help="these video folders, as one group")
    which.add_argument("--all", action="store_true", help="every NNN/ video folder of --data, as one group")
    p.add_argument("--out", required=True, help="write peers.json and peers.md into this folder")
    p.add_argument("--peers", nargs="+", default=list(PEERS), metavar="PEER",
                   help=f"which peers: {' '.join(PEERS)} (default: all; mediapipe is skipped with a message "
                        "when no Python with mediapipe is found)")
    p.add_argument("--mediapipe-python", default=None, metavar="PY",
                   help=f"a Python with mediapipe=={MEDIAPIPE_VERSION} and numpy<2 (a separate venv); default: "
                        "this one, if it has mediapipe")
    p.add_argument("--upsample", type=int, choices=(0, 1, 2), default=0,
                   help="dlib detector upsampling (0: faces from ~80 px, the default; 1: smaller faces, ~4x slower)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="at most N frames per video (>= 1)")
    p.add_argument("--skip-bad-frames", action="store_true",
                   help="skip frames with a bad .pts (as `check-data --skip-bad-frames`) instead of failing")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    unknown = [x for x in args.peers if x not in PEERS]
    if unknown:
        raise UsageError(f"--peers {unknown[0]}: expected one of {', '.join(PEERS)}")
    data = Path(args.data)
    if data.exists() and not data.is_dir():
        raise DataError(f"--data {data}: is a file, expected a 300VW-layout folder")
    groups = select_videos(data, splits=args.splits, videos=args.videos, all_videos=args.all)
    if any(x.startswith("dlib") for x in args.peers):
        dlib_models()
    require_valid(data, [v for ids in groups.values() for v in ids], skip_bad=args.skip_bad_frames,
                  command="peers")
    t0 = time.time()
    results = run_peers(data, groups, args.peers, mediapipe_py=args.mediapipe_python, upsample=args.upsample,
                        max_frames=args.max_frames, skip_bad=args.skip_bad_frames, progress=not args.no_progress)
    results["meta"]["total_wall_seconds"] = round(time.time() - t0, 1)
    for row in results["rows"]:
        fps = "-" if row["fps"] is None else f"{row['fps']:.1f}"
        print(f"{row['category']}: {row['method']}: NME {100 * row['nme']:.3f}% over {row['frames']} frames "
              f"({row['videos']} videos), dNME {100 * row['dnme']:.3f}%, jitter {row['jitter_ratio']:.3f}, "
              f"lost tracks {row['lost_tracks']}, missed frames {row['missed_frames']}, {fps} frames/s")
    paths = write_peers(results, args.out)
    print(f"peers: {paths['json']} (+ peers.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tdd_lite.peers``: one-line errors like every ``tdd-lite`` command."""
    return module_main("python -m tdd_lite.peers", add_arguments, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
