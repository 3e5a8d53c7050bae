"""Stabilisers: causality (the acceptance test), look-ahead, closed forms, transcriptions, lost frames, registry.

Tolerances: where two computations do the same float64 arithmetic in a different order we allow 1e-9 (relative
to values of order 100 px, rounding is ~1e-13); a dependence we look for is a 50 px perturbation, so anything
below 1e-9 is "unchanged".
"""

import inspect
import math

import numpy as np
import pytest

from tdd_lite import filters as F
from tdd_lite.errors import DataError, UsageError

CAUSAL = ["none", "moving", "one-euro", "one-euro-mediapipe", "kalman"]
NAMES = ["none", "centred", "moving", "one-euro", "one-euro-mediapipe", "kalman"]
TOL = 1e-9


def _face_stream(T=40, seed=0):
    """A (T, 68, 2) landmark stream in pixels: a face ~150 px wide moving smoothly, plus 1.5 px noise."""
    rng = np.random.default_rng(seed)
    face = rng.uniform(100, 250, size=(68, 2))
    t = np.arange(T)[:, None, None]
    motion = np.concatenate([20 * np.sin(t / 7.0), 10 * np.cos(t / 5.0)], axis=2)
    return face[None] + motion + rng.normal(0, 1.5, size=(T, 68, 2))


def _run_steps(f, stream):
    f.reset()
    return np.stack([f.step(x) for x in stream])


# ----------------------------------------------------------------------------- the acceptance test
@pytest.mark.parametrize("name", CAUSAL)
def test_causal_filter_output_never_depends_on_a_later_frame(name):
    stream = _face_stream()
    f = F.make_filter(name)
    assert f.causal and f.lookahead == 0
    base = _run_steps(f, stream)
    assert np.allclose(base, f.apply(stream), rtol=0, atol=TOL)  # apply == frame by frame
    for j in (1, 10, 25, 39):
        changed = stream.copy()
        changed[j] += 50.0  # a later frame changes
        out = _run_steps(f, changed)
        assert np.allclose(out[:j], base[:j], rtol=0, atol=TOL), f"{name}: an output before frame {j} changed"
        assert np.abs(out[j] - base[j]).max() > 1e-3, f"{name}: frame {j} had no effect at all (test is blind)"


@pytest.mark.parametrize("name", NAMES)
def test_lookahead_attribute_is_the_number_of_earlier_outputs_a_frame_changes(name):
    stream = _face_stream(T=30, seed=1)
    f = F.make_filter(name)
    assert isinstance(f.lookahead, int)
    assert "look-ahead" in (type(f).__doc__ or "").lower()
    base = f.apply(stream)
    j = 15
    changed = stream.copy()
    changed[j] += 50.0
    diff = np.abs(f.apply(changed) - base).reshape(len(stream), -1).max(axis=1)
    first_changed = int(np.flatnonzero(diff > TOL)[0])
    assert first_changed == j - f.lookahead


@pytest.mark.parametrize(("n_pre", "n_next"), [(1, 1), (2, 1), (0, 3), (3, 0), (2, 2)])
def test_centred_average_changes_exactly_the_outputs_in_its_window(n_pre, n_next):
    stream = _face_stream(T=30, seed=2)
    f = F.CentredAverage(n_pre, n_next)
    assert f.lookahead == n_next and not f.causal
    j = 15
    changed = stream.copy()
    changed[j] += 50.0
    diff = np.abs(f.apply(changed) - f.apply(stream)).reshape(30, -1).max(axis=1)
    assert np.flatnonzero(diff > TOL).tolist() == list(range(j - n_next, j + n_pre + 1))


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize(("n_pre", "n_next"), [(1, 1), (2, 1), (0, 3)])
def test_centred_average_on_a_ramp(n_pre, n_next):
    T, a, b = 20, 3.0, -7.0
    x = a * np.arange(T, dtype=float) + b
    y = F.CentredAverage(n_pre, n_next).apply(x)
    for t in range(T):
        lo, hi = max(t - n_pre, 0), min(t + n_next, T - 1)
        assert math.isclose(y[t], a * (lo + hi) / 2 + b, abs_tol=1e-12)  # mean of a ramp = ramp at the midpoint
    inner = slice(n_pre, T - n_next)
    assert np.allclose(y[inner], x[inner] + a * (n_next - n_pre) / 2)


@pytest.mark.parametrize(("n_pre", "n_next"), [(1, 1), (2, 1)])
def test_centred_average_spreads_a_spike_to_its_neighbours(n_pre, n_next):
    T, j, A = 21, 10, 12.0
    x = np.zeros((T, 68, 2))
    x[j] = A
    y = F.CentredAverage(n_pre, n_next).apply(x)
    expected = np.zeros(T)
    expected[j - n_next: j + n_pre + 1] = A / (n_pre + n_next + 1)  # the outlier's error, shared by its window
    assert np.allclose(y[:, 0, 0], expected) and np.allclose(y, expected[:, None, None])
    assert y[j - 1, 0, 0] > 0 and y[j + 1, 0, 0] > 0  # the neighbours now carry part of the error


def test_moving_average_closed_form_and_naive_loop():
    n, a = 4, 2.5
    x = a * np.arange(15, dtype=float)
    y = F.MovingAverage(n).apply(x)
    assert np.allclose(y[n - 1:], x[n - 1:] - a * (n - 1) / 2)  # a causal mean lags (n-1)/2 frames on a ramp
    stream = _face_stream(T=12, seed=3)
    naive = np.stack([stream[max(0, t - n + 1): t + 1].mean(axis=0) for t in range(12)])
    assert np.allclose(F.MovingAverage(n).apply(stream), naive)


# ----------------------------------------------------------------------------- One Euro: the paper's pseudo-code
class _PaperLowPass:
    """Casiez et al. 2012, appendix: LowPassFilter."""

    def __init__(self):
        self.first_time = True
        self.hat_x_prev = None

    def filter(self, x, alpha):
        if self.first_time:
            self.first_time = False
            hat_x = x
        else:
            hat_x = alpha * x + (1 - alpha) * self.hat_x_prev
        self.hat_x_prev = hat_x
        return hat_x


class _PaperOneEuro:
    """Casiez et al. 2012, appendix: OneEuroFilter(rate, mincutoff, beta, dcutoff), one scalar."""

    def __init__(self, rate, mincutoff, beta, dcutoff):
        self.first_time = True
        self.rate, self.mincutoff, self.beta, self.dcutoff = rate, mincutoff, beta, dcutoff
        self.xfilt, self.dxfilt = _PaperLowPass(), _PaperLowPass()

    def alpha(self, cutoff):
        tau = 1.0 / (2 * math.pi * cutoff)
        te = 1.0 / self.rate
        return 1.0 / (1.0 + tau / te)

    def filter(self, x):
        if self.first_time:
            self.first_time = False
            dx = 0.0
        else:
            dx = (x - self.xfilt.hat_x_prev) * self.rate
        edx = self.dxfilt.filter(dx, self.alpha(self.dcutoff))
        cutoff = self.mincutoff + self.beta * abs(edx)
        return self.xfilt.filter(x, self.alpha(cutoff))


def _scalar_reference(make, stream):
    flat = stream.reshape(len(stream), -1)
    out = np.empty_like(flat)
    for i in range(flat.shape[1]):
        f = make()
        out[:, i] = [f.filter(v) for v in flat[:, i]]
    return out.reshape(stream.shape)


@pytest.mark.parametrize(("min_cutoff", "beta", "d_cutoff", "fps"),
                         [(1.0, 0.0, 1.0, 30.0), (0.5, 0.3, 1.0, 30.0), (2.0, 0.05, 3.0, 25.0)])
def test_one_euro_matches_the_papers_pseudo_code(min_cutoff, beta, d_cutoff, fps):
    stream = _face_stream(T=30, seed=4)[:, :5]  # 10 scalar signals are plenty
    ours = F.OneEuro(min_cutoff, beta, d_cutoff, fps).apply(stream)
    ref = _scalar_reference(lambda: _PaperOneEuro(fps, min_cutoff, beta, d_cutoff), stream)
    assert np.allclose(ours, ref, rtol=0, atol=TOL)
    if beta > 0:  # the derivative choice matters: MediaPipe's raw-value derivative is a different filter
        raw = F.OneEuro(min_cutoff, beta, d_cutoff, fps, derivative="raw").apply(stream)
        assert np.abs(raw - ref).max() > 1e-3


def test_one_euro_default_is_an_exponential_smoother_with_the_closed_form_alpha():
    alpha = 1.0 / (1.0 + 30.0 / (2 * math.pi * 1.0))  # tau = 1/(2 pi fc), Te = 1/30
    assert math.isclose(F.OneEuro().alpha(1.0), alpha)
    x = np.random.default_rng(5).normal(size=50)
    y = np.empty(50)
    y[0] = x[0]
    for t in range(1, 50):
        y[t] = alpha * x[t] + (1 - alpha) * y[t - 1]
    assert np.allclose(F.OneEuro().apply(x), y)


def _mediapipe_reference(stream, min_cutoff=0.05, beta=80.0, d_cutoff=1.0, fps=30.0):
    """MediaPipe's OneEuroFilter::Apply (util/filtering/one_euro_filter.cc) with value_scale = 1/object_scale,
    object_scale = (w + h) / 2 of the frame's landmarks (landmarks_smoothing_calculator.cc), written out."""
    def alpha(cutoff):
        return 1.0 / (1.0 + (1.0 / (2 * math.pi * cutoff)) / (1.0 / fps))

    T, N, _ = stream.shape
    out = np.empty_like(stream)
    last_raw = [[None, None] for _ in range(N)]
    x_state = [[None, None] for _ in range(N)]
    dx_state = [[None, None] for _ in range(N)]
    for t in range(T):
        w = stream[t, :, 0].max() - stream[t, :, 0].min()
        h = stream[t, :, 1].max() - stream[t, :, 1].min()
        value_scale = 1.0 / ((w + h) / 2.0)
        for i in range(N):
            for c in range(2):
                v = stream[t, i, c]
                dv = 0.0 if last_raw[i][c] is None else (v - last_raw[i][c]) * value_scale * fps
                a_d = alpha(d_cutoff)
                edv = dv if dx_state[i][c] is None else a_d * dv + (1 - a_d) * dx_state[i][c]
                dx_state[i][c] = edv
                a = alpha(min_cutoff + beta * abs(edv))
                y = v if x_state[i][c] is None else a * v + (1 - a) * x_state[i][c]
                x_state[i][c], last_raw[i][c] = y, v
                out[t, i, c] = y
    return out


def test_one_euro_mediapipe_preset_matches_mediapipes_apply():
    f = F.make_filter("one-euro-mediapipe")
    assert (f.min_cutoff, f.beta, f.d_cutoff, f.fps) == (0.05, 80.0, 1.0, 30.0)
    assert (F.OneEuro().min_cutoff, F.OneEuro().beta, F.OneEuro().d_cutoff) == (1.0, 0.0, 1.0)
    stream = _face_stream(T=30, seed=6)
    assert np.allclose(f.apply(stream), _mediapipe_reference(stream), rtol=0, atol=TOL)
    # the same numbers without object scaling (speeds in px/s) would barely filter at all
    unscaled = F.OneEuro(0.05, 80.0, 1.0, 30.0, derivative="raw").apply(stream)
    assert np.abs(unscaled - _mediapipe_reference(stream)).max() > 1e-3


# ----------------------------------------------------------------------------- Kalman
def test_kalman_converges_to_a_noiseless_constant_velocity_stream():
    rng = np.random.default_rng(7)
    T = 150
    x0, v = rng.uniform(50, 250, size=(68, 2)), rng.uniform(-4, 4, size=(68, 2))
    stream = x0[None] + v[None] * np.arange(T)[:, None, None]
    err = np.abs(F.Kalman().apply(stream) - stream).reshape(T, -1).max(axis=1)
    assert err[0] == 0  # the first frame initialises the state
    assert err[5] > 1e-3  # it does not know the velocity at first ...
    assert err[-1] < 1e-6 and np.all(err[-20:] < 1e-5)  # ... and the CV model is exact on a ramp


def _kalman_naive(z, q, r, v0):
    """A textbook constant-velocity Kalman filter for one scalar signal, with explicit matrices."""
    Fm = np.array([[1.0, 1.0], [0.0, 1.0]])
    G = np.array([[0.5], [1.0]])
    Q = G @ G.T * q * q
    H = np.array([[1.0, 0.0]])
    R = np.array([[r * r]])
    s = np.array([[z[0]], [0.0]])
    P = np.diag([r * r, v0 * v0])
    out = [z[0]]
    for zt in z[1:]:
        s = Fm @ s
        P = Fm @ P @ Fm.T + Q
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
        s = s + K @ (np.array([[zt]]) - H @ s)
        P = (np.eye(2) - K @ H) @ P
        out.append(s[0, 0])
    return np.array(out)


@pytest.mark.parametrize(("q", "r"), [(0.5, 2.0), (2.0, 0.5), (0.0, 1.0)])
def test_kalman_matches_a_naive_matrix_implementation(q, r):
    stream = _face_stream(T=40, seed=8)[:, :3]
    ours = F.Kalman(process_std=q, measurement_std=r, initial_velocity_std=10.0).apply(stream)
    flat = stream.reshape(40, -1)
    ref = np.stack([_kalman_naive(flat[:, i], q, r, 10.0) for i in range(flat.shape[1])], axis=1)
    assert np.allclose(ours.reshape(40, -1), ref, rtol=0, atol=1e-8)


def test_kalman_smooths_measurement_noise():
    rng = np.random.default_rng(9)
    truth = np.full((400, 68, 2), 120.0)
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    rms_in = np.sqrt(np.mean((noisy[100:] - truth[100:]) ** 2))
    f = F.Kalman()
    out = np.stack([f.step(x) for x in noisy])
    rms_out = np.sqrt(np.mean((out[100:] - truth[100:]) ** 2))
    # The steady-state posterior variance P[0, 0] is the filter's MSE when the truth accelerates with std q; a
    # still truth has no acceleration, so the measured MSE must be below it (here ~1.68 < 2.02 px^2).
    assert rms_out ** 2 < f._P[0, 0] < 2.0 ** 2
    assert rms_out < 0.7 * rms_in


# ----------------------------------------------------------------------------- lost frames
@pytest.mark.parametrize("name", NAMES)
def test_a_lost_frame_gives_nan_there_and_the_runs_are_filtered_independently(name):
    stream = _face_stream(T=40, seed=10)
    lost = [10, 20, 21, 22]
    with_nan = stream.copy()
    with_nan[10, 3, 0] = np.nan  # one coordinate missing loses the frame
    with_nan[20:23] = np.nan
    f = F.make_filter(name)
    out = f.apply(with_nan)
    assert np.isnan(out[lost]).all()
    keep = [t for t in range(40) if t not in lost]
    assert np.isfinite(out[keep]).all()  # nothing poisoned
    for a, b in ((0, 10), (11, 20), (23, 40)):  # each finite run as its own stream
        assert np.allclose(out[a:b], f.apply(stream[a:b]), rtol=0, atol=TOL)


@pytest.mark.parametrize("name", CAUSAL)
def test_step_after_a_lost_frame_restarts(name):
    stream = _face_stream(T=10, seed=11)
    f = F.make_filter(name)
    for x in stream[:5]:
        f.step(x)
    assert np.isnan(f.step(np.full((68, 2), np.nan))).all()
    y = f.step(stream[5])
    assert np.allclose(y, stream[5])  # a fresh start outputs the first frame as it is


# ----------------------------------------------------------------------------- registry and bad input
def test_registry_names_and_fresh_instances():
    assert list(F.FILTERS) == NAMES
    stream = _face_stream(T=12, seed=13)
    for name in NAMES:
        a, b = F.make_filter(name), F.FILTERS[name]
        assert a is not b and type(a) is type(b) and a is not F.make_filter(name)
        assert isinstance(b, F.Filter) and callable(b)
        assert np.allclose(b(stream), a.apply(stream), rtol=0, atol=TOL)  # the default instance is callable
        if a.causal:
            assert callable(a.step) and callable(a.reset)
    assert F.make_filter("centred", n_pre=2).n_pre == 2
    assert F.make_filter("one-euro-mediapipe", fps=60).fps == 60.0
    assert "n_pre" in inspect.signature(F.CentredAverage).parameters


def test_apply_does_not_disturb_streaming_state():
    stream = _face_stream(T=10, seed=12)
    f = F.Kalman()
    first = [f.step(x) for x in stream[:5]]
    f.apply(stream[::-1])
    g = F.Kalman()
    ref = [g.step(x) for x in stream[:6]]
    assert np.allclose(f.step(stream[5]), ref[5]) and np.allclose(first, ref[:5])


BAD_FILTER_ARGS = [
    (("kalmann",), {}, "unknown filter 'kalmann'"),
    (("",), {}, "valid filters: none, centred, moving, one-euro, one-euro-mediapipe, kalman"),
    (("moving",), {"window": 3}, "has no parameter 'window'"),
    (("none",), {"n": 3}, "has no parameter 'n'"),
    (("moving",), {"n": 0}, "n must be an integer >= 1"),
    (("moving",), {"n": 2.5}, "n must be an integer >= 1"),
    (("moving",), {"n": True}, "n must be an integer >= 1"),
    (("centred",), {"n_pre": -1}, "n_pre must be an integer >= 0"),
    (("centred",), {"n_next": "1"}, "n_next must be an integer >= 0"),
    (("one-euro",), {"min_cutoff": 0}, "min_cutoff must be a finite number > 0"),
    (("one-euro",), {"beta": -1.0}, "beta must be a finite number >= 0"),
    (("one-euro",), {"fps": float("nan")}, "fps must be a finite number > 0"),
    (("one-euro",), {"derivative": "smooth"}, "derivative must be 'filtered' or 'raw'"),
    (("one-euro-mediapipe",), {"value_scale": "face"}, "value_scale must be 'none' or 'object'"),
    (("kalman",), {"measurement_std": 0.0}, "measurement_std must be a finite number > 0"),
    (("kalman",), {"process_std": float("inf")}, "process_std must be a finite number >= 0"),
]


@pytest.mark.parametrize(("args", "kwargs", "phrase"), BAD_FILTER_ARGS)
def test_make_filter_bad_arguments(args, kwargs, phrase):
    with pytest.raises(UsageError) as e:
        F.make_filter(*args, **kwargs)
    assert phrase in str(e.value)


def test_bad_streams():
    f = F.MovingAverage(2)
    f.step(np.zeros((68, 2)))
    with pytest.raises(DataError, match=r"frame shape \(67, 2\) differs"):
        f.step(np.zeros((67, 2)))
    with pytest.raises(DataError, match="numeric array"):
        F.Kalman().apply("not a stream")
    with pytest.raises(DataError, match="a frame must be a numeric array"):
        F.Kalman().step("x")
    with pytest.raises(DataError, match="frame axis"):
        F.CentredAverage().apply(3.0)
    with pytest.raises(DataError, match=r"needs frames of shape \(N, D >= 2\)"):
        F.make_filter("one-euro-mediapipe").apply(np.zeros(5))
    assert F.Kalman().apply(np.zeros((0, 68, 2))).shape == (0, 68, 2)
    assert F.CentredAverage().apply(np.zeros((0, 68, 2))).shape == (0, 68, 2)
