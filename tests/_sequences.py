"""Tiny sequences for the data-layer tests: frames that survive MJPG and landmarks inside a 64x48 frame."""

from __future__ import annotations

import numpy as np

W, H = 64, 48


def frames(n: int, step: int = 30) -> list[np.ndarray]:
    """Smooth (H, W, 3) frames whose red channel encodes the frame index (``20 + step * k``; MJPG keeps it)."""
    ys, xs = np.mgrid[0:H, 0:W]
    out = []
    for k in range(n):
        img = np.empty((H, W, 3), np.uint8)
        img[..., 0] = 20 + step * k
        img[..., 1] = (xs * 3) % 256
        img[..., 2] = (ys * 4) % 256
        out.append(img)
    return out


def landmarks(n: int, seed: int = 0) -> np.ndarray:
    """(n, 68, 2) landmarks near a random face inside the frame."""
    rng = np.random.default_rng(seed)
    base = np.stack([rng.uniform(15, 50, 68), rng.uniform(10, 38, 68)], 1)
    return np.stack([base + rng.normal(0, 0.5, base.shape) for _ in range(n)])
