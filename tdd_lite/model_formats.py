"""Loaders for 3D morphable models you own (none is shipped; nothing is ever downloaded).

Each loader reads files in their native format and returns a :class:`~tdd_lite.morphable.MorphableModel` in
tdd_lite's convention: metres, orthonormal identity/expression bases, per-mode standard deviations, 0-based
triangles and 68 iBUG landmarks (vertex indices, or barycentric points for FLAME).

==========================  ==================================================================================
``load_bfm2009``            Basel Face Model 2009 ``01_MorphableModel.mat`` (micrometres), optionally trimmed
                            and completed by 3DDFA's ``model_info.mat`` (``trimIndex``, 68 ``keypoints``,
                            1-based) and an expression basis: 3DDFA's ``Model_Expression.mat`` (29 modes, the
                            paper's setting) or ``Exp_Pca.bin`` (79 modes, with their standard deviations).
``read_exp_pca_bin``        the raw ``Exp_Pca.bin`` arrays (int32 K, float32 mean (3N), float32 K x 3N modes).
``load_flame``              FLAME ``generic_model.pkl`` through a restricted unpickler (no chumpy needed: its
                            arrays are rebuilt as numpy; every global other than numpy's array machinery is
                            refused), with a 68-point barycentric landmark embedding (e.g. DECA's
                            ``landmark_embedding.npy``: ``full_lmk_faces_idx`` / ``full_lmk_bary_coords``).
``load_eos``                the eos library's cereal-binary ``.bin`` (versions 1-4 of
                            ``eos::morphablemodel::MorphableModel``; e.g. the Surrey Face Model, millimetres).
``load_ict_facekit``        an ICT-FaceKit ``FaceXModel`` folder: ``generic_neutral_mesh.obj``, ``identityNNN.obj``
                            and the expression OBJs named in ``vertex_indices.json`` (centimetres).
==========================  ==================================================================================

Bases stored as "std-scaled" columns (FLAME, ICT identities) or with separate eigenvalues (BFM, eos) are turned
into orthonormal columns + std with :func:`tdd_lite.morphable.orthonormalize`. Blendshape expression sets (ICT,
eos blendshapes) are not PCA models: they are orthonormalised by an SVD and the "std" of a mode is its singular
value, i.e. alpha = 1 is the RMS size of one unit blendshape weight along that direction.

Every problem with a file raises :class:`ModelFormatError` (a ``ValueError``) whose message starts with the file
name and says what was wrong.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .morphable import N_LANDMARKS, ModelArrays, MorphableModel, orthonormalize

UNIT_TO_METRES = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 1e-3, "um": 1e-6}


class ModelFormatError(ValueError):
    """A model file is missing, corrupt, truncated or inconsistent (the message names the file)."""


# --------------------------------------------------------------------------------------------- helpers
def _path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file or directory")
    return p


def _finite(path: Path, name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind in "fc" and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0].tolist()
        raise ModelFormatError(f"{path}: '{name}' contains NaN or infinite values (first at index {bad})")
    return a


def _unit_scale(unit: str) -> float:
    if unit not in UNIT_TO_METRES:
        raise ValueError(f"unit must be one of {sorted(UNIT_TO_METRES)}, got {unit!r}")
    return UNIT_TO_METRES[unit]


def _indices(path: Path, name: str, idx: np.ndarray, n: int, one_based: bool) -> np.ndarray:
    """Integer indices checked against [0, n) (after subtracting 1 when the file is 1-based)."""
    a = np.asarray(idx)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ModelFormatError(f"{path}: '{name}' must hold integer indices")
    a = a.astype(np.int64) - (1 if one_based else 0)
    if a.size and (a.min() < 0 or a.max() >= n):
        base = "1-based" if one_based else "0-based"
        lo, hi = (1, n) if one_based else (0, n - 1)
        bad = int(a.min() + one_based) if a.min() < 0 else int(a.max() + one_based)
        raise ModelFormatError(f"{path}: '{name}' has {base} index {bad} outside [{lo}, {hi}]")
    return a


def _basis_svd(deltas: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis and singular values of a (3N, S) set of blendshapes (for non-PCA expression sets)."""
    u, s, _ = np.linalg.svd(np.asarray(deltas, np.float64), full_matrices=False)
    keep = s > s[0] * 1e-7 if s.size else s > 0
    u, s = u[:, keep], s[keep]
    k = len(s) if k is None else k
    if k > len(s):
        raise ValueError(f"asked for {k} expression modes but the blendshapes span only {len(s)}")
    return u[:, :k], s[:k]


def _build(path: Path, *, mean: np.ndarray, id_basis: np.ndarray, id_std: np.ndarray, exp_basis: np.ndarray,
           exp_std: np.ndarray, triangles: np.ndarray, landmark_index: np.ndarray,
           landmark_weights: np.ndarray | None, unit: str, name: str, meta: dict,
           orthonormal: tuple[bool, bool] = (False, False)) -> MorphableModel:
    """Unit conversion to metres, orthonormal bases, validation; errors name ``path``."""
    scale = _unit_scale(unit)
    n = mean.size // 3
    for nm, b, s in (("identity basis", id_basis, id_std), ("expression basis", exp_basis, exp_std)):
        if b.ndim != 2 or b.shape[0] != 3 * n:
            raise ModelFormatError(f"{path}: {nm} has {b.shape[0] if b.ndim == 2 else b.shape} rows but the mean "
                                   f"shape has {n} vertices (expected {3 * n} rows): mismatched vertex counts")
        if s.shape != (b.shape[1],):
            raise ModelFormatError(f"{path}: {nm} has {b.shape[1]} modes but {s.shape} standard deviations")
        if np.any(s <= 0):
            raise ModelFormatError(f"{path}: {nm} has non-positive standard deviations")
    id_q, id_s = (id_basis.astype(np.float32), id_std.astype(np.float32)) if orthonormal[0] else \
        orthonormalize(id_basis, id_std)
    if exp_basis.shape[1]:
        exp_q, exp_s = (exp_basis.astype(np.float32), exp_std.astype(np.float32)) if orthonormal[1] else \
            orthonormalize(exp_basis, exp_std)
    else:
        exp_q, exp_s = np.zeros((3 * n, 0), np.float32), np.zeros(0, np.float32)
    arrays = ModelArrays(
        mean_shape=(np.asarray(mean, np.float64).reshape(n, 3) * scale).astype(np.float32),
        id_basis=id_q, id_std=(id_s * scale).astype(np.float32), exp_basis=exp_q,
        exp_std=(exp_s * scale).astype(np.float32), triangles=np.asarray(triangles, np.int64),
        landmark_index=np.asarray(landmark_index, np.int64),
        landmark_weights=None if landmark_weights is None else np.asarray(landmark_weights, np.float32),
        units="m", name=name, meta={"source_unit": unit, **meta})
    try:
        return MorphableModel(arrays)
    except ValueError as e:
        raise ModelFormatError(f"{path}: {e}") from e


def _landmarks_arg(landmark_index, n: int, what: str) -> np.ndarray:
    """68 0-based vertex indices given as a sequence/array or a file (.txt/.json with 68 integers)."""
    src = "landmark_index"
    if isinstance(landmark_index, str | Path):
        p = _path(landmark_index)
        src = str(p)
        text = p.read_text()
        try:
            vals = json.loads(text)
        except json.JSONDecodeError:
            vals = text.split()
        try:
            landmark_index = np.array([int(v) for v in np.ravel(vals)])
        except (TypeError, ValueError) as e:
            raise ModelFormatError(f"{p}: expected 68 integer vertex indices ({e})") from e
    li = np.asarray(landmark_index).reshape(-1)
    if li.shape != (N_LANDMARKS,):
        raise ModelFormatError(f"{src}: {what} needs 68 landmark vertex indices, got {li.shape[0]}")
    return _indices(Path(src), "landmark_index", li, n, one_based=False)


# ---------------------------------------------------------------------------------------------- MATLAB
def _loadmat(path: str | Path, required: Sequence[str]) -> dict:
    from scipy.io import loadmat

    p = _path(path)
    try:
        data = loadmat(str(p))
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5)
        raise ModelFormatError(f"{p}: MATLAB v7.3 (HDF5) file; re-save it with save(..., '-v7') ({e})") from e
    except Exception as e:  # scipy raises ValueError/TypeError/OSError/MatReadError on corrupt files
        raise ModelFormatError(f"{p}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from e
    missing = [k for k in required if k not in data]
    if missing:
        have = sorted(k for k in data if not k.startswith("__"))
        raise ModelFormatError(f"{p}: missing variable(s) {missing} (the file has {have})")
    return data


def _trim_rows(index: np.ndarray) -> np.ndarray:
    """Rows ``3v, 3v+1, 3v+2`` of flat xyz vectors for 0-based vertex indices ``v``."""
    return (3 * index[:, None] + np.arange(3)[None, :]).reshape(-1)


def read_exp_pca_bin(path: str | Path, n_vertices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """3DDFA's ``Exp_Pca.bin``: int32 K, float32 mean (3N), float32 K x 3N modes (mode-major).

    Returns ``(mean (3N,), modes (3N, K))`` as float64. N comes from the file size (or is checked against
    ``n_vertices``). The file stores no standard deviations (3DDFA ships them separately, e.g. ``std_exp.txt``).
    """
    p = _path(path)
    raw = p.read_bytes()
    if len(raw) < 4:
        raise ModelFormatError(f"{p}: truncated: {len(raw)} bytes, expected at least a 4-byte mode count")
    k = struct.unpack("<i", raw[:4])[0]
    if not 0 < k < 10000:
        raise ModelFormatError(f"{p}: bad header: mode count {k} (expected a small positive int32)")
    n_floats, rest = divmod(len(raw) - 4, 4)
    n3, rem = divmod(n_floats, k + 1)
    if rest or rem or n3 % 3:
        raise ModelFormatError(f"{p}: file size {len(raw)} bytes does not fit K={k} modes of 3N floats "
                               "(truncated or not an Exp_Pca.bin)")
    if n_vertices is not None and n3 != 3 * n_vertices:
        raise ModelFormatError(f"{p}: holds {n3 // 3} vertices but {n_vertices} were expected: mismatched "
                               "vertex counts")
    data = np.frombuffer(raw, dtype="<f4", offset=4).astype(np.float64)
    mean, modes = data[:n3], data[n3:].reshape(k, n3).T
    _finite(p, "Exp_Pca modes", modes)
    _finite(p, "Exp_Pca mean", mean)
    return mean, modes


def load_bfm2009(model_mat: str | Path, expression: str | Path | None = None, model_info: str | Path | None = None,
                 *, exp_std: str | Path | Sequence[float] | None = None, n_id: int | None = None,
                 n_exp: int | None = None, landmark_index=None, unit: str = "um") -> MorphableModel:
    """BFM 2009 (+ 3DDFA): the paper's setting is ``load_bfm2009(mm, "Model_Expression.mat", "model_info.mat")``.

    * ``model_mat``: ``01_MorphableModel.mat`` (``shapeMU`` (3N, 1), ``shapePC`` (3N, 199) orthonormal,
      ``shapeEV`` (199, 1) standard deviations, ``tl`` (T, 3) 1-based triangles); N = 53,490, micrometres.
    * ``model_info``: 3DDFA's ``model_info.mat`` with ``trimIndex`` (53,215 1-based vertex ids kept),
      ``keypoints`` (68 1-based vertex ids of the trimmed model; indices of x-coordinates in the flat 3N vector
      are recognised too) and optionally ``tri`` (trimmed 1-based triangles).
    * ``expression``: ``Model_Expression.mat`` (``mu_exp`` (3N', 1) mean offset, ``w_exp`` (3N', 29),
      ``sigma_exp`` (29, 1)) or ``Exp_Pca.bin`` (then give ``exp_std``: 79 values or a text file), both on
      the trimmed vertices. The expression mean offset is added to the mean shape (as 3DDFA does).
    * ``landmark_index``: 68 0-based vertex ids, needed when there is no ``model_info``.
    """
    mp = _path(model_mat)
    d = _loadmat(mp, ("shapeMU", "shapePC", "shapeEV", "tl"))
    mean = _finite(mp, "shapeMU", np.asarray(d["shapeMU"], np.float64).reshape(-1))
    pcs = _finite(mp, "shapePC", np.asarray(d["shapePC"], np.float64))
    ev = _finite(mp, "shapeEV", np.asarray(d["shapeEV"], np.float64).reshape(-1))
    if mean.size % 3:
        raise ModelFormatError(f"{mp}: shapeMU has {mean.size} values, not a multiple of 3")
    n_full = mean.size // 3
    if pcs.ndim != 2 or pcs.shape[0] != mean.size:
        raise ModelFormatError(f"{mp}: shapePC has shape {pcs.shape} but shapeMU has {mean.size} rows: "
                               "mismatched vertex counts")
    if ev.size != pcs.shape[1]:
        raise ModelFormatError(f"{mp}: shapeEV has {ev.size} values for {pcs.shape[1]} shapePC columns")
    k = pcs.shape[1] if n_id is None else n_id
    if k > pcs.shape[1]:
        raise ValueError(f"n_id={n_id} but {mp} has {pcs.shape[1]} identity modes")
    pcs, ev = pcs[:, :k], ev[:k]
    tl = np.asarray(d["tl"])
    if tl.ndim != 2 or 3 not in tl.shape:
        raise ModelFormatError(f"{mp}: 'tl' must be a (T, 3) triangle list, got shape {tl.shape}")
    tri = _indices(mp, "tl", tl if tl.shape[1] == 3 else tl.T, n_full, one_based=True)
    sources = {"model": mp.name}

    keep = np.arange(n_full)
    lmk = None
    if model_info is not None:
        ip = _path(model_info)
        info = _loadmat(ip, ("trimIndex", "keypoints"))
        keep = _indices(ip, "trimIndex", np.asarray(info["trimIndex"]).reshape(-1), n_full, one_based=True)
        n_trim = keep.size
        kp = np.asarray(info["keypoints"]).reshape(-1)
        if kp.size != N_LANDMARKS:
            raise ModelFormatError(f"{ip}: 'keypoints' has {kp.size} entries, expected 68")
        if kp.max() > n_trim and np.all((kp.astype(np.int64) - 1) % 3 == 0):
            kp = (kp.astype(np.int64) - 1) // 3 + 1  # indices of x in the flat xyz vector -> vertex ids
        lmk = _indices(ip, "keypoints", kp, n_trim, one_based=True)
        if "tri" in info:
            t = np.asarray(info["tri"])
            tri = _indices(ip, "tri", t if t.shape[1] == 3 else t.T, n_trim, one_based=True)
        else:  # triangles of the full model whose three vertices are all kept
            local = np.full(n_full, -1)
            local[keep] = np.arange(n_trim)
            tri = local[tri]
            tri = tri[(tri >= 0).all(1)]
        rows = _trim_rows(keep)
        mean, pcs = mean[rows], pcs[rows]
        sources["model_info"] = ip.name
    n = keep.size
    if lmk is None:
        if landmark_index is None:
            raise ModelFormatError(f"{mp}: BFM 2009 has no landmarks: give model_info (3DDFA's keypoints) or "
                                   "landmark_index")
        lmk = _landmarks_arg(landmark_index, n, "BFM 2009")

    exp_basis, exp_s = np.zeros((3 * n, 0)), np.zeros(0)
    if expression is not None:
        ep = _path(expression)
        if ep.suffix.lower() == ".bin":
            mu_e, w_e = read_exp_pca_bin(ep)
            if exp_std is None:
                raise ModelFormatError(f"{ep}: Exp_Pca.bin stores no standard deviations: pass exp_std= "
                                       "(e.g. 3DDFA's std_exp.txt)")
            sig = np.loadtxt(_path(exp_std)) if isinstance(exp_std, str | Path) else np.asarray(exp_std)
            sig = np.asarray(sig, np.float64).reshape(-1)
            if sig.size != w_e.shape[1]:
                raise ModelFormatError(f"{ep}: {w_e.shape[1]} expression modes but {sig.size} standard deviations")
        else:
            e = _loadmat(ep, ("mu_exp", "w_exp", "sigma_exp"))
            mu_e = _finite(ep, "mu_exp", np.asarray(e["mu_exp"], np.float64).reshape(-1))
            w_e = _finite(ep, "w_exp", np.asarray(e["w_exp"], np.float64))
            sig = _finite(ep, "sigma_exp", np.asarray(e["sigma_exp"], np.float64).reshape(-1))
            if w_e.ndim != 2 or sig.size != w_e.shape[1]:
                raise ModelFormatError(f"{ep}: w_exp {w_e.shape} and sigma_exp ({sig.size},) disagree")
        if w_e.shape[0] != 3 * n or mu_e.size != 3 * n:
            raise ModelFormatError(f"{ep}: expression basis covers {w_e.shape[0] // 3} vertices but the "
                                   f"{'trimmed ' if model_info is not None else ''}BFM has {n}: mismatched vertex "
                                   "counts (did you pass model_info.mat?)")
        ke = w_e.shape[1] if n_exp is None else n_exp
        if ke > w_e.shape[1]:
            raise ValueError(f"n_exp={n_exp} but {ep} has {w_e.shape[1]} expression modes")
        mean = mean + mu_e
        exp_basis, exp_s = w_e[:, :ke], sig[:ke]
        sources["expression"] = ep.name
    return _build(mp, mean=mean, id_basis=pcs, id_std=ev, exp_basis=exp_basis, exp_std=exp_s, triangles=tri,
                  landmark_index=lmk, landmark_weights=None, unit=unit, name="BFM 2009",
                  meta={"format": "bfm2009", "files": sources})


# ----------------------------------------------------------------------------------- restricted pickle
class _Opaque:
    """Stand-in for objects we do not need (e.g. scipy sparse joint regressors): state kept, never executed."""

    state = None

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


class _ChumpyArray(_Opaque):
    """Stand-in for a pickled chumpy object: keeps its state; ``array()`` returns the stored numpy array."""

    def array(self, where: str) -> np.ndarray:
        st = self.state
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[0], dict):
            st = {**st[0], **(st[1] or {})}
        if isinstance(st, dict) and "x" in st:
            return np.asarray(st["x"])
        raise ModelFormatError(f"{where}: a chumpy object without a stored array 'x' (a derived chumpy "
                               "expression); re-save the model with plain numpy arrays")


def _safe_reconstructor(cls, base, state):
    if cls not in (_ChumpyArray, _Opaque) or base is not object:
        raise pickle.UnpicklingError(f"refusing copyreg._reconstructor for {cls!r}")
    return cls.__new__(cls)


def _latin1_encode(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    import numpy._core.multiarray as ma

    out: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = ma._reconstruct
        out[(mod, "scalar")] = ma.scalar
    for mod in ("copy_reg", "copyreg"):
        out[(mod, "_reconstructor")] = _safe_reconstructor
    out[("_codecs", "encode")] = _latin1_encode
    for name in ("object", "set", "frozenset", "slice", "complex"):
        out[("builtins", name)] = getattr(__import__("builtins"), name)
        out[("__builtin__", name)] = getattr(__import__("builtins"), name)
    return out


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; chumpy objects become :class:`_ChumpyArray` and scipy sparse
    matrices :class:`_Opaque`; every other global (``os.system``, ``builtins.eval``, ...) is refused."""

    _allowed = None

    def find_class(self, module: str, name: str):
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _numpy_globals()
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyArray
        if module.startswith("scipy.sparse") and name.endswith("_matrix"):
            return _Opaque
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def restricted_load(path: str | Path, data: bytes | None = None):
    """Unpickle ``path`` (or ``data`` read from it) with :class:`RestrictedUnpickler` (latin-1 for Python-2
    pickles). Errors name the file."""
    p = Path(path)
    if data is None:
        data = _path(p).read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("forbidden global") or str(e).startswith("refusing"):
            raise ModelFormatError(f"{p}: refused pickle: {e}") from e
        raise ModelFormatError(f"{p}: truncated or corrupt pickle ({e})") from e
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error) as e:
        raise ModelFormatError(f"{p}: truncated or corrupt pickle ({type(e).__name__}: {e})") from e


def _plain(obj, where: str):
    """Chumpy stand-ins -> numpy arrays, recursively through dicts/lists."""
    if isinstance(obj, _ChumpyArray):
        return obj.array(where)
    if isinstance(obj, dict):
        return {k: _plain(v, f"{where}['{k}']") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v, where) for v in obj)
    return obj


def _read_embedding(path: str | Path) -> dict:
    """A landmark embedding as a dict: ``.npz``, ``.pkl`` (restricted) or ``.npy`` holding a pickled dict
    (DECA's ``landmark_embedding.npy``; its pickle is read with the restricted unpickler, not ``allow_pickle``)."""
    p = _path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:
            raise ModelFormatError(f"{p}: not a readable .npz ({type(e).__name__}: {e})") from e
    if suffix == ".npy":
        raw = p.read_bytes()
        f = io.BytesIO(raw)
        try:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = header(f)
        except Exception as e:
            raise ModelFormatError(f"{p}: not a .npy file ({e})") from e
        if dtype.hasobject:
            obj = restricted_load(p, raw[f.tell():])
            if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
                obj = obj.item()
        else:
            obj = np.load(p, allow_pickle=False)
    else:
        obj = restricted_load(p)
    obj = _plain(obj, str(p))
    if not isinstance(obj, dict):
        raise ModelFormatError(f"{p}: expected a dict of arrays, got {type(obj).__name__}")
    return obj


def load_flame(model_pkl: str | Path, landmark_embedding: str | Path | dict, *, n_id: int | None = None,
               n_exp: int | None = None, n_shape: int = 300, unit: str = "m") -> MorphableModel:
    """FLAME ``generic_model.pkl`` (5023 vertices, metres) + a 68-point barycentric landmark embedding.

    ``shapedirs`` (N, 3, n_shape + n_expr) holds std-scaled identity modes first (``n_shape``, 300 in FLAME
    2017-2023) then expression modes; pose correctives, joints and skinning are not used (a fixed neutral
    pose, as in the paper's linear 3DMM). The embedding needs ``full_lmk_faces_idx`` (68,) and
    ``full_lmk_bary_coords`` (68, 3) (DECA) or ``lmk_faces_idx``/``lmk_bary_coords`` with 68 rows.
    """
    p = _path(model_pkl)
    m = _plain(restricted_load(p), str(p))
    if not isinstance(m, dict):
        raise ModelFormatError(f"{p}: expected a dict (FLAME model), got {type(m).__name__}")
    missing = [k for k in ("v_template", "f", "shapedirs") if k not in m]
    if missing:
        raise ModelFormatError(f"{p}: missing key(s) {missing} (the file has {sorted(map(str, m))})")
    v = _finite(p, "v_template", np.asarray(m["v_template"], np.float64))
    sd = _finite(p, "shapedirs", np.asarray(m["shapedirs"], np.float64))
    if v.ndim != 2 or v.shape[1] != 3:
        raise ModelFormatError(f"{p}: v_template must be (N, 3), got {v.shape}")
    n = v.shape[0]
    if sd.ndim != 3 or sd.shape[:2] != (n, 3):
        raise ModelFormatError(f"{p}: shapedirs has shape {sd.shape} but v_template has {n} vertices "
                               f"(expected ({n}, 3, K)): mismatched vertex counts")
    if sd.shape[2] <= n_shape:
        raise ModelFormatError(f"{p}: shapedirs has {sd.shape[2]} modes, expected {n_shape} identity + expression")
    tri = _indices(p, "f", np.asarray(m["f"]), n, one_based=False)
    flat = sd.reshape(3 * n, -1)
    ids, exps = flat[:, :n_shape], flat[:, n_shape:]
    ki = n_shape if n_id is None else n_id
    ke = exps.shape[1] if n_exp is None else n_exp
    if ki > n_shape or ke > exps.shape[1]:
        raise ValueError(f"{p}: asked for n_id={ki}, n_exp={ke} but the model has {n_shape} and {exps.shape[1]}")

    emb = landmark_embedding if isinstance(landmark_embedding, dict) else _read_embedding(landmark_embedding)
    ep = Path("<landmark_embedding dict>") if isinstance(landmark_embedding, dict) else Path(landmark_embedding)
    for fk, bk in (("full_lmk_faces_idx", "full_lmk_bary_coords"), ("lmk_faces_idx", "lmk_bary_coords"),
                   ("lmk_face_idx", "lmk_b_coords")):
        if fk in emb and bk in emb:
            faces = np.asarray(emb[fk]).reshape(-1)
            bary = _finite(ep, bk, np.asarray(emb[bk], np.float64)).reshape(-1, 3)
            break
    else:
        raise ModelFormatError(f"{ep}: no 68-point embedding (need full_lmk_faces_idx + full_lmk_bary_coords; "
                               f"the file has {sorted(map(str, emb))})")
    if faces.size != N_LANDMARKS or bary.shape[0] != N_LANDMARKS:
        raise ModelFormatError(f"{ep}: the embedding has {faces.size} landmarks; tdd_lite needs 68 (FLAME's static "
                               "embedding has 51: use a 68-point one such as DECA's full_lmk_*)")
    faces = _indices(ep, fk, faces, len(tri), one_based=False)
    return _build(p, mean=v.reshape(-1), id_basis=ids[:, :ki], id_std=np.ones(ki), exp_basis=exps[:, :ke],
                  exp_std=np.ones(ke), triangles=tri, landmark_index=tri[faces], landmark_weights=bary,
                  unit=unit, name="FLAME", meta={"format": "flame", "files": {"model": p.name,
                                                                               "landmarks": ep.name}})


# ------------------------------------------------------------------------------------------------ eos
class _Reader:
    """Little-endian cursor over bytes; a short read names the file, the offset and what was being read."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelFormatError(f"{self.path}: truncated at byte {self.pos} while reading {what} "
                                   f"({n} bytes needed, {len(self.data) - self.pos} left)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def size(self, what: str) -> int:
        (n,) = self.unpack("Q", what + " (size)")
        if n > len(self.data):
            raise ModelFormatError(f"{self.path}: {what} claims {n} elements at byte {self.pos - 8}: corrupt file")
        return n

    def matrix(self, what: str) -> np.ndarray:
        rows, cols = self.unpack("ii", what + " (rows, cols)")
        if rows < 0 or cols < 0:
            raise ModelFormatError(f"{self.path}: {what} has impossible size {rows} x {cols}: corrupt file")
        a = np.frombuffer(self.take(4 * rows * cols, what), dtype="<f4").astype(np.float64)
        return a.reshape(cols, rows).T  # Eigen stores column-major

    def string(self, what: str) -> str:
        return self.take(self.size(what), what).decode("utf-8", errors="replace")


def _eos_pca(r: _Reader, what: str) -> dict:
    mean = r.matrix(what + ".mean").reshape(-1)
    basis = r.matrix(what + ".orthonormal_pca_basis")
    ev = r.matrix(what + ".eigenvalues").reshape(-1)
    n_tri = r.size(what + ".triangle_list")
    tri = np.frombuffer(r.take(12 * n_tri, what + ".triangle_list"), dtype="<i4").reshape(-1, 3)
    return {"mean": mean, "basis": basis, "eigenvalues": ev, "triangles": tri.astype(np.int64)}


def load_eos(path: str | Path, *, landmark_index=None, landmark_mapping: str | Path | None = None,
             n_id: int | None = None, n_exp: int | None = None, unit: str = "mm") -> MorphableModel:
    """An eos ``MorphableModel`` saved by ``eos::morphablemodel::save_model`` (cereal binary archive).

    Layout (little-endian): uint32 class version (1-4); shape PcaModel; colour PcaModel; [v2+] optional
    expression model (bool "empty", then int32 variant index: 0 = PcaModel, 1 = blendshapes); [v3+] optional
    landmark definitions (uint64 count, then string key + int32 vertex); texture coordinates (uint64 count,
    2 float64 each); [v4] texture triangles (uint64 count, 3 int32 each). A PcaModel is the mean, the
    orthonormal basis and the eigenvalues (variances) as Eigen float matrices (int32 rows, int32 cols,
    column-major float32 data), then the triangle list (uint64 count, 3 int32 each). A string is a uint64
    length and its bytes.

    Landmarks: ``landmark_index`` (68 vertex ids), else an eos landmark mapping file (``ibug_to_sfm.txt``:
    lines ``N = vertex``) via ``landmark_mapping``, else the model's own definitions keyed "1".."68".
    """
    p = _path(path)
    r = _Reader(p, p.read_bytes())
    (version,) = r.unpack("I", "class version")
    if not 1 <= version <= 4:
        raise ModelFormatError(f"{p}: not an eos MorphableModel (class version {version}, expected 1-4; version 0 "
                               "is eos's old cv::Mat format)")
    shape = _eos_pca(r, "shape_model")
    _eos_pca(r, "color_model")
    exp_kind, exp = None, None
    if version >= 2:
        (empty,) = r.unpack("?", "expression_model (optional flag)")
        if not empty:
            (which,) = r.unpack("i", "expression_model (variant index)")
            if which == 0:
                exp_kind, exp = "pca", _eos_pca(r, "expression_model")
            elif which == 1:
                n_bs = r.size("blendshapes")
                names, cols = [], []
                for i in range(n_bs):
                    names.append(r.string(f"blendshape {i} name"))
                    cols.append(r.matrix(f"blendshape {i} deformation").reshape(-1))
                exp_kind, exp = "blendshapes", {"names": names, "deltas": np.stack(cols, 1) if cols else None}
            else:
                raise ModelFormatError(f"{p}: unknown expression model variant index {which} (expected 0 or 1)")
    definitions = {}
    if version >= 3:
        (empty,) = r.unpack("?", "landmark_definitions (optional flag)")
        if not empty:
            for i in range(r.size("landmark_definitions")):
                key = r.string(f"landmark definition {i} name")
                definitions[key] = r.unpack("i", f"landmark definition {key!r}")[0]
    r.take(16 * r.size("texture_coordinates"), "texture_coordinates")
    if version >= 4:
        r.take(12 * r.size("texture_triangle_indices"), "texture_triangle_indices")
    if r.pos != len(r.data):
        raise ModelFormatError(f"{p}: {len(r.data) - r.pos} unexpected trailing bytes after the model (version "
                               f"{version}): not an eos model of this version")

    mean, basis, ev = shape["mean"], shape["basis"], shape["eigenvalues"]
    _finite(p, "shape_model.mean", mean)
    _finite(p, "shape_model.orthonormal_pca_basis", basis)
    if mean.size % 3 or basis.shape[0] != mean.size or ev.size != basis.shape[1]:
        raise ModelFormatError(f"{p}: shape model mean ({mean.size}), basis {basis.shape} and eigenvalues "
                               f"({ev.size}) disagree: mismatched vertex counts")
    n = mean.size // 3
    ki = basis.shape[1] if n_id is None else n_id
    if ki > basis.shape[1]:
        raise ValueError(f"{p}: asked for n_id={ki}, the model has {basis.shape[1]}")
    if np.any(ev[:ki] <= 0):
        raise ModelFormatError(f"{p}: shape model has non-positive eigenvalues")
    exp_basis, exp_s, exp_orth = np.zeros((3 * n, 0)), np.zeros(0), True
    if exp_kind == "pca":
        if exp["basis"].shape[0] != 3 * n:
            raise ModelFormatError(f"{p}: expression model has {exp['basis'].shape[0]} rows, shape model {3 * n}: "
                                   "mismatched vertex counts")
        ke = exp["basis"].shape[1] if n_exp is None else n_exp
        mean = mean + exp["mean"]
        exp_basis, exp_s, exp_orth = _finite(p, "expression basis", exp["basis"][:, :ke]), \
            np.sqrt(exp["eigenvalues"][:ke]), False
    elif exp_kind == "blendshapes" and exp["deltas"] is not None:
        if exp["deltas"].shape[0] != 3 * n:
            raise ModelFormatError(f"{p}: blendshapes have {exp['deltas'].shape[0]} rows, shape model {3 * n}: "
                                   "mismatched vertex counts")
        exp_basis, exp_s = _basis_svd(_finite(p, "blendshapes", exp["deltas"]), n_exp)
    if landmark_index is not None:
        lmk = _landmarks_arg(landmark_index, n, "eos")
    elif landmark_mapping is not None:
        lmk = _eos_mapping(_path(landmark_mapping), n)
    elif all(str(i) in definitions for i in range(1, 69)):
        lmk = _indices(p, "landmark_definitions", np.array([definitions[str(i)] for i in range(1, 69)]), n,
                       one_based=False)
    else:
        raise ModelFormatError(f"{p}: no 68 iBUG landmarks: pass landmark_index= or landmark_mapping= (the model "
                               f"defines {len(definitions)} landmarks)")
    return _build(p, mean=mean, id_basis=basis[:, :ki], id_std=np.sqrt(ev[:ki]), exp_basis=exp_basis,
                  exp_std=exp_s, triangles=_indices(p, "triangle_list", shape["triangles"], n, one_based=False),
                  landmark_index=lmk, landmark_weights=None, unit=unit, name="eos model",
                  meta={"format": f"eos v{version}", "expression": exp_kind or "none", "files": {"model": p.name}},
                  orthonormal=(False, exp_orth))


def _eos_mapping(path: Path, n: int) -> np.ndarray:
    """An eos landmark mapping file (``ibug_to_sfm.txt``): ``N = vertex`` lines (TOML), iBUG N in 1..68."""
    found = {}
    for k, line in enumerate(path.read_text().splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if not s or s.startswith("["):
            continue
        if "=" not in s:
            raise ModelFormatError(f"{path}:{k}: expected 'ibug_id = vertex_id', got {line!r}")
        a, b = (t.strip().strip('"') for t in s.split("=", 1))
        try:
            found[int(a)] = int(b)
        except ValueError as e:
            raise ModelFormatError(f"{path}:{k}: expected integers, got {line!r}") from e
    missing = [i for i in range(1, 69) if i not in found]
    if missing:
        raise ModelFormatError(f"{path}: maps only {68 - len(missing)} of the 68 iBUG landmarks (missing "
                               f"{missing[:10]}{'...' if len(missing) > 10 else ''}); pass landmark_index= instead")
    return _indices(path, "landmark mapping", np.array([found[i] for i in range(1, 69)]), n, one_based=False)


# ------------------------------------------------------------------------------------------------ ICT
def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) and triangles (fan-split polygons, 0-based) of a Wavefront OBJ file."""
    p = _path(path)
    verts, faces = [], []
    for k, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
        if line.startswith("v "):
            parts = line.split()
            try:
                verts.append([float(x) for x in parts[1:4]])
            except ValueError as e:
                raise ModelFormatError(f"{p}:{k}: bad vertex line {line!r}") from e
            if len(parts) < 4:
                raise ModelFormatError(f"{p}:{k}: vertex line needs 3 coordinates: {line!r}")
        elif line.startswith("f "):
            try:
                idx = [int(tok.split("/")[0]) for tok in line.split()[1:]]
            except ValueError as e:
                raise ModelFormatError(f"{p}:{k}: bad face line {line!r}") from e
            if len(idx) < 3:
                raise ModelFormatError(f"{p}:{k}: a face needs at least 3 vertices: {line!r}")
            faces += [[idx[0], idx[j], idx[j + 1]] for j in range(1, len(idx) - 1)]
    v = _finite(p, "vertices", np.array(verts, np.float64).reshape(-1, 3))
    if not len(v):
        raise ModelFormatError(f"{p}: no vertices")
    f = np.array(faces, np.int64).reshape(-1, 3)
    f = np.where(f < 0, f + len(v) + 1, f)  # OBJ negative (relative) indices
    return v, _indices(p, "faces", f, len(v), one_based=True)


def load_ict_facekit(folder: str | Path, *, landmark_index=None, n_id: int | None = None,
                     n_exp: int | None = None, unit: str = "cm") -> MorphableModel:
    """An ICT-FaceKit ``FaceXModel`` folder: the neutral mesh, identity shapes and expression shapes as OBJ.

    Identity modes are ``identityNNN.obj - generic_neutral_mesh.obj`` (read from 000 until one is missing;
    std-scaled principal components); expression blendshapes are the OBJs listed under ``"expressions"`` in
    ``vertex_indices.json``. ICT has no iBUG-68 definition we can ship: give ``landmark_index`` (68 vertex ids
    or a .txt/.json file), or add a ``"landmarks_ibug68"`` list to ``vertex_indices.json``.
    """
    d = _path(folder)
    if not d.is_dir():
        raise ModelFormatError(f"{d}: an ICT-FaceKit model is a folder (FaceXModel/), not a file")
    cfg_path = _path(d / "vertex_indices.json")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{cfg_path}: not valid JSON ({e})") from e
    if "expressions" not in cfg:
        raise ModelFormatError(f"{cfg_path}: missing key 'expressions' (the list of expression OBJ names)")
    neutral, tri = read_obj(d / "generic_neutral_mesh.obj")
    n = len(neutral)

    def delta(name: str) -> np.ndarray:
        v, _ = read_obj(d / f"{name}.obj")
        if len(v) != n:
            raise ModelFormatError(f"{d / (name + '.obj')}: {len(v)} vertices but generic_neutral_mesh.obj has {n}: "
                                   "mismatched vertex counts")
        return (v - neutral).reshape(-1)

    id_cols = []
    while (d / f"identity{len(id_cols):03d}.obj").exists():
        id_cols.append(delta(f"identity{len(id_cols):03d}"))
    if not id_cols:
        raise ModelFormatError(f"{d}: no identity000.obj: not an ICT-FaceKit model folder")
    ids = np.stack(id_cols, 1)
    ki = ids.shape[1] if n_id is None else n_id
    if ki > ids.shape[1]:
        raise ValueError(f"{d}: asked for n_id={ki}, the folder has {ids.shape[1]} identity shapes")
    if cfg["expressions"]:
        exp_basis, exp_s = _basis_svd(np.stack([delta(nm) for nm in cfg["expressions"]], 1), n_exp)
    else:
        exp_basis, exp_s = np.zeros((3 * n, 0)), np.zeros(0)
    if landmark_index is None:
        if "landmarks_ibug68" not in cfg:
            raise ModelFormatError(f"{d}: no iBUG-68 landmarks: pass landmark_index= (68 vertex ids) or add "
                                   "'landmarks_ibug68' to vertex_indices.json")
        landmark_index = cfg["landmarks_ibug68"]
    lmk = _landmarks_arg(landmark_index, n, "ICT-FaceKit")
    return _build(d, mean=neutral.reshape(-1), id_basis=ids[:, :ki], id_std=np.ones(ki), exp_basis=exp_basis,
                  exp_std=exp_s, triangles=tri, landmark_index=lmk, landmark_weights=None, unit=unit,
                  name="ICT-FaceKit", meta={"format": "ict-facekit", "expressions": list(cfg["expressions"]),
                                            "files": {"folder": d.name}},
                  orthonormal=(False, True))
