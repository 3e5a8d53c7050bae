"""Synth300VW: layout, exact parameters, determinism, atomicity, check-data, difficulty categories."""

import json

import numpy as np
import pytest
import torch

from tdd_lite import cli
from tdd_lite.camera import project
from tdd_lite.data import synth, vw300
from tdd_lite.morphable import ModelArrays, MorphableModel, teaching_model_path


def small_model(n=16, k_id=6, k_exp=4, seed=0) -> MorphableModel:
    """A face-sized curved grid (n x n vertices) with random orthonormal bases: fast to render."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1.2, 1.2, n))
    mean = np.stack([0.07 * u, 0.08 * v, 0.04 * np.cos(u) * np.cos(v / 1.2)], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    q, _ = np.linalg.qr(rng.standard_normal((3 * n * n, k_id + k_exp)))
    inner = idx[2:-2, 2:-2].ravel()
    lmk = rng.choice(inner, 68, replace=False)
    return MorphableModel(ModelArrays(
        mean_shape=mean.astype(np.float32), id_basis=q[:, :k_id].astype(np.float32),
        id_std=np.full(k_id, 0.02, np.float32), exp_basis=q[:, k_id:].astype(np.float32),
        exp_std=np.full(k_exp, 0.02, np.float32), triangles=tris, landmark_index=lmk, name="grid"))


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def generated(tmp_path_factory, model):
    out = tmp_path_factory.mktemp("syn") / "set"
    synth.generate(out, videos=4, frames=6, size=(96, 80), seed=3, model=model, progress=False)
    return out


def test_layout_splits_and_check_data(generated):
    assert sorted(p.name for p in generated.iterdir()) == ["001", "002", "003", "004", "splits.json", "synth.json",
                                                             "synth300vw.json"]
    splits = json.loads((generated / "splits.json").read_text())
    assert splits == {"train": ["001"], "A": ["002"], "B": ["003"], "C": ["004"]}
    assert vw300.load_splits(generated) == {k: tuple(v) for k, v in splits.items()}
    rep = vw300.validate(generated)
    assert rep.ok and not rep.warnings and rep.frames == 24, rep.format()
    info = json.loads((generated / "synth.json").read_text())
    assert info["seed"] == 3 and info["size"] == [96, 80] and set(info["categories"].values()) <= {"A", "B", "C"}
    seq = vw300.VideoSequence(generated / "001")
    assert seq.frame(0).shape == (80, 96, 3) and seq.frame_size == (96, 80) and len(seq) == 6


def test_params_reproduce_pts_exactly(generated, model):
    mdl = synth._as_double(model)
    for vid in ("001", "004"):
        p = np.load(generated / vid / "params.npz")
        assert p["alpha_id"].shape == (model.n_id,) and p["alpha_exp"].shape == (6, model.n_exp)
        assert p["camera"].shape == (6, 8) and p["pose_deg"].shape == (6, 3)
        lmk3d = mdl.landmarks3d(torch.from_numpy(np.tile(p["alpha_id"], (6, 1))), torch.from_numpy(p["alpha_exp"]))
        proj = project(lmk3d, torch.from_numpy(p["camera"])).numpy()
        np.testing.assert_allclose(proj, vw300.VideoSequence(generated / vid).landmarks, rtol=0, atol=1e-9)
        # and with the float32 model a user would load, up to float32 rounding
        lf = model.landmarks3d(torch.from_numpy(np.tile(p["alpha_id"], (6, 1))).float(),
                               torch.from_numpy(p["alpha_exp"]).float())
        np.testing.assert_allclose(project(lf, torch.from_numpy(p["camera"]).float()).numpy(),
                                   proj, atol=1e-3)
    assert model.mean_shape.dtype == torch.float32  # the caller's model was not converted in place


def test_face_is_drawn_where_the_landmarks_are(generated, model):
    """Landmarks are mesh vertices of the grid model: each must fall on the rendered face's silhouette
    (re-rendered here through render.image_vertices, an independent path from the generator's own)."""
    from tdd_lite import render

    mdl = synth._as_double(model)
    for vid in ("001", "004"):
        p = np.load(generated / vid / "params.npz")
        lmk = vw300.VideoSequence(generated / vid).landmarks
        for k in (0, 5):
            shape = mdl.shape(torch.from_numpy(p["alpha_id"][None]), torch.from_numpy(p["alpha_exp"][k:k + 1]))[0]
            iv = render.image_vertices(shape, p["camera"][k])
            _, mask = render.render(iv, model.triangles, size=(80, 96), return_mask=True)
            mask = np.pad(mask, 1) | np.pad(mask, ((0, 2), (1, 1))) | np.pad(mask, ((2, 0), (1, 1)))
            mask = mask[:, :-2] | mask[:, 2:] | mask[:, 1:-1]  # dilate by one pixel (edge vertices)
            ij = np.round(lmk[k]).astype(int)
            assert mask[ij[:, 1] + 1, ij[:, 0]].all()
            # and the video frame shows the face there: differs from a flat colour
            assert vw300.VideoSequence(generated / vid).frame(k)[ij[:, 1], ij[:, 0]].std() > 0


def test_deterministic_by_seed(tmp_path, model, generated):
    again = synth.generate(tmp_path / "b", videos=4, frames=6, size=(96, 80), seed=3, model=model, progress=False)
    other = synth.generate(tmp_path / "c", videos=4, frames=6, size=(96, 80), seed=4, model=model, progress=False)
    for vid in ("001", "004"):
        a, b = vw300.VideoSequence(generated / vid), vw300.VideoSequence(again / vid)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        for k in (0, 5):
            np.testing.assert_array_equal(a.frame(k), b.frame(k))
        pa, pb = np.load(generated / vid / "params.npz"), np.load(again / vid / "params.npz")
        for key in pa.files:
            np.testing.assert_array_equal(pa[key], pb[key])
        assert not np.allclose(a.landmarks, vw300.VideoSequence(other / vid).landmarks)


class Boom(KeyboardInterrupt):
    pass


def test_interrupted_run_leaves_nothing(tmp_path, model):
    def hook(i):
        if i == 1:
            raise Boom

    with pytest.raises(Boom):
        synth.generate(tmp_path / "out", videos=3, frames=3, size=(64, 64), model=model, progress=False,
                       on_video=hook)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_old_set(tmp_path, model):
    out = synth.generate(tmp_path / "out", videos=2, frames=3, size=(64, 64), seed=1, model=model, progress=False)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match="exists"):
        synth.generate(out, videos=2, frames=3, size=(64, 64), model=model, progress=False)

    def fail(i):
        raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected"):
        synth.generate(out, videos=2, frames=3, size=(64, 64), seed=2, model=model, progress=False,
                       overwrite=True, on_video=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert json.loads((out / "synth.json").read_text())["seed"] == 1


def test_ensure_synth_reuses(tmp_path, model, monkeypatch):
    monkeypatch.setenv("TDD_FAST", "1")
    kw = dict(videos=2, frames=3, size=(64, 64), model=model, progress=False)
    out = synth.ensure_synth(tmp_path / "d", seed=5, **kw)
    stamp = (out / "001" / "vid.avi").stat().st_mtime_ns
    assert synth.ensure_synth(tmp_path / "d", seed=5, **kw) == out
    assert (out / "001" / "vid.avi").stat().st_mtime_ns == stamp  # reused, not regenerated
    synth.ensure_synth(tmp_path / "d", seed=6, **kw)
    assert json.loads((out / "synth.json").read_text())["seed"] == 6
    stamp = (out / "001" / "vid.avi").stat().st_mtime_ns
    synth.ensure_synth(tmp_path / "d", seed=6, **{**kw, "model": small_model(seed=1)})  # another model
    assert (out / "001" / "vid.avi").stat().st_mtime_ns != stamp


def _ensure_in_child(out, queue):
    try:
        synth.ensure_synth(out, seed=9, videos=2, frames=3, size=(64, 64), model=small_model(), progress=False)
        queue.put(json.loads((out / "synth.json").read_text())["seconds"])
    except Exception as e:  # pragma: no cover - reported to the parent
        queue.put(repr(e))


def test_ensure_synth_parallel_callers_share_one_set(tmp_path, monkeypatch):
    import multiprocessing as mp

    monkeypatch.setenv("TDD_FAST", "1")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_ensure_in_child, args=(tmp_path / "shared", q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = [q.get(timeout=5) for _ in procs]
    assert all(isinstance(r, float) for r in results), results
    assert results[0] == results[1]  # the second caller reused the first one's set (same synth.json)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shared.lock", "shared"]
    assert vw300.validate(tmp_path / "shared").ok


def test_assign_splits_proportions():
    s = synth.assign_splits(114)
    assert [s.count(k) for k in ("train", "A", "B", "C")] == [50, 31, 19, 14]
    s6 = synth.assign_splits(6)
    assert [s6.count(k) for k in ("train", "A", "B", "C")] == [3, 1, 1, 1]
    for n in range(4, 30):
        s = synth.assign_splits(n)
        assert len(s) == n and all(s.count(k) >= 1 for k in ("train", "A", "B", "C"))


def test_smooth_noise_statistics():
    rng = np.random.default_rng(0)
    x = synth.smooth_noise(rng, 20000, 2, 8.0)
    assert abs(x.std() - 1) < 0.1
    lag1 = np.corrcoef(x[:-1, 0], x[1:, 0])[0, 1]
    assert lag1 > 0.98  # smooth: neighbouring frames almost equal
    assert abs(np.corrcoef(x[:-100, 0], x[100:, 0])[0, 1]) < 0.1


def test_difficulty_categories_differ(model):
    def stats(cat):
        yaw, speed = [], []
        for i in range(25):
            p = synth.plan_video(model, np.random.default_rng([7, i]), cat, 60, (256, 256))
            yaw.append(np.abs(p.pose_deg[:, 0]).max())
            speed.append(np.linalg.norm(np.diff(p.landmarks.mean(1), axis=0), axis=1).mean())
            assert np.abs(p.pose_deg[:, 0]).max() <= synth.MAX_YAW
        return np.mean(yaw), np.mean(speed)

    ya, sa = stats("A")
    yb, sb = stats("B")
    yc, sc = stats("C")
    assert ya < yb and ya < yc  # larger pose in B and C
    assert sc > 2 * sa  # fast motion in C


def test_bad_arguments(tmp_path, model):
    for kw, msg in ((dict(videos=0), "videos"), (dict(frames=1), "frames"), (dict(size=(16, 16)), "size"),
                    (dict(videos=2, categories=["A", "X"]), "categories")):
        with pytest.raises(ValueError, match=msg):
            synth.generate(tmp_path / "x", model=model, progress=False, **{"frames": 3, "videos": 2, **kw})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not teaching_model_path().exists(), reason="teaching 3DMM asset not built")
def test_cli_with_teaching_model(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["synth", str(out), "--videos", "4", "--frames", "3", "--size", "96x96", "--seed", "1",
                     "--no-progress"]) == 0
    assert "wrote 4 videos x 3 frames (96x96)" in capsys.readouterr().out
    assert vw300.validate(out).ok
    assert cli.main(["check-data", str(out)]) == 0
    assert cli.main(["synth", str(out), "--videos", "1"]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["synth", str(out), "--size", "big"])


def test_still_segments_hold_the_truth_for_a_second(tmp_path, model):
    """About half the videos of 60+ frames have a still segment (params.npz 'still'): >= 30 frames (1 s at
    30 fps) in which the true landmarks do not move at all, while they do move elsewhere."""
    root = synth.generate(tmp_path / "s", videos=8, frames=80, size=(128, 96), seed=5, model=model, progress=False)
    n_still = 0
    for vid in sorted(p.name for p in root.iterdir() if p.is_dir()):
        with np.load(root / vid / "params.npz") as z:
            still = z["still"]
        lmk = vw300.VideoSequence(root / vid).landmarks
        assert still.shape == (80,) and still.dtype == bool
        if still.any():
            n_still += 1
            run = np.flatnonzero(still)
            assert run.size >= 30 and np.all(np.diff(run) == 1)  # one contiguous segment
            assert np.abs(np.diff(lmk[still], axis=0)).max() < 1e-9
            # continuous at the segment's end: no jump bigger than the video's usual frame-to-frame motion
            step = np.abs(np.diff(lmk, axis=0)).max(axis=(1, 2))
            end = run[-1]
            if end + 1 < len(lmk):
                assert step[end] <= 3 * np.percentile(step[~still[:-1]], 90) + 1e-9
        assert np.abs(np.diff(lmk[~still], axis=0)).max() > 0.1
    assert 1 <= n_still <= 7


@pytest.mark.parametrize("fast", ["1", "0"])
def test_help_gives_both_modes_defaults(fast, monkeypatch):
    """``tdd-lite synth --help`` names the defaults of both modes, whichever is on (it named only the fast ones, while
    a user without TDD_FAST got the full 40 x 300-frame set)."""
    import argparse

    monkeypatch.setenv("TDD_FAST", fast)
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    f, full = synth.DEFAULTS["fast"], synth.DEFAULTS["full"]
    for key in ("videos", "frames"):
        assert f"default {f[key]} with TDD_FAST=1, else {full[key]}" in text, key
    assert "default {}x{} with TDD_FAST=1, else {}x{}".format(*f["size"], *full["size"]) in text
