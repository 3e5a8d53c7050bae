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

import copy
import hashlib
import io
import json
import lzma
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .errors import DataError
from .files import atomic_write

N_LANDMARKS = 68

# Limits for model files (checked from declared sizes *before* anything is allocated):
MAX_ARRAY_ELEMENTS = 2**26  # elements in one array: 512 MiB as float64, twice BFM 2009's shapePC (3.2e7)
MAX_ARRAY_BYTES = 8 * MAX_ARRAY_ELEMENTS  # bytes of one array (so a member inflating to 1 GiB is refused)
MAX_MODEL_BYTES = 2 * 2**30  # declared bytes of all arrays read from one model file
MAX_NPZ_MEMBERS = 32  # members of an .npz archive
MAX_INFO_BYTES = 1 << 20  # the JSON metadata inside a tdd_lite .npz
MAX_NESTING = 32  # nesting depth of JSON metadata, pickled containers and other recursive structures


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


def _where(a: np.ndarray, mask: np.ndarray) -> str:
    return str(np.argwhere(mask)[0].tolist()) if a.ndim else "[]"


def check_float_array(name: str, a) -> np.ndarray:
    """A real, finite float array; raises :class:`DataError` ``field 'NAME': ...`` otherwise."""
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise DataError(f"field '{name}': dtype {a.dtype}; expected real numbers")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise DataError(f"field '{name}': {int(bad.sum())} NaN or infinite values (first at index "
                            f"{_where(a, bad)}); expected finite numbers")
        big = np.abs(a) > np.finfo(np.float32).max
        if big.any():
            raise DataError(f"field '{name}': {int(big.sum())} values beyond float32's range (first at index "
                            f"{_where(a, big)}); expected finite float32 numbers")
    return a


def check_std(name: str, s) -> np.ndarray:
    """Finite standard deviations > 0."""
    s = check_float_array(name, s)
    for test, what in ((s < 0, "negative"), (s == 0, "zero")):
        if test.any():
            raise DataError(f"field '{name}': {int(test.sum())} {what} values (first at index {_where(s, test)}); "
                            "expected standard deviations > 0")
    return s


def check_index_array(name: str, a, n: int, what: str = "vertex indices") -> np.ndarray:
    """Integer (or integral float) 0-based indices in ``[0, n)`` as int64."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            raise DataError(f"field '{name}': {int(bad.sum())} non-integer values (first at index {_where(a, bad)}: "
                            f"{float(a[tuple(np.argwhere(bad)[0])])!r}); expected integer {what}")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iu":
        raise DataError(f"field '{name}': dtype {a.dtype}; expected integer {what}")
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= n)
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        raise DataError(f"field '{name}': {int(bad.sum())} values outside [0, {n - 1}] (first at index "
                        f"{[int(i) for i in first]}: {int(a[first])}); expected 0-based {what} < {n}")
    return a


class MorphableModel(nn.Module):
    """A linear 3DMM as a torch module (buffers only, so ``.to(device)`` moves it and it has no parameters).

    The arrays are validated on construction (shapes, finite values, stds > 0, integer indices in range);
    a problem raises :class:`~tdd_lite.errors.DataError` ``field 'NAME': what; expected ...`` (loaders prefix
    the file name).
    """

    def __init__(self, arrays: ModelArrays):
        super().__init__()
        a = arrays
        mean = check_float_array("mean_shape", a.mean_shape)
        if mean.ndim != 2 or mean.shape[1] != 3 or mean.shape[0] < 1:
            raise DataError(f"field 'mean_shape': shape {mean.shape}; expected (N, 3) with N >= 1 vertices")
        mean = mean.astype(np.float32)
        n = mean.shape[0]
        for nm, basis, std in (("id", a.id_basis, a.id_std), ("exp", a.exp_basis, a.exp_std)):
            basis, std = np.asarray(basis), np.asarray(std)
            if basis.ndim != 2 or basis.shape[0] != 3 * n:
                raise DataError(f"field '{nm}_basis': shape {basis.shape}; expected (3N={3 * n}, K) for the "
                                f"{n} vertices of mean_shape: mismatched shapes")
            if std.shape != (basis.shape[1],):
                raise DataError(f"field '{nm}_std': shape {std.shape}; expected ({basis.shape[1]},), one per "
                                f"column of {nm}_basis: mismatched shapes")
            check_float_array(f"{nm}_basis", basis)
            check_std(f"{nm}_std", std)
        tri = np.asarray(a.triangles)
        if tri.ndim != 2 or tri.shape[1] != 3:
            raise DataError(f"field 'triangles': shape {tri.shape}; expected (T, 3)")
        tri = check_index_array("triangles", tri, n)
        li = np.asarray(a.landmark_index)
        if li.shape == (N_LANDMARKS,):
            li = check_index_array("landmark_index", li, n)
            li3 = np.stack([li, li, li], axis=1)
            lw = np.tile(np.array([1.0, 0.0, 0.0], dtype=np.float32), (N_LANDMARKS, 1))
        elif li.shape == (N_LANDMARKS, 3) and a.landmark_weights is not None:
            li = li3 = check_index_array("landmark_index", li, n)
            lw = check_float_array("landmark_weights", a.landmark_weights)
            if lw.shape != (N_LANDMARKS, 3):
                raise DataError(f"field 'landmark_weights': shape {lw.shape}; expected (68, 3)")
            off = np.abs(lw.astype(np.float64).sum(1) - 1.0) > 1e-3
            if off.any():
                raise DataError(f"field 'landmark_weights': {int(off.sum())} rows do not sum to 1 (first row "
                                f"{int(np.argmax(off))}); expected barycentric weights")
            lw = lw.astype(np.float32)
        else:
            raise DataError(f"field 'landmark_index': shape {li.shape}; expected (68,) vertex indices or (68, 3) "
                            "with landmark_weights")

        self.name, self.units, self.meta = a.name, a.units, dict(a.meta)
        self.triangles = tri
        self.landmark_index = li if li.ndim == 1 else li3
        self.landmark_weights = None if li.ndim == 1 else lw
        self.register_buffer("mean_shape", torch.from_numpy(mean))
        for key in ("id_basis", "id_std", "exp_basis", "exp_std"):
            self.register_buffer(key, torch.from_numpy(np.ascontiguousarray(getattr(a, key), dtype=np.float32)))

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
        # one field group per line: the repr stays narrower than a notebook's code column
        return (f"name={self.name!r},\nvertices={self.n_vertices}, triangles={len(self.triangles)},\n"
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
    """Write a model as a deterministic ``.npz`` (same arrays -> same bytes), atomically
    (:func:`tdd_lite.files.atomic_write`)."""
    path = Path(path)
    items = {k: getattr(arrays, k) for k in _NPZ_KEYS}
    if arrays.landmark_weights is not None:
        items["landmark_weights"] = arrays.landmark_weights
    info = {"units": arrays.units, "name": arrays.name, "meta": arrays.meta}
    items["info_json"] = np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for key in sorted(items):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(items[key]), allow_pickle=False)
                zi = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                zi.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(zi, buf.getvalue())

    atomic_write(path, write)


_NPZ_FLOAT_KEYS = ("mean_shape", "id_basis", "id_std", "exp_basis", "exp_std", "landmark_weights")


def _read_npy_header(f, where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and header length of an ``.npy`` stream (nothing else is read)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (DataError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError):
        raise  # a damaged archive member (bad CRC, corrupt deflate data): reported by the caller
    except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError, ...
        raise DataError(f"{where}: not a valid .npy array header ({type(e).__name__}: {e})") from None
    return tuple(int(d) for d in shape), bool(fortran), np.dtype(dtype), f.tell()


def read_npz_arrays(path: str | Path, allowed: Sequence[str] | None = None, *,
                    max_elements: int = MAX_ARRAY_ELEMENTS, max_bytes: int = MAX_MODEL_BYTES) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, read safely from an untrusted file.

    Before anything is decompressed into memory, the zip directory's uncompressed sizes and each member's
    ``.npy`` header (shape, dtype) are checked: at most ``max_elements`` elements per array, ``max_bytes`` in
    all, members that agree with their headers, no object (pickled) arrays, no duplicate or unexpected
    members. The CRC of every member is verified. Errors are :class:`DataError` naming the file and member.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{p}: not an .npz (zip) archive ({e})") from e
    out: dict[str, np.ndarray] = {}
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_NPZ_MEMBERS:
            raise DataError(f"{p}: {len(infos)} members; expected at most {MAX_NPZ_MEMBERS}")
        names = [i.filename for i in infos]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DataError(f"{p}: duplicate members {dup}")
        total = 0
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else None
            if key is None or (allowed is not None and key not in allowed):
                raise DataError(f"{p}: unexpected member {info.filename!r}; expected "
                                f"{sorted(k + '.npy' for k in allowed) if allowed is not None else '*.npy members'}")
            where = f"{p}: field '{key}'"
            limit = 16384 + max_elements * 8  # an .npy header (at most 10 kB) + float64 data
            if info.file_size > limit or total + info.file_size > max_bytes + 16384 * len(infos):
                raise DataError(f"{where}: the zip directory says it decompresses to {info.file_size} bytes; the "
                                f"limit is {max_elements} elements per array and {max_bytes} bytes per file "
                                "(a corrupt file or a zip bomb)")
            total += info.file_size
            try:
                with zf.open(info) as f:
                    shape, fortran, dtype, header_len = _read_npy_header(f, where)
                    if dtype.hasobject:
                        raise DataError(f"{where}: object array (pickled Python objects); expected plain numbers")
                    count = math.prod(shape)
                    if count > max_elements:
                        raise DataError(f"{where}: header declares shape {shape} = {count} elements; the limit is "
                                        f"{max_elements} (MAX_ARRAY_ELEMENTS)")
                    nbytes = count * dtype.itemsize
                    if nbytes > 8 * max_elements:
                        raise DataError(f"{where}: header declares {nbytes} bytes; the limit is {8 * max_elements}")
                    if header_len + nbytes != info.file_size:
                        raise DataError(f"{where}: header declares shape {shape} of {dtype} ({nbytes} bytes) but the "
                                        f"member holds {info.file_size - header_len} bytes: truncated or corrupt")
                    buf = bytearray(nbytes)
                    view, got = memoryview(buf), 0
                    while got < nbytes:
                        chunk = f.read(min(1 << 20, nbytes - got))
                        if not chunk:
                            break
                        view[got:got + len(chunk)] = chunk
                        got += len(chunk)
                    if got != nbytes:
                        raise DataError(f"{where}: truncated member ({got} of {nbytes} data bytes)")
                    f.read(1)  # reach the end of the member: zipfile verifies its CRC-32 there
            except DataError:
                raise
            except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, RuntimeError,
                    NotImplementedError, ValueError) as e:  # corrupt deflate/bzip2/lzma data, encrypted members
                raise DataError(f"{where}: cannot read the member ({type(e).__name__}: {e})") from e
            arr = np.frombuffer(buf, dtype=dtype, count=count) if count else np.zeros(0, dtype)
            out[key] = arr.reshape(shape, order="F" if fortran else "C")
    return out


def _json_depth(obj, where: str) -> None:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > MAX_NESTING:
            raise DataError(f"{where}: nested deeper than {MAX_NESTING} levels")
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)


def parse_json_bounded(text: str | bytes, where: str):
    """``json.loads`` with a bounded nesting depth; errors are :class:`DataError` naming ``where``."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise DataError(f"{where}: nested deeper than {MAX_NESTING} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{where}: not valid JSON ({e})") from e
    _json_depth(obj, where)
    return obj


def load_npz(path: str | Path) -> MorphableModel:
    """Read a model written by :func:`save_npz`, safely (no pickles; sizes checked before allocating).

    Every problem raises :class:`~tdd_lite.errors.DataError` ``FILE: field 'NAME': what; expected ...``.
    """
    path = Path(path)
    data = read_npz_arrays(path, allowed=(*_NPZ_KEYS, "landmark_weights", "info_json"))
    missing = [k for k in _NPZ_KEYS if k not in data]
    if missing:
        raise DataError(f"{path}: not a tdd_lite model file, missing arrays {missing}")
    for k in _NPZ_FLOAT_KEYS:
        if k in data and data[k].dtype.kind != "f":
            raise DataError(f"{path}: field '{k}': dtype {data[k].dtype}; expected floating point")
    for k in ("triangles", "landmark_index"):
        if data[k].dtype.kind not in "iu":
            raise DataError(f"{path}: field '{k}': dtype {data[k].dtype}; expected integer indices")
    info: dict = {}
    if "info_json" in data:
        raw = data.pop("info_json")
        if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_INFO_BYTES:
            raise DataError(f"{path}: field 'info_json': {raw.dtype} array of shape {raw.shape}; expected at most "
                            f"{MAX_INFO_BYTES} bytes of UTF-8 JSON")
        info = parse_json_bounded(bytes(raw), f"{path}: field 'info_json'")
        if not isinstance(info, dict):
            raise DataError(f"{path}: field 'info_json': a JSON {type(info).__name__}; expected an object")
        for key, typ in (("units", str), ("name", str), ("meta", dict)):
            if key in info and not isinstance(info[key], typ):
                raise DataError(f"{path}: field 'info_json.{key}': a {type(info[key]).__name__}; expected "
                                f"{typ.__name__}")
    try:
        model = MorphableModel(ModelArrays(
            **{k: data[k] for k in _NPZ_KEYS}, landmark_weights=data.get("landmark_weights"),
            units=info.get("units", "m"), name=info.get("name", path.stem), meta=info.get("meta", {})))
    except DataError as e:
        raise DataError(f"{path}: {e}") from e
    for key in ("id_basis", "exp_basis"):
        check_orthonormal(path, key, data[key])
    return model


# Largest |Q^T Q - I| entry accepted for a stored basis. float32 storage rounds an orthonormal basis to
# deviations of a few 1e-7 (at most ~eps32 = 1.2e-7 per unit column, whatever the vertex count); 1e-4 is the
# threshold orthonormalize() already uses to call a basis orthonormal, 100x above rounding, and a deviation
# below it changes the length of any shape offset by at most 0.01% (invisible at face scale), while a basis
# that is scaled, sheared or not normalised (what the convention forbids: alpha would no longer be measured in
# standard deviations) is off by far more.
ORTHONORMAL_TOL = 1e-4


def check_orthonormal(path: Path | str, key: str, basis: np.ndarray, tol: float = ORTHONORMAL_TOL) -> None:
    """Refuse a stored basis whose columns are not orthonormal (``FILE: field 'KEY': ...``)."""
    b = np.asarray(basis, np.float64)
    if b.ndim != 2 or not b.shape[1]:
        return
    gram = b.T @ b
    dev = np.abs(gram - np.eye(b.shape[1]))
    worst = float(dev.max())
    if not worst <= tol:
        i, j = (int(x) for x in np.unravel_index(int(np.argmax(dev)), dev.shape))
        what = (f"column {i} has length {math.sqrt(max(gram[i, i], 0.0)):.6g}" if i == j
                else f"columns {i} and {j} have dot product {gram[i, j]:.6g}")
        raise DataError(f"{path}: field '{key}': columns not orthonormal ({what}; largest |Q^T Q - I| entry "
                        f"{worst:.3g} > {tol:g}); expected orthonormal columns with the scale in "
                        f"{key.replace('basis', 'std')}")


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
    return copy.deepcopy(_teaching_cached())


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
