"""Evaluation metrics: NME (paper section 4.2) and the cumulative error distribution (CED) / AUC.

``nme(pred, gt)`` is the per-sample normalised mean error::

    NME = (1/68) * sum_l ||pred_l - gt_l||_2 / d

* ``norm="bbox"`` (the paper, after [15, 24, 25]): ``d = sqrt(w * h)`` of the rectangular hull (axis-aligned
  bounding box) of the 68 *ground-truth* landmarks.
* ``norm="interocular"`` (the 300VW challenge and most of its literature): ``d`` = distance between the outer
  eye corners, iBUG points 37 and 46 (0-based 36 and 45).

Multiply by 100 for the percentages of the paper's Table 2. Works on numpy arrays and torch tensors of shape
``(..., 68, 2)`` and returns shape ``(...)`` (a torch result keeps the graph).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Array = Any  # np.ndarray | torch.Tensor

OUTER_EYE_CORNERS = (36, 45)  # 0-based iBUG indices of the outer eye corners (right eye 37, left eye 46 1-based)


def _norm(x: Array) -> Array:
    if isinstance(x, torch.Tensor):
        return torch.linalg.vector_norm(x, dim=-1)
    return np.linalg.norm(x, axis=-1)


def normaliser(gt: Array, norm: str = "bbox") -> Array:
    """The distance ``d`` NME divides by, per sample: ``(..., 68, 2) -> (...)``."""
    if gt.ndim < 2 or gt.shape[-1] != 2:
        raise ValueError(f"gt must have shape (..., N, 2), got {tuple(gt.shape)}")
    if norm == "bbox":
        if isinstance(gt, torch.Tensor):
            ext = gt.amax(dim=-2) - gt.amin(dim=-2)
            return torch.sqrt(ext[..., 0] * ext[..., 1])
        ext = gt.max(axis=-2) - gt.min(axis=-2)
        return np.sqrt(ext[..., 0] * ext[..., 1])
    if norm == "interocular":
        if gt.shape[-2] != 68:
            raise ValueError(f"interocular normalisation needs the 68 iBUG landmarks, got {gt.shape[-2]} points")
        a, b = OUTER_EYE_CORNERS
        return _norm(gt[..., a, :] - gt[..., b, :])
    raise ValueError(f"norm must be 'bbox' or 'interocular', got {norm!r}")


def nme(pred: Array, gt: Array, norm: str = "bbox") -> Array:
    """Per-sample NME of ``(..., N, 2)`` predictions against ground truth (a fraction; x100 for percent)."""
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must have the same shape")
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
        raise ValueError(f"threshold must be > 0, got {threshold}")
    e = np.asarray(errors.detach().cpu() if isinstance(errors, torch.Tensor) else errors, dtype=np.float64)
    e = e.reshape(-1)
    if e.size == 0:
        raise ValueError("errors is empty")
    if not np.isfinite(e).all():
        raise ValueError("errors contains NaN or infinite values")
    return float(np.mean(np.maximum(0.0, threshold - e)) / threshold)


def failure_rate(errors: Array, threshold: float) -> float:
    """Fraction of samples whose error exceeds ``threshold`` (the usual companion of the AUC)."""
    e = np.asarray(errors.detach().cpu() if isinstance(errors, torch.Tensor) else errors, dtype=np.float64)
    return float(np.mean(e.reshape(-1) > threshold))
