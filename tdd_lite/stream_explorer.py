"""A frame slider comparing landmark streams on one video (raw tracking against stabilisers), headless-testable.

:class:`StreamExplorer` draws frame ``k`` cropped around the face with every stream's 68 landmarks in its own
colour and the ground truth, and a readout of each stream's NME at that frame and its motion since the previous
frame. Setting ``explorer.slider.value`` (by hand or in code) redraws; ``last_image`` and ``last_errors`` hold what
is shown. In a notebook: ``display(explorer.widget)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from tdd_lite import style
from tdd_lite.data.crops import box_from_landmarks, crop_image, to_crop
from tdd_lite.metrics import frame_nme
from tdd_lite.widgets import fixed_image, ipywidgets, live_note, png_bytes

# (colour, marker) of the streams, in the course's style (tdd_lite.style): the raw tracking is the prediction
# (vermillion crosses), the centred average the stabilised estimate (bluish-green triangles), the truth blue filled
# circles, drawn last, on top; the other streams each have an Okabe-Ito colour and a marker of their own
STREAM_STYLES = {"tracking": (style.PREDICTION_COLOUR, "x"), "tracking + centred": (style.STABILISED_COLOUR, "^"),
                 "tracking + one-euro": (style.EXTRA_COLOURS[0], "s"),
                 "tracking + one-euro-mediapipe": (style.EXTRA_COLOURS[1], "D"),
                 "tracking + kalman": (style.EXTRA_COLOURS[2], "v"), "GT crops": (style.EXTRA_COLOURS[3], "P"),
                 "truth": (style.TRUTH_COLOUR, "o")}
COLOURS = {name: style.rgb(c) for name, (c, _) in STREAM_STYLES.items()}
# the readout's symbol for each marker (HTML entities)
_SYMBOLS = {"o": "&#9679;", "x": "&#10005;", "^": "&#9650;", "s": "&#9632;", "D": "&#9670;", "v": "&#9660;",
            "P": "&#10010;"}
_FALLBACK = [("#FFFFFF", "s"), ("#000000", "D"), (style.OKABE_ITO["orange"], "v")]


class StreamExplorer:
    """``frame(k) -> RGB image`` (or a list of frames), ``streams`` name -> (T, 68, 2) pixels, ``gt`` (T, 68, 2)."""

    def __init__(self, frame: Callable[[int], np.ndarray] | list[np.ndarray], streams: Mapping[str, np.ndarray],
                 gt: np.ndarray, size: int = 320, start: int = 0):
        w = ipywidgets()

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
        return style.rgb(STREAM_STYLES.get(name, _FALLBACK[i % len(_FALLBACK)])[0])

    def marker(self, name: str, i: int) -> str:
        return STREAM_STYLES.get(name, _FALLBACK[i % len(_FALLBACK)])[1]

    def update(self, change=None) -> None:
        k = int(self.slider.value)
        img = crop_image(self._frame(k), self.box, self.size)
        layers = list(self.streams.items()) + [("truth", self.gt)]
        rows = []
        for i, (name, s) in enumerate(layers):
            p = to_crop(s[k], self.box) * self.size
            col, marker = self.colour(name, i), self.marker(name, i)
            for x, y in p:
                style.draw_marker(img, x, y, marker, col, size=5)
            if name != "truth":
                e = float(frame_nme(s[k:k + 1], self.gt[k:k + 1])[0])
                move = float(np.linalg.norm(s[k] - s[k - 1], axis=1).mean()) if k > 0 else float("nan")
                self.last_errors[name] = e
                hexcol = "#" + "".join(f"{v:02x}" for v in col)
                rows.append(f"<tr><td style='color:{hexcol}'>{_SYMBOLS.get(marker, '&#9679;')} {name}</td>"
                            f"<td>{100 * e:.2f}%</td>"
                            f"<td>{move:.2f} px</td></tr>")
        true_move = float(np.linalg.norm(self.gt[k] - self.gt[k - 1], axis=1).mean()) if k > 0 else float("nan")
        self.readout.value = ("<table><tr><th>stream</th><th>NME</th><th>moved</th></tr>" + "".join(rows)
                              + f"<tr><td style='color:{style.TRUTH_COLOUR}'>&#9679; truth</td><td></td>"
                                f"<td>{true_move:.2f} px</td></tr></table>")
        self.last_image = img
        self.image.value = png_bytes(img)
        self.renders += 1
