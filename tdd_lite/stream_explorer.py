"""A frame slider comparing landmark streams on one video (raw tracking against stabilisers), headless-testable.

:class:`StreamExplorer` draws frame ``k`` cropped around the face with every stream's 68 landmarks in its own
colour and the ground truth, and a readout of each stream's NME at that frame and its motion since the previous
frame. Setting ``explorer.slider.value`` (by hand or in code) redraws; ``last_image`` and ``last_errors`` hold what
is shown. In a notebook: ``display(explorer.widget)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import cv2
import numpy as np

from tdd_lite.data.crops import box_from_landmarks, crop_image, to_crop
from tdd_lite.metrics import frame_nme
from tdd_lite.widgets import fixed_image, live_note, png_bytes

# RGB colours of the streams, in drawing order (the truth last, on top)
COLOURS = {"tracking": (255, 60, 60), "tracking + centred": (60, 140, 255), "tracking + one-euro": (255, 170, 0),
           "tracking + one-euro-mediapipe": (255, 120, 220), "tracking + kalman": (190, 90, 255),
           "GT crops": (0, 230, 230), "truth": (40, 220, 40)}
_FALLBACK = [(250, 250, 250), (120, 120, 120), (0, 120, 0)]


class StreamExplorer:
    """``frame(k) -> RGB image`` (or a list of frames), ``streams`` name -> (T, 68, 2) pixels, ``gt`` (T, 68, 2)."""

    def __init__(self, frame: Callable[[int], np.ndarray] | list[np.ndarray], streams: Mapping[str, np.ndarray],
                 gt: np.ndarray, size: int = 320, start: int = 0):
        import ipywidgets as w

        self._frame = frame if callable(frame) else frame.__getitem__
        self.gt = np.asarray(gt, np.float64)
        self.streams = {k: np.asarray(v, np.float64) for k, v in streams.items()}
        for name, s in self.streams.items():
            if s.shape != self.gt.shape:
                raise ValueError(f"stream {name!r} has shape {s.shape}, the truth {self.gt.shape}")
        self.size = int(size)
        T = len(self.gt)
        # one crop box for the whole video (the union of the truth's boxes), so motion is visible in the picture
        boxes = np.stack([box_from_landmarks(g, 1.6) for g in self.gt])
        c = (boxes[:, :2] + boxes[:, 2:]).mean(0) / 2
        side = float(np.max(boxes[:, 2:] - boxes[:, :2]) + np.ptp((boxes[:, :2] + boxes[:, 2:]) / 2, axis=0).max())
        self.box = np.array([c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2])
        self.slider = w.IntSlider(min(max(start, 0), T - 1), min=0, max=T - 1, description="frame",
                                  continuous_update=False)
        self.image = fixed_image(self.size, self.size)
        self.readout = w.HTML()
        self.widget = w.VBox([self.slider, w.HBox([self.image, self.readout],
                                                  layout=w.Layout(align_items="flex-start")), live_note()])
        self.last_image: np.ndarray | None = None
        self.last_errors: dict[str, float] = {}
        self.renders = 0
        self.slider.observe(self.update, names="value")
        self.update()

    def colour(self, name: str, i: int) -> tuple[int, int, int]:
        return COLOURS.get(name, _FALLBACK[i % len(_FALLBACK)])

    def update(self, change=None) -> None:
        k = int(self.slider.value)
        img = crop_image(self._frame(k), self.box, self.size)
        layers = list(self.streams.items()) + [("truth", self.gt)]
        rows = []
        for i, (name, s) in enumerate(layers):
            p = to_crop(s[k], self.box) * self.size
            col = self.colour(name, i)
            for x, y in p:
                if np.isfinite(x) and np.isfinite(y):
                    cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), 2 * 16, col, -1, cv2.LINE_AA, shift=4)
            if name != "truth":
                e = float(frame_nme(s[k:k + 1], self.gt[k:k + 1])[0])
                move = float(np.linalg.norm(s[k] - s[k - 1], axis=1).mean()) if k > 0 else float("nan")
                self.last_errors[name] = e
                hexcol = "#" + "".join(f"{v:02x}" for v in col)
                rows.append(f"<tr><td style='color:{hexcol}'>&#9679; {name}</td><td>{100 * e:.2f}%</td>"
                            f"<td>{move:.2f} px</td></tr>")
        true_move = float(np.linalg.norm(self.gt[k] - self.gt[k - 1], axis=1).mean()) if k > 0 else float("nan")
        self.readout.value = ("<table><tr><th>stream</th><th>NME</th><th>moved</th></tr>" + "".join(rows)
                              + f"<tr><td style='color:#28dc28'>&#9679; truth</td><td></td>"
                                f"<td>{true_move:.2f} px</td></tr></table>")
        self.last_image = img
        self.image.value = png_bytes(img)
        self.renders += 1
