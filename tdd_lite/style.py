"""The course's one plotting style: truth, prediction and stabilised estimates told apart by colour AND marker.

Colours are from the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), chosen to stay distinct for
the common colour-vision deficiencies (deuteranopia, protanopia); the markers differ as well, so a figure still
reads in grey scale or for a reader who cannot tell the colours apart at all::

    truth (U)          filled circles   blue            #0072B2
    prediction (v)     crosses          vermillion      #D55E00
    stabilised         triangles        bluish green    #009E73

Every notebook and library figure that shows truth against prediction uses this module::

    from tdd_lite import style
    style.truth(ax, U)                       # ax.plot(*U.T, **style.TRUTH)
    style.prediction(ax, v)
    ax.quiver(..., color=style.REAL)         # a real displacement (from the truth) / a fake one (from v)

``rgb(name)`` gives a colour as an 8-bit RGB tuple for images drawn with OpenCV, and :func:`draw_marker` draws the
same marker shapes into an image.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# the Okabe-Ito palette (hex), by its names
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}

TRUTH_COLOUR = OKABE_ITO["blue"]
PREDICTION_COLOUR = OKABE_ITO["vermillion"]
STABILISED_COLOUR = OKABE_ITO["bluish green"]
# further estimates beside the three (other filters, ground-truth crops), each with its own marker
EXTRA_COLOURS = (OKABE_ITO["orange"], OKABE_ITO["reddish purple"], OKABE_ITO["sky blue"], OKABE_ITO["yellow"])
EXTRA_MARKERS = ("s", "D", "v", "P")

# real displacements start from the truth, fake ones from the prediction: the same colours
REAL = TRUTH_COLOUR
FAKE = PREDICTION_COLOUR

# keyword arguments for ax.plot(x, y, **TRUTH): marker, colour, no line
# a thin white edge keeps the blue dots visible on dark images
TRUTH: dict[str, Any] = {"marker": "o", "color": TRUTH_COLOUR, "ls": "", "ms": 3.5, "mec": "white", "mew": 0.4}
PREDICTION: dict[str, Any] = {"marker": "x", "color": PREDICTION_COLOUR, "ls": "", "ms": 4, "mew": 1.2}
STABILISED: dict[str, Any] = {"marker": "^", "color": STABILISED_COLOUR, "ls": "", "ms": 4, "mew": 0}

STYLES = {"truth": TRUTH, "prediction": PREDICTION, "stabilised": STABILISED}


# lines of the evaluated methods (CED curves, per-frame errors over time): colour AND dash pattern differ
METHOD_LINES: dict[str, tuple[str, Any]] = {
    "tracking": (PREDICTION_COLOUR, "-"),
    "tracking + centred": (STABILISED_COLOUR, "--"),
    "tracking + one-euro": (EXTRA_COLOURS[0], "-."),
    "tracking + one-euro-mediapipe": (EXTRA_COLOURS[1], (0, (6, 2, 1, 2, 1, 2))),
    "tracking + kalman": (EXTRA_COLOURS[2], ":"),
    "GT crops": (TRUTH_COLOUR, (0, (1, 1))),
}
_MORE_LINES = ((OKABE_ITO["black"], "-"), (OKABE_ITO["yellow"], "--"), ("#999999", "-."))


def method_line(name: str, i: int = 0) -> dict[str, Any]:
    """``color`` and ``ls`` for the curve of method ``name`` (the ``i``-th of its figure, for unknown names)."""
    colour, ls = METHOD_LINES.get(name, _MORE_LINES[i % len(_MORE_LINES)])
    return {"color": colour, "ls": ls}


def _plot(ax, points, base: dict, size: float | None, **kwargs):
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    kw = dict(base)
    if size is not None:
        kw["ms"] = size
    kw.update(kwargs)
    return ax.plot(pts[:, 0], pts[:, 1], **kw)


def truth(ax, points, size: float | None = None, label: str | None = "U (truth)", **kwargs):
    """Landmarks ``points`` (N, 2) as the truth: blue filled circles."""
    return _plot(ax, points, TRUTH, size, label=label, **kwargs)


def prediction(ax, points, size: float | None = None, label: str | None = "v (prediction)", **kwargs):
    """Landmarks ``points`` (N, 2) as a prediction: vermillion crosses."""
    return _plot(ax, points, PREDICTION, size, label=label, **kwargs)


def stabilised(ax, points, size: float | None = None, label: str | None = "stabilised", **kwargs):
    """Landmarks ``points`` (N, 2) as a stabilised (filtered) estimate: bluish-green triangles."""
    return _plot(ax, points, STABILISED, size, label=label, **kwargs)


def rgb(colour: str) -> tuple[int, int, int]:
    """A hex colour (``"#0072B2"``) or one of the names ``truth``, ``prediction``, ``stabilised`` as 8-bit RGB."""
    named = {"truth": TRUTH_COLOUR, "prediction": PREDICTION_COLOUR, "stabilised": STABILISED_COLOUR}
    h = named.get(colour, OKABE_ITO.get(colour, colour)).lstrip("#")
    if len(h) != 6:
        raise ValueError(f"not a colour: {colour!r} (expected '#rrggbb' or one of {sorted(named)})")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


# OpenCV's marker for each matplotlib marker used here (a filled circle has no cv2 marker: drawn with cv2.circle)
_CV2_MARKERS = {"x": "MARKER_TILTED_CROSS", "^": "MARKER_TRIANGLE_UP", "s": "MARKER_SQUARE", "D": "MARKER_DIAMOND",
                "v": "MARKER_TRIANGLE_DOWN", "P": "MARKER_CROSS"}


def draw_marker(image: np.ndarray, x: float, y: float, marker: str, colour: tuple[int, int, int],
                size: int = 5) -> None:
    """Draw one marker (matplotlib's name: ``o``, ``x``, ``^``, ``s``, ``D``, ``v``, ``P``) into an RGB ``image``
    in place, centred at pixel (x, y), about ``size`` pixels across."""
    if not (np.isfinite(x) and np.isfinite(y)):
        return
    if marker == "o":
        cv2.circle(image, (int(round(x * 16)), int(round(y * 16))), max(1, size // 2) * 16, colour, -1, cv2.LINE_AA,
                   shift=4)
        return
    cv2.drawMarker(image, (int(round(x)), int(round(y))), colour, getattr(cv2, _CV2_MARKERS[marker]), size, 1,
                   cv2.LINE_AA)
