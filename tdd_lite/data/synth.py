"""Synth300VW: synthetic face videos in the 300VW layout, with the true 3DMM and camera parameters.

Every video is rendered from a 3DMM (the embedded teaching model by default) with

* a random identity (``alpha_id ~ N(0, 1)``, in units of std) and a random skin tone;
* smooth expression trajectories (Gaussian-filtered noise per expression mode) and head pose
  (yaw up to about +-70 degrees, pitch, roll), camera motion (translation and zoom), lighting;
* a procedural textured background (low-frequency noise, gradients, random shapes) panning with the camera;
* a difficulty category in the spirit of 300VW's test sets:

  - **A** well lit, mild motion, moderate pose and expression;
  - **B** harder (side, coloured, dimmer) lighting, larger pose and expression;
  - **C** fast motion with motion blur, extreme light (very dark, blown out or flickering), partial occlusion
    by a random shape, sensor noise.

Output (one reader serves this and real 300VW, :mod:`tdd_lite.data.vw300`)::

    OUT/NNN/vid.avi            MJPG video, RGB frames
    OUT/NNN/annot/%06d.pts     the projected 68 landmarks of the true parameters (image pixels, exact repr)
    OUT/NNN/params.npz         alpha_id (K_id,), alpha_exp (T, K_exp), camera (T, 8) in IMAGE PIXELS,
                               pose_deg (T, 3) yaw/pitch/roll, light (T, 3), category, still (T,) bool:
                               frames of a still segment (head and face held for 1-2 s, about half the
                               videos of 60+ frames; render noise and light still vary), for static spread
    OUT/splits.json            {"train": [...], "A": [...], "B": [...], "C": [...]}
    OUT/synth.json             the generator's settings (seed, sizes, model and its sha256, categories)
    OUT/synth300vw.json        the marker: this folder is a Synth300VW set (format and its version)

so ``project(model.landmarks3d(alpha_id, alpha_exp), camera)`` equals the ``.pts`` up to float rounding
(computed in float64 here). The landmarks are the projections of the 3D landmark vertices, also where they are
self-occluded (the 3D convention of 300W-LP/3DDFA; 300VW's annotators drew the visible jaw contour instead).

Deterministic by seed (each video draws from ``default_rng([seed, video_index])``) and atomic: everything is
written into ``OUT.partial-<pid>-*`` (carrying a marker that says synth made it, with its pid) and renamed to
``OUT`` only when complete. SIGTERM removes it at once; after a SIGKILL the next ``generate``/``ensure_synth``
removes partial folders whose process is gone, and nothing else. No command accepts a partial folder as data.
``overwrite`` replaces only a folder that is a Synth300VW set (its marker, or a pre-marker set whose content is
all synth's own); anything else is refused and nothing is deleted. Outputs honour the umask.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.path import Path as MplPath
from scipy.ndimage import gaussian_filter1d
from tqdm.auto import tqdm

from tdd_lite import render
from tdd_lite.camera import camera_from_pose, euler_to_rotation, project
from tdd_lite.config import fast_mode
from tdd_lite.data.pts import write_pts
from tdd_lite.data.vw300 import ANNOT_DIR, CATEGORIES, SPLITS_FILE, VIDEO_FILE
from tdd_lite.errors import (
    MAX_FRAME_PIXELS,
    MAX_FRAME_SIDE,
    OutputExistsError,
    UsageError,
    bounded_int,
    frame_size,
    nonnegative_int,
)
from tdd_lite.files import PARTIAL_MARKER, make_partial_dir, remove_partial, remove_stale_partials, sigterm_raises
from tdd_lite.morphable import MorphableModel, load_teaching_model
from tdd_lite.video_io import write_video

SYNTH_FILE = "synth.json"
MARKER_FILE = "synth300vw.json"  # {"format": "Synth300VW", "format_version": N, "made_by": "tdd_lite synth"}
SYNTH_FORMAT = "Synth300VW"
PARAMS_FILE = "params.npz"
MAX_VIDEOS = 999  # 3-digit 300VW ids
MAX_FRAMES = 100_000
STILL_PROBABILITY = 0.5  # share of videos (60+ frames) with a still segment
FORMAT_VERSION = 4  # bump whenever the generated content changes: ensure_synth() then regenerates

# default sets: fast (notebooks/CI: seconds) and full (a laptop-hour-sized training set)
DEFAULTS = {
    "fast": {"videos": 6, "frames": 60, "size": (256, 256)},
    "full": {"videos": 40, "frames": 300, "size": (480, 360)},
}

DEFAULT_VIDEOS = None  # for callers: generate(videos=None) takes the current mode's default from DEFAULTS

SKIN_TONES = np.array([  # albedo RGB in [0, 1], light to dark
    [0.93, 0.78, 0.68], [0.87, 0.70, 0.58], [0.80, 0.62, 0.50], [0.70, 0.52, 0.40],
    [0.58, 0.42, 0.31], [0.45, 0.32, 0.24], [0.34, 0.24, 0.18], [0.90, 0.74, 0.60],
])


@dataclass(frozen=True)
class Difficulty:
    yaw: float  # degrees, amplitude of the smooth trajectory
    pitch: float
    roll: float
    expression: float  # std multiplier of the expression trajectories
    move: float  # translation amplitude, fraction of the frame
    zoom: float  # log-scale amplitude
    sigma: float  # temporal correlation (frames) of pose and motion: small = fast motion
    ambient: tuple[float, float]
    diffuse: tuple[float, float]
    light_spread: float  # how far the light direction leaves the frontal direction
    noise: float  # sensor noise std (grey levels)


DIFFICULTY = {
    "A": Difficulty(yaw=25, pitch=10, roll=6, expression=0.6, move=0.06, zoom=0.06, sigma=18,
                    ambient=(0.45, 0.6), diffuse=(0.5, 0.7), light_spread=0.4, noise=1.0),
    "B": Difficulty(yaw=45, pitch=18, roll=12, expression=1.1, move=0.10, zoom=0.10, sigma=12,
                    ambient=(0.2, 0.4), diffuse=(0.6, 0.9), light_spread=1.2, noise=2.0),
    "C": Difficulty(yaw=60, pitch=22, roll=18, expression=1.0, move=0.16, zoom=0.18, sigma=5,
                    ambient=(0.1, 0.35), diffuse=(0.5, 1.1), light_spread=1.8, noise=4.0),
}
MAX_YAW = 70.0


# ---------------------------------------------------------------------------------------------- appearance
def _boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary edges (edges used by one triangle), as vertex index arrays."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    key = np.sort(e, axis=1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = e[counts[inv.reshape(-1)] == 1]
    nxt: dict[int, list[int]] = {}
    for a, b in border:
        nxt.setdefault(int(a), []).append(int(b))
        nxt.setdefault(int(b), []).append(int(a))
    seen: set[int] = set()
    loops = []
    for start in nxt:
        if start in seen:
            continue
        loop, prev, cur = [start], -1, start
        seen.add(start)
        while True:
            cand = [v for v in nxt[cur] if v != prev and v not in seen]
            if not cand:
                break
            prev, cur = cur, cand[0]
            loop.append(cur)
            seen.add(cur)
        if len(loop) >= 3:
            loops.append(np.array(loop))
    return loops


@dataclass
class FaceMesh:
    """The model's triangles plus fans closing the eye and mouth holes, and per-vertex feature masks."""

    triangles: np.ndarray  # (T', 3) over N + n_extra vertices
    extra_loops: list[np.ndarray]  # loop vertex indices whose centroid is each extra vertex
    extra_depth: np.ndarray  # how far behind the loop centroid (model units) each extra vertex sits
    extra_kind: list[str]  # "eye" | "mouth"
    feature: dict[str, np.ndarray]  # per original vertex weights in [0, 1]: "brow", "lip", "eye"

    def vertices(self, shape: np.ndarray) -> np.ndarray:
        """(..., N, 3) model-space shape -> (..., N + n_extra, 3) with the hole-closing vertices."""
        extra = [shape[..., loop, :].mean(-2) - np.array([0.0, 0.0, d]) for loop, d in
                 zip(self.extra_loops, self.extra_depth)]
        if not extra:
            return shape
        return np.concatenate([shape, np.stack(extra, -2)], -2)


def build_face_mesh(model: MorphableModel) -> FaceMesh:
    """Close the eye and mouth openings of the mesh (if any) and mark brows and lips for colouring."""
    mean = model.mean_shape.double().numpy()
    lmk = model.landmarks3d(*model.zeros(1))[0].double().numpy()
    tris = np.asarray(model.triangles, dtype=np.int64)
    n = len(mean)
    face_w = float(np.linalg.norm(lmk[16] - lmk[0])) or float(np.ptp(mean[:, 0])) or 1.0
    targets = {"eye_r": lmk[36:42].mean(0), "eye_l": lmk[42:48].mean(0), "mouth": lmk[60:68].mean(0)}
    loops, depth, kinds, new_tris = [], [], [], [tris]
    for loop in _boundary_loops(tris):
        c = mean[loop].mean(0)
        span = np.ptp(mean[loop, :2], axis=0).max()
        for name, t in targets.items():
            if np.linalg.norm(c[:2] - t[:2]) < 0.12 * face_w and span < 0.45 * face_w:
                idx = n + len(loops)
                loops.append(loop)
                kinds.append("eye" if name.startswith("eye") else "mouth")
                depth.append(0.05 * face_w if kinds[-1] == "eye" else 0.1 * face_w)
                ring = np.stack([loop, np.roll(loop, -1), np.full(len(loop), idx)], 1)
                new_tris.append(ring)
                break
    # feature weights from the frontal mean face (xy in model units, y up)
    xy = mean[:, :2]

    def seg_dist(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
        d = np.full(len(p), np.inf)
        for a, b in zip(poly[:-1], poly[1:]):
            ab = b - a
            t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
            d = np.minimum(d, np.linalg.norm(p - (a + t[:, None] * ab), axis=1))
        return d

    front = mean[:, 2] > lmk[:, 2].min() - 0.1 * face_w
    brow = np.zeros(n)
    for sl in (slice(17, 22), slice(22, 27)):
        d = seg_dist(xy, lmk[sl, :2])
        brow = np.maximum(brow, np.clip(1.5 - d / (0.025 * face_w), 0, 1))

    outer = MplPath(lmk[48:60, :2]).contains_points(xy, radius=0.01 * face_w)
    inner = MplPath(lmk[60:68, :2]).contains_points(xy)
    lip = (outer & ~inner & front).astype(float)
    eye = np.zeros(n)
    for sl in (slice(36, 42), slice(42, 48)):
        ring = np.concatenate([lmk[sl, :2], lmk[sl.start:sl.start + 1, :2]])
        inside = MplPath(ring).contains_points(xy)
        d = np.where(inside, 0.0, seg_dist(xy, ring))
        eye = np.maximum(eye, np.clip(1.5 - d / (0.015 * face_w), 0, 1))
    return FaceMesh(np.concatenate(new_tris), loops, np.array(depth), kinds,
                    {"brow": brow * front, "lip": lip, "eye": eye * front})


def vertex_colors(mesh: FaceMesh, n_vertices: int, skin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-vertex albedo: skin, darker brows, redder lips, dark eyes (lid line or closed holes), mouth interior."""
    col = np.tile(skin, (n_vertices + len(mesh.extra_loops), 1))
    col[:n_vertices] *= rng.uniform(0.96, 1.04, (n_vertices, 1))  # blotchy skin
    hair = rng.choice([np.array([0.12, 0.08, 0.05]), np.array([0.3, 0.2, 0.1]), np.array([0.05, 0.05, 0.05])])
    lipc = skin * np.array([0.85, 0.55, 0.55])
    b, lw = mesh.feature["brow"][:, None], mesh.feature["lip"][:, None]
    col[:n_vertices] = col[:n_vertices] * (1 - b) + hair * b
    col[:n_vertices] = col[:n_vertices] * (1 - lw) + lipc * lw
    ew = 0.85 * mesh.feature.get("eye", np.zeros(n_vertices))[:, None]
    col[:n_vertices] = col[:n_vertices] * (1 - ew) + np.array([0.1, 0.07, 0.06]) * ew
    for j, kind in enumerate(mesh.extra_kind):
        col[n_vertices + j] = (0.08, 0.06, 0.05) if kind == "eye" else (0.25, 0.05, 0.05)
    return np.clip(col, 0, 1)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A procedural textured background (uint8 RGB): low-frequency colour noise, a gradient, random shapes."""
    base = rng.uniform(0, 1, (2, 3))
    gy, gx = np.mgrid[0:h, 0:w] / max(h, w)
    ang = rng.uniform(0, 2 * np.pi)
    g = (np.cos(ang) * gx + np.sin(ang) * gy)[..., None]
    g = (g - g.min()) / max(np.ptp(g), 1e-9)
    img = base[0] * (1 - g) + base[1] * g
    for cells, amp in ((4, 0.25), (16, 0.12), (64, 0.05)):
        low = rng.normal(0, 1, (cells + 1, cells + 1, 3)).astype(np.float32)
        img = img + amp * cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img * 255, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(4, 12)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        sx, sy = int(rng.integers(w // 20, w // 4)), int(rng.integers(h // 20, h // 4))
        overlay = img.copy()
        if rng.uniform() < 0.5:
            cv2.rectangle(overlay, (cx - sx, cy - sy), (cx + sx, cy + sy), colour, -1)
        else:
            cv2.ellipse(overlay, (cx, cy), (sx, sy), float(rng.uniform(0, 180)), 0, 360, colour, -1)
        a = rng.uniform(0.3, 0.8)
        img = cv2.addWeighted(overlay, a, img, 1 - a, 0)
    return img


# ---------------------------------------------------------------------------------------------- trajectories
def smooth_noise(rng: np.random.Generator, t: int, dims: int, sigma: float) -> np.ndarray:
    """(t, dims) Gaussian-filtered white noise with unit (theoretical) std and correlation ``sigma`` frames."""
    pad = int(4 * sigma) + 1
    x = rng.standard_normal((t + 2 * pad, dims))
    y = gaussian_filter1d(x, sigma, axis=0, mode="wrap")[pad:pad + t]
    return y * np.sqrt(2 * np.sqrt(np.pi) * sigma)  # filtered white noise has std (2 sqrt(pi) sigma)^(-1/2)


@dataclass
class VideoPlan:
    """The true parameters of one synthetic video (what params.npz stores)."""

    category: str
    alpha_id: np.ndarray  # (K_id,)
    alpha_exp: np.ndarray  # (T, K_exp)
    camera: np.ndarray  # (T, 8) image pixels
    pose_deg: np.ndarray  # (T, 3) yaw, pitch, roll
    light: np.ndarray  # (T, 3) unit light direction (image frame)
    ambient: np.ndarray  # (T,)
    diffuse: np.ndarray  # (T,)
    skin: np.ndarray  # (3,)
    landmarks: np.ndarray  # (T, 68, 2) image pixels
    still: np.ndarray  # (T,) bool: frames where pose, scale, position and expression are held


def plan_video(model: MorphableModel, rng: np.random.Generator, category: str, frames: int,
               size: tuple[int, int]) -> VideoPlan:
    """Draw identity, expression, pose, camera and light trajectories for one video."""
    d = DIFFICULTY[category]
    w, h = size
    alpha_id = np.clip(rng.standard_normal(model.n_id), -3, 3)
    exp_amp = d.expression * rng.uniform(0.6, 1.2) / np.sqrt(1 + np.arange(model.n_exp) / 4)  # first modes larger
    alpha_exp = np.clip(smooth_noise(rng, frames, model.n_exp, 8 if category != "C" else 5) * exp_amp, -3, 3)
    yaw0 = rng.uniform(-d.yaw / 2, d.yaw / 2)
    pose = smooth_noise(rng, frames, 3, d.sigma) * np.array([d.yaw, d.pitch, d.roll]) * 0.8
    pose[:, 0] += yaw0
    # soft limits (tanh): smooth near the extremes instead of sticking at a clip value
    pose = np.array([MAX_YAW, 35.0, 35.0]) * np.tanh(pose / np.array([MAX_YAW, 35.0, 35.0]))
    # scale: face (landmark box height of the mean face) ~ 30-50% of the frame height, with zoom motion
    mean_lmk = model.landmarks3d(*model.zeros(1))[0].double().numpy()
    face_h = float(np.ptp(mean_lmk[:, 1]))
    f0 = rng.uniform(0.3, 0.5) * h / face_h
    f = f0 * np.exp(d.zoom * smooth_noise(rng, frames, 1, d.sigma * 1.5)[:, 0])
    centre = np.array([w / 2, h / 2]) + rng.uniform(-0.08, 0.08, 2) * np.array([w, h])
    centre = centre + smooth_noise(rng, frames, 2, d.sigma) * d.move * np.array([w, h])
    # a still segment (the truth does not move for >= 1 s at 30 fps) in about half the videos of 60+ frames
    still = np.zeros(frames, bool)
    if frames >= 60 and rng.uniform() < STILL_PROBABILITY:
        n = int(rng.integers(30, min(60, frames // 2) + 1))
        s0 = int(rng.integers(0, frames - n + 1))
        still[s0:s0 + n] = True
        # pause the trajectories (time-warp): hold frame s0 for n frames, then continue from where they were,
        # so the truth is still inside the segment and continuous at both of its ends
        idx = np.r_[np.arange(s0), np.full(n, s0), np.arange(s0, frames - n)]
        pose, alpha_exp, centre, f = pose[idx], alpha_exp[idx], centre[idx], f[idx]
    deg = np.pi / 180
    rot = euler_to_rotation(torch.from_numpy(pose[:, 0] * deg), torch.from_numpy(pose[:, 1] * deg),
                            torch.from_numpy(pose[:, 2] * deg)).double().numpy()
    # float32 trig inside euler_to_rotation: re-orthonormalise in float64 so R is an exact rotation
    u, _, vt = np.linalg.svd(rot)
    rot = u @ vt
    m = mean_lmk.mean(0)
    pm = np.einsum("tij,j->ti", rot, m)[:, :2] * np.array([1.0, -1.0])
    t = centre - f[:, None] * pm
    cam = camera_from_pose(torch.from_numpy(f), torch.from_numpy(rot), torch.from_numpy(t)).numpy()
    lmk3d = _as_double(model).landmarks3d(torch.from_numpy(np.tile(alpha_id, (frames, 1))), torch.from_numpy(alpha_exp))
    lmk = project(lmk3d, torch.from_numpy(cam)).numpy()
    # keep the face inside the frame: shift (rarely needed) and recompute exactly
    lo, hi = lmk.min(1), lmk.max(1)
    margin = 0.03 * np.array([w, h])
    shift = np.maximum(margin - lo, 0) - np.maximum(hi - (np.array([w, h]) - 1 - margin), 0)
    if np.any(shift != 0):
        shift = gaussian_filter1d(shift, 2.0, axis=0)  # smooth the correction, then make sure it suffices
        lo2, hi2 = lmk.min(1) + shift, lmk.max(1) + shift
        shift += np.maximum(margin - lo2, 0) - np.maximum(hi2 - (np.array([w, h]) - 1 - margin), 0)
        cam[:, [3, 7]] += shift
        if still.any():  # the smoothed correction may move inside the segment: hold its first frame's camera
            cam[still] = cam[np.argmax(still)]
        lmk = project(lmk3d, torch.from_numpy(cam)).numpy()
    # light: direction near frontal (spread by difficulty), C flickers
    base = np.array([rng.normal(0, d.light_spread), rng.normal(-0.3, d.light_spread * 0.6), 1.0])
    drift = smooth_noise(rng, frames, 3, 20) * 0.15 * np.array([1, 1, 0])
    light = base + drift
    light /= np.linalg.norm(light, axis=1, keepdims=True)
    amb = np.full(frames, rng.uniform(*d.ambient))
    dif = np.full(frames, rng.uniform(*d.diffuse))
    if category == "C" and rng.uniform() < 0.5:
        flicker = 1 + 0.35 * np.sin(np.arange(frames) * rng.uniform(0.3, 1.2)) * (rng.uniform(size=frames) < 0.7)
        amb, dif = amb * flicker, dif * flicker
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.95, 1.05, 3)
    return VideoPlan(category, alpha_id, alpha_exp, cam, pose, light, amb, dif, np.clip(skin, 0, 1), lmk, still)


# ---------------------------------------------------------------------------------------------- rendering
def render_video(model: MorphableModel, mesh: FaceMesh, plan: VideoPlan, size: tuple[int, int],
                 rng: np.random.Generator):
    """Yield the RGB uint8 frames of a planned video."""
    w, h = size
    frames = len(plan.camera)
    margin = int(0.2 * max(w, h))
    bg = background(rng, h + 2 * margin, w + 2 * margin)
    colors = vertex_colors(mesh, model.n_vertices, plan.skin, rng)
    mdl = _as_double(model)
    alpha_id = torch.from_numpy(np.tile(plan.alpha_id, (1, 1)))
    cat = plan.category
    # C: exposure extremes, an occluder for part of the video
    exposure = {"A": 1.0, "B": rng.uniform(0.75, 1.15), "C": rng.choice([rng.uniform(0.35, 0.55),
                                                                          rng.uniform(1.5, 2.0)])}[cat]
    tint = np.ones(3) if cat == "A" else np.clip(1 + rng.normal(0, 0.12 if cat == "B" else 0.2, 3), 0.6, 1.4)
    occ = None
    if cat == "C":
        start = int(rng.integers(0, max(1, frames // 2)))
        occ = (start, start + max(2, int(frames * rng.uniform(0.2, 0.45))),
               tuple(int(c) for c in rng.integers(0, 256, 3)), rng.uniform(0.15, 0.3), rng.uniform(0, 2 * np.pi),
               int(rng.integers(3, 7)))
    centres = plan.landmarks.mean(1)
    pan = (centres - centres[0]) * 0.3
    for k in range(frames):
        shape = mdl.shape(alpha_id, torch.from_numpy(plan.alpha_exp[k:k + 1]))[0].numpy()
        verts = mesh.vertices(shape)
        m = plan.camera[k].reshape(2, 4)
        xy = verts @ m[:, :3].T + m[:, 3]
        f = np.linalg.norm(m[:, :3], axis=1).mean()
        r3 = np.cross(m[0, :3], -m[1, :3]) / (f * f)  # third row of R (P flips y back)
        iv = np.concatenate([xy, (f * verts @ r3)[:, None]], 1)
        ox, oy = int(round(margin - pan[k, 0])), int(round(margin - pan[k, 1]))
        ox, oy = min(max(ox, 0), 2 * margin), min(max(oy, 0), 2 * margin)
        frame = render.render(iv, mesh.triangles, background=bg[oy:oy + h, ox:ox + w].copy(), colors=colors,
                              light_dir=plan.light[k], ambient=plan.ambient[k], diffuse=plan.diffuse[k])
        img = frame.astype(np.float32)
        if occ is not None and occ[0] <= k < occ[1]:
            box_w = np.ptp(plan.landmarks[k, :, 0])
            prog = (k - occ[0]) / max(1, occ[1] - occ[0])
            c = centres[k] + box_w * np.array([np.cos(occ[4]), np.sin(occ[4])]) * (0.6 - 1.0 * prog)
            rad = occ[3] * 2 * box_w
            ang = np.linspace(0, 2 * np.pi, occ[5], endpoint=False) + occ[4]
            poly = c + rad * np.stack([np.cos(ang), np.sin(ang)], 1)
            cv2.fillPoly(img, [np.round(poly).astype(np.int32)], occ[2])
        img = img * exposure * tint
        if cat == "C" and k > 0:
            vel = centres[k] - centres[k - 1]
            length = int(min(15, round(np.linalg.norm(vel) * 1.2)))
            if length >= 2:
                ker = np.zeros((length, length), np.float32)
                dx, dy = vel / (np.linalg.norm(vel) + 1e-9)
                c0 = (length - 1) / 2
                cv2.line(ker, (int(round(c0 - dx * c0)), int(round(c0 - dy * c0))),
                         (int(round(c0 + dx * c0)), int(round(c0 + dy * c0))), 1.0, 1)
                img = cv2.filter2D(img, -1, ker / ker.sum())
        img = img + rng.normal(0, DIFFICULTY[cat].noise, img.shape).astype(np.float32)
        yield np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- splits, generate
def assign_splits(videos: int) -> list[str]:
    """Split of each video in 300VW's proportions (train 50 : A 31 : B 19 : C 14), every test set non-empty
    once there are at least 4 videos."""
    if videos < 4:
        return ["train", "A", "B"][:videos]
    n_train = min(max(1, round(videos * 50 / 114)), videos - 3)
    rest = videos - n_train
    n_a = max(1, round(rest * 31 / 64))
    n_b = max(1, round(rest * 19 / 64))
    n_c = rest - n_a - n_b
    while n_c < 1:  # take from the larger of A and B
        if n_a >= n_b:
            n_a -= 1
        else:
            n_b -= 1
        n_c += 1
    return ["train"] * n_train + ["A"] * n_a + ["B"] * n_b + ["C"] * n_c


def _as_double(model: MorphableModel) -> MorphableModel:
    """A float64 copy of the model (``nn.Module.double()`` works in place; never change the caller's model)."""
    return model if model.mean_shape.dtype == torch.float64 else copy.deepcopy(model).double()


def _model_sha(model: MorphableModel) -> str:
    h = hashlib.sha256()
    for name in ("mean_shape", "id_basis", "exp_basis", "id_std", "exp_std"):
        h.update(getattr(model, name).detach().cpu().float().numpy().tobytes())
    h.update(np.asarray(model.triangles).tobytes())
    return h.hexdigest()


def default_settings(fast: bool | None = None) -> dict:
    return dict(DEFAULTS["fast" if (fast_mode() if fast is None else fast) else "full"])


_VIDEO_DIR = re.compile(r"^\d{3}$")
# a .pts file, or the temporary file of one being written: atomic_write's .000001.tmp-PID-XXXX.pts, or the
# 000001.pts.XXXX.tmp of earlier versions
_PTS = re.compile(r"^(\d{6}\.pts(\.[^/]*\.tmp)?|\.\d{6}\.tmp-\d+-[A-Za-z0-9_]+\.pts)$")
_SET_ENTRIES = {SPLITS_FILE, SYNTH_FILE, MARKER_FILE, PARTIAL_MARKER}
_VIDEO_ENTRIES = {VIDEO_FILE, ANNOT_DIR, PARAMS_FILE, "vid.partial.avi"}  # vid.partial.avi: earlier versions' temp
_VIDEO_TMP = re.compile(r"^\.vid\.tmp-\d+-[A-Za-z0-9_]+\.avi$")  # video_io.VideoWriter's temporary vid.avi


def synth_set_problem(path: str | os.PathLike) -> str | None:
    """None if ``path`` is a Synth300VW set that ``overwrite`` may replace, else why not.

    A set has the marker :data:`MARKER_FILE` (or, made before the marker existed, a ``synth.json`` with a
    ``format_version``), and every entry in it is one synth writes: NNN folders holding ``vid.avi``, ``annot/``
    of ``.pts`` files and ``params.npz``, plus ``splits.json``/``synth.json``. Anything else (a user's file)
    means it is not ours to delete.
    """
    path = Path(path)
    if path.is_symlink():
        return "it is a symbolic link (replace its target yourself)"
    if not path.is_dir():
        return "it is not a folder"
    marker = path / MARKER_FILE
    try:
        if marker.exists():
            info = json.loads(marker.read_text()) if marker.is_file() and marker.stat().st_size < 65536 else None
            if not (isinstance(info, dict) and info.get("format") == SYNTH_FORMAT
                    and isinstance(info.get("format_version"), int)):
                return f"its {MARKER_FILE} is not a Synth300VW marker"
        else:
            legacy = path / SYNTH_FILE
            info = (json.loads(legacy.read_text()) if legacy.is_file() and legacy.stat().st_size < 1 << 20
                    else None)
            if not (isinstance(info, dict) and isinstance(info.get("format_version"), int)
                    and "model_sha256" in info):
                return f"it has no {MARKER_FILE} marker (synth did not make it)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"its {MARKER_FILE} cannot be read"
    for entry in path.iterdir():
        if entry.name in _SET_ENTRIES and entry.is_file() and not entry.is_symlink():
            continue
        if not (_VIDEO_DIR.match(entry.name) and entry.is_dir() and not entry.is_symlink()):
            return f"it holds {entry.name!r}, which synth does not write"
        for sub in entry.iterdir():
            known = sub.name in _VIDEO_ENTRIES or _VIDEO_TMP.match(sub.name)
            if not known or sub.is_symlink() or sub.is_dir() != (sub.name == ANNOT_DIR):
                return f"it holds {entry.name}/{sub.name}, which synth does not write"
        annot = entry / ANNOT_DIR
        if annot.is_dir():
            for f in annot.iterdir():
                if not _PTS.match(f.name) or f.is_symlink() or not f.is_file():
                    return f"it holds {entry.name}/{ANNOT_DIR}/{f.name}, which synth does not write"
    return None


def generate(out: str | os.PathLike, videos: int | None = None, seed: int = 0, frames: int | None = None,
             size: tuple[int, int] | None = None, categories: Sequence[str] | None = None,
             model: MorphableModel | None = None, overwrite: bool = False, progress: bool = True,
             fps: float = 30.0, on_video: Callable[[int], None] | None = None) -> Path:
    """Generate Synth300VW into ``out`` (see the module docstring); returns the output path.

    ``videos``, ``frames``, ``size=(W, H)`` default to :data:`DEFAULTS` of the current mode. ``categories``
    gives each video's difficulty (``"A"``/``"B"``/``"C"``); by default test videos take their split's
    category and training videos a random one (A 50%, B 30%, C 20%). ``on_video(i)`` is called after each
    video is written (a hook for progress reporting and for the interruption test).
    """
    dflt = default_settings()
    videos = dflt["videos"] if videos is None else int(videos)
    frames = dflt["frames"] if frames is None else int(frames)
    size = tuple(dflt["size"] if size is None else size)
    if not 1 <= videos <= MAX_VIDEOS:
        raise UsageError(f"--videos: must be in 1..{MAX_VIDEOS} (3-digit 300VW ids), got {videos}")
    if not 2 <= frames <= MAX_FRAMES:
        raise UsageError(f"--frames: must be in 2..{MAX_FRAMES} (pairs need two frames), got {frames}")
    if (len(size) != 2 or min(size) < 32 or max(size) > MAX_FRAME_SIDE
            or int(size[0]) * int(size[1]) > MAX_FRAME_PIXELS):
        raise UsageError(f"--size: must be (W, H) with each side 32..{MAX_FRAME_SIDE} and at most "
                         f"{MAX_FRAME_PIXELS} pixels, got {size}")
    size = (int(size[0]), int(size[1]))
    out = Path(os.path.abspath(out))
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
        why = synth_set_problem(out)
        if why:
            raise OutputExistsError(f"refusing to replace {out}: {why}; it is not a Synth300VW set, so "
                                    f"--overwrite only replaces sets synth made (nothing was deleted)")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    with sigterm_raises():
        return _generate(out, videos, seed, frames, size, categories, model, progress, fps, on_video)


def _generate(out: Path, videos: int, seed: int, frames: int, size: tuple[int, int],
              categories: Sequence[str] | None, model: MorphableModel | None, progress: bool, fps: float,
              on_video: Callable[[int], None] | None) -> Path:
    model = _as_double(load_teaching_model() if model is None else model)
    splits = assign_splits(videos)
    root_rng = np.random.default_rng([seed, 999_999])
    if categories is None:
        cats = [s if s != "train" else str(root_rng.choice(["A", "B", "C"], p=[0.5, 0.3, 0.2])) for s in splits]
    else:
        cats = [str(c) for c in categories]
        if len(cats) != videos or any(c not in CATEGORIES for c in cats):
            raise ValueError(f"categories must list {videos} values from {CATEGORIES}, got {categories}")
    ids = [f"{i + 1:03d}" for i in range(videos)]
    mesh = build_face_mesh(model)
    tmp = make_partial_dir(out, "tdd_lite synth")
    old: Path | None = None
    t0 = time.perf_counter()
    try:
        bar = tqdm(total=videos * frames, desc=f"synth {out.name}", unit="frame", disable=not progress)
        for i, vid in enumerate(ids):
            rng = np.random.default_rng([seed, i])
            plan = plan_video(model, rng, cats[i], frames, size)
            folder = tmp / vid
            (folder / ANNOT_DIR).mkdir(parents=True)

            def counted(gen):
                for img in gen:
                    bar.update(1)
                    yield img

            write_video(folder / VIDEO_FILE, counted(render_video(model, mesh, plan, size, rng)), fps)
            for k in range(frames):
                write_pts(folder / ANNOT_DIR / f"{k + 1:06d}.pts", plan.landmarks[k])
            np.savez(folder / PARAMS_FILE, alpha_id=plan.alpha_id, alpha_exp=plan.alpha_exp, camera=plan.camera,
                     pose_deg=plan.pose_deg, light=plan.light, ambient=plan.ambient, diffuse=plan.diffuse,
                     skin=plan.skin, category=np.array(plan.category), still=plan.still)
            if on_video is not None:
                on_video(i)
        bar.close()
        split_map = {s: [v for v, sp in zip(ids, splits) if sp == s] for s in ("train", "A", "B", "C")}
        (tmp / SPLITS_FILE).write_text(json.dumps(split_map, indent=1) + "\n")
        info = {"format_version": FORMAT_VERSION, "seed": seed, "videos": videos, "frames": frames,
                "size": list(size), "fps": fps, "model": model.name, "model_sha256": _model_sha(model),
                "categories": dict(zip(ids, cats)), "seconds": round(time.perf_counter() - t0, 2)}
        (tmp / SYNTH_FILE).write_text(json.dumps(info, indent=1) + "\n")
        marker = {"format": SYNTH_FORMAT, "format_version": FORMAT_VERSION, "made_by": "tdd_lite synth"}
        (tmp / MARKER_FILE).write_text(json.dumps(marker) + "\n")
        if out.exists():  # overwrite (checked to be a set): mark the old one as our partial, move it aside, swap
            (out / PARTIAL_MARKER).write_text((tmp / PARTIAL_MARKER).read_text())
            old = out.with_name(f"{out.name}.partial-{os.getpid()}-old")
            os.replace(out, old)
        os.replace(tmp, out)
        (out / PARTIAL_MARKER).unlink(missing_ok=True)
    finally:
        if tmp.exists():
            remove_partial(tmp)
        if old is not None and old.exists():
            remove_partial(old)
    return out


def default_data_dir() -> Path:
    """Where notebooks keep generated data: ``<repo>/_build/data`` (or ``./_build/data`` outside the repo)."""
    repo = Path(__file__).resolve().parents[2]
    base = repo if (repo / "pyproject.toml").exists() else Path.cwd()
    return base / "_build" / "data"


def ensure_synth(out: str | os.PathLike | None = None, seed: int = 0, **kwargs) -> Path:
    """Generate the default Synth300VW set for this mode unless an identical one is already there (reuse)."""
    settings = default_settings()
    settings.update({k: v for k, v in kwargs.items() if k in ("videos", "frames", "size") and v is not None})
    mode = "fast" if settings == DEFAULTS["fast"] else "full" if settings == DEFAULTS["full"] else "custom"
    out = Path(out) if out is not None else default_data_dir() / f"synth300vw-{mode}-seed{seed}"
    out.parent.mkdir(parents=True, exist_ok=True)
    # notebooks may run in parallel (nbval under xdist): one process generates, the others wait and reuse
    with _file_lock(out.parent / f".{out.name}.lock"):
        return _ensure_locked(out, seed, settings, kwargs)


@contextmanager
def _file_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # Windows: no lock (parallel first runs may generate twice; the rename stays atomic)
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ensure_locked(out: Path, seed: int, settings: dict, kwargs: dict) -> Path:
    info_file = out / SYNTH_FILE
    if info_file.exists():
        try:
            info = json.loads(info_file.read_text())
            same = (info.get("seed") == seed and info.get("videos") == settings["videos"]
                    and info.get("frames") == settings["frames"] and info.get("size") == list(settings["size"])
                    and info.get("format_version") == FORMAT_VERSION)
            if same:
                model = kwargs.get("model")
                model = load_teaching_model() if model is None else model
                if info.get("model_sha256") == _model_sha(model):  # a rebuilt teaching model -> regenerate
                    return out
        except (json.JSONDecodeError, OSError):
            pass
    extra = {k: v for k, v in kwargs.items() if k not in ("videos", "frames", "size")}
    return generate(out, seed=seed, overwrite=True, **settings, **extra)


# ---------------------------------------------------------------------------------------------- CLI
def _size(text: str) -> tuple[int, int]:
    """argparse type: ``WxH`` as :func:`tdd_lite.errors.frame_size`, each side at least 32 (the face crop)."""
    w, h = frame_size(text)
    if min(w, h) < 32:
        raise argparse.ArgumentTypeError(f"{text!r}: each side must be at least 32 pixels")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    f, full = DEFAULTS["fast"], DEFAULTS["full"]

    def default(key: str, show=str) -> str:  # both modes' defaults: the help is the same whichever mode is on
        return f"default {show(f[key])} with TDD_FAST=1, else {show(full[key])}"

    def wxh(size: tuple[int, int]) -> str:
        return f"{size[0]}x{size[1]}"

    parser.add_argument("out", help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--videos", type=bounded_int(1, MAX_VIDEOS), default=None,
                        help=f"number of videos, 1..{MAX_VIDEOS} ({default('videos')})")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--frames", type=bounded_int(2, MAX_FRAMES), default=None,
                        help=f"frames per video, 2..{MAX_FRAMES} ({default('frames')})")
    parser.add_argument("--size", type=_size, default=None, help=f"frame size WxH ({default('size', wxh)})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output folder if it is a Synth300VW set (refused otherwise)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    out = generate(args.out, videos=args.videos, seed=args.seed, frames=args.frames, size=args.size,
                   overwrite=args.overwrite, progress=not args.no_progress)
    info = json.loads((out / SYNTH_FILE).read_text())
    print(f"wrote {info['videos']} videos x {info['frames']} frames ({info['size'][0]}x{info['size'][1]}) to {out} "
          f"in {info['seconds']} s")
    return 0
