"""A small software rasteriser for figures and Synth300VW (numpy + OpenCV, no GPU, no OpenGL).

Input vertices are in **image pixel coordinates**: x right, y down, pixel ``(row i, col j)``'s centre at
``(x=j, y=i)`` (the convention of :mod:`tdd_lite.data.crops`), and z toward the viewer (larger z = closer).
:func:`image_vertices` produces them from a 3DMM shape and an 8-parameter camera.

How it works (vectorised over *all* triangles at once, no Python loop per triangle):

1. every triangle's bounding box of pixel centres is enumerated (``np.repeat`` of the boxes' sizes);
2. an edge-function (barycentric) inside test keeps the pixel centres inside the triangle (top-left rule is
   not needed for our use; shared edges may be covered by both triangles and the z-buffer picks one);
3. the depth at each covered pixel is interpolated from the barycentrics and a z-buffer keeps the nearest
   (``np.maximum.at``), i.e. a true per-pixel z-buffer, not painter's sorting;
4. colour is Gouraud-shaded: Lambertian ``albedo * (ambient + diffuse * max(0, n . l))`` per vertex, then
   interpolated with the barycentrics of the winning triangle.

For a teaching mesh of a few thousand vertices at 256x256 this runs at a few hundred frames per second on
one core (``benchmarks/bench_render.py``), because the triangles are small (a few pixels each).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from tdd_lite.camera import pose_from_camera, project

DEFAULT_LIGHT = (-0.3, -0.4, 1.0)  # from the upper left, in front (image frame: x right, y down, z to viewer)


def image_vertices(shape: Any, camera: Any) -> np.ndarray:
    """(N, 3) model-space vertices + one (8,) camera -> (N, 3) image vertices for :func:`render`.

    x, y are the camera projection (eq. 3: ``f P R X + t``); z is ``f (R X)_z`` from
    :func:`tdd_lite.camera.pose_from_camera`, in the same pixel units, larger = closer to the viewer.
    """
    s = torch.as_tensor(np.asarray(shape.detach().cpu() if hasattr(shape, "detach") else shape), dtype=torch.float64)
    c = torch.as_tensor(np.asarray(camera.detach().cpu() if hasattr(camera, "detach") else camera),
                        dtype=torch.float64)
    if s.ndim != 2 or s.shape[1] != 3:
        raise ValueError(f"shape must be (N, 3), got {tuple(s.shape)}")
    if c.numel() != 8:
        raise ValueError(f"camera must have 8 values, got {tuple(c.shape)}")
    c = c.reshape(1, 8)
    xy = project(s[None], c)[0]
    f, r, _ = pose_from_camera(c)
    z = f[0] * (s @ r[0].T)[:, 2]
    return torch.cat([xy, z[:, None]], dim=1).numpy()


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals, oriented so the mesh as a whole faces the viewer (+z)."""
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])  # |fn| = 2 * area
    if fn[:, 2].sum() < 0:  # winding is unknown (and the image frame is left-handed): face the viewer
        fn = -fn
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, t[:, k], fn)
    n = np.linalg.norm(vn, axis=1, keepdims=True)
    return vn / np.where(n > 0, n, 1.0)


def shade(vertices: np.ndarray, triangles: np.ndarray, colors: Any = (0.8, 0.65, 0.55),
          light_dir: Any = DEFAULT_LIGHT, ambient: float = 0.35, diffuse: float = 0.75) -> np.ndarray:
    """Lambertian per-vertex colour in [0, 1]: ``albedo * (ambient + diffuse * max(0, n . l))``, (N, 3)."""
    n = vertex_normals(vertices, triangles)
    lvec = np.asarray(light_dir, dtype=np.float64)
    lvec = lvec / np.linalg.norm(lvec)
    albedo = np.broadcast_to(np.asarray(colors, dtype=np.float64), (len(n), 3))
    return np.clip(albedo * (ambient + diffuse * np.maximum(0.0, n @ lvec))[:, None], 0.0, 1.0)


def _check_mesh(vertices: Any, triangles: Any) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (N, 3) image coordinates, got {v.shape}")
    if t.ndim != 2 or t.shape[1] != 3 or (t.size and (t.min() < 0 or t.max() >= len(v))):
        raise ValueError(f"triangles must be (T, 3) indices into {len(v)} vertices")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite values")
    return v, t


def rasterize(vertices: np.ndarray, triangles: np.ndarray, height: int, width: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffered coverage: ``(pixel_index, triangle_id, barycentrics (M, 3), depth_buffer (H, W))``.

    ``pixel_index`` are flat indices ``row * width + col`` of the covered pixels (each once), ``triangle_id``
    the nearest triangle there, and ``depth_buffer`` is ``-inf`` where nothing was drawn.
    """
    v, t = _check_mesh(vertices, triangles)
    zbuf = np.full(height * width, -np.inf)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), zbuf.reshape(height, width))
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    xy = np.stack([a[:, :2], b[:, :2], c[:, :2]], 1)  # (T, 3, 2)
    lo = np.ceil(xy.min(1)).astype(np.int64)
    hi = np.floor(xy.max(1)).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi[:, 0] = np.minimum(hi[:, 0], width - 1)
    hi[:, 1] = np.minimum(hi[:, 1], height - 1)
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    keep = np.nonzero((hi[:, 0] >= lo[:, 0]) & (hi[:, 1] >= lo[:, 1]) & (np.abs(area) > 1e-12))[0]
    if keep.size == 0:
        return empty
    bw = hi[keep, 0] - lo[keep, 0] + 1
    counts = bw * (hi[keep, 1] - lo[keep, 1] + 1)
    tid = np.repeat(keep, counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    local = np.arange(tid.size, dtype=np.int64) - start
    bwr = np.repeat(bw, counts)
    px = lo[tid, 0] + local % bwr
    py = lo[tid, 1] + local // bwr
    # barycentric coordinates from edge functions (sign-agnostic: divide by the signed area)
    fx, fy = px.astype(np.float64), py.astype(np.float64)
    ax, ay, bx, by, cx, cy = a[tid, 0], a[tid, 1], b[tid, 0], b[tid, 1], c[tid, 0], c[tid, 1]
    inv = 1.0 / area[tid]
    w0 = ((bx - fx) * (cy - fy) - (by - fy) * (cx - fx)) * inv
    w1 = ((cx - fx) * (ay - fy) - (cy - fy) * (ax - fx)) * inv
    w2 = 1.0 - w0 - w1
    eps = -1e-9
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    if not inside.any():
        return empty
    tid, w0, w1, w2 = tid[inside], w0[inside], w1[inside], w2[inside]
    pix = py[inside] * width + px[inside]
    z = w0 * a[tid, 2] + w1 * b[tid, 2] + w2 * c[tid, 2]
    np.maximum.at(zbuf, pix, z)
    win = np.nonzero(z >= zbuf[pix])[0]
    # ties (shared edges at equal depth): keep one candidate per pixel (the last written; O(M), no sort)
    owner = np.full(height * width, -1, np.int64)
    owner[pix[win]] = win
    win = owner[owner >= 0]
    bary = np.stack([w0[win], w1[win], w2[win]], 1)
    return pix[win], tid[win], bary, zbuf.reshape(height, width)


def render(vertices: np.ndarray, triangles: np.ndarray, size: tuple[int, int] | None = None,
           colors: Any = (0.8, 0.65, 0.55), background: np.ndarray | Any = None,
           light_dir: Any = DEFAULT_LIGHT, ambient: float = 0.35, diffuse: float = 0.75,
           return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Draw a shaded mesh -> uint8 ``(H, W, 3)`` RGB (and the coverage mask if ``return_mask``).

    ``vertices`` (N, 3) in image pixels with z toward the viewer; ``colors`` one RGB in [0, 1] or (N, 3)
    per-vertex albedo; ``background`` an ``(H, W, 3)`` uint8 image (its size is used) or an RGB triple;
    ``size = (H, W)`` when there is no background image.
    """
    if isinstance(background, np.ndarray) and background.ndim == 3:
        if background.shape[2] != 3 or background.dtype != np.uint8:
            raise ValueError(f"background must be (H, W, 3) uint8, got {background.shape} {background.dtype}")
        h, w = background.shape[:2]
        out = background.copy()
    else:
        if size is None:
            raise ValueError("give size=(H, W) or a background image")
        h, w = int(size[0]), int(size[1])
        bg = (0, 0, 0) if background is None else background
        out = np.empty((h, w, 3), np.uint8)
        out[:] = np.asarray(bg, dtype=np.uint8)
    v, t = _check_mesh(vertices, triangles)
    vc = shade(v, t, colors, light_dir, ambient, diffuse)
    pix, tid, bary, _ = rasterize(v, t, h, w)
    tri = t[tid]
    col = (bary[:, 0:1] * vc[tri[:, 0]] + bary[:, 1:2] * vc[tri[:, 1]] + bary[:, 2:3] * vc[tri[:, 2]])
    flat = out.reshape(-1, 3)
    flat[pix] = np.clip(col * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if return_mask:
        mask = np.zeros(h * w, bool)
        mask[pix] = True
        return out, mask.reshape(h, w)
    return out


def draw_landmarks(image: np.ndarray, lmk: np.ndarray, color: tuple[int, int, int] = (0, 255, 0),
                   radius: int = 2, connect: bool = False) -> np.ndarray:
    """A copy of ``image`` with (68, 2) pixel-coordinate landmarks drawn as dots (and the iBUG contours)."""
    out = np.ascontiguousarray(image).copy()
    p = np.asarray(lmk, dtype=np.float64).reshape(-1, 2)
    shift = 4  # sub-pixel drawing: cv2 takes fixed-point coordinates with 4 fractional bits
    q = np.round(p * (1 << shift)).astype(np.int32)
    if connect and len(p) == 68:
        for lo_, hi_, closed in ((0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False),
                                 (31, 36, False), (36, 42, True), (42, 48, True), (48, 60, True), (60, 68, True)):
            cv2.polylines(out, [q[lo_:hi_].reshape(-1, 1, 2)], closed, color, 1, cv2.LINE_AA, shift)
    for x, y in q:
        cv2.circle(out, (int(x), int(y)), radius << shift, color, -1, cv2.LINE_AA, shift)
    return out
