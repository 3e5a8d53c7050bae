"""NME (bbox and inter-ocular) and CED/AUC against hand computations."""

import math

import numpy as np
import pytest
import torch

from tdd_lite import metrics


def _face(rng):
    return rng.uniform(0, 100, size=(68, 2))


def test_nme_bbox_hand_computation():
    rng = np.random.default_rng(0)
    gt = _face(rng)
    pred = gt.copy()
    pred[:, 0] += 3.0  # every point 3 px to the right
    pred[10] += np.array([0.0, 4.0])  # point 10 off by (3, 4): 5 px
    w = gt[:, 0].max() - gt[:, 0].min()
    h = gt[:, 1].max() - gt[:, 1].min()
    expected = (67 * 3.0 + 5.0) / 68 / math.sqrt(w * h)
    assert np.isclose(metrics.nme(pred, gt), expected)
    assert np.isclose(float(metrics.nme(torch.from_numpy(pred), torch.from_numpy(gt))), expected)


def test_nme_interocular_hand_computation():
    rng = np.random.default_rng(1)
    gt = _face(rng)
    gt[36] = [20.0, 50.0]
    gt[45] = [80.0, 58.0]  # distance sqrt(60^2 + 8^2)
    pred = gt + np.array([1.0, 0.0])
    assert np.isclose(metrics.nme(pred, gt, norm="interocular"), 1.0 / math.hypot(60, 8))


def test_nme_batched_and_torch_grad():
    rng = np.random.default_rng(2)
    gt = rng.uniform(0, 1, size=(2, 3, 68, 2))
    pred = gt + rng.normal(0, 0.01, size=gt.shape)
    e = metrics.nme(pred, gt)
    assert e.shape == (2, 3)
    assert np.isclose(e[1, 2], metrics.nme(pred[1, 2], gt[1, 2]))
    p = torch.tensor(pred, requires_grad=True)
    metrics.nme(p, torch.from_numpy(gt)).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


def test_nme_perfect_is_zero_and_scale_invariant():
    rng = np.random.default_rng(3)
    gt = _face(rng)
    pred = gt + rng.normal(0, 1, gt.shape)
    assert metrics.nme(gt, gt) == 0
    assert np.isclose(metrics.nme(pred * 7, gt * 7), metrics.nme(pred, gt))
    assert np.isclose(metrics.nme(pred * 7, gt * 7, "interocular"), metrics.nme(pred, gt, "interocular"))


def test_nme_errors():
    with pytest.raises(ValueError, match="same shape"):
        metrics.nme(np.zeros((68, 2)), np.zeros((67, 2)))
    with pytest.raises(ValueError, match="norm"):
        metrics.nme(np.zeros((68, 2)), np.zeros((68, 2)), norm="diag")


def test_ced_auc_exact_and_against_fine_grid():
    errors = np.array([0.0, 0.04, 0.16])
    # T = 0.08: contributions 1, 0.5, 0 -> 0.5
    assert np.isclose(metrics.ced_auc(errors, 0.08), 0.5)
    assert np.isclose(metrics.failure_rate(errors, 0.08), 1 / 3)
    rng = np.random.default_rng(4)
    e = rng.exponential(0.03, 500)
    grid = np.linspace(0, 0.08, 40001)
    curve = metrics.ced_curve(e, grid)
    assert np.isclose(metrics.ced_auc(e, 0.08), np.trapezoid(curve, grid) / 0.08, atol=1e-4)
    assert metrics.ced_curve(errors, [0.0, 0.05, 1.0]).tolist() == [1 / 3, 2 / 3, 1.0]
    with pytest.raises(ValueError):
        metrics.ced_auc(np.array([np.nan]), 0.08)
