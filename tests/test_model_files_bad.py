"""Broken model files, one row each: every loader refuses them with a DataError naming the file and the field.

Each row writes a small, valid model file in its real format into ``tmp_path`` and then breaks exactly one thing
(a NaN, a negative std, a fractional index, a lying size, a crafted pickle, a path out of the folder, ...). The
test checks that the loader raises :class:`tdd_lite.errors.DataError` (nothing else), that the message contains
the row's phrase and the broken file's name. Separate tests show that the unbroken files load, that protocol-5
FLAME pickles give the same model as protocol 2, that real-format eos TOML mappings load, and that zip bombs
are refused without allocating their declared size.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch

from tdd_lite.errors import DataError, UsageError
from tdd_lite.model_formats import (
    MAX_ARRAY_ELEMENTS,
    load_bfm2009,
    load_eos,
    load_flame,
    load_ict_facekit,
    read_exp_pca_bin,
    restricted_load,
)
from tdd_lite.morphable import ModelArrays, load_npz, save_npz


def _orth(rows: int, cols: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((rows, cols)))
    return q


def _chain(n: int) -> np.ndarray:
    return np.array([[i, i + 1, i + 2] for i in range(n - 2)])


# ------------------------------------------------------------------------------------------ our own .npz
N, K_ID, K_EXP = 40, 5, 3


def _arrays() -> ModelArrays:
    rng = np.random.default_rng(1)
    q = _orth(3 * N, K_ID + K_EXP, 2).astype(np.float32)
    return ModelArrays(mean_shape=rng.uniform(-0.1, 0.1, (N, 3)).astype(np.float32), id_basis=q[:, :K_ID],
                       id_std=np.linspace(3e-3, 1e-3, K_ID).astype(np.float32), exp_basis=q[:, K_ID:],
                       exp_std=np.linspace(2e-3, 1e-3, K_EXP).astype(np.float32), triangles=_chain(N),
                       landmark_index=np.arange(68) % N, name="tiny")


def _write_members(path: Path, items: dict, stored: bool = False) -> Path:
    """An .npz written member by member (object arrays allowed, so broken files can be made)."""
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for key, value in items.items():
            buf = io.BytesIO()
            if isinstance(value, bytes):
                buf.write(value)
            else:
                np.lib.format.write_array(buf, np.asarray(value), allow_pickle=True)
            zf.writestr(key + ".npy", buf.getvalue())
    return path


def _npz_items(**changes) -> dict:
    a = _arrays()
    items = {k: getattr(a, k) for k in ("mean_shape", "id_basis", "id_std", "exp_basis", "exp_std", "triangles",
                                        "landmark_index")}
    items["info_json"] = np.frombuffer(json.dumps({"units": "m", "name": "tiny", "meta": {}}).encode(), np.uint8)
    for k, v in changes.items():
        if v is None:
            items.pop(k)
        else:
            items[k] = v
    return items


def _npz(**changes):
    def build(tmp: Path):
        p = _write_members(tmp / "model.npz", _npz_items(**changes))
        return (lambda: load_npz(p)), "model.npz"
    return build


def _poked(name: str, index, value, dtype=None):
    a = np.array(getattr(_arrays(), name), dtype=dtype)
    a[index] = value
    return a


def _npz_raw(kind: str):
    def build(tmp: Path):
        p = tmp / "model.npz"
        if kind == "garbage":
            p.write_bytes(b"definitely not a zip archive" * 10)
        elif kind == "truncated":
            save_npz(_arrays(), tmp / "good.npz")
            p.write_bytes((tmp / "good.npz").read_bytes()[:300])
        elif kind == "header-lies":  # header says 1000 x 1000 floats, the member holds 40 x 3
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1000, 1000)})
            items = _npz_items()
            items["mean_shape"] = buf.getvalue() + _arrays().mean_shape.tobytes()
            _write_members(p, items)
        elif kind == "crc":  # one data byte flipped in a stored member: the CRC-32 must catch it
            _write_members(p, _npz_items(), stored=True)
            raw = bytearray(p.read_bytes())
            at = raw.index(b"id_basis.npy") + len("id_basis.npy") + 200
            raw[at] ^= 0x55
            p.write_bytes(bytes(raw))
        elif kind == "extra":
            items = _npz_items()
            items["payload"] = np.zeros(3)
            _write_members(p, items)
        return (lambda: load_npz(p)), "model.npz"
    return build


def _sheared() -> np.ndarray:
    """id_basis with column 1 replaced by 0.5 column 0 + column 1 (not orthogonal, not unit length)."""
    b = _arrays().id_basis.copy()
    b[:, 1] += 0.5 * b[:, 0]
    return b


def _json_bytes(obj) -> np.ndarray:
    return np.frombuffer((obj if isinstance(obj, str) else json.dumps(obj)).encode(), np.uint8)


# ---------------------------------------------------------------------------------------------- BFM 2009
NF, NT, KB, KE = 50, 45, 4, 3
TRIM = np.sort(np.random.default_rng(3).choice(NF, NT, replace=False))


def _bfm_vars() -> dict[str, dict]:
    rows = (3 * TRIM[:, None] + np.arange(3)).reshape(-1)
    pcs = np.zeros((3 * NF, KB))
    pcs[rows] = _orth(3 * NT, KB, 4)
    rng = np.random.default_rng(5)
    mm = {"shapeMU": rng.uniform(-8e4, 8e4, (3 * NF, 1)), "shapePC": pcs,
          "shapeEV": np.array([[9000.0], [5000], [3000], [1000]]), "tl": (_chain(NF) + 1).astype(np.float64)}
    kp = np.random.default_rng(6).integers(0, NT, 68) + 1
    kp[0] = 2  # not 1 mod 3, so the keypoints cannot be read as flat x-indices: unambiguous vertex ids
    info = {"trimIndex": (TRIM + 1)[:, None].astype(np.float64), "keypoints": kp[None].astype(np.float64)}
    exp = {"mu_exp": rng.uniform(-500, 500, (3 * NT, 1)), "w_exp": _orth(3 * NT, KE, 7),
           "sigma_exp": np.array([[4000.0], [2000], [1000]])}
    return {"mm": mm, "info": info, "exp": exp}


def _savemat(path: Path, variables: dict, compress: bool = False) -> None:
    sio.savemat(path, {k: v for k, v in variables.items() if v is not None}, do_compression=compress)


def _bfm_files(tmp: Path, mm=None, info=None, exp=None, compress=False) -> tuple[Path, Path, Path]:
    v = _bfm_vars()
    paths = tmp / "01_MorphableModel.mat", tmp / "model_info.mat", tmp / "Model_Expression.mat"
    for path, key, change in zip(paths, ("mm", "info", "exp"), (mm, info, exp)):
        _savemat(path, {**v[key], **(change or {})}, compress)
    return paths


def _bfm(bad: str, *, mm=None, info=None, exp=None, compress=False, **kwargs):
    def build(tmp: Path):
        m, i, e = _bfm_files(tmp, mm, info, exp, compress)
        return (lambda: load_bfm2009(m, e, i, **kwargs)), bad
    return build


def _mm_poke(key: str, index, value):
    a = np.array(_bfm_vars()["mm"][key], dtype=complex if isinstance(value, complex) else np.float64)
    a[index] = value
    return {key: a}


def _mat_raw(kind: str):
    def build(tmp: Path):
        m, i, e = _bfm_files(tmp)
        if kind == "v73":
            m.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM" + bytes(512))
        elif kind == "huge-dims":  # a compressed shapePC whose header declares 32768 x 32768 doubles
            v = dict(_bfm_vars()["mm"])
            v.pop("shapePC")
            _savemat(m, v, compress=True)
            sub = (struct.pack("<II", 6, 8) + struct.pack("<II", 6, 0) + struct.pack("<II", 5, 8)
                   + struct.pack("<ii", 32768, 32768) + struct.pack("<II", 1, 7) + b"shapePC\x00"
                   + struct.pack("<II", 9, 0xFFFFFFF8))
            inner = zlib.compress(struct.pack("<II", 14, 0xFFFFFFF0) + sub)
            with open(m, "ab") as f:
                f.write(struct.pack("<II", 15, len(inner)) + inner)
        elif kind == "cut":
            m.write_bytes(m.read_bytes()[:2000])
        return (lambda: load_bfm2009(m, e, i)), "01_MorphableModel.mat"
    return build


def _exp_pca(kind: str):
    def build(tmp: Path):
        m, i, _ = _bfm_files(tmp)
        modes = _orth(3 * NT, 4, 8)
        mean = np.zeros(3 * NT)
        if kind == "nan":
            modes[10, 2] = np.nan
        b = tmp / "Exp_Pca.bin"
        raw = struct.pack("<i", 4) + mean.astype("<f4").tobytes() + modes.T.astype("<f4").tobytes()
        if kind == "header":
            raw = struct.pack("<i", 0) + raw[4:]
        elif kind == "size":
            raw = raw[:-6]
        b.write_bytes(raw)
        std = tmp / "std_exp.txt"
        std.write_text({"word": "1.0 2.0 three 4.0", "negative": "1.0 -2.0 3.0 4.0", "count": "1.0 2.0 3.0",
                        "tiny": "4.0 1e-12 2.0 1.0"}.get(
            kind, "4.0 3.0 2.0 1.0"))
        bad = "std_exp.txt" if kind in ("word", "negative", "count", "tiny") else "Exp_Pca.bin"
        return (lambda: load_bfm2009(m, b, i, exp_std=std)), bad
    return build


def _info_keypoints(values) -> dict:
    return {"keypoints": np.asarray(values, np.float64)[None]}


FLAT_LOW = 3 * (np.arange(68) % 14) + 1  # all 1 mod 3 and <= 40 < 45 vertices: ambiguous


# ------------------------------------------------------------------------------------------------- FLAME
NV, KS, KX = 30, 4, 3


def _flame_dict() -> dict:
    rng = np.random.default_rng(9)
    dirs = _orth(3 * NV, KS + KX, 10) * np.r_[np.linspace(3e-3, 1e-3, KS), np.linspace(2e-3, 5e-4, KX)]
    return {"v_template": rng.uniform(-0.1, 0.1, (NV, 3)), "f": _chain(NV).astype(np.uint32),
            "shapedirs": dirs.reshape(NV, 3, -1), "posedirs": np.zeros((NV, 3, 9)),
            "kintree_table": np.zeros((2, 5), np.int64), "bs_style": "lbs"}


def _embedding(n: int = 68) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    bary = rng.uniform(0.1, 1, (n, 3))
    return rng.integers(0, NV - 2, n), bary / bary.sum(1, keepdims=True)


def _flame(bad: str = "generic_model.pkl", *, model: dict | None = None, raw: bytes | None = None, emb=None,
           protocol: int = 2):
    def build(tmp: Path):
        p = tmp / "generic_model.pkl"
        p.write_bytes(raw if raw is not None else pickle.dumps({**_flame_dict(), **(model or {})}, protocol=protocol))
        faces, bary = _embedding()
        e = tmp / "emb.npz"
        if isinstance(emb, dict):
            np.savez(e, **{"lmk_faces_idx": faces, "lmk_bary_coords": bary, **emb})
        elif callable(emb):
            e = emb(tmp)
        else:
            np.savez(e, lmk_faces_idx=faces, lmk_bary_coords=bary)
        return (lambda: load_flame(p, e, n_shape=KS)), bad
    return build


def _flame_poke(key: str, index, value) -> dict:
    a = np.array(_flame_dict()[key], dtype=np.float64)
    a[index] = value
    return {key: a}


def _flame_scaled_mode(k: int, factor: float) -> np.ndarray:
    d = np.array(_flame_dict()["shapedirs"], np.float64)
    d[:, :, k] *= factor
    return d


def _nested(depth: int):
    out: list = [1.0]
    for _ in range(depth):
        out = [out]
    return out


_DTYPE_F8 = b"cnumpy\ndtype\n(Vf8\nI00\nI01\ntR"
PICKLE_OS_SYSTEM = b"cos\nsystem\n(S'echo owned'\ntR."
PICKLE_NDARRAY_CALL = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00@\x85R."  # numpy.ndarray((2**30,)) called directly
PICKLE_HUGE_RECONSTRUCT = (b"cnumpy._core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I1073741824\nt"
                           + _DTYPE_F8 + b"tR.")
PICKLE_FROMBUFFER_SHORT = (b"\x80\x05cnumpy._core.numeric\n_frombuffer\n(C\x08" + bytes(8) + _DTYPE_F8
                           + b"(I3\nI3\ntVC\ntR.")
PICKLE_EVAL = b"cbuiltins\neval\n(S'1+1'\ntR."
PICKLE_GETATTR = b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'__subclasses__'\ntR."


def _npy_lying(tmp: Path) -> Path:
    e = tmp / "landmark_embedding.npy"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (100000, 1000)})
    e.write_bytes(buf.getvalue() + bytes(64))
    return e


def _npy_evil(tmp: Path) -> Path:
    """An object .npy (like DECA's landmark_embedding.npy) whose pickle calls os.system."""
    e = tmp / "landmark_embedding.npy"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    e.write_bytes(buf.getvalue() + PICKLE_OS_SYSTEM)
    return e


# --------------------------------------------------------------------------------------------------- eos
NE, KEO = 30, 4


def _eos_matrix(a: np.ndarray) -> bytes:
    a = a.reshape(-1, 1) if a.ndim == 1 else a
    return struct.pack("<ii", *a.shape) + np.asarray(a, "<f4").T.tobytes()


def _eos_pca(mean, basis, ev, tri) -> bytes:
    return (_eos_matrix(mean) + _eos_matrix(basis) + _eos_matrix(ev) + struct.pack("<Q", len(tri))
            + np.asarray(tri, "<i4").tobytes())


def _eos_string(s: str) -> bytes:
    return struct.pack("<Q", len(s)) + s.encode()


def _eos_bytes(*, ev=None, mean=None, basis=None, tri=None, exp=None, landmarks=True, raw_shape: bytes | None = None
               ) -> bytes:
    rng = np.random.default_rng(12)
    mean = rng.uniform(-80, 80, 3 * NE) if mean is None else mean
    basis = _orth(3 * NE, KEO, 13) if basis is None else basis
    ev = np.array([400.0, 100, 50, 20]) if ev is None else ev
    tri = _chain(NE) if tri is None else tri
    out = struct.pack("<I", 3) + (raw_shape if raw_shape is not None else _eos_pca(mean, basis, ev, tri))
    out += _eos_pca(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 3)))
    if exp is None:
        out += struct.pack("<?", True)
    elif exp[0] == "pca":
        out += struct.pack("<?i", False, 0) + _eos_pca(exp[1], exp[2], exp[3], np.zeros((0, 3)))
    else:
        out += struct.pack("<?i", False, 1) + struct.pack("<Q", exp[1].shape[1])
        for k, col in enumerate(exp[1].T):
            out += _eos_string(f"bs{k}") + _eos_matrix(col)
    if landmarks:
        out += struct.pack("<?Q", False, 68)
        for i in range(68):
            out += _eos_string(str(i + 1)) + struct.pack("<i", i % NE)
    else:
        out += struct.pack("<?", True)
    return out + struct.pack("<Q", 2) + bytes(32)


def _eos(bad: str = "model.bin", mapping: str | None = None, **kw):
    def build(tmp: Path):
        p = tmp / "model.bin"
        p.write_bytes(_eos_bytes(**kw))
        if mapping is None:
            return (lambda: load_eos(p)), bad
        m = tmp / "ibug_to_model.txt"
        m.write_text(mapping)
        return (lambda: load_eos(p, landmark_mapping=m)), bad
    return build


def _toml_mapping(pairs: dict, quoted: bool = True) -> str:
    """An eos landmark mapping in its real layout: comments, [landmark_mappings], then [contour_landmarks]."""
    lines = ["# Mapping from the 68-point ibug annotations to the model's vertex indices.",
             "# This file uses TOML syntax (https://github.com/toml-lang/toml).", "",
             "[landmark_mappings] # A mapping from input landmarks (ibug, lhs) to output landmarks (model, rhs)"]
    for k, v in pairs.items():
        lines.append(f'{chr(34) + str(k) + chr(34) if quoted else k} = {v}  # point {k}')
    lines += ["", "# Definitions of which 2D landmarks make up the right and left face contours:",
              "[contour_landmarks]", "right = [ 1,", "          2,", "          3 ]", "left  = [ 10, 11, 12 ]", ""]
    return "\n".join(lines)


FULL_MAPPING = {i: (7 * i) % NE for i in range(1, 69)}
EOS_STYLE_50 = {i: i % NE for i in range(1, 69) if not (1 <= i <= 8 or 10 <= i <= 17 or i in (61, 65))}


def _eos_raw(after_version: bytes):
    def build(tmp: Path):
        p = tmp / "model.bin"
        p.write_bytes(struct.pack("<I", 3) + after_version)
        return (lambda: load_eos(p)), "model.bin"
    return build


def _eos_truncated_size(tmp: Path):
    p = tmp / "model.bin"
    p.write_bytes(struct.pack("<I", 3) + struct.pack("<ii", 2**20, 2**20) + bytes(64))
    return (lambda: load_eos(p)), "model.bin"


# --------------------------------------------------------------------------------------------------- ICT
NI = 24


def _obj_text(v: np.ndarray, faces: str | None = None) -> str:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    lines.append(faces if faces is not None else "\n".join(f"f {i + 1} {i + 2} {i + 3}" for i in range(NI - 2)))
    return "\n".join(lines) + "\n"


def _ict_folder(tmp: Path, cfg_change: dict | None = None, expressions=("jawOpen", "smile")) -> Path:
    d = tmp / "FaceXModel"
    d.mkdir()
    rng = np.random.default_rng(14)
    neutral = rng.uniform(-10, 10, (NI, 3))
    (d / "generic_neutral_mesh.obj").write_text(_obj_text(neutral))
    ids = _orth(3 * NI, 3, 15) * np.array([3.0, 2, 1])
    for k in range(3):
        (d / f"identity{k:03d}.obj").write_text(_obj_text(neutral + ids[:, k].reshape(-1, 3)))
    for name in expressions:
        (d / f"{name}.obj").write_text(_obj_text(neutral + rng.standard_normal((NI, 3))))
    cfg = {"expressions": list(expressions), "landmarks_ibug68": (np.arange(68) % NI).tolist(), **(cfg_change or {})}
    (d / "vertex_indices.json").write_text(json.dumps(cfg))
    return d


def _ict(bad: str, cfg: dict | None = None, after: Callable[[Path], None] | None = None, raw_cfg: str | None = None):
    def build(tmp: Path):
        d = _ict_folder(tmp, cfg)
        if raw_cfg is not None:
            (d / "vertex_indices.json").write_text(raw_cfg)
        if after is not None:
            after(d)
        return (lambda: load_ict_facekit(d)), bad
    return build


def _ict_landmark_file(name: str, text: str):
    """An ICT folder loaded with landmark_index= a file (``.json`` or ``.txt``) holding ``text``."""
    def build(tmp: Path):
        d = _ict_folder(tmp)
        f = tmp / name
        f.write_text(text)
        return (lambda: load_ict_facekit(d, landmark_index=f)), name
    return build


def _symlink_expression(d: Path) -> None:
    outside = d.parent / "outside.obj"
    outside.write_text((d / "jawOpen.obj").read_text())
    (d / "jawOpen.obj").unlink()
    os.symlink(outside, d / "jawOpen.obj")


def _symlink_identity(d: Path) -> None:
    outside = d.parent / "elsewhere.obj"
    outside.write_text((d / "identity001.obj").read_text())
    (d / "identity001.obj").unlink()
    os.symlink(Path("..") / "elsewhere.obj", d / "identity001.obj")


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(text)


def _special(kind: str):
    """A FIFO or a folder where a model file is expected: refused without blocking or reading."""
    def build(tmp: Path):
        p = tmp / {"fifo": "model.bin", "dir": "model.npz", "file": "FaceXModel"}[kind]
        if kind == "fifo":
            os.mkfifo(p)
            return (lambda: load_eos(p)), "model.bin"
        if kind == "dir":
            p.mkdir()
            return (lambda: load_npz(p)), "model.npz"
        p.write_text("not a folder")
        return (lambda: load_ict_facekit(p)), "FaceXModel"
    return build


# -------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], tuple[Callable[[], object], str]]
    phrase: str


CASES = [
    # our own .npz (tdd_lite.morphable.load_npz)
    Case("npz-garbage", _npz_raw("garbage"), "not an .npz (zip) archive"),
    Case("npz-truncated", _npz_raw("truncated"), "not an .npz (zip) archive"),
    Case("npz-missing-array", _npz(exp_std=None), "missing arrays ['exp_std']"),
    Case("npz-nan-mean", _npz(mean_shape=_poked("mean_shape", (3, 1), np.nan)),
         "field 'mean_shape': 1 NaN or infinite values (first at index [3, 1])"),
    Case("npz-inf-basis", _npz(id_basis=_poked("id_basis", (7, 2), np.inf)), "field 'id_basis': 1 NaN or infinite"),
    Case("npz-negative-std", _npz(id_std=np.array([1e-3, -1e-3, -2e-3, 1e-3, -1e-4], np.float32)),
         "field 'id_std': 3 negative values (first at index [1]); expected standard deviations > 0"),
    Case("npz-zero-std", _npz(exp_std=np.array([1e-3, 0.0, 1e-3], np.float32)), "field 'exp_std': 1 zero values"),
    Case("npz-float-landmarks", _npz(landmark_index=(np.arange(68) % N) + 0.5),
         "field 'landmark_index': dtype float64; expected integer indices"),
    Case("npz-landmark-range", _npz(landmark_index=np.arange(68)), "field 'landmark_index': 28 values outside [0, 39]"),
    Case("npz-triangle-shape", _npz(triangles=np.zeros((4, 2), np.int64)), "field 'triangles': shape (4, 2)"),
    Case("npz-basis-rows", _npz(exp_basis=np.zeros((3 * N - 3, K_EXP), np.float32)),
         "field 'exp_basis': shape (117, 3); expected (3N=120, K)"),
    Case("npz-object-array", _npz(id_std=np.array([{"a": 1}], dtype=object)),
         "field 'id_std': object array"),
    Case("npz-header-lies", _npz_raw("header-lies"), "field 'mean_shape': header declares shape (1000, 1000)"),
    Case("npz-crc", _npz_raw("crc"), "field 'id_basis': cannot read the member (BadZipFile: Bad CRC-32"),
    Case("npz-extra-member", _npz_raw("extra"), "unexpected member 'payload.npy'"),
    Case("npz-info-not-json", _npz(info_json=_json_bytes("{units: m")), "field 'info_json': not valid JSON"),
    Case("npz-info-deep", _npz(info_json=_json_bytes({"meta": _nested(60)})),
         "field 'info_json': nested deeper than 32 levels"),
    Case("npz-not-orthonormal", _npz(id_basis=_sheared()), "field 'id_basis': columns not orthonormal (columns 0 "
         "and 1 have dot product 0.5"),
    Case("npz-basis-scaled", _npz(exp_basis=_arrays().exp_basis * 10), "field 'exp_basis': columns not orthonormal "
         "(column "),
    Case("npz-basis-slightly-off", _npz(id_basis=_arrays().id_basis * 1.001), "field 'id_basis': columns not "
         "orthonormal"),
    Case("npz-info-meta-type", _npz(info_json=_json_bytes({"meta": [1, 2]})),
         "field 'info_json.meta': a list; expected dict"),
    # BFM 2009 .mat + 3DDFA model_info.mat / Model_Expression.mat
    Case("bfm-negative-ev", _bfm("01_MorphableModel.mat", mm={"shapeEV": np.array([[9000.0], [-5], [3000], [1]])}),
         "field 'shapeEV': 1 negative values (first at index [1]); expected standard deviations > 0"),
    Case("bfm-zero-ev", _bfm("01_MorphableModel.mat", mm={"shapeEV": np.array([[9000.0], [0], [3000], [1]])}),
         "field 'shapeEV': 1 zero values"),
    Case("bfm-tiny-ev", _bfm("01_MorphableModel.mat", mm={"shapeEV": np.array([[9000.0], [1e-20], [3000], [1]])}),
         "field 'shapeEV': 1 mode(s) with (near-)zero variance (first: mode 1"),
    Case("bfm-denormal-ev", _bfm("01_MorphableModel.mat", mm={"shapeEV": np.array([[9000.0], [5e-324], [3000], [1]])}),
         "field 'shapeEV': 1 mode(s) with (near-)zero variance"),
    Case("bfm-no-shape-modes", _bfm("01_MorphableModel.mat", mm={"shapePC": np.zeros((3 * NF, 0)),
                                                                 "shapeEV": np.zeros((0, 1))}),
         "field 'shapePC': 0 shape (identity) modes; expected at least 1"),
    Case("exp-tiny-sigma", _bfm("Model_Expression.mat", exp={"sigma_exp": np.array([[4000.0], [1e-9], [1000]])}),
         "field 'sigma_exp': 1 mode(s) with (near-)zero variance"),
    Case("bfm-nan-mean", _bfm("01_MorphableModel.mat", mm=_mm_poke("shapeMU", (5, 0), np.nan)),
         "field 'shapeMU': 1 NaN or infinite values"),
    Case("bfm-inf-basis", _bfm("01_MorphableModel.mat", mm=_mm_poke("shapePC", (8, 1), -np.inf), compress=True),
         "field 'shapePC': 1 NaN or infinite values (first at index [8, 1])"),
    Case("bfm-triangle-range", _bfm("01_MorphableModel.mat", mm=_mm_poke("tl", (3, 2), NF + 5)),
         f"field 'tl': 1-based index {NF + 5} outside [1, {NF}]"),
    Case("bfm-triangle-fraction", _bfm("01_MorphableModel.mat", mm=_mm_poke("tl", (2, 0), 2.5)),
         "field 'tl': 1 non-integer values (first at index [2, 0]: 2.5)"),
    Case("bfm-missing-variable", _bfm("01_MorphableModel.mat", mm={"shapeEV": None}),
         "missing variable(s) ['shapeEV']"),
    Case("bfm-cell", _bfm("01_MorphableModel.mat", mm={"shapePC": np.array([np.zeros(2), np.zeros(3)], object)}),
         "field 'shapePC': MATLAB cell; expected a numeric array"),
    Case("bfm-complex", _bfm("01_MorphableModel.mat", mm=_mm_poke("shapePC", (0, 0), 1j)),
         "field 'shapePC': complex numbers"),
    Case("bfm-basis-rows", _bfm("01_MorphableModel.mat", mm={"shapePC": np.zeros((3 * NF - 3, KB))}),
         "field 'shapePC': shape (147, 4) but shapeMU has 150 rows: mismatched vertex counts"),
    Case("bfm-v73", _mat_raw("v73"), "MATLAB v7.3 (HDF5) file"),
    Case("bfm-huge-dims", _mat_raw("huge-dims"), "field 'shapePC': declares dimensions (32768, 32768) = 1073741824"),
    Case("bfm-cut", _mat_raw("cut"), "truncated"),
    Case("info-keypoints-ambiguous", _bfm("model_info.mat", info=_info_keypoints(FLAT_LOW)),
         "field 'keypoints': ambiguous: values 1..40 are valid as vertex and as flat-x indices for 45 vertices; "
         "pass keypoint_convention='vertex' or 'flat-x'"),
    Case("info-keypoints-convention", _bfm("model_info.mat", keypoint_convention="flat-x"),
         "values do not fit keypoint_convention='flat-x'"),
    Case("info-keypoints-67", _bfm("model_info.mat", info=_info_keypoints(np.arange(1, 68))),
         "field 'keypoints': 67 entries; expected 68"),
    Case("info-keypoints-fraction", _bfm("model_info.mat", info=_info_keypoints(np.r_[1.5, np.arange(2, 69) % 40 + 1])),
         "field 'keypoints': 1 non-integer values (first at index [0]: 1.5)"),
    Case("info-keypoints-zero", _bfm("model_info.mat", info=_info_keypoints(np.r_[0, np.arange(2, 69) % 40 + 1])),
         "field 'keypoints': values 0..40 fit no convention"),
    Case("info-trim-range", _bfm("model_info.mat", info={"trimIndex": (np.r_[TRIM[:-1], NF + 3] + 1)[:, None] * 1.0}),
         f"field 'trimIndex': 1-based index {NF + 4} outside [1, {NF}]"),
    Case("exp-zero-sigma", _bfm("Model_Expression.mat", exp={"sigma_exp": np.array([[4000.0], [0], [1000]])}),
         "field 'sigma_exp': 1 zero values"),
    Case("exp-nan-basis", _bfm("Model_Expression.mat", exp={"w_exp": np.full((3 * NT, KE), np.nan)}),
         "field 'w_exp': 405 NaN or infinite values"),
    Case("exp-sigma-count", _bfm("Model_Expression.mat", exp={"sigma_exp": np.array([[4000.0], [1000]])}),
         "field 'sigma_exp': 2 values but w_exp has shape (135, 3): mismatched shapes"),
    Case("exp-vertex-count", _bfm("Model_Expression.mat", exp={"w_exp": _orth(3 * NT - 6, KE, 1),
                                                               "mu_exp": np.zeros((3 * NT - 6, 1))}),
         "field 'w_exp': expression basis covers 43 vertices but the trimmed BFM has 45"),
    # 3DDFA Exp_Pca.bin (+ std_exp.txt)
    Case("exppca-header", _exp_pca("header"), "field 'K' (mode count): bad header: mode count 0"),
    Case("exppca-size", _exp_pca("size"), "field 'modes': file size"),
    Case("exppca-nan", _exp_pca("nan"), "field 'modes': 1 NaN or infinite values"),
    Case("exppca-std-word", _exp_pca("word"), "field 'exp_std': entry 2 is 'three'; expected a number"),
    Case("exppca-std-negative", _exp_pca("negative"), "field 'exp_std': 1 negative values"),
    Case("exppca-std-tiny", _exp_pca("tiny"), "field 'exp_std': 1 mode(s) with (near-)zero variance"),
    Case("exppca-std-count", _exp_pca("count"), "field 'exp_std': 3 standard deviations for the 4 expression modes"),
    # FLAME generic_model.pkl (restricted unpickler) + landmark embedding
    Case("flame-os-system", _flame(raw=PICKLE_OS_SYSTEM), "refused pickle: forbidden global"),
    Case("flame-eval", _flame(raw=PICKLE_EVAL), "refused pickle: forbidden global builtins.eval"),
    Case("flame-getattr", _flame(raw=PICKLE_GETATTR), "refused pickle: forbidden global builtins.getattr"),
    Case("flame-ndarray-call", _flame(raw=PICKLE_NDARRAY_CALL), "truncated or corrupt pickle"),
    Case("flame-huge-reconstruct", _flame(raw=PICKLE_HUGE_RECONSTRUCT),
         "refused pickle: refusing an array of shape (1073741824,)"),
    Case("flame-frombuffer-short", _flame(raw=PICKLE_FROMBUFFER_SHORT), "8 bytes does not match shape (3, 3)"),
    Case("flame-deep", _flame(model={"v_template": _nested(100)}), "nested deeper than 32 levels"),
    Case("flame-list-not-array", _flame(model={"v_template": [[0.0, 0.0, 0.0]] * NV}),
         "field 'v_template': a list; expected a numpy array"),
    Case("flame-truncated", _flame(raw=pickle.dumps(_flame_dict(), protocol=5)[:500]), "truncated or corrupt pickle"),
    Case("flame-not-dict", _flame(raw=pickle.dumps([1, 2, 3])), "expected a dict (FLAME model), got list"),
    Case("flame-nan-template", _flame(model=_flame_poke("v_template", (4, 2), np.nan), protocol=5),
         "field 'v_template': 1 NaN or infinite values (first at index [4, 2])"),
    Case("flame-inf-shapedirs", _flame(model=_flame_poke("shapedirs", (1, 1, 5), np.inf)),
         "field 'shapedirs': 1 NaN or infinite"),
    Case("flame-zero-mode", _flame(model=_flame_poke("shapedirs", (slice(None), slice(None), 1), 0.0)),
         "field 'shapedirs': basis has 1 all-zero column(s)"),
    Case("flame-tiny-mode", _flame(model={"shapedirs": _flame_scaled_mode(1, 1e-9)}),
         "field 'shapedirs': 1 mode(s) with (near-)zero variance (first: mode 1"),
    Case("flame-fraction-faces", _flame(model=_flame_poke("f", (3, 1), 4.5)),
         "field 'f': 1 non-integer values (first at index [3, 1]: 4.5)"),
    Case("flame-bary-sum", _flame("emb.npz", emb={"lmk_bary_coords": np.full((68, 3), 0.5)}),
         "field 'lmk_bary_coords': 68 rows do not sum to 1"),
    Case("flame-bary-nan", _flame("emb.npz", emb={"lmk_bary_coords": np.full((68, 3), np.nan)}),
         "field 'lmk_bary_coords': 204 NaN or infinite values"),
    Case("flame-faces-fraction", _flame("emb.npz", emb={"lmk_faces_idx": np.full(68, 2.5)}),
         "field 'lmk_faces_idx': 68 non-integer values"),
    Case("flame-npy-header-lies", _flame("landmark_embedding.npy", emb=_npy_lying),
         "header declares shape (100000, 1000)"),
    Case("flame-npy-evil-pickle", _flame("landmark_embedding.npy", emb=_npy_evil), "refused pickle: forbidden global"),
    # eos .bin + TOML landmark mappings
    Case("eos-negative-ev", _eos(ev=np.array([400.0, -1, 50, 20])),
         "field 'shape_model.eigenvalues': 1 negative values (first at index [1]); expected variances > 0"),
    Case("eos-no-shape-modes", _eos(basis=np.zeros((3 * NE, 0)), ev=np.zeros(0)),
         "field 'shape_model.orthonormal_pca_basis': 0 shape (identity) modes; expected at least 1"),
    Case("eos-tiny-ev", _eos(ev=np.array([400.0, 1e-30, 50, 20])),
         "field 'shape_model.eigenvalues': 1 mode(s) with (near-)zero variance"),
    Case("eos-nan-ev", _eos(ev=np.array([400.0, np.nan, 50, 20])), "field 'shape_model.eigenvalues': 1 NaN"),
    Case("eos-nan-mean", _eos(mean=np.full(3 * NE, np.nan)), "field 'shape_model.mean': 90 NaN"),
    Case("eos-zero-exp-ev", _eos(exp=("pca", np.zeros(3 * NE), _orth(3 * NE, 2, 16), np.array([1.0, 0.0]))),
         "field 'expression_model.eigenvalues': 1 zero values"),
    Case("eos-zero-blendshapes", _eos(exp=("bs", np.zeros((3 * NE, 3)))),
         "field 'blendshapes': all blendshapes are zero"),
    Case("eos-triangle-range", _eos(tri=np.array([[0, 1, NE + 2]])),
         f"field 'shape_model.triangle_list': 0-based index {NE + 2} outside [0, {NE - 1}]"),
    Case("eos-huge-matrix", _eos_truncated_size, "field 'shape_model.mean': impossible size 1048576 x 1048576"),
    Case("eos-short-matrix", _eos_raw(struct.pack("<ii", 90, 1) + bytes(20)), "field 'shape_model.mean': truncated"),
    Case("eos-huge-count", _eos(raw_shape=_eos_matrix(np.zeros(90)) + _eos_matrix(_orth(90, 4, 1))
                                + _eos_matrix(np.ones(4)) + struct.pack("<Q", 2**60)),
         "field 'shape_model.triangle_list': claims"),
    Case("eos-no-landmarks", _eos(landmarks=False), "field 'landmark_definitions': no 68 iBUG landmarks"),
    Case("eos-mapping-real-style-50", _eos("ibug_to_model.txt", mapping=_toml_mapping(EOS_STYLE_50, quoted=False)),
         "field 'landmark_mappings': maps only 50 of the 68 iBUG landmarks"),
    Case("eos-mapping-not-toml", _eos("ibug_to_model.txt", mapping="[landmark_mappings\n9 = 33\n"), "not a TOML"),
    Case("eos-mapping-no-table", _eos("ibug_to_model.txt", mapping="[contour_landmarks]\nright = [1, 2]\n"),
         "field 'landmark_mappings': missing"),
    Case("eos-mapping-fraction", _eos("ibug_to_model.txt", mapping=_toml_mapping({**FULL_MAPPING, 9: 3.5})),
         "field 'landmark_mappings.9': 3.5; expected a vertex id"),
    Case("eos-mapping-key", _eos("ibug_to_model.txt", mapping=_toml_mapping({**FULL_MAPPING, 69: 3})),
         "field 'landmark_mappings.69': not an iBUG id"),
    Case("eos-mapping-range", _eos("ibug_to_model.txt", mapping=_toml_mapping({**FULL_MAPPING, 30: NE + 1})),
         f"field 'landmark_mappings': 0-based index {NE + 1} outside"),
    Case("eos-mapping-deep", _eos("ibug_to_model.txt", mapping="x = " + "[" * 5000 + "]" * 5000 + "\n"),
         "nested deeper than the TOML parser allows"),
    # ICT-FaceKit folder
    Case("special-fifo", _special("fifo"), "not a regular file"),
    Case("special-folder-as-npz", _special("dir"), "not a regular file"),
    Case("special-file-as-ict-folder", _special("file"), "an ICT-FaceKit model is a folder"),
    Case("ict-dotdot", _ict("vertex_indices.json", cfg={"expressions": ["../outside"]}),
         "field 'expressions[0]': '../outside' is not a plain file name inside the model folder"),
    Case("ict-absolute", _ict("vertex_indices.json", cfg={"expressions": ["/etc/passwd"]}),
         "field 'expressions[0]': '/etc/passwd' is not a plain file name"),
    Case("ict-symlink-expression", _ict("vertex_indices.json", after=_symlink_expression),
         "field 'expressions[0]': 'jawOpen' resolves to"),
    Case("ict-symlink-identity", _ict("identity001.obj", after=_symlink_identity), "outside the model folder"),
    Case("ict-name-type", _ict("vertex_indices.json", cfg={"expressions": [3]}),
         "field 'expressions[0]': 3; expected an OBJ file name"),
    Case("ict-expressions-type", _ict("vertex_indices.json", cfg={"expressions": "jawOpen"}),
         "field 'expressions': expected a list"),
    Case("ict-json-deep", _ict("vertex_indices.json", raw_cfg='{"expressions": []' + ', "x": ' + "[" * 100 + "]" * 100
                                                                 + "}"),
         "nested deeper than 32 levels"),
    Case("ict-nan-vertex", _ict("jawOpen.obj", after=_write("jawOpen.obj", "v 0 nan 0\n")),
         "NaN or infinite coordinate"),
    Case("ict-fraction-face", _ict("generic_neutral_mesh.obj", after=_write("generic_neutral_mesh.obj",
                                                                          "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2.5 3\n")),
         "field 'f': bad face line"),
    Case("ict-landmark-fraction", _ict("vertex_indices.json", cfg={"landmarks_ibug68": [3.5] + list(range(67))}),
         "field 'landmarks_ibug68': entry 0 is 3.5; expected a whole number"),
    Case("ict-landmark-strings", _ict("vertex_indices.json", cfg={"landmarks_ibug68": [str(i % NI)
                                                                                         for i in range(68)]}),
         "field 'landmarks_ibug68': entry 0 is the string '0'; expected a whole number"),
    Case("ict-landmark-file-json-strings", _ict_landmark_file("lmk.json", json.dumps([str(i % NI) for i in range(68)])),
         "field 'landmark_index': entry 0 is the string '0'"),
    Case("ict-landmark-range", _ict("vertex_indices.json", cfg={"landmarks_ibug68": [NI + 9] * 68}),
         f"field 'landmarks_ibug68': 0-based index {NI + 9} outside [0, {NI - 1}]"),
    Case("ict-vertex-count", _ict("smile.obj", after=_write("smile.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n")),
         f"field 'v': 3 vertices but generic_neutral_mesh.obj has {NI}"),
]


def test_the_table_is_big_and_distinct():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert {c.id.split("-")[0] for c in CASES} >= {"npz", "bfm", "info", "exp", "exppca", "flame", "eos", "ict",
                                                    "special"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_model_file_is_refused_naming_file_and_field(case: Case, tmp_path):
    call, bad_name = case.build(tmp_path)
    try:
        call()
    except DataError as e:
        msg = str(e)
        assert case.phrase in msg, f"phrase {case.phrase!r} not in {msg!r}"
        assert bad_name in msg, f"file name {bad_name!r} not in {msg!r}"
        assert "\n" not in msg
        return
    except Exception as e:  # noqa: BLE001 - the point of the test: nothing but DataError may escape
        pytest.fail(f"{type(e).__name__} instead of DataError: {e}")
    pytest.fail("the broken file loaded")


# ----------------------------------------------------------------------------------------- valid files
def _shape_ref(model, mean, id_cols, exp_cols, scale):
    """model.shape(alpha) against scale * (mean + id_cols a_id + exp_cols a_exp), computed here in float64."""
    g = torch.Generator().manual_seed(0)
    a_id = torch.randn(2, model.n_id, generator=g, dtype=torch.float64)
    a_exp = torch.randn(2, model.n_exp, generator=g, dtype=torch.float64)
    got = model.double().shape(a_id, a_exp).numpy()
    ref = scale * (mean[None] + a_id.numpy() @ id_cols.T + a_exp.numpy() @ exp_cols.T)
    # float32 storage: relative 1e-5 of the largest coordinate covers its rounding
    np.testing.assert_allclose(got, ref.reshape(2, -1, 3), rtol=0, atol=1e-5 * np.abs(ref).max())


def test_valid_tiny_files_still_load(tmp_path):
    save_npz(_arrays(), tmp_path / "model.npz")
    m = load_npz(tmp_path / "model.npz")
    assert (m.n_vertices, m.n_id, m.n_exp) == (N, K_ID, K_EXP)

    for compress in (False, True):
        d = tmp_path / f"bfm{compress}"
        d.mkdir()
        mm, info, exp = _bfm_files(d, compress=compress)
        b = load_bfm2009(mm, exp, info)
        v = _bfm_vars()
        rows = (3 * TRIM[:, None] + np.arange(3)).reshape(-1)
        np.testing.assert_array_equal(b.landmark_index, v["info"]["keypoints"].reshape(-1).astype(int) - 1)
        _shape_ref(b, v["mm"]["shapeMU"].reshape(-1)[rows] + v["exp"]["mu_exp"].reshape(-1),
                   v["mm"]["shapePC"][rows] * v["mm"]["shapeEV"].reshape(-1),
                   v["exp"]["w_exp"] * v["exp"]["sigma_exp"].reshape(-1), 1e-6)

    call, _ = _exp_pca("ok")(tmp_path)
    assert call().n_exp == 4
    assert read_exp_pca_bin(tmp_path / "Exp_Pca.bin", NT)[1].shape == (3 * NT, 4)

    call, _ = _flame()(tmp_path)
    f = call()
    assert (f.n_vertices, f.n_id, f.n_exp) == (NV, KS, KX)

    (tmp_path / "model.bin").write_bytes(_eos_bytes())
    e = load_eos(tmp_path / "model.bin")
    np.testing.assert_array_equal(e.landmark_index, np.arange(68) % NE)

    i = load_ict_facekit(_ict_folder(tmp_path))
    assert (i.n_vertices, i.n_id, i.n_exp) == (NI, 3, 2)


def test_bfm_keypoint_convention_argument_resolves_ambiguity(tmp_path):
    """Flat x-indices that all happen to be below the vertex count: 'auto' refuses, the explicit argument decides."""
    mm, info, exp = _bfm_files(tmp_path, info=_info_keypoints(FLAT_LOW))
    as_flat = load_bfm2009(mm, exp, info, keypoint_convention="flat-x")
    np.testing.assert_array_equal(as_flat.landmark_index, (FLAT_LOW - 1) // 3)
    as_vertex = load_bfm2009(mm, exp, info, keypoint_convention="vertex")
    np.testing.assert_array_equal(as_vertex.landmark_index, FLAT_LOW - 1)
    _savemat(info, {**_bfm_vars()["info"], **_info_keypoints(3 * (np.arange(68) % NT))})  # 0-based flat: 3v
    np.testing.assert_array_equal(load_bfm2009(mm, exp, info).landmark_index, np.arange(68) % NT)  # auto: flat-x0
    with pytest.raises(UsageError, match="keypoint_convention='xyz'; expected one of"):
        load_bfm2009(mm, exp, info, keypoint_convention="xyz")


def test_arguments_out_of_range_are_usage_errors(tmp_path):
    mm, info, exp = _bfm_files(tmp_path)
    with pytest.raises(UsageError, match=r"01_MorphableModel.mat: n_id=9 but the file has 4 identity modes"):
        load_bfm2009(mm, exp, info, n_id=9)
    with pytest.raises(UsageError, match=r"01_MorphableModel.mat: unit must be one of"):
        load_bfm2009(mm, exp, info, unit="furlong")
    with pytest.raises(UsageError, match=r"landmark_index=: field 'landmark_index': 1 non-integer values"):
        load_bfm2009(mm, landmark_index=np.r_[0.5, np.arange(67)])


# --------------------------------------------------------------------------------------- FLAME protocol 5
def test_flame_protocol5_pickle_loads_like_protocol2(tmp_path):
    model = _flame_dict()
    # a Fortran-ordered and a transposed (neither C nor F contiguous) array take numpy's other pickle paths
    model["v_template"] = np.asfortranarray(model["v_template"])
    model["shapedirs"] = np.ascontiguousarray(model["shapedirs"].transpose(1, 0, 2)).transpose(1, 0, 2)
    faces, bary = _embedding()
    np.savez(tmp_path / "emb.npz", lmk_faces_idx=faces, lmk_bary_coords=bary)
    loaded = {}
    for proto in (2, 5):
        p = tmp_path / f"generic_model_p{proto}.pkl"
        p.write_bytes(pickle.dumps(model, protocol=proto))
        raw = restricted_load(p)
        np.testing.assert_array_equal(raw["shapedirs"], model["shapedirs"])  # exact: a byte copy, no arithmetic
        np.testing.assert_array_equal(raw["v_template"], model["v_template"])
        loaded[proto] = load_flame(p, tmp_path / "emb.npz", n_shape=KS)
    assert b"_frombuffer" in (tmp_path / "generic_model_p5.pkl").read_bytes()
    a, b = loaded[2], loaded[5]
    for key in ("mean_shape", "id_basis", "id_std", "exp_basis", "exp_std", "lmk_mean", "lmk_id", "lmk_exp"):
        # the same input arrays through the same float64 code: equal up to float32 rounding of one value
        torch.testing.assert_close(getattr(a, key), getattr(b, key), rtol=1e-6, atol=1e-9)
    flat = model["shapedirs"].reshape(3 * NV, -1)
    _shape_ref(b, model["v_template"].reshape(-1), flat[:, :KS], flat[:, KS:], 1.0)


def test_protocol5_numpy1_module_name_is_accepted(tmp_path):
    """numpy 1 writes ``numpy.core.numeric._frombuffer``; the restricted unpickler maps both spellings."""
    data = pickle.dumps({"a": np.arange(6.0).reshape(2, 3)}, protocol=5)
    assert b"numpy._core.numeric" in data
    old, new = b"\x8c\x13numpy._core.numeric", b"\x8c\x12numpy.core.numeric"  # SHORT_BINUNICODE: length byte
    assert data.count(old) == 1 and data[2:3] == b"\x95"  # one FRAME: its 8-byte length shrinks by one too
    frame = struct.unpack("<Q", data[3:11])[0]
    p = tmp_path / "np1.pkl"
    p.write_bytes(data[:3] + struct.pack("<Q", frame - 1) + data[11:].replace(old, new))
    np.testing.assert_array_equal(restricted_load(p)["a"], np.arange(6.0).reshape(2, 3))


# ------------------------------------------------------------------------------------------ eos TOML maps
@pytest.mark.parametrize("quoted", [True, False])
def test_eos_toml_mapping_in_the_real_format_loads(tmp_path, quoted):
    (tmp_path / "model.bin").write_bytes(_eos_bytes(landmarks=False))
    text = _toml_mapping(FULL_MAPPING, quoted=quoted)
    assert "[contour_landmarks]" in text and ("\"9\" = " in text) == quoted
    (tmp_path / "ibug_to_model.txt").write_text(text)
    m = load_eos(tmp_path / "model.bin", landmark_mapping=tmp_path / "ibug_to_model.txt")
    np.testing.assert_array_equal(m.landmark_index, [FULL_MAPPING[i] for i in range(1, 69)])
    # vertex ids given as strings (eos accepts both)
    (tmp_path / "str.txt").write_text(text.replace(f"= {FULL_MAPPING[9]}  #", f'= "{FULL_MAPPING[9]}"  #'))
    m2 = load_eos(tmp_path / "model.bin", landmark_mapping=tmp_path / "str.txt")
    np.testing.assert_array_equal(m2.landmark_index, m.landmark_index)


# ------------------------------------------------------------------------------------------------ zip bombs
BOMB_ELEMENTS = 2**27  # 2**27 float64 = 1 GiB once decompressed


def _deflate_zeros(header: bytes, n_zero: int) -> tuple[bytes, int]:
    """Raw deflate of ``header + n_zero zero bytes`` and its CRC-32, made quickly: a full-flushed 4 MiB block of
    zeros compresses to the same bytes every time, so it is compressed once and repeated."""
    block = 4 << 20
    assert n_zero % block == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    piece = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    assert again == piece
    data = head + piece * (n_zero // block) + c.flush()
    crc = zlib.crc32(header)
    zeros = bytes(block)
    for _ in range(n_zero // block):
        crc = zlib.crc32(zeros, crc)
    return data, crc


def _zip_one(path: Path, name: str, data: bytes, crc: int, usize: int) -> None:
    """A one-member zip archive (deflate) written by hand, so the directory can state any uncompressed size."""
    fn = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), usize, len(fn), 0) + fn
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), usize, len(fn), 0, 0,
                          0, 0, 0, 0) + fn
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)


@pytest.fixture(scope="module")
def bomb_stream():
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (BOMB_ELEMENTS,)})
    header = buf.getvalue()
    data, crc = _deflate_zeros(header, 8 * BOMB_ELEMENTS)
    return header, data, crc


@pytest.mark.parametrize("directory", ["honest", "lying"])
def test_zip_bomb_is_refused_without_allocating(tmp_path, bomb_stream, directory):
    header, data, crc = bomb_stream
    usize = len(header) + 8 * BOMB_ELEMENTS
    if directory == "lying":  # the directory (size and CRC) describes only the first 1 kB: a consistent liar
        usize = len(header) + 960
        crc = zlib.crc32(bytes(960), zlib.crc32(header))
    p = tmp_path / "model.npz"
    _zip_one(p, "mean_shape.npy", data, crc, usize)
    assert len(data) < 2 << 20 and p.stat().st_size < 2 << 20  # ~1 MB on disk, 1 GiB inflated
    with zipfile.ZipFile(p) as zf:  # a well-formed archive: zipfile itself lists the 1 GiB member
        assert zf.infolist()[0].file_size == usize
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            load_npz(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert "model.npz" in msg and "field 'mean_shape'" in msg
    assert ("decompresses to" in msg) if directory == "honest" else ("header declares shape (134217728,)" in msg), msg
    assert peak < 32 << 20, f"peak {peak / 2**20:.1f} MiB traced while refusing a 1 GiB member"


def test_declared_size_limit_is_the_stated_constant(tmp_path):
    """An .npz member whose header declares one element more than MAX_ARRAY_ELEMENTS is refused by its header."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                               "shape": (MAX_ARRAY_ELEMENTS + 1,)})
    p = _write_members(tmp_path / "model.npz", {**_npz_items(), "mean_shape": buf.getvalue()})
    with pytest.raises(DataError, match=rf"model.npz: field 'mean_shape': header declares shape "
                                        rf"\({MAX_ARRAY_ELEMENTS + 1},\) = {MAX_ARRAY_ELEMENTS + 1} elements"):
        load_npz(p)


# ------------------------------------------------------------------------------------------- corruption fuzz
def _fuzz_targets(tmp: Path) -> dict[Path, Callable[[Path], object]]:
    save_npz(_arrays(), tmp / "model.npz")
    mm, info, exp = _bfm_files(tmp, compress=True)
    (tmp / "model.bin").write_bytes(_eos_bytes(landmarks=False))
    (tmp / "map.txt").write_text(_toml_mapping(FULL_MAPPING))
    (tmp / "generic_model.pkl").write_bytes(pickle.dumps(_flame_dict(), protocol=5))
    faces, bary = _embedding()
    np.save(tmp / "landmark_embedding.npy", {"full_lmk_faces_idx": faces[None], "full_lmk_bary_coords": bary[None]},
            allow_pickle=True)
    d = _ict_folder(tmp)
    return {
        tmp / "model.npz": load_npz,
        mm: lambda p: load_bfm2009(p, exp, info),
        info: lambda p: load_bfm2009(mm, exp, p),
        tmp / "model.bin": lambda p: load_eos(p, landmark_mapping=tmp / "map.txt"),
        tmp / "map.txt": lambda p: load_eos(tmp / "model.bin", landmark_mapping=p),
        tmp / "generic_model.pkl": lambda p: load_flame(p, tmp / "landmark_embedding.npy", n_shape=KS),
        tmp / "landmark_embedding.npy": lambda p: load_flame(tmp / "generic_model.pkl", p, n_shape=KS),
        d / "vertex_indices.json": lambda p: load_ict_facekit(d),
        d / "identity001.obj": lambda p: load_ict_facekit(d),
    }


def test_corrupted_files_raise_only_data_error(tmp_path):
    """Seeded byte flips, truncations and insertions in every format: each file loads or raises DataError."""
    import random

    rng = random.Random(0)
    outcomes: dict[str, int] = {}
    for path, call in _fuzz_targets(tmp_path).items():
        good = path.read_bytes()
        for trial in range(30):
            data = bytearray(good)
            if trial % 3 == 0:
                for _ in range(rng.randint(1, 4)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            elif trial % 3 == 1:
                data = data[:rng.randrange(len(data))]
            else:
                at = rng.randrange(len(data))
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            path.write_bytes(bytes(data))
            try:
                call(path)
                outcome = "loaded"
            except DataError as e:
                assert path.name in str(e) or path.parent.name in str(e), str(e)
                outcome = "DataError"
            except Exception as e:  # noqa: BLE001 - nothing else may escape
                pytest.fail(f"{path.name} trial {trial}: {type(e).__name__}: {e}")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        path.write_bytes(good)
    assert outcomes.get("DataError", 0) > 150  # most corruptions are detected, not silently loaded


def test_landmark_text_file_of_numbers_still_loads(tmp_path):
    """A whitespace-separated .txt landmark file is all strings by nature: its whole numbers load (only quoted
    numbers in JSON are refused)."""
    d = _ict_folder(tmp_path)
    f = tmp_path / "lmk.txt"
    f.write_text(" ".join(str(i % NI) for i in range(68)) + "\n")
    m = load_ict_facekit(d, landmark_index=f)
    np.testing.assert_array_equal(m.landmark_index, np.arange(68) % NI)


def test_float32_rounding_of_an_orthonormal_basis_is_accepted(tmp_path):
    """The orthonormality tolerance sits far above float32 rounding: a float64 orthonormal basis of a large
    model stored as float32 loads."""
    a = _arrays()
    n = 3000
    q = _orth(3 * n, K_ID + K_EXP, 21).astype(np.float32)
    big = ModelArrays(mean_shape=np.zeros((n, 3), np.float32), id_basis=q[:, :K_ID], id_std=a.id_std,
                      exp_basis=q[:, K_ID:], exp_std=a.exp_std, triangles=_chain(n), landmark_index=np.arange(68),
                      name="big")
    save_npz(big, tmp_path / "big.npz")
    assert load_npz(tmp_path / "big.npz").n_vertices == n
