"""The 3D morphable model (paper section 3.1, eq. 2 and 7).

A face is ``S = S_bar + A_id (sigma_id * alpha_id) + A_exp (sigma_exp * alpha_exp)``.

Convention (used everywhere in tdd_lite): the bases ``A_id`` and ``A_exp`` have orthonormal columns and the
parameters ``alpha_id``/``alpha_exp`` are measured **in standard deviations** (``alpha = 1`` is one std along
that mode), so a network's raw outputs near zero mean "near the mean face" and an isotropic prior is
``alpha ~ N(0, I)``. ``sigma_*`` are the per-mode standard deviations in the model's length unit.

Vertices are stored flat as rows ``3*v + c`` (c = x, y, z). Landmarks are either vertex indices ``(68,)`` or
barycentric points ``(68, 3)`` vertex indices with ``(68, 3)`` weights (FLAME). The 68 landmark rows of the
mean and bases are precomputed once, so ``landmarks3d`` for a batch of 20 is three small matmuls.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

N_LANDMARKS = 68


@dataclass
class ModelArrays:
    """Plain numpy arrays of a 3DMM, before it becomes a torch module (what loaders build)."""

    mean_shape: np.ndarray  # (N, 3)
    id_basis: np.ndarray  # (3N, K_id), orthonormal columns
    id_std: np.ndarray  # (K_id,)
    exp_basis: np.ndarray  # (3N, K_exp), orthonormal columns
    exp_std: np.ndarray  # (K_exp,)
    triangles: np.ndarray  # (T, 3) int, 0-based
    landmark_index: np.ndarray  # (68,) or (68, 3) int, 0-based
    landmark_weights: np.ndarray | None = None  # (68, 3) barycentric weights when landmark_index is (68, 3)
    units: str = "m"
    name: str = "model"
    meta: dict = field(default_factory=dict)


def orthonormalize(basis: np.ndarray, std: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Turn a basis whose columns scale the modes (``A * alpha``) into orthonormal ``Q`` and per-mode std.

    If the columns are already orthogonal, ``Q = A / |A|`` and ``std = |A| * std`` (modes kept in order).
    Otherwise (e.g. a PCA basis restricted to a trimmed set of vertices) the std-scaled basis is re-diagonalised
    by a thin SVD, ``A diag(std) = Q diag(s) V^T``: the new modes mix the old ones, but the shape distribution
    for ``alpha ~ N(0, I)`` (covariance ``A diag(std^2) A^T = Q diag(s^2) Q^T``) is exactly preserved.
    """
    basis = np.asarray(basis, dtype=np.float64)
    std = np.ones(basis.shape[1]) if std is None else np.asarray(std, dtype=np.float64)
    scaled = basis * std[None, :]
    norms = np.linalg.norm(scaled, axis=0)
    if np.any(norms == 0):
        raise ValueError(f"basis has {int(np.sum(norms == 0))} all-zero column(s)")
    q = scaled / norms
    gram = q.T @ q
    if np.abs(gram - np.eye(q.shape[1])).max() < 1e-4:
        return q.astype(np.float32), norms.astype(np.float32)
    u, s, _ = np.linalg.svd(scaled, full_matrices=False)
    if s[-1] <= s[0] * 1e-10:
        raise ValueError(f"basis columns are linearly dependent (singular values {s[0]:.3g} ... {s[-1]:.3g})")
    sign = np.where(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])] < 0, -1.0, 1.0)  # largest entry > 0
    return (u * sign).astype(np.float32), s.astype(np.float32)


def _check_finite(name: str, x: Tensor) -> None:
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(f"{name} contains NaN or infinite values (first at index {bad})")


class MorphableModel(nn.Module):
    """A linear 3DMM as a torch module (buffers only, so ``.to(device)`` moves it and it has no parameters)."""

    def __init__(self, arrays: ModelArrays):
        super().__init__()
        a = arrays
        mean = np.asarray(a.mean_shape, dtype=np.float32)
        if mean.ndim != 2 or mean.shape[1] != 3:
            raise ValueError(f"mean_shape must be (N, 3), got {mean.shape}")
        n = mean.shape[0]
        for nm, basis, std in (("id", a.id_basis, a.id_std), ("exp", a.exp_basis, a.exp_std)):
            if basis.ndim != 2 or basis.shape[0] != 3 * n:
                raise ValueError(f"{nm}_basis must be (3N={3 * n}, K), got {basis.shape}")
            if std.shape != (basis.shape[1],):
                raise ValueError(f"{nm}_std must be ({basis.shape[1]},), got {std.shape}")
        tri = np.asarray(a.triangles, dtype=np.int64)
        if tri.ndim != 2 or tri.shape[1] != 3 or (tri.size and (tri.min() < 0 or tri.max() >= n)):
            raise ValueError(f"triangles must be (T, 3) with 0-based vertex indices < {n}")
        li = np.asarray(a.landmark_index, dtype=np.int64)
        if li.shape == (N_LANDMARKS,):
            li3 = np.stack([li, li, li], axis=1)
            lw = np.tile(np.array([1.0, 0.0, 0.0], dtype=np.float32), (N_LANDMARKS, 1))
        elif li.shape == (N_LANDMARKS, 3) and a.landmark_weights is not None:
            li3, lw = li, np.asarray(a.landmark_weights, dtype=np.float32)
            if lw.shape != (N_LANDMARKS, 3):
                raise ValueError(f"landmark_weights must be (68, 3), got {lw.shape}")
        else:
            raise ValueError(f"landmark_index must be (68,) or (68, 3) with weights, got {li.shape}")
        if li3.min() < 0 or li3.max() >= n:
            raise ValueError(f"landmark_index out of range [0, {n})")

        self.name, self.units, self.meta = a.name, a.units, dict(a.meta)
        self.triangles = tri
        self.landmark_index = li if li.ndim == 1 else li3
        self.landmark_weights = None if li.ndim == 1 else lw
        self.register_buffer("mean_shape", torch.from_numpy(mean))
        self.register_buffer("id_basis", torch.from_numpy(np.asarray(a.id_basis, dtype=np.float32)))
        self.register_buffer("id_std", torch.from_numpy(np.asarray(a.id_std, dtype=np.float32)))
        self.register_buffer("exp_basis", torch.from_numpy(np.asarray(a.exp_basis, dtype=np.float32)))
        self.register_buffer("exp_std", torch.from_numpy(np.asarray(a.exp_std, dtype=np.float32)))

        # Landmark rows, precomputed: (68, 3) mean and (68*3, K) std-scaled bases.
        w = torch.from_numpy(lw)  # (68, 3)
        idx = torch.from_numpy(li3)  # (68, 3)

        def rows(basis: Tensor) -> Tensor:
            b = basis.view(n, 3, -1)[idx]  # (68, 3 bary, 3 xyz, K)
            return (b * w[:, :, None, None]).sum(1).reshape(N_LANDMARKS * 3, -1)

        self.register_buffer("lmk_mean", (self.mean_shape[idx] * w[:, :, None]).sum(1))
        self.register_buffer("lmk_id", rows(self.id_basis) * self.id_std)
        self.register_buffer("lmk_exp", rows(self.exp_basis) * self.exp_std)

    # ------------------------------------------------------------------ sizes
    @property
    def n_vertices(self) -> int:
        return int(self.mean_shape.shape[0])

    @property
    def n_id(self) -> int:
        return int(self.id_std.shape[0])

    @property
    def n_exp(self) -> int:
        return int(self.exp_std.shape[0])

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, vertices={self.n_vertices}, triangles={len(self.triangles)}, "
                f"n_id={self.n_id}, n_exp={self.n_exp}, units={self.units!r}")

    # ------------------------------------------------------------ validation
    def _check(self, alpha: Tensor | None, k: int, name: str) -> Tensor | None:
        if alpha is None:
            return None
        if not isinstance(alpha, Tensor):
            alpha = torch.as_tensor(alpha, dtype=self.mean_shape.dtype, device=self.mean_shape.device)
        if alpha.ndim != 2 or alpha.shape[1] != k:
            raise ValueError(f"{name} must have shape (B, {k}), got {tuple(alpha.shape)}")
        _check_finite(name, alpha)
        return alpha.to(self.mean_shape.dtype)  # e.g. float64 parameters on a float32 model (differentiable)

    def _params(self, alpha_id: Tensor | None, alpha_exp: Tensor | None) -> tuple[Tensor | None, Tensor | None, int]:
        alpha_id = self._check(alpha_id, self.n_id, "alpha_id")
        alpha_exp = self._check(alpha_exp, self.n_exp, "alpha_exp")
        if alpha_id is None and alpha_exp is None:
            raise ValueError("give at least one of alpha_id, alpha_exp (use zeros for the mean face)")
        b = (alpha_id if alpha_id is not None else alpha_exp).shape[0]
        if alpha_id is not None and alpha_exp is not None and alpha_exp.shape[0] != b:
            raise ValueError(f"alpha_id has batch {b} but alpha_exp has batch {alpha_exp.shape[0]}")
        return alpha_id, alpha_exp, b

    # ----------------------------------------------------------------- shapes
    def shape(self, alpha_id: Tensor | None, alpha_exp: Tensor | None) -> Tensor:
        """Dense face ``S = S_bar + A_id(sigma_id*alpha_id) + A_exp(sigma_exp*alpha_exp)``: (B, N, 3).

        Pass ``alpha_id=None`` for eq. 2 (``S_exp``, the face without identity) or ``alpha_exp=None`` for
        eq. 7 (``S_id``, the face without expression).
        """
        alpha_id, alpha_exp, b = self._params(alpha_id, alpha_exp)
        flat = self.mean_shape.reshape(1, -1).expand(b, -1)
        if alpha_id is not None:
            flat = flat + (alpha_id * self.id_std) @ self.id_basis.T
        if alpha_exp is not None:
            flat = flat + (alpha_exp * self.exp_std) @ self.exp_basis.T
        return flat.reshape(b, -1, 3)

    def shape_exp_only(self, alpha_exp: Tensor) -> Tensor:
        """Eq. 2: ``S_exp = S_bar + A_exp alpha_exp``, the face without identity (B, N, 3)."""
        return self.shape(None, alpha_exp)

    def shape_id_only(self, alpha_id: Tensor) -> Tensor:
        """Eq. 7: ``S_id = S_bar + A_id alpha_id``, the face without expression (B, N, 3)."""
        return self.shape(alpha_id, None)

    def landmarks3d(self, alpha_id: Tensor | None, alpha_exp: Tensor | None) -> Tensor:
        """The 68 landmark points ``S(:, l)`` of :meth:`shape` (B, 68, 3), from the precomputed landmark rows.

        ``None`` for a parameter drops that term exactly as in :meth:`shape` (eq. 2 / eq. 7 at the landmarks).
        """
        alpha_id, alpha_exp, b = self._params(alpha_id, alpha_exp)
        flat = self.lmk_mean.reshape(1, -1).expand(b, -1)
        if alpha_id is not None:
            flat = flat + alpha_id @ self.lmk_id.T
        if alpha_exp is not None:
            flat = flat + alpha_exp @ self.lmk_exp.T
        return flat.reshape(b, N_LANDMARKS, 3)

    def landmarks_from_shape(self, shape: Tensor) -> Tensor:
        """Pick the 68 landmarks out of a dense (B, N, 3) shape (barycentric when the model needs it)."""
        idx = torch.as_tensor(self.landmark_index, device=shape.device)
        if idx.ndim == 1:
            return shape[:, idx]
        w = torch.as_tensor(self.landmark_weights, device=shape.device, dtype=shape.dtype)
        return (shape[:, idx] * w[None, :, :, None]).sum(2)

    def zeros(self, batch: int = 1) -> tuple[Tensor, Tensor]:
        """``(alpha_id, alpha_exp)`` of the mean face for a batch."""
        dev, dt = self.mean_shape.device, self.mean_shape.dtype
        return torch.zeros(batch, self.n_id, device=dev, dtype=dt), torch.zeros(batch, self.n_exp, device=dev, dtype=dt)

    # ---------------------------------------------------------------- arrays
    def to_arrays(self) -> ModelArrays:
        return ModelArrays(
            mean_shape=self.mean_shape.cpu().numpy(), id_basis=self.id_basis.cpu().numpy(),
            id_std=self.id_std.cpu().numpy(), exp_basis=self.exp_basis.cpu().numpy(),
            exp_std=self.exp_std.cpu().numpy(), triangles=self.triangles,
            landmark_index=np.asarray(self.landmark_index), landmark_weights=self.landmark_weights,
            units=self.units, name=self.name, meta=dict(self.meta))


# --------------------------------------------------------------------- npz I/O
_NPZ_KEYS = ("mean_shape", "id_basis", "id_std", "exp_basis", "exp_std", "triangles", "landmark_index")


def save_npz(arrays: ModelArrays, path: str | Path) -> None:
    """Write a model as an uncompressed-deterministic ``.npz`` (same arrays -> same bytes)."""
    import io

    path = Path(path)
    items = {k: getattr(arrays, k) for k in _NPZ_KEYS}
    if arrays.landmark_weights is not None:
        items["landmark_weights"] = arrays.landmark_weights
    info = {"units": arrays.units, "name": arrays.name, "meta": arrays.meta}
    items["info_json"] = np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(items):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(items[key]), allow_pickle=False)
            zi = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, buf.getvalue())
    tmp.replace(path)


def load_npz(path: str | Path) -> MorphableModel:
    """Read a model written by :func:`save_npz` (``allow_pickle=False``: safe on untrusted files)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: not a tdd_lite model file, missing arrays {missing}")
            data = {k: z[k] for k in z.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        if isinstance(e, ValueError) and str(path) in str(e):
            raise
        raise ValueError(f"{path}: cannot read model file ({e})") from e
    info = json.loads(bytes(data.pop("info_json")).decode()) if "info_json" in data else {}
    return MorphableModel(ModelArrays(
        **{k: data[k] for k in _NPZ_KEYS}, landmark_weights=data.get("landmark_weights"),
        units=info.get("units", "m"), name=info.get("name", path.stem), meta=info.get("meta", {})))


TEACHING_MODEL_FILE = "teaching_3dmm.npz"


def teaching_model_path() -> Path:
    return Path(str(resources.files("tdd_lite") / "assets" / TEACHING_MODEL_FILE))


@lru_cache(maxsize=1)
def _teaching_cached() -> MorphableModel:
    path = teaching_model_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python tools/build_teaching_model.py` to build it")
    return load_npz(path)


def load_teaching_model() -> MorphableModel:
    """The embedded CC0 teaching 3DMM (199 identity + 29 expression modes, 68 iBUG landmarks).

    Returns a fresh copy each call (the file is parsed once), so moving it to a device is safe.
    """
    import copy

    return copy.deepcopy(_teaching_cached())


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
