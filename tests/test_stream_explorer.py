"""StreamExplorer: headless, the slider redraws, the readout is each stream's NME at that frame."""

import numpy as np
import pytest

from tdd_lite.metrics import frame_nme
from tdd_lite.stream_explorer import StreamExplorer


def _stream(T=20):
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    face = np.stack([100 + 30 * np.cos(t), 90 + 36 * np.sin(t)], 1)
    return np.stack([face + [2.0 * k, 0.0] for k in range(T)])


def test_slider_redraws_and_reports_each_streams_error():
    gt = _stream()
    rng = np.random.default_rng(0)
    raw = gt + rng.normal(0, 2, gt.shape)
    frames = [np.full((180, 240, 3), 40 + 5 * k, np.uint8) for k in range(20)]
    ex = StreamExplorer(frames, {"tracking": raw, "tracking + kalman": gt + 1.0}, gt, size=160)
    assert ex.last_image.shape == (160, 160, 3) and ex.renders == 1
    first = ex.last_image.copy()
    ex.slider.value = 7
    assert ex.renders == 2 and not np.array_equal(ex.last_image, first)
    assert ex.last_errors["tracking"] == pytest.approx(float(frame_nme(raw[7:8], gt[7:8])[0]))
    assert ex.last_errors["tracking + kalman"] == pytest.approx(float(frame_nme(gt[7:8] + 1.0, gt[7:8])[0]))
    assert "tracking + kalman" in ex.readout.value and "%" in ex.readout.value
    # the truth is drawn in the course's truth colour (Okabe-Ito blue) where it is: the pixel under its first
    # landmark is blue-dominant
    x, y = ((gt[7, 0] - ex.box[:2]) / (ex.box[2:] - ex.box[:2]) * 160).astype(int)
    r, g, b = ex.last_image[y, x].astype(int)
    assert b > 150 and b > r and b > g
    with pytest.raises(ValueError, match="shape"):
        StreamExplorer(frames, {"bad": raw[:5]}, gt)
