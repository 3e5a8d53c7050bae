"""First-frame face detectors for tracking (paper section 4.1: "the first frame was cropped based on landmarks
detected using ... MTCNN").

* ``mtcnn`` (the paper's detector, the default): facenet-pytorch's MTCNN, whose P/R/O-net weights ship inside
  its wheel (nothing is downloaded). Its wheel pins torch < 2.3 and numpy < 2, which we do not use, so it is not
  a declared dependency: the Makefile installs it with ``pip install --no-deps facenet-pytorch==2.6.0`` (the code
  it runs needs only torch, torchvision, numpy and Pillow, which we pin). Without it, asking for ``mtcnn``
  stops before any work with one line giving that command (or ``--detector haar``): :func:`require_mtcnn`.
  Its weights are plain state dicts that torch >= 2.6 loads with ``weights_only=True`` by default;
  :func:`_mtcnn` refuses an older torch.
* ``haar``: OpenCV's Haar cascades (``haarcascade_frontalface_default.xml``, falling back to
  ``haarcascade_profileface.xml`` on the image and its mirror), inside ``opencv-python-headless`` 4.x
  (``cv2.data.haarcascades``); the fallback when MTCNN finds nothing on the first frame. (OpenCV 5 removed
  these cascades; pyproject pins 4.x.)

A detector's box is not our landmark box: Haar's square covers roughly brows to upper lip and is smaller than
the 68 landmarks' bounding box; MTCNN's box runs from the forehead to the chin. :data:`HAAR_TO_LMK` (and
:data:`MTCNN_TO_LMK`) map it (centre offset and size ratio, in units of the
detector box width) to an estimate of the landmarks' box; :func:`fit_box_mapping` re-fits it from any
sequences with ground truth. The constants below were fitted with ``fit_box_mapping`` on 109 frontal-ish
(|yaw| < 20 deg) frames of 16 category-A Synth300VW videos (seed 11, 256x256, teaching 3DMM); there the cascade
fired on 159/160 frames and the mapped box's centre was off by 4.6% (median; 90th percentile 7.2%) of the
GT box side, size ratio 1.00. Real faces have hair, ears and neck the renders lack, so on real 300VW re-fit
the constants with the same function (the tracking only needs the first crop to be roughly right).

``mode="gt"`` returns the box of the ground-truth landmarks instead (controlled experiments that remove the
detector as a source of error).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from tdd_lite.data.crops import DEFAULT_ENLARGE, box_from_landmarks, landmark_bbox, square_box
from tdd_lite.errors import UsageError


@dataclass(frozen=True)
class BoxMapping:
    """Detector box ``(x, y, w, h)`` -> estimated landmark box: centre ``(x + w/2 + dx*w, y + h/2 + dy*w)``,
    side ``scale * w`` (the longer side of the landmarks' bounding box)."""

    dx: float
    dy: float
    scale: float

    def apply(self, rect: np.ndarray) -> np.ndarray:
        x, y, w, h = (float(v) for v in rect)
        return square_box(np.float64(x + w / 2 + self.dx * w), np.float64(y + h / 2 + self.dy * w),
                          np.float64(self.scale * w))


HAAR_TO_LMK = BoxMapping(dx=0.0, dy=0.16, scale=0.80)
# Fitted like HAAR_TO_LMK with fit_box_mapping(..., rects=mtcnn_rects, kind="mtcnn") on frames 0 and T/2 of 40
# training videos of the fast Synth300VW set (seed 0, 256x256): MTCNN fired on 67/80 frames (Haar's frontal
# cascade on 48/80); fitted dx -0.005, dy 0.177, scale 1.029 (dx rounded to 0). Re-fit on real 300VW.
MTCNN_TO_LMK = BoxMapping(dx=0.0, dy=0.177, scale=1.03)
DETECTORS = ("mtcnn", "haar", "gt")
PROFILE_TO_LMK = BoxMapping(dx=0.0, dy=0.13, scale=0.72)  # few samples (12): rough

_CASCADES: dict[str, cv2.CascadeClassifier] = {}


def _cascade(name: str) -> cv2.CascadeClassifier:
    if name not in _CASCADES:
        path = cv2.data.haarcascades + name
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise FileNotFoundError(f"OpenCV cascade {path} missing (opencv-python-headless 4.x ships it)")
        _CASCADES[name] = c
    return _CASCADES[name]


def haar_rects(image: np.ndarray, min_frac: float = 0.1) -> list[tuple[np.ndarray, str]]:
    """All raw detections ``((x, y, w, h), kind)`` on an RGB uint8 image: frontal first, then profiles."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got {image.shape}")
    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    h, w = gray.shape
    mn = max(20, int(min_frac * min(h, w)))
    out: list[tuple[np.ndarray, str]] = []
    for neighbours in (5, 3):
        rects = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=neighbours, minSize=(mn, mn))
        out += [(np.asarray(r, float), "frontal") for r in rects]
        if out:
            return out
    prof = _cascade("haarcascade_profileface.xml")
    for flip in (False, True):
        g = gray[:, ::-1].copy() if flip else gray
        for r in prof.detectMultiScale(g, scaleFactor=1.1, minNeighbors=4, minSize=(mn, mn)):
            r = np.asarray(r, float)
            if flip:
                r[0] = w - r[0] - r[2]
            out.append((r, "profile"))
    return out


_MTCNN: dict[str, object] = {}
MTCNN_MIN_PROB = 0.9


FACENET_PIP = "pip install --no-deps facenet-pytorch==2.6.0"
MTCNN_MISSING = (f"detector 'mtcnn' (the default) needs facenet-pytorch, which is not installed: {FACENET_PIP} "
                 "(make install does this), or pass --detector haar")


def _facenet_import_error() -> ImportError | None:
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError as e:
        return e
    return None


def mtcnn_available() -> bool:
    """True when facenet-pytorch is importable (``make install`` puts it in the venv)."""
    return _facenet_import_error() is None


def require_mtcnn() -> None:
    """Raise :class:`~tdd_lite.errors.UsageError` with :data:`MTCNN_MISSING` (one line: the pip command, or
    ``--detector haar``) when facenet-pytorch is missing, or one naming the module it lacks when it is installed
    but does not import (it imports ``requests``, a declared dependency for that reason). Called before any
    work starts (``Tracker``), so a run asking for the paper's detector never silently gets another one."""
    err = _facenet_import_error()
    if err is None:
        return
    if err.name in (None, "facenet_pytorch"):
        raise UsageError(MTCNN_MISSING) from err
    raise UsageError(f"detector 'mtcnn': facenet-pytorch is installed but does not import ({err}): "
                     f"pip install {err.name.split('.')[0]}, or pass --detector haar") from err


def _mtcnn():
    if "net" not in _MTCNN:
        if tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 6):
            raise RuntimeError("MTCNN needs torch >= 2.6 (whose torch.load defaults to weights_only=True)")
        require_mtcnn()
        from facenet_pytorch import MTCNN

        _MTCNN["net"] = MTCNN(keep_all=True, device="cpu", post_process=False)
    return _MTCNN["net"]


def mtcnn_rects(image: np.ndarray, min_frac: float = 0.1) -> list[tuple[np.ndarray, str]]:
    """MTCNN detections ``((x, y, w, h), "mtcnn")`` with probability >= :data:`MTCNN_MIN_PROB`, on RGB uint8."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got {image.shape}")

    net = _mtcnn()
    net.min_face_size = max(12, int(min_frac * min(image.shape[:2])))
    with torch.no_grad():
        boxes, probs = net.detect(np.ascontiguousarray(image))
    if boxes is None:
        return []
    return [(np.array([b[0], b[1], b[2] - b[0], b[3] - b[1]], float), "mtcnn")
            for b, p in zip(boxes, probs) if p is not None and p >= MTCNN_MIN_PROB and b[2] > b[0] and b[3] > b[1]]


def detect_box(image: np.ndarray, mode: str = "haar", gt_lmk: np.ndarray | None = None,
               enlarge: float = DEFAULT_ENLARGE) -> np.ndarray | None:
    """The first-frame crop box ``(x0, y0, x1, y1)`` (our convention: square, ``enlarge`` x landmark box).

    ``mode="mtcnn"`` / ``"haar"``: the largest detection mapped by :data:`MTCNN_TO_LMK` / :data:`HAAR_TO_LMK`;
    ``None`` if nothing is found (never a guess: the caller decides the fallback).
    ``mode="gt"``: ``box_from_landmarks(gt_lmk, enlarge)``.
    """
    if mode == "gt":
        if gt_lmk is None:
            raise ValueError("mode='gt' needs gt_lmk, the (68, 2) ground-truth landmarks of this frame")
        return np.asarray(box_from_landmarks(np.asarray(gt_lmk, dtype=np.float64), enlarge))
    if mode not in ("haar", "mtcnn"):
        raise ValueError(f"mode must be one of {DETECTORS}, got {mode!r}")
    found = mtcnn_rects(image) if mode == "mtcnn" else haar_rects(image)
    if not found:
        return None
    rect, kind = max(found, key=lambda rk: rk[0][2] * rk[0][3])
    mapping = {"frontal": HAAR_TO_LMK, "profile": PROFILE_TO_LMK, "mtcnn": MTCNN_TO_LMK}[kind]
    lmk_box = mapping.apply(rect)
    side = (lmk_box[2] - lmk_box[0]) * enlarge
    c = (lmk_box[:2] + lmk_box[2:]) / 2
    return square_box(c[0], c[1], side)


def fit_box_mapping(samples: Iterable[tuple[np.ndarray, np.ndarray]], rects=None, kind: str = "frontal"
                    ) -> tuple[BoxMapping, int]:
    """Fit :class:`BoxMapping` from ``(image, gt_lmk)`` pairs: median offsets and size ratio over frames where
    the detector (``rects``, default :func:`haar_rects`; detections of ``kind``) fires on the face (detection
    centre inside the landmark box). Returns (mapping, n)."""
    rects = haar_rects if rects is None else rects
    dxs, dys, scales = [], [], []
    for image, lmk in samples:
        found = [r for r, k in rects(image) if k == kind]
        bb = landmark_bbox(np.asarray(lmk, float))
        for x, y, w, h in found:
            cx, cy = x + w / 2, y + h / 2
            if bb[0] < cx < bb[2] and bb[1] < cy < bb[3]:
                side = max(bb[2] - bb[0], bb[3] - bb[1])
                dxs.append(((bb[0] + bb[2]) / 2 - cx) / w)
                dys.append(((bb[1] + bb[3]) / 2 - cy) / w)
                scales.append(side / w)
                break
    if not scales:
        raise ValueError("the detector fired on none of the samples; cannot fit a mapping")
    return BoxMapping(float(np.median(dxs)), float(np.median(dys)), float(np.median(scales))), len(scales)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def hit_rate(samples: Iterable[tuple[np.ndarray, np.ndarray]], mode: str, min_iou: float = 0.5,
             enlarge: float = DEFAULT_ENLARGE) -> dict:
    """How often ``detect_box(image, mode)`` lands on the face: ``{"frames", "fired", "hits", "hit_rate"}``.

    A hit is a box whose IoU with the ground-truth crop box (``box_from_landmarks(gt, enlarge)``) is at least
    ``min_iou``; a detection elsewhere (a false positive) counts as fired but not as a hit.
    """
    frames = fired = hits = 0
    for image, lmk in samples:
        frames += 1
        box = detect_box(image, mode, enlarge=enlarge)
        if box is None:
            continue
        fired += 1
        hits += box_iou(box, box_from_landmarks(np.asarray(lmk, np.float64), enlarge)) >= min_iou
    return {"frames": frames, "fired": fired, "hits": int(hits), "hit_rate": hits / frames if frames else None}
