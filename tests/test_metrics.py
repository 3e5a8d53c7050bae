"""NME (bbox and inter-ocular) and CED/AUC against hand computations."""

import math

import numpy as np
import pytest
import torch

from tdd_lite import metrics
from tdd_lite.errors import DataError, UsageError


def _face(rng):
    return rng.uniform(0, 100, size=(68, 2))


def test_nme_bbox_hand_computation():
    rng = np.random.default_rng(0)
    gt = _face(rng)
    pred = gt.copy()
    pred[:, 0] += 3.0  # every point 3 px to the right
    pred[10] += np.array([0.0, 4.0])  # point 10 off by (3, 4): 5 px
    w = gt[:, 0].max() - gt[:, 0].min()
    h = gt[:, 1].max() - gt[:, 1].min()
    expected = (67 * 3.0 + 5.0) / 68 / math.sqrt(w * h)
    assert np.isclose(metrics.nme(pred, gt), expected)
    assert np.isclose(float(metrics.nme(torch.from_numpy(pred), torch.from_numpy(gt))), expected)


def test_nme_interocular_hand_computation():
    rng = np.random.default_rng(1)
    gt = _face(rng)
    gt[36] = [20.0, 50.0]
    gt[45] = [80.0, 58.0]  # distance sqrt(60^2 + 8^2)
    pred = gt + np.array([1.0, 0.0])
    assert np.isclose(metrics.nme(pred, gt, norm="interocular"), 1.0 / math.hypot(60, 8))


def test_nme_batched_and_torch_grad():
    rng = np.random.default_rng(2)
    gt = rng.uniform(0, 1, size=(2, 3, 68, 2))
    pred = gt + rng.normal(0, 0.01, size=gt.shape)
    e = metrics.nme(pred, gt)
    assert e.shape == (2, 3)
    assert np.isclose(e[1, 2], metrics.nme(pred[1, 2], gt[1, 2]))
    p = torch.tensor(pred, requires_grad=True)
    metrics.nme(p, torch.from_numpy(gt)).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


def test_nme_perfect_is_zero_and_scale_invariant():
    rng = np.random.default_rng(3)
    gt = _face(rng)
    pred = gt + rng.normal(0, 1, gt.shape)
    assert metrics.nme(gt, gt) == 0
    assert np.isclose(metrics.nme(pred * 7, gt * 7), metrics.nme(pred, gt))
    assert np.isclose(metrics.nme(pred * 7, gt * 7, "interocular"), metrics.nme(pred, gt, "interocular"))


def test_nme_errors():
    with pytest.raises(ValueError, match="same shape"):
        metrics.nme(np.zeros((68, 2)), np.zeros((67, 2)))
    with pytest.raises(ValueError, match="norm"):
        metrics.nme(np.zeros((68, 2)), np.zeros((68, 2)), norm="diag")


def test_ced_auc_exact_and_against_fine_grid():
    errors = np.array([0.0, 0.04, 0.16])
    # T = 0.08: contributions 1, 0.5, 0 -> 0.5
    assert np.isclose(metrics.ced_auc(errors, 0.08), 0.5)
    assert np.isclose(metrics.failure_rate(errors, 0.08), 1 / 3)
    rng = np.random.default_rng(4)
    e = rng.exponential(0.03, 500)
    grid = np.linspace(0, 0.08, 40001)
    curve = metrics.ced_curve(e, grid)
    assert np.isclose(metrics.ced_auc(e, 0.08), np.trapezoid(curve, grid) / 0.08, atol=1e-4)
    assert metrics.ced_curve(errors, [0.0, 0.05, 1.0]).tolist() == [1 / 3, 2 / 3, 1.0]
    with pytest.raises(ValueError):
        metrics.ced_auc(np.array([np.nan]), 0.08)


# ============================================================================ video metrics
# Tolerances: closed forms are exact up to float64 rounding of ~100 px values (1e-12 relative); noise tests use
# the CLT with the standard error worked out in each test.


def _moving_face(T=30, seed=0):
    """(T, 68, 2) ground truth in pixels: a ~150 px face moving, accelerating and zooming (so d_t varies)."""
    rng = np.random.default_rng(seed)
    face = rng.uniform(100, 250, size=(68, 2))
    t = np.arange(T)[:, None, None]
    motion = np.concatenate([25 * np.sin(t / 6.0), 12 * np.cos(t / 4.0)], axis=2)
    zoom = 1.0 + 0.15 * np.sin(t / 9.0)
    return 175.0 + (face[None] - 175.0) * zoom + motion


def _d(gt):
    ext = gt.max(axis=1) - gt.min(axis=1)
    return np.sqrt(ext[:, 0] * ext[:, 1])


def test_constant_offset_has_no_motion_error():
    gt = _moving_face()
    pred = gt + np.array([3.0, 4.0])  # 5 px everywhere
    assert np.allclose(metrics.frame_nme(pred, gt), 5.0 / _d(gt))
    assert abs(metrics.dnme(pred, gt)) < 1e-12 and abs(metrics.accel_error(pred, gt)) < 1e-12
    assert math.isclose(metrics.jitter_ratio(pred, gt), 1.0, rel_tol=1e-9)
    assert metrics.lag(pred, gt) == 0
    row = metrics.video_metrics(pred, gt)
    assert math.isclose(row["nme"], float(np.mean(5.0 / _d(gt))), rel_tol=1e-12)
    assert row["frames"] == 30 and row["dnme_frames"] == 29 and row["accel_frames"] == 28


def test_constant_velocity_drift_has_no_acceleration_error():
    gt = _moving_face(T=40, seed=1)
    v = np.array([0.6, -0.8])  # 1 px/frame drift on top of the truth
    pred = gt + v * np.arange(40)[:, None, None]
    assert abs(metrics.accel_error(pred, gt)) < 1e-12
    assert math.isclose(metrics.jitter_ratio(pred, gt), 1.0, rel_tol=1e-9)  # a drift is not jitter
    assert math.isclose(metrics.dnme(pred, gt), float(np.mean(1.0 / _d(gt)[1:])), rel_tol=1e-9)  # t >= 1


def _rayleigh_se(n_terms, inflation=3.0):
    """Relative standard error of a mean of n Rayleigh-distributed norms (CV = sqrt(4/pi - 1)), inflated for the
    correlation of neighbouring differences (first and second differences share frames)."""
    return math.sqrt(4 / math.pi - 1) * math.sqrt(inflation / n_terms)


def test_pure_noise_dnme_accel_and_static_spread_match_their_expectations():
    rng = np.random.default_rng(2)
    T, sigma = 1000, 1.5
    gt = np.repeat(rng.uniform(100, 250, size=(1, 68, 2)), T, axis=0)  # a still face
    pred = gt + rng.normal(0, sigma, gt.shape)
    d = _d(gt)[0]
    # p_t - p_t-1 is N(0, 2 sigma^2) per coordinate: E|.| = sqrt(2) sigma sqrt(pi / 2) = sigma sqrt(pi)
    tol = 6 * _rayleigh_se(68 * (T - 1))  # ~2%: mean-vs-RMS (12.8% apart) or a wrong difference fails
    assert math.isclose(metrics.dnme(pred, gt), sigma * math.sqrt(math.pi) / d, rel_tol=tol)
    # second difference: N(0, 6 sigma^2) per coordinate: E|.| = sigma sqrt(3 pi)
    assert math.isclose(metrics.accel_error(pred, gt), sigma * math.sqrt(3 * math.pi) / d, rel_tol=tol)
    # static spread: segments of n frames, E|p - mean|^2 = 2 sigma^2 (1 - 1/n); the RMS of 68 * 5 * n
    # exponential(CV 1) terms has relative SE 1 / (2 sqrt(M)) = 0.3%: 6 SE = 2%. The (1 - 1/n) factor for n = 4
    # is 13% (RMS 7%): a spread about the wrong centre (e.g. the truth) fails.
    for n in (4, 40):
        segments = [(k * 100, k * 100 + n) for k in range(5)]
        expected = math.sqrt(2 * sigma ** 2 * (1 - 1 / n)) / d
        m = 68 * 5 * n
        assert math.isclose(metrics.static_spread(pred, gt, segments), expected, rel_tol=6 / (2 * math.sqrt(m)))


def test_jitter_ratio_of_noise_on_a_noisy_truth():
    rng = np.random.default_rng(3)
    T, s_g, s_n = 1000, 1.0, 2.0
    gt = rng.uniform(100, 250, size=(1, 68, 2)) + rng.normal(0, s_g, (T, 68, 2))  # the truth jitters too
    pred = gt + rng.normal(0, s_n, gt.shape)
    # both second differences are isotropic Gaussian: the ratio of Rayleigh means is the ratio of the stds
    expected = math.sqrt(s_g ** 2 + s_n ** 2) / s_g
    tol = 6 * math.sqrt(2) * _rayleigh_se(68 * (T - 2))  # two independent means
    assert math.isclose(metrics.jitter_ratio(pred, gt), expected, rel_tol=tol)


@pytest.mark.parametrize("k", [-3, -2, -1, 0, 1, 2, 3])
def test_lag_of_a_delayed_prediction(k):
    rng = np.random.default_rng(10 + k)
    T = 120
    walk = np.cumsum(rng.normal(0, 2.0, size=(T, 1, 2)), axis=0)  # a random walk: velocities uncorrelated
    gt = rng.uniform(100, 250, size=(1, 68, 2)) + walk + rng.normal(0, 0.2, (T, 68, 2))
    src = np.clip(np.arange(T) - k, 0, T - 1)  # pred_t = gt_(t-k): k > 0 lags behind
    pred = gt[src] + rng.normal(0, 0.5, gt.shape)
    assert metrics.lag(pred, gt) == k
    assert metrics.video_metrics(pred, gt)["lag"] == k
    assert metrics.lag(gt, pred) == -k  # swapping the roles flips the sign


def test_lost_track_runs():
    e = np.full(100, 0.05)
    e[5:14] = 0.3  # 9 frames: not a lost track
    e[20:30] = 0.3  # 10 frames: lost
    e[40:65] = 0.5  # 25 frames: lost
    assert metrics.lost_tracks(e) == (2, 35)
    e[70:80] = 0.2  # exactly at the threshold: not lost (NME > 0.2)
    assert metrics.lost_tracks(e) == (2, 35)
    e2 = e.copy()
    e2[8] = np.nan  # a frame without ground truth inside the 9-run: still 9 frames, still not lost
    e2[25] = np.nan  # ... inside the 10-run: only 9 lost frames left -> not counted
    assert metrics.lost_tracks(e2) == (1, 25)
    assert metrics.lost_tracks(e, min_run=9) == (3, 44)


def test_lost_tracks_in_video_metrics():
    gt = _moving_face(T=60, seed=4)
    pred = gt.copy()
    d = _d(gt)
    for a, b in ((5, 14), (20, 30), (35, 60)):
        pred[a:b, :, 0] += 0.3 * d[a:b, None]  # NME 0.3 on these frames
    row = metrics.video_metrics(pred, gt)
    assert (row["lost_tracks"], row["lost_frames"]) == (2, 35)


def _naive_row(pred, gt, segments):
    """Every definition of tdd_lite.metrics' docstring written as plain loops (frames without ground truth skipped)."""
    T = len(gt)
    ok = [bool(np.isfinite(gt[t]).all()) for t in range(T)]

    def dist(a, b):
        return math.hypot(a[0] - b[0], a[1] - b[1])

    def box(g):
        return math.sqrt((g[:, 0].max() - g[:, 0].min()) * (g[:, 1].max() - g[:, 1].min()))

    nme_bbox, nme_io, dn, acc = [], [], [], []
    jp = jg = 0.0
    for t in range(T):
        if not ok[t]:
            continue
        err = sum(dist(pred[t, li], gt[t, li]) for li in range(68)) / 68
        nme_bbox.append(err / box(gt[t]))
        nme_io.append(err / dist(gt[t, 36], gt[t, 45]))
        if t >= 1 and ok[t - 1]:
            dn.append(sum(dist(pred[t, li] - pred[t - 1, li], gt[t, li] - gt[t - 1, li])
                          for li in range(68)) / 68 / box(gt[t]))
        if 1 <= t <= T - 2 and ok[t - 1] and ok[t + 1]:
            ap = [pred[t + 1, li] - 2 * pred[t, li] + pred[t - 1, li] for li in range(68)]
            ag = [gt[t + 1, li] - 2 * gt[t, li] + gt[t - 1, li] for li in range(68)]
            acc.append(sum(dist(a, b) for a, b in zip(ap, ag, strict=True)) / 68 / box(gt[t]))
            jp += sum(math.hypot(*a) for a in ap)
            jg += sum(math.hypot(*b) for b in ag)
    sq, n = 0.0, 0
    for a, b in segments:
        frames = [t for t in range(a, b) if ok[t]]
        mean = [sum(pred[t, li] for t in frames) / len(frames) for li in range(68)]
        for t in frames:
            for li in range(68):
                sq += (dist(pred[t, li], mean[li]) / box(gt[t])) ** 2
                n += 1
    auc = sum(max(0.0, 0.08 - e) for e in nme_bbox) / len(nme_bbox) / 0.08
    return {"nme": np.mean(nme_bbox), "nme_io": np.mean(nme_io), "dnme": np.mean(dn), "accel": np.mean(acc),
            "jitter_ratio": jp / jg, "static_spread": math.sqrt(sq / n), "auc": auc,
            "failure": np.mean([e > 0.08 for e in nme_bbox]), "frames": len(nme_bbox),
            "dnme_frames": len(dn), "accel_frames": len(acc)}


def test_video_metrics_against_naive_loops_with_missing_ground_truth():
    rng = np.random.default_rng(5)
    gt = _moving_face(T=25, seed=5)
    pred = gt + rng.normal(0, 6.0, gt.shape) + np.linspace(0, 20, 25)[:, None, None]
    gt[7] = np.nan  # frames without ground truth are skipped, and so is every difference that uses them
    gt[15, 3] = np.nan
    pred[7] = np.nan  # a lost prediction on a frame without ground truth is fine
    segments = [(2, 9), (18, 24)]
    row = metrics.video_metrics(pred, gt, still_segments=segments)
    ref = _naive_row(pred, gt, segments)
    for key, value in ref.items():
        assert np.isclose(row[key], value, rtol=1e-10, atol=0), key
    assert row["frames"] == 23 and row["dnme_frames"] == 20 and row["accel_frames"] == 17
    assert 0 < row["failure"] < 1  # the failure/AUC test has something to count
    assert np.isnan(metrics.frame_nme(pred, gt)[[7, 15]]).all()


def test_category_metrics_weight_by_frames():
    rng = np.random.default_rng(6)
    videos = []
    for T, noise, seed in ((10, 12.0, 7), (40, 2.0, 8), (25, 5.0, 9)):
        gt = _moving_face(T=T, seed=seed)
        videos.append((gt + rng.normal(0, noise, gt.shape), gt))
    rows = [metrics.video_metrics(p, g, still_segments=[(0, 5)]) for p, g in videos]
    cat = metrics.category_metrics(rows)
    pooled = np.concatenate([metrics.frame_nme(p, g) for p, g in videos])
    assert cat["frames"] == 75 and cat["videos"] == 3
    assert math.isclose(cat["nme"], float(pooled.mean()), rel_tol=1e-12)
    assert not math.isclose(cat["nme"], float(np.mean([r["nme"] for r in rows])), rel_tol=1e-3)  # not per video
    assert math.isclose(cat["auc"], metrics.ced_auc(pooled, 0.08), rel_tol=1e-12)
    assert math.isclose(cat["failure"], metrics.failure_rate(pooled, 0.08), rel_tol=1e-12)
    # dNME: the mean over every video's motion terms
    terms = []
    for p, g in videos:
        d = _d(g)[1:]
        terms += list(np.linalg.norm(np.diff(p, axis=0) - np.diff(g, axis=0), axis=-1).mean(-1) / d)
    assert math.isclose(cat["dnme"], float(np.mean(terms)), rel_tol=1e-12)
    # jitter: pooled sums; static spread: RMS over the pooled still terms
    num = sum(np.linalg.norm(np.diff(p, 2, axis=0), axis=-1).sum() for p, _ in videos)
    den = sum(np.linalg.norm(np.diff(g, 2, axis=0), axis=-1).sum() for _, g in videos)
    assert math.isclose(cat["jitter_ratio"], num / den, rel_tol=1e-12)
    sq = [((np.linalg.norm(p[:5] - p[:5].mean(0), axis=-1) / _d(g)[:5, None]) ** 2).ravel() for p, g in videos]
    assert math.isclose(cat["static_spread"], math.sqrt(np.concatenate(sq).mean()), rel_tol=1e-12)
    assert cat["lost_tracks"] == sum(r["lost_tracks"] for r in rows)


# ---------------------------------------------------------------------------- 3D metrics
def _tiny():
    from tests._tiny3dmm import tiny_model

    return tiny_model()


def test_identity_spread_and_expression_error_closed_form_on_the_tiny_model():
    m = _tiny()  # id mode 0 moves vertex 0 along x with std 2 m; exp mode 0 moves vertex 2 along y, std 0.5 m
    c = np.array([0.0, 1.0, -2.0, 0.5])
    alpha_id = np.stack([c, np.full(4, 0.7)], axis=1)  # mode 1 constant: no spread from it
    # 17 of the 68 landmarks sit on vertex 0 and move 2 * (c_t - mean c) m: RMS = 2 sqrt(17/68) std(c) m
    expected = 1000 * 2 * math.sqrt(17 / 68) * math.sqrt(np.mean((c - c.mean()) ** 2))
    assert math.isclose(metrics.identity_spread(m, alpha_id), expected, rel_tol=1e-6)
    assert metrics.identity_spread(m, np.tile([1.3, -0.4], (5, 1))) < 1e-9  # one identity: 0
    e_true, e_pred = np.array([[0.0], [1.0], [2.0]]), np.array([[0.5], [1.0], [0.0]])
    expected = 1000 * 0.5 * math.sqrt(17 / 68) * math.sqrt(np.mean((e_pred - e_true) ** 2))
    assert math.isclose(metrics.expression_error(m, e_pred, e_true), expected, rel_tol=1e-6)


def test_3d_metrics_against_the_models_landmarks3d():
    import torch as th

    from tests._tiny3dmm import random_model

    m = random_model()
    rng = np.random.default_rng(11)
    T = 6
    id_t, exp_t = rng.normal(size=m.n_id), rng.normal(size=(T, m.n_exp))
    id_p, exp_p = id_t + rng.normal(0, 0.3, (T, m.n_id)), exp_t + rng.normal(0, 0.3, (T, m.n_exp))

    def l3d(a_id, a_exp):
        return m.landmarks3d(None if a_id is None else th.tensor(a_id), None if a_exp is None else th.tensor(a_exp))

    x = l3d(id_p, None) - l3d(np.tile(id_p.mean(0), (T, 1)), None)
    assert np.isclose(metrics.identity_spread(m, id_p), 1000 * float(x.pow(2).sum(-1).mean().sqrt()), rtol=1e-4)
    x = l3d(None, exp_p) - l3d(None, exp_t)
    assert np.isclose(metrics.expression_error(m, exp_p, exp_t), 1000 * float(x.pow(2).sum(-1).mean().sqrt()),
                      rtol=1e-4)
    xp, xt = l3d(id_p, exp_p).double().numpy(), l3d(np.tile(id_t, (T, 1)), exp_t).double().numpy()
    xp_c, xt_c = xp - xp.mean(1, keepdims=True), xt - xt.mean(1, keepdims=True)
    plain = 1000 * np.linalg.norm(xp_c - xt_c, axis=-1).mean()
    assert np.isclose(metrics.landmark3d_error(m, id_p, exp_p, id_t, exp_t), plain, rtol=1e-4)

    from tdd_lite.camera import camera_from_pose, euler_to_rotation
    yaw, pitch, roll = (th.tensor(rng.uniform(-0.5, 0.5, T)) for _ in range(3))
    r = euler_to_rotation(yaw, pitch, roll).double()
    cam_true = camera_from_pose(th.full((T,), 900.0), r, th.tensor(rng.uniform(100, 300, (T, 2))))  # pixels
    cam_same = camera_from_pose(th.full((T,), 3.1), r, th.tensor(rng.uniform(0, 1, (T, 2))))  # crop coords
    # the same rotation at another scale and translation: the camera adds no error
    assert np.isclose(metrics.landmark3d_error(m, id_p, exp_p, id_t, exp_t, cam_same, cam_true), plain, rtol=1e-4)
    # a rotation error on identical shapes: mean_l |R1 x_l - R2 x_l| of the centred landmarks
    r2 = euler_to_rotation(yaw + 0.1, pitch, roll).double()
    cam_rot = camera_from_pose(th.full((T,), 3.1), r2, th.zeros(T, 2))
    xc = xt_c
    expected = 1000 * np.linalg.norm(xc @ r2.numpy().transpose(0, 2, 1) - xc @ r.numpy().transpose(0, 2, 1),
                                     axis=-1).mean()
    got = metrics.landmark3d_error(m, np.tile(id_t, (T, 1)), exp_t, id_t, exp_t, cam_rot, cam_true)
    assert got > 1.0 and np.isclose(got, expected, rtol=1e-4)
    row = metrics.video_metrics(
        _moving_face(T=T), _moving_face(T=T) + 1.0, model=m,
        params_pred={"alpha_id": id_p, "alpha_exp": exp_p, "camera": cam_same.numpy()},
        params_true={"alpha_id": id_t, "alpha_exp": exp_t, "camera": cam_true.numpy()})
    assert np.isclose(row["landmark3d_error"], plain, rtol=1e-4) and row["frames_3d"] == T
    assert np.isclose(row["identity_spread"], metrics.identity_spread(m, id_p))
    cat = metrics.category_metrics([row, row])
    assert np.isclose(cat["identity_spread"], row["identity_spread"])


# ---------------------------------------------------------------------------- bad input
def _bad_cases():
    gt = _moving_face(T=8)
    ok = gt + 1.0
    nan_pred = ok.copy()
    nan_pred[3, 0, 0] = np.nan
    flat = gt.copy()
    flat[2] = 50.0  # every point in one place
    still = np.repeat(gt[:1], 8, axis=0)
    m = _tiny()
    good_row = metrics.video_metrics(ok, gt)
    return [
        ("shape mismatch", lambda: metrics.video_metrics(ok[:, :67], gt), DataError, "same shape"),
        ("gt not (T, N, 2)", lambda: metrics.dnme(ok[0], gt[0]), DataError, "(T, N, 2)"),
        ("empty stream", lambda: metrics.video_metrics(ok[:0], gt[:0]), DataError, "empty"),
        ("gt all NaN", lambda: metrics.video_metrics(ok, np.full_like(gt, np.nan)), DataError, "no frame"),
        ("NaN prediction", lambda: metrics.video_metrics(nan_pred, gt), DataError, "frame 3"),
        ("degenerate gt box", lambda: metrics.video_metrics(ok, flat), DataError, "gt frame 2"),
        ("not numeric", lambda: metrics.dnme("abc", gt), DataError, "numeric array"),
        ("segment out of range", lambda: metrics.static_spread(ok, gt, [(5, 9)]), DataError, "stop <= 8"),
        ("segment reversed", lambda: metrics.static_spread(ok, gt, [(5, 5)]), DataError, "start < stop"),
        ("segment not a pair", lambda: metrics.static_spread(ok, gt, [(1, 2, 3)]), DataError, "(start, stop)"),
        ("segment floats", lambda: metrics.static_spread(ok, gt, [(1.0, 4.0)]), DataError, "integers"),
        ("segments not a list", lambda: metrics.static_spread(ok, gt, 5), DataError, "list of (start, stop)"),
        ("no segment", lambda: metrics.static_spread(ok, gt, []), DataError, "at least 2 frames"),
        ("one frame: dNME", lambda: metrics.dnme(ok[:1], gt[:1]), DataError, "two consecutive"),
        ("two frames: accel", lambda: metrics.accel_error(ok[:2], gt[:2]), DataError, "three consecutive"),
        ("still truth: jitter", lambda: metrics.jitter_ratio(still + 1, still), DataError, "no acceleration"),
        ("still centroid: lag", lambda: metrics.lag(still + 1, still), DataError, "does not move"),
        ("lag max_shift", lambda: metrics.lag(ok, gt, max_shift=-1), UsageError, "max_shift"),
        ("lost: empty", lambda: metrics.lost_tracks([]), DataError, "empty"),
        ("lost: min_run 0", lambda: metrics.lost_tracks([0.1], min_run=0), UsageError, "min_run"),
        ("lost: inf", lambda: metrics.lost_tracks([np.inf]), DataError, "infinite"),
        ("auc threshold", lambda: metrics.ced_auc([0.1], 0.0), UsageError, "threshold"),
        ("failure empty", lambda: metrics.failure_rate([], 0.08), DataError, "empty"),
        ("failure NaN", lambda: metrics.failure_rate([np.nan], 0.08), DataError, "NaN"),
        ("nme norm", lambda: metrics.frame_nme(ok, gt, norm="diag"), UsageError, "norm"),
        ("alpha_id shape", lambda: metrics.identity_spread(m, np.zeros((3, 5))), DataError, "(T, 2)"),
        ("alpha_id NaN", lambda: metrics.identity_spread(m, np.array([[0, 1], [np.nan, 0]])), DataError, "row 1"),
        ("alpha_exp frames", lambda: metrics.expression_error(m, np.zeros((3, 1)), np.zeros((4, 1))), DataError,
         "4 frames, expected 3"),
        ("one camera", lambda: metrics.landmark3d_error(m, np.zeros((2, 2)), np.zeros((2, 1)), np.zeros(2),
                                                        np.zeros((2, 1)), camera_pred=np.zeros((2, 8))),
         UsageError, "both camera"),
        ("model units", lambda: metrics.identity_spread(_Units(m), np.zeros((2, 2))), DataError, "units 'inch'"),
        ("model without params", lambda: metrics.video_metrics(ok, gt, model=m), UsageError, "together"),
        ("params without alpha_exp", lambda: metrics.video_metrics(
            ok, gt, model=m, params_pred={"alpha_id": np.zeros((8, 2))}, params_true={"alpha_id": np.zeros(2)}),
         DataError, "'alpha_exp'"),
        ("no rows", lambda: metrics.category_metrics([]), DataError, "no video rows"),
        ("not a row", lambda: metrics.category_metrics([good_row, {"nme": 0.1}]), DataError, "video row 1"),
    ]


class _Units:
    def __init__(self, m):
        self._m, self.units = m, "inch"

    def __getattr__(self, name):
        return getattr(self._m, name)


BAD = _bad_cases()


@pytest.mark.parametrize(("label", "call", "exc", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_metric_bad_input(label, call, exc, phrase):
    with pytest.raises(exc) as e:
        call()
    assert phrase in str(e.value), str(e.value)
