"""A tiny hand-made 3DMM for tests of the method (values small enough to compute by hand).

4 vertices, 2 identity modes, 1 expression mode; the 68 landmarks cycle over the 4 vertices
(landmark k = vertex k % 4). Bases are unit vectors, so ``A alpha`` moves single coordinates:

* identity mode 0 moves vertex 0 along x (std 2), identity mode 1 moves vertex 1 along y (std 1);
* expression mode 0 moves vertex 2 along y (std 0.5).
"""

from __future__ import annotations

import numpy as np

from tdd_lite.morphable import ModelArrays, MorphableModel

MEAN = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]], dtype=np.float32)


def tiny_arrays() -> ModelArrays:
    n = MEAN.shape[0]
    id_basis = np.zeros((3 * n, 2), np.float32)
    id_basis[3 * 0 + 0, 0] = 1.0  # vertex 0, x
    id_basis[3 * 1 + 1, 1] = 1.0  # vertex 1, y
    exp_basis = np.zeros((3 * n, 1), np.float32)
    exp_basis[3 * 2 + 1, 0] = 1.0  # vertex 2, y
    return ModelArrays(mean_shape=MEAN.copy(), id_basis=id_basis, id_std=np.array([2.0, 1.0], np.float32),
                       exp_basis=exp_basis, exp_std=np.array([0.5], np.float32),
                       triangles=np.array([[0, 1, 2], [1, 3, 2]]), landmark_index=np.arange(68) % 4,
                       name="tiny")


def tiny_model() -> MorphableModel:
    return MorphableModel(tiny_arrays())


def random_model(n_vertices: int = 80, n_id: int = 199, n_exp: int = 29, seed: int = 0) -> MorphableModel:
    """A random model of the paper's sizes (199 + 29 modes), face-sized (~0.15 m), for network tests."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-0.075, 0.075, (n_vertices, 3)).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((3 * n_vertices, n_id + n_exp)))
    return MorphableModel(ModelArrays(
        mean_shape=mean, id_basis=q[:, :n_id].astype(np.float32), id_std=np.full(n_id, 0.002, np.float32),
        exp_basis=q[:, n_id:].astype(np.float32), exp_std=np.full(n_exp, 0.002, np.float32),
        triangles=np.array([[0, 1, 2]]), landmark_index=np.arange(68) % n_vertices, name="random"))
