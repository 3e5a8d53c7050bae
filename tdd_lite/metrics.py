"""Evaluation metrics: NME (paper section 4.2) and the cumulative error distribution (CED) / AUC.

``nme(pred, gt)`` is the per-sample normalised mean error::

    NME = (1/68) * sum_l ||pred_l - gt_l||_2 / d

* ``norm="bbox"`` (the paper, after [15, 24, 25]): ``d = sqrt(w * h)`` of the rectangular hull (axis-aligned
  bounding box) of the 68 *ground-truth* landmarks.
* ``norm="interocular"`` (the 300VW challenge and most of its literature): ``d`` = distance between the outer
  eye corners, iBUG points 37 and 46 (0-based 36 and 45).

Multiply by 100 for the percentages of the paper's Table 2. Works on numpy arrays and torch tensors of shape
``(..., 68, 2)`` and returns shape ``(...)`` (a torch result keeps the graph).

Video metrics (notebook 07 explains each), on a prediction ``p`` and ground
truth ``g`` of shape ``(T, N, 2)`` in image pixels, ``d_t`` = the bbox normaliser of ``g_t``; every value is a
fraction (x100 for percent) unless it says pixels, frames or millimetres. Means run over the landmarks, then the
frames, then (:func:`category_metrics`) over the frames of all videos of a category:

* :func:`frame_nme` NME (bbox or io) per frame; AUC@0.08 and failure rate from its CED (:func:`ced_auc`,
  :func:`failure_rate`).
* :func:`dnme` mean_l |(p_t - p_t-1) - (g_t - g_t-1)| / d_t over t >= 1 (error of the motion).
* :func:`accel_error` mean_l |(p_t+1 - 2 p_t + p_t-1) - (g_t+1 - 2 g_t + g_t-1)| / d_t.
* :func:`jitter_ratio` sum_t,l |p_t+1 - 2 p_t + p_t-1| / sum_t,l |g_t+1 - 2 g_t + g_t-1| (1 = as smooth as g).
* :func:`static_spread` on still segments ``(start, stop)``: RMS over frames and landmarks of
  |p_t,l - mean_segment(p)_l| / d_t.
* :func:`lag` the shift k in [-5, 5] maximising the correlation of predicted and true centroid velocity;
  positive k = the prediction lags behind the truth (``p_t ~ g_t-k``).
* :func:`lost_tracks` runs of >= 10 frames with NME > 0.2: (count, frames lost).
* Synth300VW, in millimetres of the morphable model: :func:`identity_spread`, :func:`expression_error`,
  :func:`landmark3d_error`.
* :func:`video_metrics` one table row per video; :func:`category_metrics` the frame-weighted category row.

Missing ground truth: a frame whose ``g_t`` has any NaN/inf is skipped (as ``evaluate.py`` skips it for NME);
a difference term is computed only when every frame it uses has ground truth. A non-finite prediction on a
frame with ground truth, a shape mismatch or nothing left to average raise :class:`tdd_lite.errors.DataError`
(never a silent NaN). In a :func:`video_metrics` row, a metric that is undefined for that video (no still
segment, a truth without acceleration for the jitter ratio, ...) is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tdd_lite.camera import pose_from_camera
from tdd_lite.errors import DataError, UsageError

Array = Any  # np.ndarray | torch.Tensor

OUTER_EYE_CORNERS = (36, 45)  # 0-based iBUG indices of the outer eye corners (right eye 37, left eye 46 1-based)


def _norm(x: Array) -> Array:
    if isinstance(x, torch.Tensor):
        return torch.linalg.vector_norm(x, dim=-1)
    return np.linalg.norm(x, axis=-1)


def normaliser(gt: Array, norm: str = "bbox") -> Array:
    """The distance ``d`` NME divides by, per sample: ``(..., 68, 2) -> (...)``."""
    if gt.ndim < 2 or gt.shape[-1] != 2:
        raise DataError(f"gt must have shape (..., N, 2), got {tuple(gt.shape)}")
    if norm == "bbox":
        if isinstance(gt, torch.Tensor):
            ext = gt.amax(dim=-2) - gt.amin(dim=-2)
            return torch.sqrt(ext[..., 0] * ext[..., 1])
        ext = gt.max(axis=-2) - gt.min(axis=-2)
        return np.sqrt(ext[..., 0] * ext[..., 1])
    if norm == "interocular":
        if gt.shape[-2] != 68:
            raise DataError(f"interocular normalisation needs the 68 iBUG landmarks, got {gt.shape[-2]} points")
        a, b = OUTER_EYE_CORNERS
        return _norm(gt[..., a, :] - gt[..., b, :])
    raise UsageError(f"norm must be 'bbox' or 'interocular', got {norm!r}")


def nme(pred: Array, gt: Array, norm: str = "bbox") -> Array:
    """Per-sample NME of ``(..., N, 2)`` predictions against ground truth (a fraction; x100 for percent)."""
    if tuple(pred.shape) != tuple(gt.shape):
        raise DataError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must have the same shape")
    return _norm(pred - gt).mean(-1) / normaliser(gt, norm)


def ced_curve(errors: Array, thresholds: Array) -> np.ndarray:
    """Cumulative error distribution: fraction of samples with error <= each threshold."""
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    t = np.asarray(thresholds, dtype=np.float64)
    return (e[None, :] <= t.reshape(-1, 1)).mean(axis=1).reshape(t.shape)


def ced_auc(errors: Array, threshold: float) -> float:
    """Area under the CED curve on ``[0, threshold]``, normalised to [0, 1] (1 = every error is 0).

    Computed exactly, not on a grid: ``(1/T) int_0^T F(e) de = mean_i max(0, T - e_i) / T`` because
    sample ``i`` contributes to ``F(e)`` for every ``e >= e_i``.
    """
    if not threshold > 0:
        raise UsageError(f"threshold must be > 0, got {threshold}")
    e = _errors_1d(errors)
    return float(np.mean(np.maximum(0.0, threshold - e)) / threshold)


def failure_rate(errors: Array, threshold: float) -> float:
    """Fraction of samples whose error exceeds ``threshold`` (the usual companion of the AUC)."""
    return float(np.mean(_errors_1d(errors) > threshold))


def _errors_1d(errors: Array) -> np.ndarray:
    e = _np(errors).reshape(-1)
    if e.size == 0:
        raise DataError("errors is empty")
    if not np.isfinite(e).all():
        raise DataError("errors contains NaN or infinite values")
    return e


# ============================================================================ video metrics
AUC_THRESHOLD = 0.08  # AUC@0.08 and failure = NME > 0.08
LOST_THRESHOLD = 0.2  # a lost frame: NME > 0.2
LOST_MIN_RUN = 10  # a lost track: >= 10 consecutive lost frames
MAX_LAG = 5  # lag searched in [-5, 5] frames


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"expected a numeric array, got {type(x).__name__} ({e})") from e


class _Stream:
    """Checked ``(T, N, 2)`` prediction and ground truth: frames with ground truth and their normalisers."""

    def __init__(self, pred: Array, gt: Array):
        p, g = _np(pred), _np(gt)
        if g.ndim != 3 or g.shape[2] != 2:
            raise DataError(f"gt must have shape (T, N, 2), got {g.shape}")
        if p.shape != g.shape:
            raise DataError(f"pred {p.shape} and gt {g.shape} must have the same shape")
        if g.shape[0] == 0 or g.shape[1] == 0:
            raise DataError(f"empty landmark stream, shape {g.shape}")
        valid = np.isfinite(g).all(axis=(1, 2))
        if not valid.any():
            raise DataError(f"gt has no frame with finite landmarks ({g.shape[0]} frames)")
        bad = valid & ~np.isfinite(p).all(axis=(1, 2))
        if bad.any():
            raise DataError(f"pred has NaN or infinite values at frame {int(np.argmax(bad))}, which has ground "
                            "truth (fill or drop lost frames before computing metrics)")
        d = np.full(g.shape[0], np.nan)
        d[valid] = normaliser(g[valid])
        small = valid & ~(d > 0)
        if small.any():
            raise DataError(f"gt frame {int(np.argmax(small))} has a degenerate (zero-area) landmark box")
        self.p, self.g, self.valid, self.d = p, g, valid, d
        self.T, self.N = g.shape[0], g.shape[1]

    def frame_nme(self, norm: str = "bbox") -> np.ndarray:
        out = np.full(self.T, np.nan)
        v = self.valid
        d = self.d[v] if norm == "bbox" else normaliser(self.g[v], norm)
        if norm != "bbox" and not (d > 0).all():
            raise DataError(f"gt frame {int(np.flatnonzero(v)[np.argmax(~(d > 0))])} has coincident outer eye "
                            "corners (inter-ocular distance 0)")
        out[v] = np.linalg.norm(self.p[v] - self.g[v], axis=-1).mean(-1) / d
        return out

    def diff1(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames t >= 1 with ground truth at t-1 and t: (t, p_t - p_t-1, g_t - g_t-1)."""
        t = np.flatnonzero(self.valid[1:] & self.valid[:-1]) + 1
        return t, self.p[t] - self.p[t - 1], self.g[t] - self.g[t - 1]

    def diff2(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames 1 <= t <= T-2 with ground truth at t-1, t, t+1: (t, second difference of p, of g)."""
        v = self.valid
        t = np.flatnonzero(v[2:] & v[1:-1] & v[:-2]) + 1
        return (t, self.p[t + 1] - 2 * self.p[t] + self.p[t - 1],
                self.g[t + 1] - 2 * self.g[t] + self.g[t - 1])


def frame_nme(pred: Array, gt: Array, norm: str = "bbox") -> np.ndarray:
    """Per-frame NME of a ``(T, N, 2)`` stream, shape ``(T,)``; NaN marks the frames without ground truth."""
    return _Stream(pred, gt).frame_nme(norm)


def _dnme(s: _Stream) -> tuple[float, int]:
    t, dp, dg = s.diff1()
    if t.size == 0:
        return 0.0, 0
    return float(np.sum(np.linalg.norm(dp - dg, axis=-1).mean(-1) / s.d[t])), int(t.size)


def _accel(s: _Stream) -> tuple[float, int]:
    t, ap, ag = s.diff2()
    if t.size == 0:
        return 0.0, 0
    return float(np.sum(np.linalg.norm(ap - ag, axis=-1).mean(-1) / s.d[t])), int(t.size)


def _jitter(s: _Stream) -> tuple[float, float, int]:
    t, ap, ag = s.diff2()
    return float(np.linalg.norm(ap, axis=-1).sum()), float(np.linalg.norm(ag, axis=-1).sum()), int(t.size)


def dnme(pred: Array, gt: Array) -> float:
    """Displacement NME: mean over t >= 1 of mean_l |(p_t - p_t-1) - (g_t - g_t-1)|_l / d_t (a fraction)."""
    total, n = _dnme(_Stream(pred, gt))
    if n == 0:
        raise DataError("dNME needs two consecutive frames with ground truth")
    return total / n


def accel_error(pred: Array, gt: Array) -> float:
    """Acceleration error: mean over 1 <= t <= T-2 of mean_l |Δ²p_t - Δ²g_t|_l / d_t (a fraction)."""
    total, n = _accel(_Stream(pred, gt))
    if n == 0:
        raise DataError("acceleration error needs three consecutive frames with ground truth")
    return total / n


def jitter_ratio(pred: Array, gt: Array) -> float:
    """sum_t,l |Δ²p_t,l| / sum_t,l |Δ²g_t,l| over frames 1..T-2 (1 = as smooth as the truth, > 1 = jitterier)."""
    num, den, n = _jitter(_Stream(pred, gt))
    if n == 0:
        raise DataError("jitter ratio needs three consecutive frames with ground truth")
    if not den > 0:
        raise DataError("jitter ratio is undefined: the ground truth has no acceleration at all")
    return num / den


def _check_segments(segments: Sequence[Sequence[int]], T: int) -> list[tuple[int, int]]:
    out = []
    try:
        items = [tuple(seg) for seg in segments]
    except TypeError as e:
        raise DataError(f"still segments must be a list of (start, stop) frame ranges ({e})") from e
    for i, seg in enumerate(items):
        if len(seg) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in seg):
            raise DataError(f"still segment {i} must be (start, stop) integers, got {seg!r}")
        a, b = int(seg[0]), int(seg[1])
        if not 0 <= a < b <= T:
            raise DataError(f"still segment {i} = ({a}, {b}) must satisfy 0 <= start < stop <= {T} frames "
                            "(stop exclusive)")
        out.append((a, b))
    return out


def _static(s: _Stream, segments: Sequence[Sequence[int]]) -> tuple[float, int]:
    """(mean square of |p_t,l - segment mean_l| / d_t over all still frames and landmarks, still frames)."""
    sq, n = 0.0, 0
    for a, b in _check_segments(segments, s.T):
        t = np.arange(a, b)[s.valid[a:b]]
        if t.size < 2:
            continue
        p = s.p[t]
        r = np.linalg.norm(p - p.mean(axis=0), axis=-1) / s.d[t][:, None]
        sq += float(np.sum(r ** 2))
        n += int(t.size)
    return (sq / (n * s.N) if n else 0.0), n


def static_spread(pred: Array, gt: Array, segments: Sequence[Sequence[int]]) -> float:
    """RMS over the still frames and landmarks of |p_t,l - mean_segment(p)_l| / d_t (a fraction).

    ``segments``: ``(start, stop)`` frame ranges, stop exclusive, where the truth is still; each segment's
    mean is over its frames with ground truth (segments with fewer than 2 such frames are left out).
    """
    ms, n = _static(_Stream(pred, gt), segments)
    if n == 0:
        raise DataError("static spread needs a still segment with at least 2 frames of ground truth")
    return math.sqrt(ms)


def _centroid_velocity(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    c = np.where(valid[:, None], x.mean(axis=1), np.nan)
    v = np.full_like(c, np.nan)
    v[1:] = c[1:] - c[:-1]
    return v


def _lag(s: _Stream, max_shift: int) -> tuple[int | None, int]:
    vp, vg = _centroid_velocity(s.p, s.valid), _centroid_velocity(s.g, s.valid)
    best: tuple[float, int] | None = None
    n0 = 0
    for k in sorted(range(-max_shift, max_shift + 1), key=abs):  # ties go to the smaller |k|
        t = np.arange(max(k, 0), min(s.T, s.T + k))  # pairs (t, t - k), both inside the video
        t = t[np.isfinite(vp[t]).all(1) & np.isfinite(vg[t - k]).all(1)]
        if k == 0:
            n0 = int(t.size)
        if t.size < 3:
            continue
        x, y = vp[t] - vp[t].mean(0), vg[t - k] - vg[t - k].mean(0)
        den = math.sqrt(float(np.sum(x * x)) * float(np.sum(y * y)))
        if not den > 0:
            continue
        r = float(np.sum(x * y)) / den
        if best is None or r > best[0]:
            best = (r, k)
    return (None if best is None else best[1]), n0


def lag(pred: Array, gt: Array, max_shift: int = MAX_LAG) -> int:
    """The shift k in [-max_shift, max_shift] maximising the correlation of predicted and true centroid velocity.

    Centroid ``c_t = mean_l x_t,l``, velocity ``v_t = c_t - c_t-1``; for each k the Pearson correlation (both
    coordinates, each centred) of ``v_pred[t]`` with ``v_true[t - k]`` over the frames where both exist.
    Sign convention: **positive k = the prediction lags behind the truth** (``p_t = g_t-k`` gives k); ties go
    to the smaller |k|.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise UsageError(f"max_shift must be an integer >= 0, got {max_shift!r}")
    k, _ = _lag(_Stream(pred, gt), max_shift)
    if k is None:
        raise DataError("lag is undefined: the centroid does not move (or fewer than 4 frames with ground truth)")
    return k


def lost_tracks(errors: Array, threshold: float = LOST_THRESHOLD, min_run: int = LOST_MIN_RUN) -> tuple[int, int]:
    """``(count, frames)`` of runs of >= ``min_run`` consecutive frames with error > ``threshold``.

    ``errors`` is the per-frame NME ``(T,)`` (:func:`frame_nme`); NaN frames (no ground truth) are left out:
    they neither extend nor break a run. ``frames`` is the total length of the runs counted.
    """
    e = _np(errors).reshape(-1)
    e = e[~np.isnan(e)]
    if e.size == 0:
        raise DataError("errors is empty (no frame with ground truth)")
    if not np.isfinite(e).all():
        raise DataError("errors contains infinite values")
    if isinstance(min_run, bool) or not isinstance(min_run, int) or min_run < 1:
        raise UsageError(f"min_run must be an integer >= 1, got {min_run!r}")
    lost = np.concatenate([[False], e > threshold, [False]])
    edges = np.flatnonzero(lost[1:] != lost[:-1])  # starts and ends alternate
    runs = edges[1::2] - edges[0::2]
    long = runs[runs >= min_run]
    return int(long.size), int(long.sum())


# ---------------------------------------------------------------------------- Synth300VW 3D metrics
_MM_PER_UNIT = {"m": 1000.0, "cm": 10.0, "mm": 1.0}


def _mm(model: Any) -> float:
    units = getattr(model, "units", None)
    if units not in _MM_PER_UNIT:
        raise DataError(f"morphable model units {units!r} unknown; expected one of {sorted(_MM_PER_UNIT)}")
    return _MM_PER_UNIT[units]


def _params(name: str, a: Array, k: int, frames: int | None = None) -> np.ndarray:
    x = _np(a)
    if x.ndim == 1 and frames is not None:
        x = np.broadcast_to(x, (frames, x.shape[0]))
    if x.ndim != 2 or x.shape[1] != k or x.shape[0] == 0:
        want = f"({frames if frames is not None else 'T'}, {k})"
        raise DataError(f"{name} must have shape {want} (one row per frame), got {x.shape}")
    if frames is not None and x.shape[0] != frames:
        raise DataError(f"{name} has {x.shape[0]} frames, expected {frames}")
    if not np.isfinite(x).all():
        first = int(np.argmax(~np.isfinite(x).all(axis=1)))
        raise DataError(f"{name} contains NaN or infinite values (first at row {first})")
    return x


def _lmk_rows(model: Any, which: str) -> np.ndarray:
    return getattr(model, f"lmk_{which}").detach().cpu().double().numpy()  # (68*3, K), std-scaled


def _rms_at_landmarks(rows: np.ndarray, delta: np.ndarray) -> float:
    disp = (delta @ rows.T).reshape(delta.shape[0], -1, 3)  # (T, 68, 3)
    return math.sqrt(float(np.mean(np.sum(disp ** 2, axis=-1))))


def identity_spread(model: Any, alpha_id: Array) -> float:
    """RMS over frames and landmarks of |A_id (alpha_id,t - mean_t alpha_id,t)| in millimetres (truth: 0).

    ``alpha_id`` ``(T, K_id)`` in standard deviations (the :mod:`tdd_lite.morphable` convention), one row per
    frame of one video: how much the estimated identity wanders within a video of one person.
    """
    a = _params("alpha_id", alpha_id, model.n_id)
    return _mm(model) * _rms_at_landmarks(_lmk_rows(model, "id"), a - a.mean(axis=0))


def expression_error(model: Any, alpha_exp_pred: Array, alpha_exp_true: Array) -> float:
    """RMS over frames and landmarks of |A_exp (alpha_exp,pred - alpha_exp,true)| in millimetres."""
    p = _params("alpha_exp_pred", alpha_exp_pred, model.n_exp)
    t = _params("alpha_exp_true", alpha_exp_true, model.n_exp, p.shape[0])
    return _mm(model) * _rms_at_landmarks(_lmk_rows(model, "exp"), p - t)


def _landmarks3d(model: Any, a_id: np.ndarray, a_exp: np.ndarray) -> np.ndarray:
    mean = model.lmk_mean.detach().cpu().double().numpy().reshape(1, -1)
    flat = mean + a_id @ _lmk_rows(model, "id").T + a_exp @ _lmk_rows(model, "exp").T
    return flat.reshape(a_id.shape[0], -1, 3)


def _rotations(name: str, camera: Array, frames: int) -> np.ndarray:
    c = _params(name, camera, 8, frames)
    _, r, _ = pose_from_camera(torch.from_numpy(np.ascontiguousarray(c)))
    return r.double().numpy()


def landmark3d_error(model: Any, alpha_id_pred: Array, alpha_exp_pred: Array, alpha_id_true: Array,
                     alpha_exp_true: Array, camera_pred: Array | None = None,
                     camera_true: Array | None = None) -> float:
    """Mean over frames of mean_l |X_pred,t,l - X_true,t,l| in millimetres, after removing the translation.

    ``X = S(alpha_id, alpha_exp)`` at the 68 landmarks (model units -> mm), rotated by the camera's rotation
    ``R`` (:func:`tdd_lite.camera.pose_from_camera`) when both cameras are given (``(T, 8)``, in any 2D frame a
    uniform scale and shift away from the image, e.g. crop or image pixels: ``R`` is the same), then each
    frame's points centred on their centroid (the weak-perspective camera's translation and the model's origin
    drop out; scale stays in mm). ``alpha_id_true`` may be ``(K_id,)`` (one person per video).
    """
    ip = _params("alpha_id_pred", alpha_id_pred, model.n_id)
    T = ip.shape[0]
    ep = _params("alpha_exp_pred", alpha_exp_pred, model.n_exp, T)
    it = _params("alpha_id_true", alpha_id_true, model.n_id, T)
    et = _params("alpha_exp_true", alpha_exp_true, model.n_exp, T)
    xp, xt = _landmarks3d(model, ip, ep), _landmarks3d(model, it, et)
    if (camera_pred is None) != (camera_true is None):
        raise UsageError("give both camera_pred and camera_true, or neither")
    if camera_pred is not None:
        xp = xp @ _rotations("camera_pred", camera_pred, T).transpose(0, 2, 1)
        xt = xt @ _rotations("camera_true", camera_true, T).transpose(0, 2, 1)
    xp = xp - xp.mean(axis=1, keepdims=True)
    xt = xt - xt.mean(axis=1, keepdims=True)
    return _mm(model) * float(np.linalg.norm(xp - xt, axis=-1).mean())


# ---------------------------------------------------------------------------- table rows
def video_metrics(pred: Array, gt: Array, *, still_segments: Sequence[Sequence[int]] | None = None,
                  model: Any = None, params_pred: Mapping[str, Array] | None = None,
                  params_true: Mapping[str, Array] | None = None, auc_threshold: float = AUC_THRESHOLD,
                  lost_threshold: float = LOST_THRESHOLD, lost_min_run: int = LOST_MIN_RUN,
                  max_lag: int = MAX_LAG) -> dict:
    """Every metric of one video, a row of the per-video table (fractions; mm for the 3D metrics).

    ``pred``/``gt`` ``(T, N, 2)`` in image pixels. ``still_segments``: ``(start, stop)`` ranges where the
    truth is still (stop exclusive). For the Synth300VW 3D metrics give ``model`` and ``params_pred`` /
    ``params_true`` mappings with ``alpha_id`` (``(T, K_id)``; the truth may be ``(K_id,)``), ``alpha_exp``
    ``(T, K_exp)`` and optionally ``camera`` ``(T, 8)`` (used when both have it), e.g. Synth300VW's
    ``params.npz``. A metric undefined for this video is ``None``. The ``*_frames`` entries and the jitter
    sums are the weights :func:`category_metrics` needs.
    """
    s = _Stream(pred, gt)
    e = s.frame_nme("bbox")[s.valid]
    row: dict[str, Any] = {"frames": int(s.valid.sum()), "nme": float(e.mean())}
    row["nme_io"] = float(np.nanmean(s.frame_nme("interocular"))) if s.N == 68 else None
    row["auc"] = ced_auc(e, auc_threshold)
    row["failure"] = failure_rate(e, auc_threshold)
    total, n = _dnme(s)
    row["dnme"], row["dnme_frames"] = (total / n if n else None), n
    total, n = _accel(s)
    row["accel"], row["accel_frames"] = (total / n if n else None), n
    num, den, n = _jitter(s)
    row["jitter_ratio"] = num / den if n and den > 0 else None
    row["jitter_pred"], row["jitter_true"] = num, den
    if still_segments is not None:
        ms, n = _static(s, still_segments)
        row["static_spread"], row["static_frames"] = (math.sqrt(ms) if n else None), n
    else:
        row["static_spread"], row["static_frames"] = None, 0
    row["lag"], row["lag_frames"] = _lag(s, max_lag)
    if row["lag"] is None:
        row["lag_frames"] = 0
    row["lost_tracks"], row["lost_frames"] = lost_tracks(e, lost_threshold, lost_min_run)
    row.update(identity_spread=None, expression_error=None, landmark3d_error=None, frames_3d=0)
    given = [x is not None for x in (model, params_pred, params_true)]
    if any(given) and not all(given):
        raise UsageError("the 3D metrics need model, params_pred and params_true together")
    if all(given):
        for nm, prm in (("params_pred", params_pred), ("params_true", params_true)):
            missing = [k for k in ("alpha_id", "alpha_exp") if k not in prm]
            if missing:
                raise DataError(f"{nm} has no {missing[0]!r} (keys: {sorted(prm)})")
        T = s.T
        ip = _params("params_pred['alpha_id']", params_pred["alpha_id"], model.n_id, T)
        ep = _params("params_pred['alpha_exp']", params_pred["alpha_exp"], model.n_exp, T)
        cams = ("camera" in params_pred and "camera" in params_true)
        row["identity_spread"] = identity_spread(model, ip)
        row["expression_error"] = expression_error(model, ep, params_true["alpha_exp"])
        row["landmark3d_error"] = landmark3d_error(
            model, ip, ep, params_true["alpha_id"], params_true["alpha_exp"],
            params_pred["camera"] if cams else None, params_true["camera"] if cams else None)
        row["frames_3d"] = T
    return row


def _weighted(rows: Sequence[Mapping[str, Any]], key: str, weight: str) -> float | None:
    pairs = [(r[key], r[weight]) for r in rows if r[key] is not None and r[weight] > 0]
    w = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / w if w else None


def _weighted_rms(rows: Sequence[Mapping[str, Any]], key: str, weight: str) -> float | None:
    pairs = [(r[key], r[weight]) for r in rows if r[key] is not None and r[weight] > 0]
    w = sum(n for _, n in pairs)
    return math.sqrt(sum(v * v * n for v, n in pairs) / w) if w else None


_ROW_KEYS = ("frames", "nme", "nme_io", "auc", "failure", "dnme", "dnme_frames", "accel", "accel_frames",
             "jitter_pred", "jitter_true", "static_spread", "static_frames", "lag", "lag_frames", "lost_tracks",
             "lost_frames", "identity_spread", "expression_error", "landmark3d_error", "frames_3d")


def category_metrics(rows: Sequence[Mapping[str, Any]]) -> dict:
    """The category row from :func:`video_metrics` rows, weighted by frames (means over landmarks,
    then frames, then all the category's frames).

    NME (bbox, io), AUC and failure rate are frame-weighted means (exactly the values over the pooled
    frames), dNME and acceleration error weighted by their term counts, the jitter ratio is the ratio of the
    pooled sums, the static spread, identity spread and expression error are RMS over the pooled frames, the
    3D landmark error and the lag frame-weighted means; lost tracks and frames are summed.
    """
    rows = list(rows)
    if not rows:
        raise DataError("no video rows to aggregate")
    for i, r in enumerate(rows):
        missing = [k for k in _ROW_KEYS if k not in r]
        if missing:
            raise DataError(f"video row {i} has no {missing[0]!r}: not a video_metrics() row")
    den = sum(r["jitter_true"] for r in rows)
    return {
        "videos": len(rows), "frames": sum(r["frames"] for r in rows),
        "nme": _weighted(rows, "nme", "frames"), "nme_io": _weighted(rows, "nme_io", "frames"),
        "auc": _weighted(rows, "auc", "frames"), "failure": _weighted(rows, "failure", "frames"),
        "dnme": _weighted(rows, "dnme", "dnme_frames"), "accel": _weighted(rows, "accel", "accel_frames"),
        "jitter_ratio": sum(r["jitter_pred"] for r in rows) / den if den > 0 else None,
        "static_spread": _weighted_rms(rows, "static_spread", "static_frames"),
        "static_frames": sum(r["static_frames"] for r in rows),
        "lag": _weighted(rows, "lag", "lag_frames"),
        "lost_tracks": sum(r["lost_tracks"] for r in rows), "lost_frames": sum(r["lost_frames"] for r in rows),
        "identity_spread": _weighted_rms(rows, "identity_spread", "frames_3d"),
        "expression_error": _weighted_rms(rows, "expression_error", "frames_3d"),
        "landmark3d_error": _weighted(rows, "landmark3d_error", "frames_3d"),
    }
