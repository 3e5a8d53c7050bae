"""Figures shared by the notebooks and the README (matplotlib only)."""

from __future__ import annotations

import math
import re
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from tdd_lite import style

# (key, label, x, y, colour) of each box in the pipeline figure; coordinates in a 0..16 x 0..10 canvas. The labels
# are short so that the text stays readable (>= 10 px) when the figure is shown at a book page's width.
_PIPELINE_BOXES = [
    ("frames", "frames I (t), I' (t - k)\nk in 1..6", 1.9, 8.3, "#dde7f3"),
    ("crop", "crop 256 x 256 from\nthe previous box", 1.9, 5.6, "#dde7f3"),
    ("G", "G: ResNet-18\n512 -> 1025 -> 990 | 35\nFC 228, 228 | FC 16, 8", 5.9, 5.6, "#fde9c9"),
    ("alpha", "alpha_id (199)\nalpha_exp (29)", 9.9, 8.3, "#fde9c9"),
    ("cam", "camera p (8)\n[f P R | t]", 9.9, 5.6, "#fde9c9"),
    ("3dmm", "3DMM  S = S_bar\n+ A_id a_id + A_exp a_exp", 14.4, 8.3, "#e3f1dc"),
    ("proj", "project landmarks\nv, v_exp, v_id, v'", 14.4, 5.6, "#e3f1dc"),
    ("land", "L_land (eq. 1)\n||v(:,l) - U||", 14.4, 2.9, "#f7d9d9"),
    ("DID", "D_ID (eq. 4-6)\nU - v_exp | v - v_exp", 2.6, 1.0, "#e6dcf2"),
    ("DED", "D_ED (eq. 9-11)\nU - v_id | v - v_id", 6.6, 1.0, "#e6dcf2"),
    ("DTD", "D_TD (eq. 12-14)\nU - U' | v - v'", 10.6, 1.0, "#e6dcf2"),
]
_PIPELINE_WIDTHS = {"G": 3.7, "crop": 3.3, "frames": 3.3, "3dmm": 4.0, "alpha": 3.0, "cam": 3.0, "DID": 3.7,
                    "DED": 3.7, "DTD": 3.7}
_PIPELINE_ARROWS = [("frames", "crop"), ("crop", "G"), ("G", "alpha"), ("G", "cam"), ("alpha", "3dmm"),
                    ("3dmm", "proj"), ("cam", "proj"), ("proj", "land"), ("proj", "DID"), ("proj", "DED"),
                    ("proj", "DTD")]


def draw_pipeline(figsize: tuple[float, float] = (10.0, 6.6), fontsize: float = 10.5) -> Figure:
    """The paper's Figure 1/2 as one diagram: data -> G -> 3DMM + camera -> landmarks -> loss and discriminators.

    At the default size the figure is 1000 px wide at 100 dpi; shown at a book page's width (~750 px) its
    labels stay near 10 px high."""
    fig, ax = plt.subplots(figsize=figsize)
    ax.set_xlim(-0.2, 16.6)
    ax.set_ylim(-0.6, 10.2)
    ax.axis("off")
    boxes = {}
    for key, label, x, y, colour in _PIPELINE_BOXES:
        lines = label.count("\n") + 1
        w = _PIPELINE_WIDTHS.get(key, 3.5)
        h = 0.55 * lines + 0.35
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.08",
                                    facecolor=colour, edgecolor="#444444", linewidth=1.0))
        ax.text(x, y, label, ha="center", va="center", fontsize=fontsize, gid=key, linespacing=1.25)
        boxes[key] = (x, y, w / 2 + 0.15, h / 2 + 0.15)
    for a, b in _PIPELINE_ARROWS:
        ax.add_patch(FancyArrowPatch(_edge(boxes[a], boxes[b]), _edge(boxes[b], boxes[a]), arrowstyle="-|>",
                                     mutation_scale=14, color="#555555", linewidth=1.1))
    ax.text(8.2, 9.95, "G minimises L_land + 0.1 (L_G,ID + L_G,ED + L_G,TD)  (eq. 19); D and G steps alternate",
            ha="center", fontsize=fontsize, style="italic")
    ax.text(6.6, -0.3, "each D: MLP 136 -> 256 -> 128 -> 64 -> 1 on a 68 x 2 displacement (real | fake)",
            ha="center", fontsize=fontsize - 1)
    fig.tight_layout()
    return fig


def _edge(src: tuple, dst: tuple) -> tuple[float, float]:
    """Where the segment from the centre of box ``src`` towards ``dst`` leaves ``src`` (boxes: x, y, half w, half h)."""
    (x, y, hw, hh), (x2, y2, _, _) = src, dst
    dx, dy = x2 - x, y2 - y
    t = min(hw / abs(dx) if dx else float("inf"), hh / abs(dy) if dy else float("inf"))
    return x + t * dx, y + t * dy


def pipeline_labels(fig: Figure) -> dict[str, str]:
    """The box labels of a :func:`draw_pipeline` figure, by key (lets a notebook assert what it drew)."""
    return {t.get_gid(): t.get_text() for t in fig.axes[0].texts if t.get_gid()}


# matplotlib's JS animation player links Font Awesome 4 from a CDN; the book must load nothing from another host,
# so the link is dropped and the icon names are mapped to Font Awesome 6, which the book's theme serves locally.
_FA4_TO_FA6 = {"fa-fast-backward": "fa-backward-fast", "fa-fast-forward": "fa-forward-fast",
               "fa-step-backward": "fa-backward-step", "fa-step-forward": "fa-forward-step"}


def animation_html(anim, **kwargs) -> str:
    """``anim.to_jshtml(**kwargs)`` without its CDN stylesheet link (offline book), icons renamed for Font Awesome 6."""
    html = re.sub(r"<link[^>]*href=\"https?://[^\"]*\"[^>]*>", "", anim.to_jshtml(**kwargs))
    for old, new in _FA4_TO_FA6.items():
        html = html.replace(old, new)
    return html


def panel_grid(n: int, width: float, row_height: float, extra_height: float = 0.0, ncols: int = 2,
               **subplots) -> tuple[Figure, np.ndarray, np.ndarray]:
    """``n`` panels, ``ncols`` a row (fewer when ``n`` is smaller), so labels stay readable at a book page's width:
    returns the figure, the ``(rows, cols)`` grid of axes and its first ``n`` axes, flat. Slots past ``n`` are
    hidden (a caller may show one again, e.g. for a legend: ``grid.ravel()[n]``). The figure is ``width`` wide and
    ``row_height`` per row plus ``extra_height`` (room for a legend) high; ``subplots`` go to ``plt.subplots``."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, row_height * nrows + extra_height), squeeze=False,
                             **subplots)
    for extra in grid.ravel()[n:]:
        extra.set_visible(False)
    return fig, grid, grid.ravel()[:n]


# the three discriminators' curves: colour AND dash pattern differ (Okabe-Ito; tdd_lite.style), the paper's names
CURVE_STYLES: dict[str, tuple[str, str, Any]] = {   # record key -> (label, colour, dash)
    "id": ("ID (identity)", style.OKABE_ITO["reddish purple"], "-"),
    "exp": ("ED (expression)", style.OKABE_ITO["orange"], "--"),
    "temporal": ("TD (temporal)", style.OKABE_ITO["bluish green"], "-."),
}


def plot_training_curves(records: list[dict], figsize: tuple[float, float] = (10.0, 7.0)) -> Figure:
    """Training curves from the records of a ``metrics.jsonl`` (``tdd_lite.train.read_metrics``), readable at a
    book page's width: 2 x 2 panels (landmark loss; the three D losses; the three G adversarial terms;
    validation NME), each with labelled axes, a legend and the chance level of the adversarial terms. The
    discriminators are told apart by colour and dash (:data:`CURVE_STYLES`); the records keep the trainer's
    keys (``D_id``, ``G_exp``, ...), the legend the paper's names (D_ID, D_ED, D_TD)."""
    train = [r for r in records if "landmark" in r]
    val = [r for r in records if "val_nme" in r]
    if not train and not val:
        raise ValueError("no training or validation records to plot (expected 'landmark' or 'val_nme' keys)")
    with plt.rc_context({"font.size": 11}):   # this figure only: the notebook's later figures keep their fonts
        fig, axes = plt.subplots(2, 2, figsize=figsize)
        (ax_land, ax_d), (ax_g, ax_val) = axes
        steps = [r["step"] for r in train]
        ax_land.plot(steps, [r["landmark"] for r in train], color=style.OKABE_ITO["blue"], label="L_land (eq. 1)")
        ax_land.set_yscale("log")
        ax_land.set(title="landmark loss", ylabel="L_land (crop units, log)")
        for ax, prefix, chance, what in ((ax_d, "D", 2 * math.log(2), "D loss (eq. 6/11/14)"),
                                         (ax_g, "G", math.log(2), "G adversarial term (eq. 16-18)")):
            for key, (label, colour, dash) in CURVE_STYLES.items():
                k = f"{prefix}_{key}"
                if any(k in r for r in train):
                    ax.plot(steps, [r.get(k, np.nan) for r in train], color=colour, ls=dash, lw=1.5,
                            label=f"{prefix}_{label}")
            ax.axhline(chance, color="0.4", lw=1.0, ls=":",
                       label=f"chance ({'2 ln 2' if prefix == 'D' else 'ln 2'})")
            ax.set(title=what, ylabel=f"{prefix} loss")
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi + 0.7 * (hi - lo))  # headroom: the legend above the curves, not over their peaks
        ax_val.plot([r["step"] for r in val], [r["val_nme"] for r in val], "o-", color=style.PREDICTION_COLOUR,
                    label="held-out videos")
        ax_val.set(title="validation NME (bbox)", ylabel="NME (%)")
        for ax in axes.ravel():
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=10)
        fig.tight_layout()
    return fig
