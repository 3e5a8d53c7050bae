"""The crop protocol (paper section 4.1): square boxes around landmarks, jitter, cropping, and the [0, 1]
crop coordinates every loss and displacement lives in.

Conventions
-----------
* Image coordinates are pixels, x right, y down, with pixel ``i``'s *centre* at ``i`` (OpenCV's convention;
  300VW ``.pts`` values are kept as stored, see :mod:`tdd_lite.data.pts`).
* A box is ``(x0, y0, x1, y1)`` in those coordinates (float, square for the boxes we make, may extend past
  the frame). Crop coordinates ``u = (x - x0) / (x1 - x0)``, ``w = (y - y0) / (y1 - y0)`` are in [0, 1] inside it.
* A crop image of ``S`` pixels covers the box exactly: crop pixel ``j`` spans ``[j/S, (j+1)/S]`` in crop
  coordinates (centre ``(j + 0.5)/S``). So ``plt.imshow(crop, extent=(0, 1, 1, 0))`` puts crop coordinates
  on the axes and landmarks can be plotted directly. :func:`crop_tensor` gives the same crop as G's input tensor.

Every function works on numpy arrays and on torch tensors (``to_crop``/``from_crop`` are differentiable),
batched: points ``(..., 68, 2)`` with boxes ``(..., 4)``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from tdd_lite.metrics import Array  # np.ndarray | torch.Tensor

# Box side = ENLARGE x the longer side of the landmarks' bounding box. 1.4 keeps the whole jaw, brows and a
# margin for the motion between a tracked frame and the previous estimate it is cropped from (300VW faces
# move up to ~10% of their size per frame in category C) while the face still fills ~70% of the crop.
DEFAULT_ENLARGE = 1.4


def _minmax(x: Array, axis: int) -> tuple[Array, Array]:
    if isinstance(x, torch.Tensor):
        return x.amin(dim=axis), x.amax(dim=axis)
    return x.min(axis=axis), x.max(axis=axis)


def _stack(items: list[Array], axis: int = -1) -> Array:
    if isinstance(items[0], torch.Tensor):
        return torch.stack(items, dim=axis)
    return np.stack(items, axis=axis)


def _check_points(points: Array, name: str = "points") -> None:
    if points.ndim < 2 or points.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (..., N, 2), got {tuple(points.shape)}")


def _check_box(box: Array) -> None:
    if box.shape[-1] != 4:
        raise ValueError(f"box must have shape (..., 4) = (x0, y0, x1, y1), got {tuple(box.shape)}")


def landmark_bbox(lmk: Array) -> Array:
    """Tight (not square) bounding box ``(x0, y0, x1, y1)`` of ``(..., N, 2)`` points -> ``(..., 4)``."""
    _check_points(lmk, "lmk")
    lo_x, hi_x = _minmax(lmk[..., 0], -1)
    lo_y, hi_y = _minmax(lmk[..., 1], -1)
    return _stack([lo_x, lo_y, hi_x, hi_y])


def square_box(centre_x: Array, centre_y: Array, side: Array) -> Array:
    """Square box ``(..., 4)`` from its centre and side length."""
    h = side / 2
    return _stack([centre_x - h, centre_y - h, centre_x + h, centre_y + h])


def box_from_landmarks(lmk: Array, enlarge: float = DEFAULT_ENLARGE) -> Array:
    """Square box centred on the landmarks' bounding box, side ``enlarge * max(width, height)``: ``(..., 4)``."""
    if not enlarge > 0:
        raise ValueError(f"enlarge must be > 0, got {enlarge}")
    bb = landmark_bbox(lmk)
    w, h = bb[..., 2] - bb[..., 0], bb[..., 3] - bb[..., 1]
    side = torch.maximum(w, h) if isinstance(w, torch.Tensor) else np.maximum(w, h)
    return square_box((bb[..., 0] + bb[..., 2]) / 2, (bb[..., 1] + bb[..., 3]) / 2, side * enlarge)


def jitter_box(box: Array, rng: np.random.Generator, shift: float = 0.05, scale: float = 0.05) -> np.ndarray:
    """Training augmentation: move the centre by up to ``shift * side`` per axis and scale the side by a factor
    in ``[1 - scale, 1 + scale]`` (uniform). Numpy in, numpy out; ``(..., 4)`` boxes, square ones stay square."""
    box = np.asarray(box, dtype=np.float64)
    _check_box(box)
    side = box[..., 2] - box[..., 0]
    cx, cy = (box[..., 0] + box[..., 2]) / 2, (box[..., 1] + box[..., 3]) / 2
    d = rng.uniform(-shift, shift, size=box.shape[:-1] + (2,))
    s = rng.uniform(1 - scale, 1 + scale, size=box.shape[:-1])
    return square_box(cx + d[..., 0] * side, cy + d[..., 1] * side, side * s)


def crop_matrix(box: Array, size: int) -> np.ndarray:
    """2x3 affine that maps crop pixel indices ``(j, i)`` to image coordinates (use with ``WARP_INVERSE_MAP``)."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    ax, ay = (x1 - x0) / size, (y1 - y0) / size
    return np.array([[ax, 0.0, x0 + 0.5 * ax], [0.0, ay, y0 + 0.5 * ay]])


def crop_image(image: np.ndarray, box: Array, size: int, border: str = "replicate") -> np.ndarray:
    """Crop ``box`` out of an ``(H, W, 3)`` uint8 image and resize it to ``(size, size, 3)`` (bilinear).

    The box may extend past the frame; outside pixels are filled by ``border``: ``"replicate"`` (edge pixels)
    or ``"constant"`` (black). Pixel centres follow the module convention: crop pixel ``j``'s centre is crop
    coordinate ``(j + 0.5) / size``, image pixel ``i``'s centre is image coordinate ``i``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {b.tolist()}")
    modes = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}
    if border not in modes:
        raise ValueError(f"border must be one of {sorted(modes)}, got {border!r}")
    m = crop_matrix(b, size)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    # Shrinking a lot with bilinear sampling aliases: pre-blur in proportion to the scale factor.
    scale = max(m[0, 0], m[1, 1])
    src = image
    if scale > 2.0:
        sigma = 0.5 * (scale - 1.0)
        src = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    return cv2.warpAffine(src, m, (size, size), flags=flags, borderMode=modes[border], borderValue=(0, 0, 0))


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 RGB -> (3, S, S) float32 in [0, 1]: what G reads."""
    # numpy, not torch ops: tiny tensors in DataLoader workers pay torch's intra-op threading overhead
    out = np.empty((3,) + image.shape[:2], np.float32)
    np.multiply(image.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=out, dtype=np.float32)
    return torch.from_numpy(out)


def crop_tensor(image: np.ndarray, box: Array, size: int, border: str = "replicate") -> torch.Tensor:
    """:func:`crop_image` as G's input: the ``(3, size, size)`` float32 tensor in [0, 1] of ``box``'s crop."""
    return image_to_tensor(crop_image(image, box, size, border))


def to_crop(points: Array, box: Array) -> Array:
    """Image pixels -> [0, 1] crop coordinates of ``box``: ``(..., N, 2)`` points with ``(..., 4)`` boxes."""
    _check_points(points)
    _check_box(box)
    origin = box[..., None, 0:2]
    extent = box[..., None, 2:4] - origin
    return (points - origin) / extent


def from_crop(points01: Array, box: Array) -> Array:
    """[0, 1] crop coordinates -> image pixels (the exact inverse of :func:`to_crop`)."""
    _check_points(points01, "points01")
    _check_box(box)
    origin = box[..., None, 0:2]
    extent = box[..., None, 2:4] - origin
    return points01 * extent + origin


def camera_to_crop(camera: Array, box: Array) -> Array:
    """An image-pixel 8-parameter camera -> the camera that projects into [0, 1] crop coordinates of ``box``.

    Projection is affine, so ``to_crop(project(X, camera), box) == project(X, camera_to_crop(camera, box))``:
    the x row ``(m00, m01, m02, t_x)`` becomes ``(m00, m01, m02, t_x - x0) / (x1 - x0)``, the y row likewise.
    ``(..., 8)`` cameras with ``(..., 4)`` boxes, numpy or torch.
    """
    if camera.shape[-1] != 8:
        raise ValueError(f"camera must have shape (..., 8), got {tuple(camera.shape)}")
    _check_box(box)
    w = (box[..., 2] - box[..., 0])[..., None]
    h = (box[..., 3] - box[..., 1])[..., None]
    zero = box[..., 0:1] * 0
    row_x = (camera[..., 0:4] - _cat([zero, zero, zero, box[..., 0:1]])) / w
    row_y = (camera[..., 4:8] - _cat([zero, zero, zero, box[..., 1:2]])) / h
    return _cat([row_x, row_y])


def camera_from_crop(camera01: Array, box: Array) -> Array:
    """The inverse of :func:`camera_to_crop`: a camera projecting into ``box``'s [0, 1] crop -> image pixels."""
    if camera01.shape[-1] != 8:
        raise ValueError(f"camera must have shape (..., 8), got {tuple(camera01.shape)}")
    _check_box(box)
    w = (box[..., 2] - box[..., 0])[..., None]
    h = (box[..., 3] - box[..., 1])[..., None]
    zero = box[..., 0:1] * 0
    row_x = camera01[..., 0:4] * w + _cat([zero, zero, zero, box[..., 0:1]])
    row_y = camera01[..., 4:8] * h + _cat([zero, zero, zero, box[..., 1:2]])
    return _cat([row_x, row_y])


def _cat(items: list[Array]) -> Array:
    if isinstance(items[0], torch.Tensor):
        return torch.cat(items, dim=-1)
    return np.concatenate(items, axis=-1)
