"""Renderer speed: frames per second at 256x256 on one core (target >= 30), versus a bare baseline.

The mesh is the teaching 3DMM if its asset exists, else a sphere-cap grid of the same size class.
Baseline: ``np.zeros`` + ``cv2.fillPoly`` of every projected triangle in one call (flat colour, no z-buffer,
no shading) - the cheapest way OpenCV can paint the same triangles.
Run: ``.venv/bin/python benchmarks/bench_render.py``.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from tdd_lite import render  # noqa: E402
from tdd_lite.camera import look_at_crop  # noqa: E402

cv2.setNumThreads(1)
torch.set_num_threads(1)


def sphere_cap(n: int = 70) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.linspace(-1.2, 1.2, n), np.linspace(-1.4, 1.4, n))
    pts = np.stack([np.sin(u) * np.cos(v * 0.8), np.sin(v * 0.8), np.cos(u) * np.cos(v * 0.8)], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    return pts * 0.1, np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])


def load_mesh() -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from tdd_lite.morphable import load_teaching_model

        m = load_teaching_model()
        return m.mean_shape.numpy(), np.asarray(m.triangles), "teaching 3DMM"
    except FileNotFoundError:
        v, t = sphere_cap()
        return v, t, "sphere cap (teaching 3DMM asset not built yet)"


def timeit(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    shape, tris, name = load_mesh()
    size = 256
    cam = look_at_crop(torch.from_numpy(shape).float(), yaw_deg=25, pitch_deg=-10, fill=0.8)[0].numpy()
    cam = cam * np.array([size, size, size, size, size, size, size, size])  # [0,1] crop -> pixels
    verts = render.image_vertices(shape, cam) - np.array([0.5, 0.5, 0.0])
    bg = np.full((size, size, 3), 90, np.uint8)
    t_render = timeit(lambda: render.render(verts, tris, background=bg), 30)
    polys = np.round(verts[:, :2][tris] * 16).astype(np.int32)

    def baseline():
        img = np.zeros((size, size, 3), np.uint8)
        cv2.fillPoly(img, list(polys), (200, 160, 140), cv2.LINE_8, 4)
        return img

    t_base = timeit(baseline, 30)
    t_vert = timeit(lambda: render.image_vertices(shape, cam), 30)
    print(f"mesh: {name}, {len(shape)} vertices, {len(tris)} triangles, {size}x{size}, 1 thread")
    print(f"render (z-buffer + Gouraud Lambertian): {1 / t_render:7.1f} fps ({t_render * 1e3:.2f} ms/frame)")
    print(f"baseline cv2.fillPoly (flat, no z):      {1 / t_base:7.1f} fps ({t_base * 1e3:.2f} ms/frame)")
    print(f"ratio render / baseline time: {t_render / t_base:.2f}x;  image_vertices: {t_vert * 1e3:.2f} ms")
    print(f"target >= 30 fps: {'MET' if 1 / t_render >= 30 else 'NOT MET'}")


if __name__ == "__main__":
    main()
