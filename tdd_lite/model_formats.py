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
                            refused; pickle protocols 0-5), with a 68-point barycentric landmark embedding (e.g.
                            DECA's ``landmark_embedding.npy``: ``full_lmk_faces_idx`` / ``full_lmk_bary_coords``).
``load_eos``                the eos library's cereal-binary ``.bin`` (versions 1-4 of
                            ``eos::morphablemodel::MorphableModel``; e.g. the Surrey Face Model, millimetres),
                            landmarks from an eos TOML mapping file (``[landmark_mappings]``).
``load_ict_facekit``        an ICT-FaceKit ``FaceXModel`` folder: ``generic_neutral_mesh.obj``, ``identityNNN.obj``
                            and the expression OBJs named in ``vertex_indices.json`` (centimetres).
==========================  ==================================================================================

Bases stored as "std-scaled" columns (FLAME, ICT identities) or with separate eigenvalues (BFM, eos) are turned
into orthonormal columns + std with :func:`tdd_lite.morphable.orthonormalize`. Blendshape expression sets (ICT,
eos blendshapes) are not PCA models: they are orthonormalised by an SVD and the "std" of a mode is its singular
value, i.e. alpha = 1 is the RMS size of one unit blendshape weight along that direction.

Every problem with a file raises :class:`ModelFormatError`, a :class:`~tdd_lite.errors.DataError`, whose message
starts with the file name, names the field and says what was expected, e.g. ``model.bin: field
'shape_model.eigenvalues': 3 negative values; expected standard deviations > 0``. NaN/inf values, stds <= 0,
non-integer or out-of-range indices, quoted numbers in JSON, a file without identity modes, modes of (near-)zero
variance (:data:`MIN_STD_RATIO`) and mismatched shapes are refused. Declared sizes are checked before any
array is allocated: at most :data:`MAX_ARRAY_ELEMENTS` elements per array, :data:`MAX_MODEL_BYTES` per file (and
:data:`MAX_FILE_BYTES` read from disk); nested containers (pickles, JSON, TOML) at most :data:`MAX_NESTING`
levels deep. A bad argument (``n_id`` too large, an unknown ``unit``) raises :class:`~tdd_lite.errors.UsageError`.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import tomllib
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from .errors import DataError, UsageError
from .morphable import (
    MAX_ARRAY_ELEMENTS,
    MAX_MODEL_BYTES,
    MAX_NESTING,
    N_LANDMARKS,
    ModelArrays,
    MorphableModel,
    _read_npy_header,
    check_float_array,
    check_index_array,
    check_std,
    orthonormalize,
    parse_json_bounded,
    read_npz_arrays,
)

__all__ = ["MAX_ARRAY_ELEMENTS", "MAX_FILE_BYTES", "MAX_MODEL_BYTES", "MAX_NESTING", "ModelFormatError",
           "KEYPOINT_CONVENTIONS", "load_bfm2009", "load_eos", "load_flame", "load_ict_facekit", "read_exp_pca_bin",
           "read_obj", "restricted_load", "RestrictedUnpickler"]

UNIT_TO_METRES = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 1e-3, "um": 1e-6}
MAX_FILE_BYTES = 8 * 2**30  # largest model file read from disk (BFM 2009's .mat is ~0.2 GB)
MAX_TEXT_BYTES = 64 * 2**20  # largest text file (OBJ, JSON, TOML mapping, std list)
MAX_SHAPES = 2000  # ICT identity/expression OBJs per folder
KEYPOINT_CONVENTIONS = ("auto", "vertex", "flat-x", "vertex0", "flat-x0")


class ModelFormatError(DataError):
    """A model file is missing, corrupt, truncated or inconsistent (the message names the file and field)."""


# --------------------------------------------------------------------------------------------- helpers
def _path(path: str | Path, *, folder: bool = False) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelFormatError(f"{p}: no such file or directory")
    if folder:
        if not p.is_dir():
            raise ModelFormatError(f"{p}: expected a folder, found a file")
    elif not p.is_file():
        raise ModelFormatError(f"{p}: not a regular file (a folder, FIFO or device)")
    return p


def _read_bytes(p: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    size = p.stat().st_size
    if size > limit:
        raise ModelFormatError(f"{p}: {size} bytes; the limit for this kind of file is {limit} bytes")
    try:
        return p.read_bytes()
    except OSError as e:
        raise ModelFormatError(f"{p}: cannot read ({e.strerror or e})") from e


def _read_text(p: Path, limit: int = MAX_TEXT_BYTES) -> str:
    raw = _read_bytes(p, limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelFormatError(f"{p}: not UTF-8 text ({e})") from e


def _named(path: Path | str, e: DataError) -> ModelFormatError:
    """``field '...': ...`` from tdd_lite.morphable's checks -> the same message prefixed with the file."""
    return ModelFormatError(f"{path}: {e}")


def _json(text: str, where: str):
    try:
        return parse_json_bounded(text, where)
    except ModelFormatError:
        raise
    except DataError as e:
        raise ModelFormatError(str(e)) from None


def _floats(path: Path, name: str, a, dtype=np.float64) -> np.ndarray:
    """A real, finite float array read from ``path`` (field ``name``)."""
    try:
        a = np.asarray(a)
        if a.dtype.kind not in "fiu":
            raise DataError(f"field '{name}': dtype {a.dtype}; expected real numbers")
        return check_float_array(name, a).astype(dtype)
    except DataError as e:
        raise _named(path, e) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise ModelFormatError(f"{path}: field '{name}': not a numeric array ({type(e).__name__})") from None


_finite = _floats  # the old name


def _ndarray(path: Path, name: str, obj) -> np.ndarray:
    """A value unpickled from ``path`` must already be a numpy array (a nested list could make numpy allocate
    2**depth elements when converted)."""
    if not isinstance(obj, np.ndarray | np.generic):
        raise ModelFormatError(f"{path}: field '{name}': a {type(obj).__name__}; expected a numpy array")
    return np.asarray(obj)


def _stds(path: Path, name: str, a) -> np.ndarray:
    try:
        return check_std(name, _floats(path, name, a))
    except ModelFormatError:
        raise
    except DataError as e:
        raise _named(path, e) from None


def _unit_scale(unit: str, path: Path) -> float:
    if unit not in UNIT_TO_METRES:
        raise UsageError(f"{path}: unit must be one of {sorted(UNIT_TO_METRES)}, got {unit!r}")
    return UNIT_TO_METRES[unit]


def _count(path: Path, what: str, asked: int | None, have: int, arg: str) -> int:
    """Modes to keep: ``asked`` (an argument) checked against the ``have`` modes of the file."""
    if asked is None:
        return have
    if isinstance(asked, bool) or not isinstance(asked, int | np.integer) or not 0 <= asked <= have:
        raise UsageError(f"{path}: {arg}={asked!r} but the file has {have} {what}; expected 0..{have}")
    return int(asked)


def _indices(path: Path, name: str, idx, n: int, one_based: bool) -> np.ndarray:
    """Integer indices checked against [0, n) (after subtracting 1 when the file is 1-based)."""
    try:
        a = np.asarray(idx)
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"{path}: field '{name}': not an array of indices ({e})") from None
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            first = tuple(np.argwhere(bad)[0])
            raise ModelFormatError(f"{path}: field '{name}': {int(bad.sum())} non-integer values (first at index "
                                   f"{[int(i) for i in first]}: {float(a[first])!r}); expected integer indices")
        if a.size and np.abs(a).max() > 2**62:
            raise ModelFormatError(f"{path}: field '{name}': indices beyond int64; expected vertex indices")
    elif a.dtype.kind not in "iu":
        raise ModelFormatError(f"{path}: field '{name}': dtype {a.dtype}; expected integer indices")
    a = a.astype(np.int64) - (1 if one_based else 0)
    if a.size and (a.min() < 0 or a.max() >= n):
        base = "1-based" if one_based else "0-based"
        lo, hi = (1, n) if one_based else (0, n - 1)
        bad = int(a.min() + one_based) if a.min() < 0 else int(a.max() + one_based)
        raise ModelFormatError(f"{path}: field '{name}': {base} index {bad} outside [{lo}, {hi}]")
    return a


def _triangles(path: Path, name: str, t, n: int, one_based: bool) -> np.ndarray:
    t = np.asarray(t)
    if t.ndim != 2 or 3 not in t.shape:
        raise ModelFormatError(f"{path}: field '{name}': shape {t.shape}; expected a (T, 3) triangle list")
    return _indices(path, name, t if t.shape[1] == 3 else t.T, n, one_based)


def _basis_svd(path: Path, name: str, deltas: np.ndarray, k: int | None, arg: str = "n_exp"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis and singular values of a (3N, S) set of blendshapes (for non-PCA expression sets)."""
    u, s, _ = np.linalg.svd(np.asarray(deltas, np.float64), full_matrices=False)
    if not s.size or s[0] == 0:
        raise ModelFormatError(f"{path}: field '{name}': all blendshapes are zero; expected shape offsets")
    keep = s > s[0] * MIN_STD_RATIO  # directions of (near-)zero variance: not independent blendshapes
    u, s = u[:, keep], s[keep]
    k = _count(path, "linearly independent expression blendshapes", k, len(s), arg)
    return u[:, :k], s[:k]


# A mode whose standard deviation is below MIN_STD_RATIO x the largest of its basis has (near-)zero variance: at
# face scale (coordinates ~0.1 m, largest identity std ~1 cm) 1e-6 of the largest std is ~1e-8 m, the float32
# resolution of the coordinates, so such a mode cannot change the shape it is meant to model; it only blows up
# alpha in a fit. Real PCA models stay far above it (their smallest std is ~1e-3..1e-2 of the largest).
MIN_STD_RATIO = 1e-6


def _with_variance(path: Path, name: str, std: np.ndarray) -> None:
    """Refuse modes of (near-)zero variance (see :data:`MIN_STD_RATIO`) naming ``path`` and ``name``."""
    s = np.asarray(std, np.float64).reshape(-1)
    if not s.size:
        return
    tiny = ~(s >= MIN_STD_RATIO * s.max())
    if tiny.any():
        i = int(np.argmax(tiny))
        raise ModelFormatError(f"{path}: field '{name}': {int(tiny.sum())} mode(s) with (near-)zero variance (first: "
                               f"mode {i}, standard deviation {s[i]:.3g}, below {MIN_STD_RATIO:g} x the largest, "
                               f"{s.max():.3g}); expected modes that change the shape")


def _has_modes(path: Path, name: str, k: int, what: str = "shape (identity)") -> None:
    """A file that stores no identity modes is not a morphable model of faces (nothing to fit)."""
    if k == 0:
        raise ModelFormatError(f"{path}: field '{name}': 0 {what} modes; expected at least 1")


def _build(path: Path, *, mean: np.ndarray, id_basis: np.ndarray, id_std: np.ndarray, exp_basis: np.ndarray,
           exp_std: np.ndarray, triangles: np.ndarray, landmark_index: np.ndarray,
           landmark_weights: np.ndarray | None, unit: str, name: str, meta: dict,
           orthonormal: tuple[bool, bool] = (False, False),
           fields: tuple[str, str, str, str] = ("identity basis", "identity std", "expression basis",
                                                "expression std")) -> MorphableModel:
    """Unit conversion to metres, orthonormal bases, validation; errors name ``path`` and the file's fields."""
    scale = _unit_scale(unit, path)
    n = mean.size // 3
    pairs = ((fields[0], fields[1], id_basis, id_std), (fields[2], fields[3], exp_basis, exp_std))
    for nm, snm, b, s in pairs:
        if b.ndim != 2 or b.shape[0] != 3 * n:
            raise ModelFormatError(f"{path}: field '{nm}': {b.shape[0] if b.ndim == 2 else b.shape} rows but the "
                                   f"mean shape has {n} vertices (expected {3 * n} rows): mismatched vertex counts")
        if s.shape != (b.shape[1],):
            raise ModelFormatError(f"{path}: field '{snm}': {s.shape} values for the {b.shape[1]} modes of '{nm}': "
                                   "mismatched shapes")
        _floats(path, nm, b)
        _stds(path, snm, s)
        _with_variance(path, snm, s)
    try:
        id_q, id_s = (id_basis.astype(np.float32), id_std.astype(np.float32)) if orthonormal[0] or \
            not id_basis.shape[1] else orthonormalize(id_basis, id_std)
    except ValueError as e:
        raise ModelFormatError(f"{path}: field '{fields[0]}': {e}") from None
    _with_variance(path, fields[0], id_s)
    if exp_basis.shape[1]:
        try:
            exp_q, exp_s = (exp_basis.astype(np.float32), exp_std.astype(np.float32)) if orthonormal[1] else \
                orthonormalize(exp_basis, exp_std)
        except ValueError as e:
            raise ModelFormatError(f"{path}: field '{fields[2]}': {e}") from None
        _with_variance(path, fields[2], exp_s)
    else:
        exp_q, exp_s = np.zeros((3 * n, 0), np.float32), np.zeros(0, np.float32)
    arrays = ModelArrays(
        mean_shape=(np.asarray(mean, np.float64).reshape(n, 3) * scale).astype(np.float32),
        id_basis=id_q, id_std=(id_s * scale).astype(np.float32), exp_basis=exp_q,
        exp_std=(exp_s * scale).astype(np.float32), triangles=np.asarray(triangles, np.int64),
        landmark_index=np.asarray(landmark_index, np.int64),
        landmark_weights=None if landmark_weights is None else np.asarray(landmark_weights, np.float64),
        units="m", name=name, meta={"source_unit": unit, **meta})
    try:
        return MorphableModel(arrays)
    except DataError as e:
        raise _named(path, e) from None


def _int_list(p: Path, field: str, vals, strings: bool = False) -> np.ndarray:
    """Whole numbers (ints or integral floats; ASCII-digit strings only with ``strings``, i.e. from a plain text
    file, where every value is a string) from JSON/TOML/text as int64. In JSON a quoted number is a typing
    mistake (``"12"`` where 12 was meant) and is refused with the entry it is."""
    out = []
    for k, v in enumerate(vals):
        if isinstance(v, bool):
            ok = False
        elif isinstance(v, int):
            ok = True
        elif isinstance(v, float):
            ok = math.isfinite(v) and v == int(v)
        elif isinstance(v, str) and strings:
            t = v.strip()
            ok = t.isascii() and t.lstrip("-").isdigit()
            v = t
        elif isinstance(v, str):
            raise ModelFormatError(f"{p}: field '{field}': entry {k} is the string {v!r}; expected a whole number "
                                   "(a JSON number, not in quotes)")
        else:
            ok = False
        if not ok:
            raise ModelFormatError(f"{p}: field '{field}': entry {k} is {v!r}; expected a whole number")
        out.append(int(v) if not isinstance(v, float) else int(v))
    return np.array(out, np.int64)


def _landmarks_arg(landmark_index, n: int, what: str, *, source: Path | None = None,
                   field: str = "landmark_index") -> np.ndarray:
    """68 0-based vertex indices given as a sequence/array or a file (.txt/.json with 68 integers).

    ``source`` names the file the values came from (e.g. ICT's ``vertex_indices.json``); errors then are
    :class:`DataError` naming it, otherwise (an argument) :class:`UsageError` naming ``landmark_index=``.
    """
    if isinstance(landmark_index, str | Path):
        p = _path(landmark_index)
        text = _read_text(p, 1 << 20)
        if p.suffix.lower() == ".json":
            vals = _json(text, f"{p}: field 'landmark_index'")
            if not isinstance(vals, list):
                raise ModelFormatError(f"{p}: field 'landmark_index': a JSON {type(vals).__name__}; expected a list "
                                       "of 68 integers")
        else:
            vals = text.split()
        li = _int_list(p, "landmark_index", vals, strings=p.suffix.lower() != ".json")
        if li.shape != (N_LANDMARKS,):
            raise ModelFormatError(f"{p}: field 'landmark_index': {li.size} values; {what} needs 68 vertex indices")
        return _indices(p, "landmark_index", li, n, one_based=False)
    if source is not None:
        if not isinstance(landmark_index, list | tuple):
            raise ModelFormatError(f"{source}: field '{field}': a {type(landmark_index).__name__}; expected a list "
                                   "of 68 integers")
        li = _int_list(source, field, landmark_index)
        if li.shape != (N_LANDMARKS,):
            raise ModelFormatError(f"{source}: field '{field}': {li.size} values; {what} needs 68 vertex indices")
        return _indices(source, field, li, n, one_based=False)
    try:
        li = np.asarray(landmark_index).reshape(-1)
        if li.shape != (N_LANDMARKS,):
            raise DataError(f"{li.shape[0]} values; {what} needs 68 landmark vertex indices")
        return check_index_array("landmark_index", li, n)
    except (DataError, TypeError, ValueError) as e:
        raise UsageError(f"landmark_index=: {e}") from None


# ---------------------------------------------------------------------------------------------- MATLAB
_MAT_CLASSES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double", 7: "single", 8: "int8",
                9: "uint8", 10: "int16", 11: "uint16", 12: "int32", 13: "uint32", 14: "int64", 15: "uint64"}
_MAT_STORAGE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}  # miTYPE -> bytes per element


class _MatHeader:
    """The first bytes of one MATLAB v5 variable: name, class, dims and the declared size of its real part."""

    def __init__(self, data: bytes, endian: str):
        self.data, self.e, self.pos = data, endian, 0

    def tag(self) -> tuple[int, int, bytes | None]:
        if self.pos + 8 > len(self.data):
            raise EOFError("variable header cut short")
        mdtype, nbytes = struct.unpack_from(self.e + "II", self.data, self.pos)
        if mdtype >> 16:  # small data element: type and size in the first 4 bytes, data in the next 4
            self.pos += 8
            return mdtype & 0xFFFF, mdtype >> 16, self.data[self.pos - 4:self.pos - 4 + (mdtype >> 16)]
        self.pos += 8
        return mdtype, nbytes, None

    def element(self) -> tuple[int, bytes]:
        mdtype, nbytes, small = self.tag()
        if small is not None:
            return mdtype, small
        if self.pos + nbytes > len(self.data):
            raise EOFError("variable header cut short")
        out = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes + (-nbytes % 8)
        return mdtype, out


def _mat_vars(p: Path) -> dict[str, tuple[str, tuple[int, ...], int, bool]]:
    """Name -> (class, dims, declared bytes of the real part, complex) of every variable in a MATLAB v5 file,
    read from the variable headers only (compressed variables are decompressed just far enough)."""
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelFormatError(f"{p}: {size} bytes; the limit is {MAX_FILE_BYTES} bytes (MAX_FILE_BYTES)")
    out: dict[str, tuple[str, tuple[int, ...], int, bool]] = {}
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise ModelFormatError(f"{p}: cannot read ({e.strerror or e})") from None
    with f:
        head = f.read(128)
        if len(head) < 128:
            raise ModelFormatError(f"{p}: {len(head)} bytes; not a MATLAB v5/v7 .mat file (its header is 128 bytes)")
        if head.startswith(b"\x89HDF") or head[124:126] in (b"\x00\x02", b"\x02\x00"):
            raise ModelFormatError(f"{p}: MATLAB v7.3 (HDF5) file; re-save it with save(..., '-v7')")
        if 0 in head[:4] or head[126:128] not in (b"IM", b"MI"):
            raise ModelFormatError(f"{p}: not a MATLAB v5/v7 .mat file (MATLAB v4 files are not read; re-save with "
                                   "save(..., '-v7'))")
        e = "<" if head[126:128] == b"IM" else ">"
        pos = 128
        while pos + 8 <= size:
            f.seek(pos)
            mdtype, nbytes = struct.unpack(e + "II", f.read(8))
            if mdtype == 15:  # miCOMPRESSED: inflate only the first bytes of the variable
                d, raw, left = zlib.decompressobj(), b"", nbytes
                try:
                    while len(raw) < 4096 and left > 0:
                        chunk = f.read(min(65536, left))
                        if not chunk:
                            break
                        left -= len(chunk)
                        raw += d.decompress(chunk, 4096 - len(raw))
                        if d.unconsumed_tail:  # 4096 bytes inflated: enough for the header
                            break
                except zlib.error as err:
                    raise ModelFormatError(f"{p}: corrupt compressed variable at byte {pos} ({err})") from None
                nxt = pos + 8 + nbytes
            elif mdtype == 14:  # miMATRIX
                raw = struct.pack(e + "II", mdtype, nbytes) + f.read(min(nbytes, 4096))
                nxt = pos + 8 + nbytes + (-nbytes % 8)
            else:
                raise ModelFormatError(f"{p}: unexpected data element type {mdtype} at byte {pos}: corrupt file")
            if nxt > size:
                raise ModelFormatError(f"{p}: variable at byte {pos} claims {nbytes} bytes but the file ends at "
                                       f"{size}: truncated")
            h = _MatHeader(raw, e)
            try:
                mt, mbytes, _ = h.tag()
                if mt != 14:
                    raise ValueError(f"expected a matrix, found data type {mt}")
                _, flags = h.element()
                (fl,) = struct.unpack(e + "I", flags[:4])
                klass, cplx = fl & 0xFF, bool((fl >> 8) & 0x08)
                _, dims_raw = h.element()
                dims = struct.unpack(e + f"{len(dims_raw) // 4}i", dims_raw)
                _, name_raw = h.element()
                name = name_raw.decode("latin1")
                nreal = -1
                if klass in range(6, 16):
                    rt, rbytes, _ = h.tag()
                    nreal = rbytes // _MAT_STORAGE.get(rt, 1) if rt in _MAT_STORAGE else -1
            except (EOFError, ValueError, struct.error, IndexError) as err:
                raise ModelFormatError(f"{p}: corrupt variable header at byte {pos} ({err})") from None
            out[name] = (_MAT_CLASSES.get(klass, f"class {klass}"), tuple(dims), nreal, cplx)
            pos = nxt
    return out


def _loadmat(path: str | Path, required: Sequence[str], optional: Sequence[str] = ()) -> dict:
    """The ``required`` (and present ``optional``) numeric variables of a MATLAB v5 file, nothing else.

    Every variable's class and declared size is checked from its header before scipy reads it: numeric,
    real, at most MAX_ARRAY_ELEMENTS elements, its data as long as its dimensions say (a compressed variable
    cannot inflate beyond that).
    """
    p = _path(path)
    info = _mat_vars(p)
    missing = [k for k in required if k not in info]
    if missing:
        raise ModelFormatError(f"{p}: missing variable(s) {missing} (the file has {sorted(info)})")
    wanted = [k for k in (*required, *optional) if k in info]
    total = 0
    for k in wanted:
        klass, dims, nreal, cplx = info[k]
        count = math.prod(dims) if all(d >= 0 for d in dims) else -1
        if klass not in _MAT_CLASSES.values() or klass in ("cell", "struct", "object", "char", "sparse"):
            raise ModelFormatError(f"{p}: field '{k}': MATLAB {klass}; expected a numeric array")
        if cplx:
            raise ModelFormatError(f"{p}: field '{k}': complex numbers; expected real numbers")
        if count < 0 or count > MAX_ARRAY_ELEMENTS:
            raise ModelFormatError(f"{p}: field '{k}': declares dimensions {dims} = {count} elements; the limit is "
                                   f"{MAX_ARRAY_ELEMENTS} (MAX_ARRAY_ELEMENTS)")
        if nreal != count:
            raise ModelFormatError(f"{p}: field '{k}': dimensions {dims} ({count} elements) but the data holds "
                                   f"{nreal}: corrupt file")
        total += 8 * count
    if total > MAX_MODEL_BYTES:
        raise ModelFormatError(f"{p}: the variables {wanted} declare {total} bytes; the limit is {MAX_MODEL_BYTES}")
    try:
        data = loadmat(str(p), variable_names=wanted)
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5)
        raise ModelFormatError(f"{p}: MATLAB v7.3 (HDF5) file; re-save it with save(..., '-v7') ({e})") from e
    except Exception as e:  # scipy raises ValueError/TypeError/OSError/MatReadError/zlib.error on corrupt files
        raise ModelFormatError(f"{p}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from e
    missing = [k for k in required if k not in data]
    if missing:
        raise ModelFormatError(f"{p}: missing variable(s) {missing}")
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
    size = p.stat().st_size
    if size < 4:
        raise ModelFormatError(f"{p}: field 'K' (mode count): truncated: {size} bytes, expected at least a "
                               "4-byte mode count")
    if size > 4 + 8 * MAX_ARRAY_ELEMENTS:  # K modes + the mean, K * 3N <= MAX_ARRAY_ELEMENTS floats
        raise ModelFormatError(f"{p}: field 'modes': {size} bytes; at most {MAX_ARRAY_ELEMENTS} mode values "
                               "(MAX_ARRAY_ELEMENTS) are read")
    raw = _read_bytes(p)
    k = struct.unpack("<i", raw[:4])[0]
    if not 0 < k < 10000:
        raise ModelFormatError(f"{p}: field 'K' (mode count): bad header: mode count {k} (expected a small positive "
                               "int32)")
    n_floats, rest = divmod(size - 4, 4)
    n3, rem = divmod(n_floats, k + 1)
    if rest or rem or n3 % 3 or n3 == 0:
        raise ModelFormatError(f"{p}: field 'modes': file size {size} bytes does not fit K={k} modes of 3N floats "
                               "(truncated or not an Exp_Pca.bin)")
    if n3 * k > MAX_ARRAY_ELEMENTS:
        raise ModelFormatError(f"{p}: field 'modes': {k} modes of {n3} floats = {n3 * k} elements; the limit is "
                               f"{MAX_ARRAY_ELEMENTS} (MAX_ARRAY_ELEMENTS)")
    if n_vertices is not None and n3 != 3 * n_vertices:
        raise ModelFormatError(f"{p}: field 'mean': holds {n3 // 3} vertices but {n_vertices} were expected: "
                               "mismatched vertex counts")
    data = np.frombuffer(raw, dtype="<f4", offset=4)
    mean = _floats(p, "mean", data[:n3])
    modes = _floats(p, "modes", data[n3:].reshape(k, n3)).T
    return mean, modes


def _std_values(src, ep: Path, n: int) -> np.ndarray:
    """Expression standard deviations: a sequence, or a text file of numbers (e.g. 3DDFA's ``std_exp.txt``)."""
    if isinstance(src, str | Path):
        sp = _path(src)
        vals = []
        for k, tok in enumerate(_read_text(sp, 1 << 20).split()):
            try:
                if not tok.isascii():
                    raise ValueError
                vals.append(float(tok))
            except ValueError:
                raise ModelFormatError(f"{sp}: field 'exp_std': entry {k} is {tok!r}; expected a number") from None
        sig, where = np.array(vals, np.float64), sp
    else:
        try:
            sig = np.asarray(src, np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise UsageError(f"exp_std=: expected {n} numbers ({e})") from None
        where = ep
    if sig.size != n:
        raise ModelFormatError(f"{where}: field 'exp_std': {sig.size} standard deviations for the {n} expression "
                               f"modes of {ep.name}: mismatched shapes")
    return _stds(where, "exp_std", sig)


def _keypoints(ip: Path, raw, n: int, convention: str) -> np.ndarray:
    """3DDFA ``keypoints`` -> 68 0-based vertex ids of the trimmed model, in the given or detected convention.

    ``vertex``: 1-based vertex ids (MATLAB); ``flat-x``: 1-based indices of the x coordinates in the flat xyz
    vector (``3*v + 1`` for 0-based vertex ``v``); ``vertex0`` / ``flat-x0``: the same, 0-based (``v``, ``3*v``).
    ``auto`` accepts exactly one of ``vertex``, ``flat-x``, ``flat-x0`` fitting the data and refuses ambiguous data.
    """
    if convention not in KEYPOINT_CONVENTIONS:
        raise UsageError(f"keypoint_convention={convention!r}; expected one of {list(KEYPOINT_CONVENTIONS)}")
    kp = np.asarray(raw).reshape(-1)
    if kp.size != N_LANDMARKS:
        raise ModelFormatError(f"{ip}: field 'keypoints': {kp.size} entries; expected 68")
    kp = _indices(ip, "keypoints", kp, 2**62, one_based=False)  # integers >= 0 (range checked below)
    rules = {"vertex": (1, 1, 0), "vertex0": (1, 0, 0), "flat-x": (3, 1, 1), "flat-x0": (3, 0, 0)}

    def decode(c: str) -> tuple[np.ndarray, int]:
        step, base, res = rules[c]
        off = kp - base
        bad = int(np.sum((off < 0) | (off % step != 0) | (off // step >= n)))
        return off // step, bad

    if convention != "auto":
        v, bad = decode(convention)
        if bad:
            step, base, _ = rules[convention]
            form = f"{'3*v+1' if base else '3*v'} for vertex v < {n}" if step == 3 else f"{base}..{n - 1 + base}"
            raise ModelFormatError(f"{ip}: field 'keypoints': {bad} values do not fit keypoint_convention="
                                   f"{convention!r} (expected {form}; values span {kp.min()}..{kp.max()})")
        return v
    fits = [c for c in ("vertex", "flat-x", "flat-x0") if decode(c)[1] == 0]
    if len(fits) == 1:
        return decode(fits[0])[0]
    if not fits:
        raise ModelFormatError(f"{ip}: field 'keypoints': values {kp.min()}..{kp.max()} fit no convention for "
                               f"{n} vertices (1-based vertex ids, or flat x-indices 3*v+1 / 3*v); pass "
                               "keypoint_convention='vertex0' if they are 0-based vertex ids")
    raise ModelFormatError(f"{ip}: field 'keypoints': ambiguous: values {kp.min()}..{kp.max()} are valid as "
                           f"{' and as '.join(fits)} indices for {n} vertices; pass keypoint_convention="
                           f"{' or '.join(repr(c) for c in fits)}")


def load_bfm2009(model_mat: str | Path, expression: str | Path | None = None, model_info: str | Path | None = None,
                 *, exp_std: str | Path | Sequence[float] | None = None, n_id: int | None = None,
                 n_exp: int | None = None, landmark_index=None, unit: str = "um",
                 keypoint_convention: str = "auto") -> MorphableModel:
    """BFM 2009 (+ 3DDFA): the paper's setting is ``load_bfm2009(mm, "Model_Expression.mat", "model_info.mat")``.

    * ``model_mat``: ``01_MorphableModel.mat`` (``shapeMU`` (3N, 1), ``shapePC`` (3N, 199) orthonormal,
      ``shapeEV`` (199, 1) standard deviations, ``tl`` (T, 3) 1-based triangles); N = 53,490, micrometres.
    * ``model_info``: 3DDFA's ``model_info.mat`` with ``trimIndex`` (53,215 1-based vertex ids kept),
      ``keypoints`` (68 landmarks of the trimmed model) and optionally ``tri`` (trimmed 1-based triangles).
    * ``keypoint_convention``: how ``keypoints`` are stored: ``"vertex"`` (1-based vertex ids), ``"flat-x"``
      (1-based indices of the x coordinates in the flat xyz vector, ``3v+1``), ``"vertex0"`` / ``"flat-x0"``
      (0-based: ``v`` / ``3v``) or ``"auto"`` (default): the one of ``vertex``/``flat-x``/``flat-x0`` the
      values fit; ambiguous values (e.g. flat indices that all happen to be below the vertex count) are refused
      with a message naming the values to pass.
    * ``expression``: ``Model_Expression.mat`` (``mu_exp`` (3N', 1) mean offset, ``w_exp`` (3N', 29),
      ``sigma_exp`` (29, 1)) or ``Exp_Pca.bin`` (then give ``exp_std``: 79 values or a text file), both on
      the trimmed vertices. The expression mean offset is added to the mean shape (as 3DDFA does).
    * ``landmark_index``: 68 0-based vertex ids, needed when there is no ``model_info``.
    """
    mp = _path(model_mat)
    d = _loadmat(mp, ("shapeMU", "shapePC", "shapeEV", "tl"))
    mean = _floats(mp, "shapeMU", d["shapeMU"]).reshape(-1)
    pcs = _floats(mp, "shapePC", d["shapePC"])
    ev = _stds(mp, "shapeEV", np.asarray(d["shapeEV"]).reshape(-1))
    if mean.size % 3 or mean.size == 0:
        raise ModelFormatError(f"{mp}: field 'shapeMU': {mean.size} values, not a positive multiple of 3")
    n_full = mean.size // 3
    if pcs.ndim != 2 or pcs.shape[0] != mean.size:
        raise ModelFormatError(f"{mp}: field 'shapePC': shape {pcs.shape} but shapeMU has {mean.size} rows: "
                               "mismatched vertex counts")
    if ev.size != pcs.shape[1]:
        raise ModelFormatError(f"{mp}: field 'shapeEV': {ev.size} values for {pcs.shape[1]} shapePC columns: "
                               "mismatched shapes")
    _has_modes(mp, "shapePC", pcs.shape[1])
    k = _count(mp, "identity modes", n_id, pcs.shape[1], "n_id")
    pcs, ev = pcs[:, :k], ev[:k]
    tri = _triangles(mp, "tl", d["tl"], n_full, one_based=True)
    sources = {"model": mp.name}

    keep = np.arange(n_full)
    lmk = None
    if model_info is not None:
        ip = _path(model_info)
        info = _loadmat(ip, ("trimIndex", "keypoints"), ("tri",))
        keep = _indices(ip, "trimIndex", np.asarray(info["trimIndex"]).reshape(-1), n_full, one_based=True)
        if keep.size == 0 or np.unique(keep).size != keep.size:
            raise ModelFormatError(f"{ip}: field 'trimIndex': {keep.size} entries, "
                                   f"{keep.size - np.unique(keep).size} repeated; expected distinct vertex ids")
        n_trim = keep.size
        lmk = _keypoints(ip, info["keypoints"], n_trim, keypoint_convention)
        if "tri" in info:
            tri = _triangles(ip, "tri", info["tri"], n_trim, one_based=True)
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
    fields = ("shapePC", "shapeEV", "w_exp", "sigma_exp")
    if expression is not None:
        ep = _path(expression)
        if ep.suffix.lower() == ".bin":
            mu_e, w_e = read_exp_pca_bin(ep)
            if exp_std is None:
                raise ModelFormatError(f"{ep}: Exp_Pca.bin stores no standard deviations: pass exp_std= "
                                       "(e.g. 3DDFA's std_exp.txt)")
            sig = _std_values(exp_std, ep, w_e.shape[1])
            _with_variance(Path(exp_std) if isinstance(exp_std, str | Path) else ep, "exp_std", sig)
            fields = ("shapePC", "shapeEV", "modes", "exp_std")
        else:
            e = _loadmat(ep, ("mu_exp", "w_exp", "sigma_exp"))
            mu_e = _floats(ep, "mu_exp", e["mu_exp"]).reshape(-1)
            w_e = _floats(ep, "w_exp", e["w_exp"])
            sig = _stds(ep, "sigma_exp", np.asarray(e["sigma_exp"]).reshape(-1))
            _with_variance(ep, "sigma_exp", sig)
            if w_e.ndim != 2 or sig.size != w_e.shape[1]:
                raise ModelFormatError(f"{ep}: field 'sigma_exp': {sig.size} values but w_exp has shape "
                                       f"{w_e.shape}: mismatched shapes")
        if w_e.shape[0] != 3 * n or mu_e.size != 3 * n:
            raise ModelFormatError(f"{ep}: field '{fields[2]}': expression basis covers {w_e.shape[0] // 3} vertices "
                                   f"but the {'trimmed ' if model_info is not None else ''}BFM has {n}: mismatched "
                                   "vertex counts (did you pass model_info.mat?)")
        ke = _count(ep, "expression modes", n_exp, w_e.shape[1], "n_exp")
        mean = mean + mu_e
        exp_basis, exp_s = w_e[:, :ke], sig[:ke]
        sources["expression"] = ep.name
    return _build(mp, mean=mean, id_basis=pcs, id_std=ev, exp_basis=exp_basis, exp_std=exp_s, triangles=tri,
                  landmark_index=lmk, landmark_weights=None, unit=unit, name="BFM 2009",
                  meta={"format": "bfm2009", "files": sources}, fields=fields)


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
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[0], dict) and isinstance(st[1], dict | None):
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
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _checked_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int | np.integer) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise pickle.UnpicklingError(f"refusing an array of shape {shape!r}")
    if math.prod(int(d) for d in shape) > MAX_ARRAY_ELEMENTS:
        raise pickle.UnpicklingError(f"refusing an array of shape {shape} (more than MAX_ARRAY_ELEMENTS = "
                                     f"{MAX_ARRAY_ELEMENTS} elements)")
    return tuple(int(d) for d in shape)


class _NdarrayType:
    """What ``numpy.ndarray`` resolves to inside a restricted pickle: a marker for ``_reconstruct``, not callable
    (so a pickle cannot allocate ``ndarray(huge_shape)`` directly)."""

    def __repr__(self) -> str:
        return "numpy.ndarray (marker)"


_NDARRAY = _NdarrayType()


def _safe_array_reconstruct(subtype, shape, dtype):
    """numpy's ``_reconstruct(ndarray, shape, dtype)`` (pickle protocols 0-4): plain ndarrays of bounded size."""
    import numpy._core.multiarray as ma

    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"refusing multiarray._reconstruct for {subtype!r}")
    return ma._reconstruct(np.ndarray, _checked_shape(shape), np.dtype(dtype))


def _safe_frombuffer(buf, dtype, shape, order="C", axis_order=None):
    """numpy's ``numeric._frombuffer`` (how numpy 1 and 2 pickle arrays with protocol 5): a plain-number array
    over an in-band ``bytearray``/``bytes`` buffer whose size matches the declared shape."""
    if isinstance(buf, pickle.PickleBuffer):
        buf = buf.raw()
    if not isinstance(buf, bytes | bytearray | memoryview):
        raise pickle.UnpicklingError(f"refusing _frombuffer over a {type(buf).__name__}")
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing _frombuffer with an object dtype")
    shape = _checked_shape(shape)
    if math.prod(shape) * dtype.itemsize != memoryview(buf).nbytes:
        raise pickle.UnpicklingError(f"array buffer of {memoryview(buf).nbytes} bytes does not match shape {shape} "
                                     f"of {dtype}")
    if order not in ("C", "F", "K"):
        raise pickle.UnpicklingError(f"refusing _frombuffer with order {order!r}")
    arr = np.frombuffer(buf, dtype=dtype)
    if order == "K" and axis_order is not None:
        axes = tuple(axis_order)
        if sorted(axes) != list(range(len(shape))):
            raise pickle.UnpicklingError(f"refusing _frombuffer with axis order {axis_order!r}")
        return arr.reshape(shape, order="C").transpose(axes)
    return arr.reshape(shape, order="F" if order == "F" else "C")


def _numpy_globals() -> dict[tuple[str, str], object]:
    import numpy._core.multiarray as ma

    out: dict[tuple[str, str], object] = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = _safe_array_reconstruct
        out[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):  # protocol 5 (numpy 1 / numpy 2)
        out[(mod, "_frombuffer")] = _safe_frombuffer
    for mod in ("copy_reg", "copyreg"):
        out[(mod, "_reconstructor")] = _safe_reconstructor
    out[("_codecs", "encode")] = _latin1_encode
    for name in ("object", "set", "frozenset", "complex"):
        out[("builtins", name)] = getattr(__import__("builtins"), name)
        out[("__builtin__", name)] = getattr(__import__("builtins"), name)
    return out


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (protocols 0-5, numpy 1 and 2) and plain containers; chumpy objects become
    :class:`_ChumpyArray` and scipy sparse matrices :class:`_Opaque`; every other global (``os.system``,
    ``builtins.eval``, ``numpy.load``, ...) is refused, as are out-of-band buffers and persistent ids."""

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

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing a persistent id")


def restricted_load(path: str | Path, data: bytes | None = None):
    """Unpickle ``path`` (or ``data`` read from it) with :class:`RestrictedUnpickler` (latin-1 for Python-2
    pickles). Errors name the file."""
    p = Path(path)
    if data is None:
        data = _read_bytes(_path(p))
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith(("forbidden global", "refusing")):
            raise ModelFormatError(f"{p}: refused pickle: {e}") from None
        raise ModelFormatError(f"{p}: truncated or corrupt pickle ({e})") from None
    except RecursionError:
        raise ModelFormatError(f"{p}: refused pickle: nested deeper than the interpreter allows") from None
    except MemoryError:
        raise ModelFormatError(f"{p}: refused pickle: it asks for more memory than is available") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error, OverflowError,
            UnicodeDecodeError, ModuleNotFoundError) as e:
        raise ModelFormatError(f"{p}: truncated or corrupt pickle ({type(e).__name__}: {e})") from None


def _plain(obj, where: str, depth: int = 0, memo: dict | None = None):
    """Chumpy stand-ins -> numpy arrays, through dicts/lists/tuples at most MAX_NESTING levels deep (shared
    objects are converted once, so a pickle of many references to one list costs no more than the list)."""
    memo = {} if memo is None else memo
    if depth > MAX_NESTING:
        raise ModelFormatError(f"{where}: nested deeper than {MAX_NESTING} levels (or a cyclic structure)")
    if id(obj) in memo:
        return memo[id(obj)][1]
    if isinstance(obj, _ChumpyArray):
        out = obj.array(where)
    elif isinstance(obj, dict):
        out = {k: _plain(v, f"{where}['{k}']" if isinstance(k, str) else where, depth + 1, memo)
               for k, v in obj.items()}
    elif isinstance(obj, list | tuple):
        out = type(obj)(_plain(v, where, depth + 1, memo) for v in obj)
    else:
        return obj
    memo[id(obj)] = (obj, out)  # keep obj alive so its id is not reused
    return out


def _read_npy(p: Path):
    """A ``.npy`` file: plain arrays by their header (size checked before use), object arrays through the
    restricted unpickler (never ``allow_pickle``)."""
    raw = _read_bytes(p)
    f = io.BytesIO(raw)
    shape, fortran, dtype, header_len = _read_npy_header(f, str(p))
    if dtype.hasobject:
        obj = restricted_load(p, raw[header_len:])
        if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
            obj = obj.item()
        return obj
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS:
        raise ModelFormatError(f"{p}: header declares shape {shape} = {count} elements; the limit is "
                               f"{MAX_ARRAY_ELEMENTS} (MAX_ARRAY_ELEMENTS)")
    if header_len + count * dtype.itemsize != len(raw):
        raise ModelFormatError(f"{p}: header declares shape {shape} of {dtype} ({count * dtype.itemsize} bytes) but "
                               f"the file holds {len(raw) - header_len}: truncated or corrupt")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header_len)
    return arr.reshape(shape, order="F" if fortran else "C")


def _read_embedding(path: str | Path) -> dict:
    """A landmark embedding as a dict: ``.npz``, ``.pkl`` (restricted) or ``.npy`` holding a pickled dict
    (DECA's ``landmark_embedding.npy``; its pickle is read with the restricted unpickler, not ``allow_pickle``)."""
    p = _path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            return read_npz_arrays(p)
        except ModelFormatError:
            raise
        except DataError as e:
            raise ModelFormatError(str(e)) from None
    obj = _read_npy(p) if suffix == ".npy" else restricted_load(p)
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
    The pickle is read by :class:`RestrictedUnpickler` (protocols 0-5; never plain ``pickle.load``).
    """
    p = _path(model_pkl)
    m = _plain(restricted_load(p), str(p))
    if not isinstance(m, dict):
        raise ModelFormatError(f"{p}: expected a dict (FLAME model), got {type(m).__name__}")
    missing = [k for k in ("v_template", "f", "shapedirs") if k not in m]
    if missing:
        raise ModelFormatError(f"{p}: missing key(s) {missing} (the file has {sorted(map(str, m))})")
    v = _floats(p, "v_template", _ndarray(p, "v_template", m["v_template"]))
    sd = _floats(p, "shapedirs", _ndarray(p, "shapedirs", m["shapedirs"]))
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
        raise ModelFormatError(f"{p}: field 'v_template': shape {v.shape}; expected (N, 3)")
    n = v.shape[0]
    if sd.ndim != 3 or sd.shape[:2] != (n, 3):
        raise ModelFormatError(f"{p}: field 'shapedirs': shape {sd.shape} but v_template has {n} vertices "
                               f"(expected ({n}, 3, K)): mismatched vertex counts")
    if isinstance(n_shape, bool) or not isinstance(n_shape, int) or n_shape < 1:
        raise UsageError(f"{p}: n_shape={n_shape!r}; expected a whole number >= 1")
    if sd.shape[2] <= n_shape:
        raise ModelFormatError(f"{p}: field 'shapedirs': {sd.shape[2]} modes; expected n_shape={n_shape} identity "
                               "modes followed by expression modes")
    tri = _triangles(p, "f", _ndarray(p, "f", m["f"]), n, one_based=False)
    flat = sd.reshape(3 * n, -1)
    ids, exps = flat[:, :n_shape], flat[:, n_shape:]
    ki = _count(p, "identity modes (n_shape)", n_id, n_shape, "n_id")
    ke = _count(p, "expression modes", n_exp, exps.shape[1], "n_exp")

    if isinstance(landmark_embedding, dict):
        emb, ep = landmark_embedding, Path("landmark_embedding (a dict argument)")
    else:
        emb, ep = _read_embedding(landmark_embedding), Path(landmark_embedding)
    for fk, bk in (("full_lmk_faces_idx", "full_lmk_bary_coords"), ("lmk_faces_idx", "lmk_bary_coords"),
                   ("lmk_face_idx", "lmk_b_coords")):
        if fk in emb and bk in emb:
            faces = _ndarray(ep, fk, emb[fk]).reshape(-1)
            bary = _floats(ep, bk, _ndarray(ep, bk, emb[bk]))
            break
    else:
        raise ModelFormatError(f"{ep}: no 68-point embedding (need full_lmk_faces_idx + full_lmk_bary_coords; "
                               f"the file has {sorted(map(str, emb))})")
    if faces.size != N_LANDMARKS:
        raise ModelFormatError(f"{ep}: field '{fk}': the embedding has {faces.size} landmarks; tdd_lite needs 68 "
                               "(FLAME's static embedding has 51: use a 68-point one such as DECA's full_lmk_*)")
    if bary.size != 3 * N_LANDMARKS:
        raise ModelFormatError(f"{ep}: field '{bk}': shape {bary.shape}; expected (68, 3) barycentric coordinates")
    bary = bary.reshape(N_LANDMARKS, 3)
    off = np.abs(bary.sum(1) - 1.0) > 1e-3
    if off.any():
        raise ModelFormatError(f"{ep}: field '{bk}': {int(off.sum())} rows do not sum to 1 (first: row "
                               f"{int(np.argmax(off))}); expected barycentric coordinates")
    faces = _indices(ep, fk, faces, len(tri), one_based=False)
    return _build(p, mean=v.reshape(-1), id_basis=ids[:, :ki], id_std=np.ones(ki), exp_basis=exps[:, :ke],
                  exp_std=np.ones(ke), triangles=tri, landmark_index=tri[faces], landmark_weights=bary,
                  unit=unit, name="FLAME", meta={"format": "flame", "files": {"model": p.name,
                                                                               "landmarks": ep.name}},
                  fields=("shapedirs", "shapedirs", "shapedirs", "shapedirs"))


# ------------------------------------------------------------------------------------------------ eos
class _Reader:
    """Little-endian cursor over bytes; a short read names the file, the offset and what was being read."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelFormatError(f"{self.path}: field '{what}': truncated at byte {self.pos} "
                                   f"({n} bytes needed, {len(self.data) - self.pos} left)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def size(self, what: str) -> int:
        (n,) = self.unpack("Q", what + " (size)")
        if n > len(self.data) - self.pos:
            raise ModelFormatError(f"{self.path}: field '{what}': claims {n} elements at byte {self.pos - 8} but only "
                                   f"{len(self.data) - self.pos} bytes follow: corrupt file")
        return n

    def matrix(self, what: str) -> np.ndarray:
        rows, cols = self.unpack("ii", what + " (rows, cols)")
        if rows < 0 or cols < 0 or rows * cols > MAX_ARRAY_ELEMENTS:
            raise ModelFormatError(f"{self.path}: field '{what}': impossible size {rows} x {cols} (at most "
                                   f"{MAX_ARRAY_ELEMENTS} elements): corrupt file")
        with np.errstate(invalid="ignore"):  # signalling NaNs: refused later by the finite checks, with the field
            a = np.frombuffer(self.take(4 * rows * cols, what), dtype="<f4").astype(np.float64)
        return a.reshape(cols, rows).T  # Eigen stores column-major

    def string(self, what: str) -> str:
        n = self.size(what)
        if n > 4096:
            raise ModelFormatError(f"{self.path}: field '{what}': a {n}-byte name; expected a short string")
        return self.take(n, what).decode("utf-8", errors="replace")


def _eos_pca(r: _Reader, what: str) -> dict:
    mean = r.matrix(what + ".mean").reshape(-1)
    basis = r.matrix(what + ".orthonormal_pca_basis")
    ev = r.matrix(what + ".eigenvalues").reshape(-1)
    n_tri = r.size(what + ".triangle_list")
    tri = np.frombuffer(r.take(12 * n_tri, what + ".triangle_list"), dtype="<i4").reshape(-1, 3)
    return {"mean": mean, "basis": basis, "eigenvalues": ev, "triangles": tri.astype(np.int64)}


def _eos_checked_pca(p: Path, what: str, pca: dict) -> None:
    mean, basis, ev = pca["mean"], pca["basis"], pca["eigenvalues"]
    _floats(p, f"{what}.mean", mean)
    _floats(p, f"{what}.orthonormal_pca_basis", basis)
    if mean.size % 3 or basis.shape[0] != mean.size:
        raise ModelFormatError(f"{p}: field '{what}.orthonormal_pca_basis': {basis.shape[0]} rows but the mean has "
                               f"{mean.size} values: mismatched vertex counts")
    if ev.size != basis.shape[1]:
        raise ModelFormatError(f"{p}: field '{what}.eigenvalues': {ev.size} values for {basis.shape[1]} basis "
                               "columns: mismatched shapes")
    try:
        check_std(f"{what}.eigenvalues", check_float_array(f"{what}.eigenvalues", ev))
    except DataError as e:
        raise ModelFormatError(f"{p}: {str(e).replace('standard deviations', 'variances')}") from None


def load_eos(path: str | Path, *, landmark_index=None, landmark_mapping: str | Path | None = None,
             n_id: int | None = None, n_exp: int | None = None, unit: str = "mm") -> MorphableModel:
    """An eos ``MorphableModel`` saved by ``eos::morphablemodel::save_model`` (cereal binary archive).

    Layout (little-endian): uint32 class version (1-4); shape PcaModel; colour PcaModel; [v2+] optional
    expression model (bool "empty", then int32 variant index: 0 = PcaModel, 1 = blendshapes); [v3+] optional
    landmark definitions (uint64 count, then string key + int32 vertex); texture coordinates (uint64 count,
    2 float64 each); [v4] texture triangles (uint64 count, 3 int32 each). A PcaModel is the mean, the
    orthonormal basis and the eigenvalues (variances) as Eigen float matrices (int32 rows, int32 cols,
    column-major float32 data), then the triangle list (uint64 count, 3 int32 each). A string is a uint64
    length and its bytes. Every size is checked against the bytes that follow before anything is allocated.

    Landmarks: ``landmark_index`` (68 vertex ids), else an eos landmark mapping file (e.g. ``ibug_to_sfm.txt``,
    TOML: its ``[landmark_mappings]`` table, iBUG id -> vertex id) via ``landmark_mapping``, else the model's
    own definitions keyed "1".."68".
    """
    p = _path(path)
    r = _Reader(p, _read_bytes(p))
    (version,) = r.unpack("I", "class version")
    if not 1 <= version <= 4:
        raise ModelFormatError(f"{p}: field 'class version': {version}; not an eos MorphableModel (class version "
                               "1-4 expected; version 0 is eos's old cv::Mat format)")
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
                if len({c.size for c in cols}) > 1:
                    raise ModelFormatError(f"{p}: field 'blendshapes': deformations of different sizes "
                                           f"{sorted({c.size for c in cols})}: mismatched vertex counts")
                exp_kind, exp = "blendshapes", {"names": names, "deltas": np.stack(cols, 1) if cols else None}
            else:
                raise ModelFormatError(f"{p}: field 'expression_model (variant index)': {which}; expected 0 (PCA) or "
                                       "1 (blendshapes)")
    definitions = {}
    if version >= 3:
        (empty,) = r.unpack("?", "landmark_definitions (optional flag)")
        if not empty:
            for i in range(r.size("landmark_definitions")):
                key = r.string(f"landmark_definitions[{i}] name")
                definitions[key] = r.unpack("i", f"landmark_definitions[{key!r}]")[0]
    r.take(16 * r.size("texture_coordinates"), "texture_coordinates")
    if version >= 4:
        r.take(12 * r.size("texture_triangle_indices"), "texture_triangle_indices")
    if r.pos != len(r.data):
        raise ModelFormatError(f"{p}: {len(r.data) - r.pos} unexpected trailing bytes after the model (version "
                               f"{version}): not an eos model of this version")

    _eos_checked_pca(p, "shape_model", shape)
    mean, basis, ev = shape["mean"], shape["basis"], shape["eigenvalues"]
    if mean.size == 0:
        raise ModelFormatError(f"{p}: field 'shape_model.mean': empty; expected the 3N coordinates of the mean")
    n = mean.size // 3
    _has_modes(p, "shape_model.orthonormal_pca_basis", basis.shape[1])
    ki = _count(p, "shape modes", n_id, basis.shape[1], "n_id")
    exp_basis, exp_s, exp_orth = np.zeros((3 * n, 0)), np.zeros(0), True
    if exp_kind == "pca":
        _eos_checked_pca(p, "expression_model", exp)
        if exp["basis"].shape[0] != 3 * n:
            raise ModelFormatError(f"{p}: field 'expression_model.orthonormal_pca_basis': expression model has "
                                   f"{exp['basis'].shape[0]} rows, shape model {3 * n}: mismatched vertex counts")
        ke = _count(p, "expression modes", n_exp, exp["basis"].shape[1], "n_exp")
        mean = mean + exp["mean"]
        exp_basis, exp_s, exp_orth = exp["basis"][:, :ke], np.sqrt(exp["eigenvalues"][:ke]), False
    elif exp_kind == "blendshapes" and exp["deltas"] is not None:
        if exp["deltas"].shape[0] != 3 * n:
            raise ModelFormatError(f"{p}: field 'blendshapes': blendshapes have {exp['deltas'].shape[0]} rows, shape "
                                   f"model {3 * n}: mismatched vertex counts")
        exp_basis, exp_s = _basis_svd(p, "blendshapes", _floats(p, "blendshapes", exp["deltas"]), n_exp)
    if landmark_index is not None:
        lmk = _landmarks_arg(landmark_index, n, "eos")
    elif landmark_mapping is not None:
        lmk = _eos_mapping(_path(landmark_mapping), n)
    elif all(str(i) in definitions for i in range(1, 69)):
        lmk = _indices(p, "landmark_definitions", np.array([definitions[str(i)] for i in range(1, 69)]), n,
                       one_based=False)
    else:
        raise ModelFormatError(f"{p}: field 'landmark_definitions': no 68 iBUG landmarks (the model defines "
                               f"{len(definitions)}): pass landmark_index= or landmark_mapping=")
    return _build(p, mean=mean, id_basis=basis[:, :ki], id_std=np.sqrt(ev[:ki]), exp_basis=exp_basis,
                  exp_std=exp_s, triangles=_indices(p, "shape_model.triangle_list", shape["triangles"], n,
                                                    one_based=False),
                  landmark_index=lmk, landmark_weights=None, unit=unit, name="eos model",
                  meta={"format": f"eos v{version}", "expression": exp_kind or "none", "files": {"model": p.name}},
                  orthonormal=(False, exp_orth),
                  fields=("shape_model.orthonormal_pca_basis", "shape_model.eigenvalues",
                          "expression_model.orthonormal_pca_basis" if exp_kind == "pca" else "blendshapes",
                          "expression_model.eigenvalues" if exp_kind == "pca" else "blendshapes"))


def _eos_mapping(path: Path, n: int) -> np.ndarray:
    """An eos landmark mapping file (e.g. ``ibug_to_sfm.txt``): TOML whose ``[landmark_mappings]`` table maps
    iBUG ids ("1".."68") to vertex ids (integers or digit strings). Other tables (``[contour_landmarks]``)
    are ignored. All 68 iBUG points must be mapped (eos's own files leave the contour out: pass
    ``landmark_index=`` for those models)."""
    text = _read_text(path, 1 << 20)
    try:
        doc = tomllib.loads(text)
    except RecursionError:
        raise ModelFormatError(f"{path}: nested deeper than the TOML parser allows") from None
    except tomllib.TOMLDecodeError as e:
        raise ModelFormatError(f"{path}: not a TOML landmark mapping file ({e})") from None
    table = doc.get("landmark_mappings")
    if not isinstance(table, dict):
        raise ModelFormatError(f"{path}: field 'landmark_mappings': "
                               f"{'missing' if table is None else 'a ' + type(table).__name__}; expected a "
                               "[landmark_mappings] table (iBUG id = vertex id)")
    found = {}
    for key, val in table.items():
        k = key.strip()
        if not (k.isascii() and k.isdigit() and 1 <= int(k) <= N_LANDMARKS):
            raise ModelFormatError(f"{path}: field 'landmark_mappings.{key}': not an iBUG id; expected keys 1..68")
        if isinstance(val, bool) or not (isinstance(val, int) or (isinstance(val, str) and val.strip().isascii()
                                                                   and val.strip().isdigit())):
            raise ModelFormatError(f"{path}: field 'landmark_mappings.{key}': {val!r}; expected a vertex id (a "
                                   "whole number)")
        if int(k) in found:
            raise ModelFormatError(f"{path}: field 'landmark_mappings': iBUG id {int(k)} mapped twice")
        found[int(k)] = int(val)
    missing = [i for i in range(1, 69) if i not in found]
    if missing:
        raise ModelFormatError(f"{path}: field 'landmark_mappings': maps only {68 - len(missing)} of the 68 iBUG "
                               f"landmarks (missing {missing[:10]}{'...' if len(missing) > 10 else ''}); pass "
                               "landmark_index= instead")
    return _indices(path, "landmark_mappings", np.array([found[i] for i in range(1, 69)]), n, one_based=False)


# ------------------------------------------------------------------------------------------------ ICT
def read_obj(path: str | Path, max_vertices: int = MAX_ARRAY_ELEMENTS // 3) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) and triangles (fan-split polygons, 0-based) of a Wavefront OBJ file."""
    p = _path(path)
    verts, faces = [], []
    for k, line in enumerate(_read_text(p).splitlines(), 1):
        if line.startswith("v "):
            parts = line.split()
            if len(parts) < 4:
                raise ModelFormatError(f"{p}:{k}: field 'v': a vertex line needs 3 coordinates: {line[:80]!r}")
            try:
                if not all(t.isascii() for t in parts[1:4]):
                    raise ValueError
                xyz = [float(x) for x in parts[1:4]]
            except ValueError:
                raise ModelFormatError(f"{p}:{k}: field 'v': bad vertex line {line[:80]!r}; expected 3 numbers") \
                    from None
            if not all(math.isfinite(c) for c in xyz):
                raise ModelFormatError(f"{p}:{k}: field 'v': NaN or infinite coordinate in {line[:80]!r}; expected "
                                       "finite numbers")
            verts.append(xyz)
            if len(verts) > max_vertices:
                raise ModelFormatError(f"{p}: field 'v': more than {max_vertices} vertices")
        elif line.startswith("f "):
            try:
                toks = [tok.split("/")[0] for tok in line.split()[1:]]
                if not all(t.isascii() and t.lstrip("-").isdigit() for t in toks):
                    raise ValueError
                idx = [int(t) for t in toks]
            except ValueError:
                raise ModelFormatError(f"{p}:{k}: field 'f': bad face line {line[:80]!r}; expected vertex "
                                       "numbers") from None
            if len(idx) < 3:
                raise ModelFormatError(f"{p}:{k}: field 'f': a face needs at least 3 vertices: {line[:80]!r}")
            faces += [[idx[0], idx[j], idx[j + 1]] for j in range(1, len(idx) - 1)]
    v = np.array(verts, np.float64).reshape(-1, 3)
    if not len(v):
        raise ModelFormatError(f"{p}: field 'v': no vertices")
    f = np.array(faces, np.int64).reshape(-1, 3)
    f = np.where(f < 0, f + len(v) + 1, f)  # OBJ negative (relative) indices
    return v, _indices(p, "f", f, len(v), one_based=True)


def _inside(d: Path, root: Path, name, what: str, cfg_path: Path) -> Path:
    """``d / (name + '.obj')`` when ``name`` is a plain file name that stays inside the model folder ``root``
    (resolved: no absolute paths, no ``..``, no symlink pointing out)."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ModelFormatError(f"{cfg_path}: field '{what}': {name!r}; expected an OBJ file name without .obj")
    if "\0" in name or "/" in name or "\\" in name or name in (".", "..") or Path(name).is_absolute() or \
            ":" in name:
        raise ModelFormatError(f"{cfg_path}: field '{what}': {name!r} is not a plain file name inside the model "
                               "folder (no paths, '..' or drive letters)")
    target = d / f"{name}.obj"
    try:
        resolved = target.resolve(strict=False)
    except (OSError, RuntimeError) as e:  # symlink loops
        raise ModelFormatError(f"{target}: cannot resolve ({e})") from None
    if not resolved.is_relative_to(root):
        raise ModelFormatError(f"{cfg_path}: field '{what}': {name!r} resolves to {resolved}, outside the model "
                               f"folder {root} (a symlink?)")
    return target


def load_ict_facekit(folder: str | Path, *, landmark_index=None, n_id: int | None = None,
                     n_exp: int | None = None, unit: str = "cm") -> MorphableModel:
    """An ICT-FaceKit ``FaceXModel`` folder: the neutral mesh, identity shapes and expression shapes as OBJ.

    Identity modes are ``identityNNN.obj - generic_neutral_mesh.obj`` (read from 000 until one is missing;
    std-scaled principal components); expression blendshapes are the OBJs listed under ``"expressions"`` in
    ``vertex_indices.json`` (plain names, resolved inside the folder: absolute paths, ``..`` and symlinks
    pointing outside are refused). ICT has no iBUG-68 definition we can ship: give ``landmark_index`` (68 vertex
    ids or a .txt/.json file), or add a ``"landmarks_ibug68"`` list to ``vertex_indices.json``.
    """
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise ModelFormatError(f"{d}: an ICT-FaceKit model is a folder (FaceXModel/), not a file")
    d = _path(d, folder=True)
    root = d.resolve()
    cfg_path = _path(d / "vertex_indices.json")
    cfg = _json(_read_text(cfg_path, 16 * 2**20), str(cfg_path))
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{cfg_path}: a JSON {type(cfg).__name__}; expected an object")
    if "expressions" not in cfg:
        raise ModelFormatError(f"{cfg_path}: field 'expressions': missing (the list of expression OBJ names)")
    names = cfg["expressions"]
    if not isinstance(names, list) or len(names) > MAX_SHAPES:
        raise ModelFormatError(f"{cfg_path}: field 'expressions': expected a list of at most {MAX_SHAPES} names")
    paths = [_inside(d, root, nm, f"expressions[{i}]", cfg_path) for i, nm in enumerate(names)]
    dup = sorted({nm for nm in names if names.count(nm) > 1})
    if dup:
        raise ModelFormatError(f"{cfg_path}: field 'expressions': repeated names {dup[:5]}")
    neutral_path = _inside(d, root, "generic_neutral_mesh", "generic_neutral_mesh.obj", d)
    neutral, tri = read_obj(neutral_path)
    n = len(neutral)

    def delta(path: Path) -> np.ndarray:
        v, _ = read_obj(path)
        if len(v) != n:
            raise ModelFormatError(f"{path}: field 'v': {len(v)} vertices but generic_neutral_mesh.obj has {n}: "
                                   "mismatched vertex counts")
        return (v - neutral).reshape(-1)

    id_cols = []
    while (d / f"identity{len(id_cols):03d}.obj").exists():
        if len(id_cols) >= MAX_SHAPES or 3 * n * (len(id_cols) + 1) > MAX_ARRAY_ELEMENTS:
            raise ModelFormatError(f"{d}: more identity OBJs than the limit ({MAX_SHAPES} shapes, "
                                   f"{MAX_ARRAY_ELEMENTS} floats)")
        k = len(id_cols)
        id_cols.append(delta(_inside(d, root, f"identity{k:03d}", f"identity{k:03d}.obj", d)))
    if not id_cols:
        raise ModelFormatError(f"{d}: no identity000.obj: not an ICT-FaceKit model folder")
    if 3 * n * len(paths) > MAX_ARRAY_ELEMENTS:
        raise ModelFormatError(f"{cfg_path}: field 'expressions': {len(paths)} shapes of {n} vertices exceed "
                               f"{MAX_ARRAY_ELEMENTS} floats (MAX_ARRAY_ELEMENTS)")
    ids = np.stack(id_cols, 1)
    ki = _count(d, "identity shapes", n_id, ids.shape[1], "n_id")
    if paths:
        exp_basis, exp_s = _basis_svd(cfg_path, "expressions", np.stack([delta(q) for q in paths], 1), n_exp)
    else:
        exp_basis, exp_s = np.zeros((3 * n, 0)), np.zeros(0)
    if landmark_index is None:
        if "landmarks_ibug68" not in cfg:
            raise ModelFormatError(f"{d}: no iBUG-68 landmarks: pass landmark_index= (68 vertex ids) or add "
                                   "'landmarks_ibug68' to vertex_indices.json")
        lmk = _landmarks_arg(cfg["landmarks_ibug68"], n, "ICT-FaceKit", source=cfg_path, field="landmarks_ibug68")
    else:
        lmk = _landmarks_arg(landmark_index, n, "ICT-FaceKit")
    return _build(d, mean=neutral.reshape(-1), id_basis=ids[:, :ki], id_std=np.ones(ki), exp_basis=exp_basis,
                  exp_std=exp_s, triangles=tri, landmark_index=lmk, landmark_weights=None, unit=unit,
                  name="ICT-FaceKit", meta={"format": "ict-facekit", "expressions": list(names),
                                            "files": {"folder": d.name}},
                  orthonormal=(False, True), fields=("identityNNN.obj", "identityNNN.obj", "expressions",
                                                     "expressions"))
