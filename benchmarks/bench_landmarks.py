"""Landmark projection for a batch of 20: precomputed landmark rows versus the dense face.

Fast path (what training uses): ``MorphableModel.landmarks3d`` (68 precomputed rows of the mean and the
std-scaled bases, three small matmuls) then ``camera.project``. Baseline: the dense face ``shape`` (all
vertices, eq. 2/7) indexed at the 68 landmark vertices, then the same projection. Both on the teaching 3DMM,
forward only, one thread. Prints absolute microseconds (best of a few repeats) and their ratio.
Run: ``.venv/bin/python benchmarks/bench_landmarks.py``.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from tdd_lite.camera import look_at_crop, project  # noqa: E402
from tdd_lite.morphable import load_teaching_model  # noqa: E402

torch.set_num_threads(1)
BATCH, REPEATS, INNER = 20, 7, 200


def best_us(fn) -> float:
    """Best mean time per call over REPEATS rounds of INNER calls, in microseconds."""
    fn()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(INNER):
            fn()
        best = min(best, (time.perf_counter() - t0) / INNER)
    return best * 1e6


def main() -> None:
    model = load_teaching_model()
    g = torch.Generator().manual_seed(0)
    alpha_id = torch.randn(BATCH, model.n_id, generator=g)
    alpha_exp = torch.randn(BATCH, model.n_exp, generator=g)
    camera = look_at_crop(model.lmk_mean).expand(BATCH, 8).contiguous()
    idx = torch.as_tensor(model.landmark_index)

    def fast():
        return project(model.landmarks3d(alpha_id, alpha_exp), camera)

    def dense():
        return project(model.shape(alpha_id, alpha_exp)[:, idx], camera)

    torch.testing.assert_close(fast(), dense(), atol=1e-5, rtol=0)
    with torch.no_grad():
        t_fast, t_dense = best_us(fast), best_us(dense)
    print(f"teaching 3DMM: {model.n_vertices} vertices, {model.n_id} + {model.n_exp} modes; batch {BATCH}; "
          f"torch {torch.__version__}, 1 thread")
    print(f"landmarks3d + project : {t_fast:8.1f} us per batch")
    print(f"dense shape[:, idx] + project: {t_dense:8.1f} us per batch")
    print(f"ratio dense / landmark rows: {t_dense / t_fast:.1f}x")


if __name__ == "__main__":
    main()
