"""Loaders for user-owned 3DMMs, each tested on a tiny file written here in that exact format, plus bad files.

The tiny models use exactly orthonormal bases on the vertices the loader keeps, so a loaded model's
``shape(alpha)`` must equal the format's own formula (mean + basis * (std * alpha)) computed here directly.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import scipy.sparse as sp
import torch

from tdd_lite.model_formats import (
    ModelFormatError,
    load_bfm2009,
    load_eos,
    load_flame,
    load_ict_facekit,
    read_exp_pca_bin,
    read_obj,
    restricted_load,
)

RNG = np.random.default_rng(0)


def _orthonormal(rows: int, cols: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((rows, cols)))
    return q


def _check_shape(model, mean, id_cols, exp_cols, scale, n_check=3):
    """model.shape(alpha) == scale * (mean + id_cols @ alpha_id + exp_cols @ alpha_exp) (cols std-scaled)."""
    g = torch.Generator().manual_seed(1)
    a_id = torch.randn(n_check, model.n_id, generator=g, dtype=torch.float64)
    a_exp = torch.randn(n_check, model.n_exp, generator=g, dtype=torch.float64)
    got = model.double().shape(a_id, a_exp).numpy()
    ref = scale * (mean[None] + a_id.numpy() @ id_cols.T + a_exp.numpy() @ exp_cols.T)
    np.testing.assert_allclose(got, ref.reshape(n_check, -1, 3), rtol=1e-4, atol=1e-6 * np.abs(ref).max())


# ---------------------------------------------------------------------------------------- BFM + 3DDFA
N_FULL, N_TRIM, K_ID, K_EXP = 90, 75, 6, 4


def _grid_triangles(n: int) -> np.ndarray:
    return np.array([[i, i + 1, i + 2] for i in range(n - 2)])


@pytest.fixture()
def bfm(tmp_path):
    """01_MorphableModel.mat (µm), model_info.mat (trim + 1-based keypoints) and Model_Expression.mat."""
    trim = np.sort(RNG.choice(N_FULL, N_TRIM, replace=False))  # 0-based kept vertices
    rows = (3 * trim[:, None] + np.arange(3)).reshape(-1)
    pcs = np.zeros((3 * N_FULL, K_ID))
    pcs[rows] = _orthonormal(3 * N_TRIM, K_ID, 1)  # zero outside the trim: stays orthonormal when trimmed
    ev = np.array([9000.0, 5000, 3000, 2000, 1000, 500])
    mu = RNG.uniform(-8e4, 8e4, 3 * N_FULL)
    tl = _grid_triangles(N_FULL) + 1
    sio.savemat(tmp_path / "01_MorphableModel.mat", {
        "shapeMU": mu[:, None], "shapePC": pcs, "shapeEV": ev[:, None], "tl": tl.astype(np.float64),
        "texMU": np.zeros((3 * N_FULL, 1)), "texPC": np.zeros((3 * N_FULL, 2)), "texEV": np.ones((2, 1))})
    keypoints = RNG.choice(N_TRIM, 68, replace=False) + 1
    sio.savemat(tmp_path / "model_info.mat", {"trimIndex": (trim + 1)[:, None].astype(np.float64),
                                              "keypoints": keypoints[None].astype(np.float64)})
    w_exp = _orthonormal(3 * N_TRIM, K_EXP, 2)
    sigma = np.array([4000.0, 2000, 1000, 300])
    mu_exp = RNG.uniform(-500, 500, 3 * N_TRIM)
    sio.savemat(tmp_path / "Model_Expression.mat", {"mu_exp": mu_exp[:, None], "w_exp": w_exp,
                                                    "sigma_exp": sigma[:, None]})
    return {"dir": tmp_path, "trim": trim, "rows": rows, "pcs": pcs, "ev": ev, "mu": mu, "tl": tl,
            "keypoints": keypoints, "w_exp": w_exp, "sigma": sigma, "mu_exp": mu_exp}


def test_bfm2009_with_3ddfa_expression_and_trim(bfm):
    d = bfm["dir"]
    m = load_bfm2009(d / "01_MorphableModel.mat", d / "Model_Expression.mat", d / "model_info.mat")
    assert (m.n_vertices, m.n_id, m.n_exp) == (N_TRIM, K_ID, K_EXP)
    np.testing.assert_array_equal(m.landmark_index, bfm["keypoints"] - 1)
    # triangles: those of tl whose three vertices survive the trim, re-indexed
    local = {v: i for i, v in enumerate(bfm["trim"])}
    expect = [[local[a], local[b], local[c]] for a, b, c in bfm["tl"] - 1 if a in local and b in local and c in local]
    np.testing.assert_array_equal(m.triangles, np.array(expect).reshape(-1, 3))
    mean = bfm["mu"][bfm["rows"]] + bfm["mu_exp"]
    _check_shape(m, mean, bfm["pcs"][bfm["rows"]] * bfm["ev"], bfm["w_exp"] * bfm["sigma"], 1e-6)
    np.testing.assert_allclose(m.id_std.double().numpy(), bfm["ev"] * 1e-6, rtol=1e-6)
    assert m.units == "m" and m.meta["files"]["expression"] == "Model_Expression.mat"


def test_bfm2009_truncation_and_no_expression(bfm):
    d = bfm["dir"]
    m = load_bfm2009(d / "01_MorphableModel.mat", None, d / "model_info.mat", n_id=3)
    assert (m.n_id, m.n_exp) == (3, 0)
    _check_shape(m, bfm["mu"][bfm["rows"]], bfm["pcs"][bfm["rows"]][:, :3] * bfm["ev"][:3], np.zeros((3 * N_TRIM, 0)),
                 1e-6)


def test_bfm2009_full_model_with_given_landmarks(bfm):
    d = bfm["dir"]
    m = load_bfm2009(d / "01_MorphableModel.mat", landmark_index=np.arange(68))
    assert m.n_vertices == N_FULL and len(m.triangles) == N_FULL - 2


def _write_exp_pca_bin(path: Path, mean: np.ndarray, modes: np.ndarray) -> None:
    """int32 K, float32 mean (3N), float32 modes K x 3N (mode-major), as 3DDFA's Exp_Pca.bin."""
    with open(path, "wb") as f:
        f.write(struct.pack("<i", modes.shape[1]))
        f.write(mean.astype("<f4").tobytes())
        f.write(modes.T.astype("<f4").tobytes())


def test_exp_pca_bin_reader_and_bfm_combination(bfm):
    d = bfm["dir"]
    modes = _orthonormal(3 * N_TRIM, 5, 3)
    mean = RNG.uniform(-100, 100, 3 * N_TRIM)
    _write_exp_pca_bin(d / "Exp_Pca.bin", mean, modes)
    mu, pc = read_exp_pca_bin(d / "Exp_Pca.bin")
    np.testing.assert_allclose(mu, mean.astype(np.float32))
    np.testing.assert_allclose(pc, modes.astype(np.float32))
    std = np.array([50.0, 40, 30, 20, 10])
    np.savetxt(d / "std_exp.txt", std)
    m = load_bfm2009(d / "01_MorphableModel.mat", d / "Exp_Pca.bin", d / "model_info.mat", exp_std=d / "std_exp.txt")
    assert m.n_exp == 5
    _check_shape(m, bfm["mu"][bfm["rows"]] + mu, bfm["pcs"][bfm["rows"]] * bfm["ev"], pc * std, 1e-6)
    with pytest.raises(ModelFormatError, match=r"Exp_Pca.bin: Exp_Pca.bin stores no standard deviations"):
        load_bfm2009(d / "01_MorphableModel.mat", d / "Exp_Pca.bin", d / "model_info.mat")


def test_keypoints_as_flat_xyz_indices_are_recognised(bfm):
    d = bfm["dir"]
    info = sio.loadmat(d / "model_info.mat")
    vert = bfm["keypoints"] - 1
    vert[0] = N_TRIM - 1  # make sure the flat indices exceed N
    sio.savemat(d / "model_info_flat.mat", {"trimIndex": info["trimIndex"], "keypoints": (3 * vert + 1)[None]})
    m = load_bfm2009(d / "01_MorphableModel.mat", None, d / "model_info_flat.mat")
    np.testing.assert_array_equal(m.landmark_index, vert)


# ---------------------------------------------------------------------------------------------- FLAME
N_FLAME, K_SHAPE, K_EXPR = 80, 8, 5


@pytest.fixture()
def fake_chumpy(monkeypatch):
    """A stand-in ``chumpy.ch.Ch`` so the test can *write* pickles that reference chumpy (it is not installed)."""
    pkg, sub = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:  # plain class with chumpy's module path and the leaf-array attribute 'x'
        def __init__(self, x):
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    sub.Ch = Ch
    pkg.ch = sub
    monkeypatch.setitem(sys.modules, "chumpy", pkg)
    monkeypatch.setitem(sys.modules, "chumpy.ch", sub)
    return Ch


def _flame_dict(ch_cls):
    v = RNG.uniform(-0.1, 0.1, (N_FLAME, 3))
    dirs = _orthonormal(3 * N_FLAME, K_SHAPE + K_EXPR, 4) * np.r_[np.linspace(3e-3, 1e-3, K_SHAPE),
                                                                  np.linspace(2e-3, 5e-4, K_EXPR)]
    f = _grid_triangles(N_FLAME).astype(np.uint32)
    return {"v_template": v, "f": f, "shapedirs": ch_cls(dirs.reshape(N_FLAME, 3, -1)),
            "posedirs": ch_cls(np.zeros((N_FLAME, 3, 36))), "J_regressor": sp.csc_matrix(np.eye(5, N_FLAME)),
            "kintree_table": np.zeros((2, 5), np.int64), "weights": ch_cls(np.ones((N_FLAME, 5)) / 5),
            "bs_style": "lbs", "bs_type": "lrotmin"}, dirs


def _embedding(n=68):
    faces = RNG.integers(0, N_FLAME - 2, n)
    bary = RNG.uniform(0.1, 1, (n, 3))
    return faces, bary / bary.sum(1, keepdims=True)


@pytest.mark.parametrize("protocol", [0, 2])
@pytest.mark.parametrize("emb_format", ["npy", "npz"])
def test_flame_restricted_unpickler_and_barycentric_landmarks(tmp_path, fake_chumpy, protocol, emb_format):
    model, dirs = _flame_dict(fake_chumpy)
    (tmp_path / "generic_model.pkl").write_bytes(pickle.dumps(model, protocol=protocol))
    faces, bary = _embedding()
    if emb_format == "npy":  # DECA's landmark_embedding.npy: a pickled dict inside a .npy
        np.save(tmp_path / "landmark_embedding.npy", {"full_lmk_faces_idx": faces[None],
                                                      "full_lmk_bary_coords": bary[None],
                                                      "static_lmk_faces_idx": faces[:51]}, allow_pickle=True)
        emb = tmp_path / "landmark_embedding.npy"
    else:
        np.savez(tmp_path / "emb.npz", lmk_faces_idx=faces, lmk_bary_coords=bary)
        emb = tmp_path / "emb.npz"
    m = load_flame(tmp_path / "generic_model.pkl", emb, n_shape=K_SHAPE)
    assert (m.n_vertices, m.n_id, m.n_exp) == (N_FLAME, K_SHAPE, K_EXPR)
    _check_shape(m, model["v_template"].reshape(-1), dirs[:, :K_SHAPE], dirs[:, K_SHAPE:], 1.0)
    # landmarks: barycentric points of the embedding's triangles, on the deformed shape
    a_id, a_exp = torch.randn(2, K_SHAPE, dtype=torch.float64), torch.randn(2, K_EXPR, dtype=torch.float64)
    dense = m.double().shape(a_id, a_exp).numpy()
    tri = model["f"].astype(np.int64)[faces]
    ref = np.einsum("bkjc,kj->bkc", dense[:, tri], bary)
    np.testing.assert_allclose(m.landmarks3d(a_id, a_exp).numpy(), ref, atol=1e-7)  # float32 landmark rows


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_restricted_unpickler_refuses_forbidden_globals(tmp_path, fake_chumpy):
    model, _ = _flame_dict(fake_chumpy)
    model["payload"] = _Evil()
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(pickle.dumps(model, protocol=2))
    faces, bary = _embedding()
    np.savez(tmp_path / "emb.npz", lmk_faces_idx=faces, lmk_bary_coords=bary)
    with pytest.raises(ModelFormatError, match=r"generic_model.pkl: refused pickle: forbidden global "
                                               r"(posix|nt|os)\.system"):
        load_flame(bad, tmp_path / "emb.npz", n_shape=K_SHAPE)
    evil_builtin = tmp_path / "eval.pkl"
    evil_builtin.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(ModelFormatError, match="forbidden global builtins.eval"):
        restricted_load(evil_builtin)


# ------------------------------------------------------------------------------------------------ eos
N_EOS, K_EOS, K_EOS_EXP = 70, 5, 3


def _eos_matrix(a: np.ndarray) -> bytes:
    a = np.atleast_2d(a.T).T if a.ndim == 1 else a  # column vector for 1-D
    rows, cols = a.shape
    return struct.pack("<ii", rows, cols) + np.asarray(a, "<f4").T.tobytes()  # column-major data


def _eos_pca(mean, basis, eigenvalues, tri) -> bytes:
    out = _eos_matrix(mean.reshape(-1, 1)) + _eos_matrix(basis) + _eos_matrix(eigenvalues.reshape(-1, 1))
    return out + struct.pack("<Q", len(tri)) + np.asarray(tri, "<i4").tobytes()


def _eos_string(s: str) -> bytes:
    return struct.pack("<Q", len(s)) + s.encode()


def _write_eos(path: Path, version: int, shape: dict, expression=None, landmarks: dict | None = None,
               n_texcoords: int = 4) -> bytes:
    """eos::morphablemodel::MorphableModel in cereal's binary archive layout (little-endian)."""
    out = struct.pack("<I", version)
    out += _eos_pca(shape["mean"], shape["basis"], shape["ev"], shape["tri"])
    out += _eos_pca(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 3)))  # shape-only: empty colour
    if version >= 2:
        if expression is None:
            out += struct.pack("<?", True)
        elif expression[0] == "pca":
            _, mean, basis, ev = expression
            out += struct.pack("<?i", False, 0) + _eos_pca(mean, basis, ev, np.zeros((0, 3)))
        else:
            _, names, deltas = expression
            out += struct.pack("<?i", False, 1) + struct.pack("<Q", len(names))
            for name, col in zip(names, deltas.T):
                out += _eos_string(name) + _eos_matrix(col.reshape(-1, 1))
    if version >= 3:
        if landmarks is None:
            out += struct.pack("<?", True)
        else:
            out += struct.pack("<?", False) + struct.pack("<Q", len(landmarks))
            for k, v in landmarks.items():
                out += _eos_string(k) + struct.pack("<i", v)
    out += struct.pack("<Q", n_texcoords) + np.zeros(2 * n_texcoords, "<f8").tobytes()
    if version >= 4:
        out += struct.pack("<Q", 2) + np.zeros(6, "<i4").tobytes()
    path.write_bytes(out)
    return out


def _eos_shape():
    basis = _orthonormal(3 * N_EOS, K_EOS, 5)
    return {"mean": RNG.uniform(-80, 80, 3 * N_EOS), "basis": basis, "ev": np.array([400.0, 100, 50, 20, 5]),
            "tri": _grid_triangles(N_EOS)}


def test_eos_v4_pca_expression_and_landmark_definitions(tmp_path):
    shape = _eos_shape()
    exp_basis = _orthonormal(3 * N_EOS, K_EOS_EXP, 6)
    exp = ("pca", RNG.uniform(-1, 1, 3 * N_EOS), exp_basis, np.array([9.0, 4, 1]))
    lmk = {str(i + 1): int(v) for i, v in enumerate(RNG.choice(N_EOS, 68, replace=False))}
    lmk["right.eye.corner_outer"] = 3  # extra named landmarks are fine
    _write_eos(tmp_path / "model.bin", 4, shape, exp, lmk)
    m = load_eos(tmp_path / "model.bin")
    assert (m.n_vertices, m.n_id, m.n_exp) == (N_EOS, K_EOS, K_EOS_EXP)
    np.testing.assert_array_equal(m.landmark_index, [lmk[str(i)] for i in range(1, 69)])
    _check_shape(m, shape["mean"] + exp[1], shape["basis"] * np.sqrt(shape["ev"]), exp_basis * np.sqrt(exp[3]),
                 1e-3)
    np.testing.assert_array_equal(m.triangles, shape["tri"])


def test_eos_v1_and_v2_blendshapes_with_mapping_file(tmp_path):
    shape = _eos_shape()
    mapping = tmp_path / "ibug_to_model.txt"
    ids = RNG.choice(N_EOS, 68, replace=False)
    mapping.write_text("[landmark_mappings] # ibug -> vertex\n" + "".join(f"{i + 1} = {v}\n" for i, v in
                                                                         enumerate(ids)))
    _write_eos(tmp_path / "v1.bin", 1, shape)
    m1 = load_eos(tmp_path / "v1.bin", landmark_mapping=mapping)
    assert m1.n_exp == 0
    np.testing.assert_array_equal(m1.landmark_index, ids)
    deltas = RNG.standard_normal((3 * N_EOS, 6))
    _write_eos(tmp_path / "v2.bin", 2, shape, ("blendshapes", [f"bs{i}" for i in range(6)], deltas))
    m2 = load_eos(tmp_path / "v2.bin", landmark_index=ids)
    assert m2.n_exp == 6
    # blendshapes are orthonormalised by an SVD: the span and the Gram matrix of the deltas are preserved
    eb = (m2.exp_basis.double() * m2.exp_std.double()).numpy()
    np.testing.assert_allclose(eb @ eb.T, deltas @ deltas.T * 1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------------ ICT
N_ICT = 72


def _write_obj(path: Path, v: np.ndarray, quads: np.ndarray) -> None:
    lines = [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in v]
    lines += ["vt 0.5 0.5"] + [f"f {a + 1}/1 {b + 1}/1 {c + 1}/1 {d + 1}/1" for a, b, c, d in quads]
    path.write_text("# ICT-style OBJ\n" + "\n".join(lines) + "\n")


@pytest.fixture()
def ict(tmp_path):
    d = tmp_path / "FaceXModel"
    d.mkdir()
    neutral = RNG.uniform(-10, 10, (N_ICT, 3))
    quads = np.array([[i, i + 1, i + 2, i + 3] for i in range(0, N_ICT - 3, 2)])
    _write_obj(d / "generic_neutral_mesh.obj", neutral, quads)
    ids = _orthonormal(3 * N_ICT, 4, 7) * np.array([3.0, 2, 1, 0.5])
    for k in range(4):
        _write_obj(d / f"identity{k:03d}.obj", neutral + ids[:, k].reshape(-1, 3), quads)
    names = ["jawOpen", "eyeBlink_L", "eyeBlink_R"]
    exps = RNG.standard_normal((3 * N_ICT, 3))
    for k, name in enumerate(names):
        _write_obj(d / f"{name}.obj", neutral + exps[:, k].reshape(-1, 3), quads)
    lmk = RNG.choice(N_ICT, 68, replace=False)
    (d / "vertex_indices.json").write_text(json.dumps({"expressions": names, "landmarks_ibug68": lmk.tolist()}))
    return {"dir": d, "neutral": neutral, "quads": quads, "ids": ids, "exps": exps, "lmk": lmk}


def test_ict_facekit_folder(ict):
    m = load_ict_facekit(ict["dir"])
    assert (m.n_vertices, m.n_id, m.n_exp) == (N_ICT, 4, 3)
    np.testing.assert_array_equal(m.landmark_index, ict["lmk"])
    a = ict["quads"]
    np.testing.assert_array_equal(m.triangles, np.concatenate([a[:, [0, 1, 2]], a[:, [0, 2, 3]]], 1).reshape(-1, 3))
    g = torch.Generator().manual_seed(2)
    a_id = torch.randn(2, 4, generator=g, dtype=torch.float64)
    got = m.double().shape(a_id, None).numpy()
    ref = 0.01 * (ict["neutral"].reshape(1, -1) + a_id.numpy() @ ict["ids"].T)
    np.testing.assert_allclose(got, ref.reshape(2, -1, 3), atol=1e-7)
    eb = (m.exp_basis.double() * m.exp_std.double()).numpy()
    np.testing.assert_allclose(eb @ eb.T, 1e-4 * ict["exps"] @ ict["exps"].T, atol=1e-7)
    m2 = load_ict_facekit(ict["dir"], landmark_index=np.arange(68), n_id=2, n_exp=1)
    assert (m2.n_id, m2.n_exp) == (2, 1)


def test_read_obj_polygons_and_negative_indices(tmp_path):
    p = tmp_path / "poly.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0.5 1.5 0\nf 1 2 3 4 5\nf -3 -2 -1\n")
    v, f = read_obj(p)
    assert v.shape == (5, 3)
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3], [0, 3, 4], [2, 3, 4]])


# ------------------------------------------------------------------------------------------ bad files
def test_missing_paths_are_named(tmp_path):
    gone = tmp_path / "nowhere"
    for call in (lambda: load_bfm2009(gone / "01_MorphableModel.mat"),
                 lambda: load_flame(gone / "generic_model.pkl", gone / "emb.npy"),
                 lambda: load_eos(gone / "sfm.bin"), lambda: load_ict_facekit(gone / "FaceXModel"),
                 lambda: read_exp_pca_bin(gone / "Exp_Pca.bin")):
        with pytest.raises(ModelFormatError, match="nowhere.*no such file or directory"):
            call()


def test_bad_eos_files(tmp_path):
    shape = _eos_shape()
    good = _write_eos(tmp_path / "good.bin", 3, shape, None, {str(i + 1): i for i in range(68)})
    (tmp_path / "truncated.bin").write_bytes(good[:300])
    with pytest.raises(ModelFormatError, match=r"truncated.bin: field 'shape_model.mean': truncated at byte \d+"):
        load_eos(tmp_path / "truncated.bin")
    (tmp_path / "version.bin").write_bytes(struct.pack("<I", 9) + good[4:])
    with pytest.raises(ModelFormatError, match=r"version.bin: field 'class version': 9; not an eos MorphableModel"):
        load_eos(tmp_path / "version.bin")
    (tmp_path / "trailing.bin").write_bytes(good + b"\0\0\0\0")
    with pytest.raises(ModelFormatError, match="trailing.bin: 4 unexpected trailing bytes"):
        load_eos(tmp_path / "trailing.bin")
    nan_shape = dict(shape, basis=shape["basis"].copy())
    nan_shape["basis"][5, 2] = np.nan
    _write_eos(tmp_path / "nan.bin", 3, nan_shape, None, {str(i + 1): i for i in range(68)})
    with pytest.raises(ModelFormatError, match=r"nan.bin: field 'shape_model.orthonormal_pca_basis': 1 NaN"):
        load_eos(tmp_path / "nan.bin")
    _write_eos(tmp_path / "few.bin", 3, shape, None, {"1": 0, "2": 1})
    with pytest.raises(ModelFormatError, match="few.bin: field 'landmark_definitions': no 68 iBUG landmarks"):
        load_eos(tmp_path / "few.bin")
    mapping = tmp_path / "partial_mapping.txt"
    mapping.write_text("[landmark_mappings]\n9 = 3\n31 = 4\n")
    with pytest.raises(ModelFormatError, match=r"partial_mapping.txt: field 'landmark_mappings': "
                                               r"maps only 2 of the 68"):
        load_eos(tmp_path / "few.bin", landmark_mapping=mapping)
    bad_exp = ("pca", np.zeros(3 * (N_EOS - 1)), _orthonormal(3 * (N_EOS - 1), 2, 9), np.ones(2))
    _write_eos(tmp_path / "mismatch.bin", 3, shape, bad_exp, {str(i + 1): i for i in range(68)})
    with pytest.raises(ModelFormatError, match="mismatch.bin: field 'expression_model.orthonormal_pca_basis': "
                                               "expression model has 207 rows, shape model 210: "
                                               "mismatched vertex counts"):
        load_eos(tmp_path / "mismatch.bin")


def test_bad_bfm_files(bfm):
    d = bfm["dir"]
    good = sio.loadmat(d / "01_MorphableModel.mat")
    sio.savemat(d / "rows.mat", {**{k: v for k, v in good.items() if not k.startswith("__")},
                                 "shapePC": good["shapePC"][:-3]})
    with pytest.raises(ModelFormatError, match=r"rows.mat: field 'shapePC': shape \(267, 6\) but shapeMU has 270 rows: "
                                               r"mismatched vertex counts"):
        load_bfm2009(d / "rows.mat", landmark_index=np.arange(68))
    sio.savemat(d / "nokey.mat", {k: v for k, v in good.items() if not k.startswith("__") and k != "shapeEV"})
    with pytest.raises(ModelFormatError, match=r"nokey.mat: missing variable\(s\) \['shapeEV'\]"):
        load_bfm2009(d / "nokey.mat", landmark_index=np.arange(68))
    pcs = good["shapePC"].copy()
    pcs[7, 1] = np.nan
    sio.savemat(d / "nan.mat", {**{k: v for k, v in good.items() if not k.startswith("__")}, "shapePC": pcs})
    with pytest.raises(ModelFormatError, match=r"nan.mat: field 'shapePC': 1 NaN or infinite values \(first at "
                                               r"index \[7, 1\]\)"):
        load_bfm2009(d / "nan.mat", landmark_index=np.arange(68))
    (d / "garbage.mat").write_bytes(b"MATLAB 5.0 MAT-file, but then nothing useful" + bytes(50))
    with pytest.raises(ModelFormatError, match="garbage.mat: .*not a MATLAB v5/v7 .mat file"):
        load_bfm2009(d / "garbage.mat")
    info = sio.loadmat(d / "model_info.mat")
    kp = info["keypoints"].copy()
    kp[0, 5] = N_TRIM + 1
    sio.savemat(d / "info_range.mat", {"trimIndex": info["trimIndex"], "keypoints": kp})
    with pytest.raises(ModelFormatError, match=rf"info_range.mat: field 'keypoints': "
                                               rf"values 1..{N_TRIM + 1} fit no convention"):
        load_bfm2009(d / "01_MorphableModel.mat", None, d / "info_range.mat")
    kp[0, 5] = 0
    sio.savemat(d / "info_zero.mat", {"trimIndex": info["trimIndex"], "keypoints": kp})
    with pytest.raises(ModelFormatError, match=r"info_zero.mat: field 'keypoints': values 0..\d+ fit no convention"):
        load_bfm2009(d / "01_MorphableModel.mat", None, d / "info_zero.mat")
    with pytest.raises(ModelFormatError, match=rf"Model_Expression.mat: field 'w_exp': expression basis "
                                               rf"covers {N_TRIM} vertices "
                                               rf"but the BFM has {N_FULL}: mismatched vertex counts"):
        load_bfm2009(d / "01_MorphableModel.mat", d / "Model_Expression.mat", landmark_index=np.arange(68))
    with pytest.raises(ModelFormatError, match="01_MorphableModel.mat: BFM 2009 has no landmarks"):
        load_bfm2009(d / "01_MorphableModel.mat")
    (d / "short.bin").write_bytes(struct.pack("<i", 5) + bytes(4 * 11))
    with pytest.raises(ModelFormatError, match=r"short.bin: field 'modes': file size 48 bytes does not fit K=5 modes"):
        read_exp_pca_bin(d / "short.bin")
    (d / "header.bin").write_bytes(struct.pack("<i", -3) + bytes(40))
    with pytest.raises(ModelFormatError, match=r"header.bin: field 'K' \(mode count\): bad header: mode count -3"):
        read_exp_pca_bin(d / "header.bin")


def test_bad_flame_files(tmp_path, fake_chumpy):
    model, _ = _flame_dict(fake_chumpy)
    faces, bary = _embedding()
    np.savez(tmp_path / "emb.npz", lmk_faces_idx=faces, lmk_bary_coords=bary)
    full = pickle.dumps(model, protocol=2)
    (tmp_path / "truncated.pkl").write_bytes(full[: len(full) // 2])
    with pytest.raises(ModelFormatError, match="truncated.pkl: truncated or corrupt pickle"):
        load_flame(tmp_path / "truncated.pkl", tmp_path / "emb.npz", n_shape=K_SHAPE)
    (tmp_path / "nokey.pkl").write_bytes(pickle.dumps({k: v for k, v in model.items() if k != "shapedirs"}))
    with pytest.raises(ModelFormatError, match=r"nokey.pkl: missing key\(s\) \['shapedirs'\]"):
        load_flame(tmp_path / "nokey.pkl", tmp_path / "emb.npz", n_shape=K_SHAPE)
    short = dict(model, v_template=model["v_template"][:-1])
    (tmp_path / "verts.pkl").write_bytes(pickle.dumps(short))
    with pytest.raises(ModelFormatError, match="verts.pkl: field 'shapedirs': shape .* but v_template has 79 vertices"):
        load_flame(tmp_path / "verts.pkl", tmp_path / "emb.npz", n_shape=K_SHAPE)
    (tmp_path / "good.pkl").write_bytes(full)
    np.savez(tmp_path / "static51.npz", lmk_faces_idx=faces[:51], lmk_bary_coords=bary[:51])
    with pytest.raises(ModelFormatError, match="static51.npz: field 'lmk_faces_idx': the "
                                               "embedding has 51 landmarks; tdd_lite needs 68"):
        load_flame(tmp_path / "good.pkl", tmp_path / "static51.npz", n_shape=K_SHAPE)
    np.savez(tmp_path / "range.npz", lmk_faces_idx=faces + 1000, lmk_bary_coords=bary)
    with pytest.raises(ModelFormatError, match="range.npz: field 'lmk_faces_idx': 0-based index"):
        load_flame(tmp_path / "good.pkl", tmp_path / "range.npz", n_shape=K_SHAPE)


def test_bad_ict_folders(ict):
    d = ict["dir"]
    v, _ = read_obj(d / "identity001.obj")
    _write_obj(d / "identity001.obj", v[:-4], ict["quads"][:-2])
    with pytest.raises(ModelFormatError, match=rf"identity001.obj: field 'v': {N_ICT - 4} vertices but "
                                               rf"generic_neutral_mesh.obj "
                                               rf"has {N_ICT}: mismatched vertex counts"):
        load_ict_facekit(d)
    _write_obj(d / "identity001.obj", v, ict["quads"])
    (d / "jawOpen.obj").write_text("v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 9\n")
    with pytest.raises(ModelFormatError, match=r"jawOpen.obj: field 'f': 1-based index 9 outside \[1, 3\]"):
        load_ict_facekit(d)
    (d / "vertex_indices.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="vertex_indices.json: not valid JSON"):
        load_ict_facekit(d)
    (d / "vertex_indices.json").write_text(json.dumps({"expressions": ["jawOpen"]}))
    (d / "jawOpen.obj").write_text((d / "eyeBlink_L.obj").read_text())
    with pytest.raises(ModelFormatError, match="FaceXModel: no iBUG-68 landmarks"):
        load_ict_facekit(d)
    (d / "vertex_indices.json").write_text(json.dumps({"expressions": [], "landmarks_ibug68": list(range(67))}))
    with pytest.raises(ModelFormatError, match="vertex_indices.json: field 'landmarks_ibug68': 67 "
                                               "values; ICT-FaceKit needs 68"):
        load_ict_facekit(d)


def test_loaded_models_round_trip_through_npz(tmp_path, fake_chumpy, ict):
    """A loaded model (barycentric FLAME, vertex-index ICT) saves and reloads as tdd_lite's own format."""
    from tdd_lite.morphable import load_npz, save_npz

    model, _ = _flame_dict(fake_chumpy)
    (tmp_path / "generic_model.pkl").write_bytes(pickle.dumps(model, protocol=2))
    faces, bary = _embedding()
    np.savez(tmp_path / "emb.npz", lmk_faces_idx=faces, lmk_bary_coords=bary)
    for m in (load_flame(tmp_path / "generic_model.pkl", tmp_path / "emb.npz", n_shape=K_SHAPE),
              load_ict_facekit(ict["dir"])):
        save_npz(m.to_arrays(), tmp_path / "m.npz")
        back = load_npz(tmp_path / "m.npz")
        a_id, a_exp = torch.randn(2, m.n_id), torch.randn(2, m.n_exp)
        torch.testing.assert_close(back.landmarks3d(a_id, a_exp), m.landmarks3d(a_id, a_exp))
        assert back.meta["format"] == m.meta["format"]
