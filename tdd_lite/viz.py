"""Figures shared by the notebooks and the README (matplotlib only)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# (key, label, x, y, colour) of each box in the pipeline figure; coordinates in a 0..16 x 0..9 canvas.
_PIPELINE_BOXES = [
    ("frames", "video frames\nI (t), I' (t - k), k in 1..6", 1.3, 7.2, "#dde7f3"),
    ("crop", "crop 256x256 from the\nprevious frame's box", 1.3, 5.3, "#dde7f3"),
    ("G", "G: ResNet-18\n512 -> 1025 -> split 990 | 35\nFC 228, 228 | FC 16, 8", 4.9, 5.3, "#fde9c9"),
    ("alpha", "alpha_id (199)\nalpha_exp (29)", 8.4, 6.3, "#fde9c9"),
    ("cam", "camera p (8)\n[f P R | t]", 8.4, 4.3, "#fde9c9"),
    ("3dmm", "3DMM: S = S_bar + A_id a_id + A_exp a_exp\nS_exp (eq. 2), S_id (eq. 7)", 12.4, 6.3, "#e3f1dc"),
    ("proj", "project landmarks l\nv, v_exp, v_id, v' (eq. 3, 8)", 12.2, 4.3, "#e3f1dc"),
    ("land", "L_land = ||v(:,l) - U|| (eq. 1)\nU: ground-truth landmarks", 15.9, 4.3, "#f7d9d9"),
    ("DID", "D_ID (eq. 4-6)\nreal U - v_exp\nfake v - v_exp", 9.3, 1.3, "#e6dcf2"),
    ("DED", "D_ED (eq. 9-11)\nreal U - v_id\nfake v - v_id", 12.3, 1.3, "#e6dcf2"),
    ("DTD", "D_TD (eq. 12-14)\nreal U - U'\nfake v - v'", 15.2, 1.3, "#e6dcf2"),
]
_PIPELINE_ARROWS = [("frames", "crop"), ("crop", "G"), ("G", "alpha"), ("G", "cam"), ("alpha", "3dmm"),
                    ("3dmm", "proj"), ("cam", "proj"), ("proj", "land"), ("proj", "DID"), ("proj", "DED"),
                    ("proj", "DTD")]


def draw_pipeline(figsize: tuple[float, float] = (13.0, 7.5)) -> Figure:
    """The paper's Figure 1/2 as one diagram: data -> G -> 3DMM + camera -> landmarks -> loss and discriminators."""
    fig, ax = plt.subplots(figsize=figsize)
    ax.set_xlim(-0.8, 17.6)
    ax.set_ylim(-0.3, 9.3)
    ax.axis("off")
    boxes = {}
    for key, label, x, y, colour in _PIPELINE_BOXES:
        w, h = (3.9 if key == "3dmm" else 3.2 if key == "G" else 2.6), (1.25 if label.count("\n") < 2 else 1.6)
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.08",
                                    facecolor=colour, edgecolor="#444444", linewidth=1.0))
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5, gid=key)
        boxes[key] = (x, y, w / 2 + 0.15, h / 2 + 0.15)
    for a, b in _PIPELINE_ARROWS:
        ax.add_patch(FancyArrowPatch(_edge(boxes[a], boxes[b]), _edge(boxes[b], boxes[a]), arrowstyle="-|>",
                                     mutation_scale=12, color="#555555", linewidth=1.0))
    ax.text(8.0, 9.0, "G is trained with L_land + 0.1 (L_G,ID + L_G,ED + L_G,TD)  (eq. 19);  "
            "D steps and G steps alternate (Fig. 2)", ha="center", fontsize=9.5, style="italic")
    ax.text(12.2, 0.05, "each D: MLP 136 -> 256 -> 128 -> 64 -> 1 on a flattened 68x2 displacement (Table 1)",
            ha="center", fontsize=8.5)
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
    import re

    html = re.sub(r"<link[^>]*href=\"https?://[^\"]*\"[^>]*>", "", anim.to_jshtml(**kwargs))
    for old, new in _FA4_TO_FA6.items():
        html = html.replace(old, new)
    return html
