"""Stabilisers for landmark streams: the baselines the paper argues against (the reproduction page, claims 2-3).

Every filter works on any stream of shape ``(T, ...)`` -- e.g. ``(T, 68, 2)`` landmarks in image pixels,
``(T, N, 3)`` vertices, or ``(T,)`` scalars -- in any units, and filters every coordinate independently.

* :class:`CentredAverage` -- mean of frames ``t-n_pre .. t+n_next`` (non-causal, look-ahead ``n_next``).
* :class:`MovingAverage` -- mean of the last ``n`` frames (causal).
* :class:`OneEuro` -- Casiez et al. 2012's adaptive low-pass filter (causal), with the paper's defaults and
  MediaPipe's face-landmark preset.
* :class:`Kalman` -- constant-velocity Kalman filter per coordinate (causal).
* :class:`Identity` -- no filtering (``"none"``).

``lookahead`` (an int attribute on every filter) is the number of *future* frames an output depends on, i.e.
the frames of latency a live system must wait before it can show frame ``t``: 0 for causal filters.
Causal filters also have ``step(x_t) -> y_t`` (one frame at a time) and ``reset()``; every filter has
``apply(stream) -> array``, which never touches the instance's streaming state.

Lost frames. A frame with any non-finite value (NaN: a lost detection) gives an all-NaN output frame, and it
splits the stream: each finite run between lost frames is filtered exactly as if it were a stream of its own
(causal filters ``reset()`` on a lost frame; the centred average truncates its window at a lost frame as it
does at the ends). So a NaN never reaches the filter state, and after a loss the filter restarts from the next
detection instead of blending it with where the face was before.

``FILTERS`` maps each name to a default instance (callable: ``FILTERS[name](stream)`` = ``apply``);
:func:`make_filter` builds a fresh one by name with parameters (unknown names or parameters raise
:class:`tdd_lite.errors.UsageError`).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from tdd_lite.errors import DataError, UsageError

__all__ = ["FILTERS", "CentredAverage", "Filter", "Identity", "Kalman", "MovingAverage", "OneEuro",
           "make_filter"]


# ----------------------------------------------------------------------------- parameter checks
def _int_param(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise UsageError(f"filter parameter {name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _float_param(name: str, value: Any, positive: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
    v = float(value) if ok else math.nan
    if not (ok and math.isfinite(v) and (v > 0 if positive else v >= 0)):
        raise UsageError(f"filter parameter {name} must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")
    return v


def _as_float(x: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what} must be a numeric array, got {type(x).__name__} ({e})") from e


def _as_stream(stream: Any) -> np.ndarray:
    x = _as_float(stream, "landmark stream (T, ...)")
    if x.ndim < 1:
        raise DataError("landmark stream must have shape (T, ...) with a frame axis first, got a scalar")
    return x


def _lost(frame: np.ndarray) -> bool:
    return not np.isfinite(frame).all()


# ----------------------------------------------------------------------------- base classes
class Filter:
    """Base class: ``apply(stream)`` on a whole ``(T, ...)`` array; ``lookahead`` frames of latency."""

    name: str = "filter"
    lookahead: int = 0
    causal: bool = True

    def apply(self, stream: Any) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, stream: Any) -> np.ndarray:
        """Same as :meth:`apply`."""
        return self.apply(stream)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={getattr(self, k)!r}" for k in inspect.signature(type(self)).parameters)
        return f"{type(self).__name__}({params})"


class CausalFilter(Filter):
    """A filter whose output at ``t`` depends on frames ``<= t`` only (``lookahead = 0``).

    Subclasses implement ``_reset()`` and ``_step(x)`` for a finite frame; this class handles the frame shape,
    lost (non-finite) frames and ``apply``.
    """

    lookahead = 0
    causal = True

    def __init__(self) -> None:
        self._shape: tuple[int, ...] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next frame is treated as the first of a new stream (the frame shape too)."""
        self._shape = None
        self._reset()

    def step(self, x_t: Any) -> np.ndarray:
        """Filter one frame; returns the output for this frame (a new float64 array of the same shape).

        A frame with any non-finite value returns all-NaN and resets the filter (see the module docstring).
        """
        x = _as_float(x_t, "a frame")
        if self._shape is not None and x.shape != self._shape:
            raise DataError(f"{self.name}: frame shape {x.shape} differs from the stream's {self._shape} "
                            "(call reset() to start a new stream)")
        if _lost(x):
            shape = self._shape if self._shape is not None else x.shape
            self.reset()
            return np.full(shape, np.nan)
        first = self._shape is None
        self._shape = x.shape
        return self._step(x.copy(), first)

    def apply(self, stream: Any) -> np.ndarray:
        """Filter a whole ``(T, ...)`` stream frame by frame with a fresh copy of this filter."""
        x = _as_stream(stream)
        f = copy.deepcopy(self)
        f.reset()
        out = np.empty_like(x)
        for t in range(x.shape[0]):
            out[t] = f.step(x[t])
        return out

    def _reset(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _step(self, x: np.ndarray, first: bool) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


# ----------------------------------------------------------------------------- the filters
class Identity(CausalFilter):
    """No filtering: ``y_t = x_t``. Look-ahead: 0 frames (causal)."""

    name = "none"

    def _reset(self) -> None:
        pass

    def _step(self, x: np.ndarray, first: bool) -> np.ndarray:
        return x


class CentredAverage(Filter):
    """Centred (local) average: ``y_t = mean(x_{t-n_pre}, ..., x_{t+n_next})``, the window truncated at the
    ends of the stream and at lost frames.

    Look-ahead: ``n_next`` frames (non-causal: frame ``t`` can only be output once frame ``t + n_next`` is in).
    3DDFA_V2's ``demo_video_smooth.py`` averages vertices with ``n_pre = n_next = 1``. A single outlier at
    frame ``j`` moves every output ``j - n_next .. j + n_pre`` by ``outlier / window`` (where the window is
    not truncated): the error spreading the paper criticises. Only :meth:`apply` (no ``step``).
    """

    name = "centred"
    causal = False

    def __init__(self, n_pre: int = 1, n_next: int = 1):
        self.n_pre = _int_param("n_pre", n_pre, 0)
        self.n_next = _int_param("n_next", n_next, 0)
        self.lookahead = self.n_next

    def apply(self, stream: Any) -> np.ndarray:
        x = _as_stream(stream)
        out = np.full_like(x, np.nan)
        if x.shape[0] == 0:
            return out
        good = np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        t = 0
        while t < len(good):  # each finite run on its own
            if not good[t]:
                t += 1
                continue
            end = t
            while end < len(good) and good[end]:
                end += 1
            run = x[t:end]
            csum = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(run, axis=0)])
            idx = np.arange(end - t)
            lo = np.maximum(idx - self.n_pre, 0)
            hi = np.minimum(idx + self.n_next + 1, end - t)
            count = (hi - lo).reshape((-1,) + (1,) * (x.ndim - 1))
            out[t:end] = (csum[hi] - csum[lo]) / count
            t = end
        return out


class MovingAverage(CausalFilter):
    """Causal moving average: ``y_t = mean(x_{t-n+1}, ..., x_t)`` (fewer frames at the start of a stream).

    Look-ahead: 0 frames (causal); its delay shows up as lag instead, ``(n - 1) / 2`` frames on a ramp.
    """

    name = "moving"

    def __init__(self, n: int = 3):
        self.n = _int_param("n", n, 1)
        super().__init__()

    def _reset(self) -> None:
        self._window: deque[np.ndarray] = deque(maxlen=self.n)

    def _step(self, x: np.ndarray, first: bool) -> np.ndarray:
        self._window.append(x)
        return np.mean(np.stack(self._window), axis=0)


class OneEuro(CausalFilter):
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012), per coordinate, at a fixed frame rate.

    Look-ahead: 0 frames (causal). With ``Te = 1 / fps`` and ``alpha(fc) = 1 / (1 + tau / Te)``,
    ``tau = 1 / (2 pi fc)``, for each new value ``x``::

        dx   = 0 on the first frame, else (x - prev) * fps * value_scale      # speed, units/s
        edx  = low-pass(dx, alpha(d_cutoff))                                  # the derivative filter
        fc   = min_cutoff + beta * |edx|
        y    = low-pass(x, alpha(fc))                                         # first frame: y = x

    ``derivative="filtered"`` (the paper's pseudo-code): ``prev`` is the previous *filtered* value.
    ``derivative="raw"`` (MediaPipe's ``one_euro_filter.cc``): ``prev`` is the previous *raw* value.
    ``value_scale="none"`` uses ``value_scale = 1`` (speeds in the stream's units/s); ``"object"`` uses
    MediaPipe's ``1 / object_scale`` with ``object_scale = (w + h) / 2`` of the frame's points' axis-aligned box
    (frames of shape ``(N, D >= 2)``; speeds in face sizes/s), and passes a frame through unfiltered when that
    scale is below 1e-6, as MediaPipe does. ``beta`` is only meaningful together with that choice: MediaPipe's
    ``beta = 80`` is per face size/s, so :func:`one_euro_mediapipe` uses ``"raw"`` and ``"object"``.

    Presets: ``OneEuro()`` = the paper's defaults ``(min_cutoff=1.0, beta=0.0, d_cutoff=1.0)``; with
    ``beta = 0`` it is a fixed exponential smoother with ``alpha = 1 / (1 + 30 / (2 pi)) ~= 0.173`` at 30 fps.
    """

    name = "one-euro"

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0, fps: float = 30.0,
                 derivative: str = "filtered", value_scale: str = "none"):
        self.min_cutoff = _float_param("min_cutoff", min_cutoff, positive=True)
        self.beta = _float_param("beta", beta, positive=False)
        self.d_cutoff = _float_param("d_cutoff", d_cutoff, positive=True)
        self.fps = _float_param("fps", fps, positive=True)
        if derivative not in ("filtered", "raw"):
            raise UsageError(f"filter parameter derivative must be 'filtered' or 'raw', got {derivative!r}")
        if value_scale not in ("none", "object"):
            raise UsageError(f"filter parameter value_scale must be 'none' or 'object', got {value_scale!r}")
        self.derivative, self.value_scale = derivative, value_scale
        super().__init__()

    def alpha(self, cutoff: Any) -> Any:
        """Smoothing factor of the first-order low-pass at cut-off ``cutoff`` Hz: ``1 / (1 + tau / Te)``."""
        tau = 1.0 / (2.0 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * self.fps)

    def _reset(self) -> None:
        self._y: np.ndarray | None = None  # previous filtered value
        self._x: np.ndarray | None = None  # previous raw value
        self._edx: np.ndarray | None = None  # previous filtered derivative

    def _scale(self, x: np.ndarray) -> float | None:
        if self.value_scale == "none":
            return 1.0
        if x.ndim != 2 or x.shape[1] < 2:
            raise DataError(f"{self.name}: value_scale='object' needs frames of shape (N, D >= 2), got {x.shape}")
        ext = x[:, :2].max(axis=0) - x[:, :2].min(axis=0)
        obj = float(ext.sum() / 2.0)
        return None if obj < 1e-6 else 1.0 / obj

    def _step(self, x: np.ndarray, first: bool) -> np.ndarray:
        scale = self._scale(x)
        if scale is None:  # MediaPipe: object too small, return the value as is (the state is left unchanged)
            return x
        if self._y is None:
            dx = np.zeros_like(x)
        else:
            prev = self._y if self.derivative == "filtered" else self._x
            dx = (x - prev) * self.fps * scale
        a_d = self.alpha(self.d_cutoff)
        edx = dx if self._edx is None else a_d * dx + (1.0 - a_d) * self._edx
        a = self.alpha(self.min_cutoff + self.beta * np.abs(edx))
        y = x if self._y is None else a * x + (1.0 - a) * self._y
        self._edx, self._x, self._y = edx, x, y
        return y.copy()


def one_euro_mediapipe(**params: Any) -> OneEuro:
    """MediaPipe's face-landmark One Euro setting: ``min_cutoff=0.05, beta=80, d_cutoff=1.0`` at 30 fps, with
    MediaPipe's raw-value derivative and object-size value scaling (``derivative="raw"``,
    ``value_scale="object"``). Look-ahead: 0 frames (causal)."""
    kw = {"min_cutoff": 0.05, "beta": 80.0, "d_cutoff": 1.0, "fps": 30.0, "derivative": "raw",
          "value_scale": "object"}
    kw.update(params)
    f = OneEuro(**kw)
    f.name = "one-euro-mediapipe"
    return f


class Kalman(CausalFilter):
    """Constant-velocity Kalman filter, one per coordinate (all coordinates share the covariance). Causal.

    Look-ahead: 0 frames (causal). Time step: one frame. State ``[position, velocity]`` (units, units/frame)::

        predict:  s <- F s,  P <- F P F^T + Q,   F = [[1, 1], [0, 1]],  Q = q^2 [[1/4, 1/2], [1/2, 1]]
        update:   K = P H^T / (H P H^T + r^2),  s <- s + K (x - H s),  P <- (I - K H) P,   H = [1, 0]

    * ``process_std`` = ``q``: standard deviation of the unmodelled acceleration per frame (units/frame^2, the
      discrete white-noise-acceleration model): how fast the true motion may change. Larger = follows faster,
      smooths less.
    * ``measurement_std`` = ``r``: standard deviation of the measurement noise (units): how much a detection
      jitters. Larger = smooths more, lags more.
    * ``initial_velocity_std``: prior std of the velocity on the first frame (units/frame).

    Defaults (0.5 px/frame^2, 2 px, 10 px/frame) are for landmarks in image pixels of a face ~150-250 px
    across at 30 fps; scale all three with the face size for other units. The first frame of a stream (and
    after a lost frame) initialises ``position = x, velocity = 0`` and is output unchanged. On a noiseless
    constant-velocity stream the output converges to the input exactly (the model is exact there).
    """

    name = "kalman"

    def __init__(self, process_std: float = 0.5, measurement_std: float = 2.0, initial_velocity_std: float = 10.0):
        self.process_std = _float_param("process_std", process_std, positive=False)
        self.measurement_std = _float_param("measurement_std", measurement_std, positive=True)
        self.initial_velocity_std = _float_param("initial_velocity_std", initial_velocity_std, positive=False)
        q2 = self.process_std ** 2
        self._F = np.array([[1.0, 1.0], [0.0, 1.0]])
        self._Q = q2 * np.array([[0.25, 0.5], [0.5, 1.0]])
        super().__init__()

    def _reset(self) -> None:
        self._pos: np.ndarray | None = None
        self._vel: np.ndarray | None = None
        self._P = np.diag([self.measurement_std ** 2, self.initial_velocity_std ** 2])

    def _step(self, x: np.ndarray, first: bool) -> np.ndarray:
        if self._pos is None:
            self._pos, self._vel = x.copy(), np.zeros_like(x)
            return x
        pos, vel = self._pos + self._vel, self._vel  # predict (F s)
        P = self._F @ self._P @ self._F.T + self._Q
        k = P[:, 0] / (P[0, 0] + self.measurement_std ** 2)  # gain (2,)
        innov = x - pos
        self._pos, self._vel = pos + k[0] * innov, vel + k[1] * innov
        self._P = P - np.outer(k, P[0, :])  # (I - K H) P
        return self._pos.copy()


# ----------------------------------------------------------------------------- registry
_FACTORIES: dict[str, Callable[..., Filter]] = {
    "none": Identity,
    "centred": CentredAverage,
    "moving": MovingAverage,
    "one-euro": OneEuro,
    "one-euro-mediapipe": one_euro_mediapipe,
    "kalman": Kalman,
}

FILTERS: dict[str, Filter] = {name: factory() for name, factory in _FACTORIES.items()}
"""Default instances by name. They are callable (``FILTERS["kalman"](stream)`` is ``.apply(stream)``, which
works on a copy, so sharing them is safe); for ``step()`` or other parameters use :func:`make_filter`."""


def _param_names(name: str) -> list[str]:
    factory = OneEuro if name == "one-euro-mediapipe" else _FACTORIES[name]
    return [p for p in inspect.signature(factory).parameters if p not in ("self", "params")]


def make_filter(name: str, **params: Any) -> Filter:
    """A fresh filter by registry name, e.g. ``make_filter("kalman", measurement_std=3.0)``.

    Raises :class:`UsageError` for an unknown name (listing the valid ones) or parameter, or a bad value.
    """
    if name not in _FACTORIES:
        raise UsageError(f"unknown filter {name!r}; valid filters: {', '.join(_FACTORIES)}")
    valid = _param_names(name)
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise UsageError(f"filter {name!r} has no parameter {unknown[0]!r}; its parameters: "
                         f"{', '.join(valid) or '(none)'}")
    return _FACTORIES[name](**params)
