"""Evaluation reports: the paper's table layout (methods x 300VW categories) in Markdown, CSV and JSON, plus
per-video rows and a CED plot. Reads a results dict (what :func:`tdd_lite.evaluate.evaluate_videos` returns);
never reaches into the trainer or the tracker.

Results layout::

    {"meta": {...}, "methods": {NAME: {"categories": {CAT: category_metrics row},
                                       "videos": {VID: video_metrics row + {"category": CAT}},
                                       "frame_nme": {CAT: [per-frame NME, ...]}}}}

All metrics are fractions in the dict (x100 for % in the tables); 3D metrics are millimetres.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tdd_lite.files import atomic_write

# (key, header, kind): kind "pct" = x100 with 3 decimals, "num" = 3 decimals, "int", "mm" = 2 decimals
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("nme", "NME %", "pct"), ("nme_io", "NME io %", "pct"), ("auc", "AUC@0.08", "num"),
    ("failure", "fail %", "pct"), ("dnme", "dNME %", "pct"), ("accel", "accel %", "pct"),
    ("jitter_ratio", "jitter", "num"), ("static_spread", "static %", "pct"), ("lag", "lag (frames)", "num"),
    ("lost_tracks", "lost tracks", "int"), ("lost_frames", "lost frames", "int"),
    ("identity_spread", "id spread mm", "mm"), ("expression_error", "exp error mm", "mm"),
    ("landmark3d_error", "3D error mm", "mm"), ("frames", "frames", "int"), ("videos", "videos", "int"),
)
PAPER_NME = {"A": 2.495, "B": 2.549, "C": 2.734}  # Table 2/3 of the paper (real 300VW, BFM): for reference only


def fmt(value: Any, kind: str) -> str:
    """One table cell ('-' for a metric that is undefined here)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.3f}"
    if kind == "mm":
        return f"{value:.2f}"
    if kind == "int":
        return str(int(value))
    return f"{value:.3f}"


def _categories(results: dict) -> list[str]:
    cats: list[str] = []
    for m in results["methods"].values():
        cats += [c for c in m["categories"] if c not in cats]
    return cats


def paper_table(results: dict, key: str = "nme") -> str:
    """Markdown: one row per method, one column per category (the paper's Table 2/3 layout)."""
    cats = _categories(results)
    kind = dict((k, kd) for k, _, kd in COLUMNS)[key]
    head = dict((k, h) for k, h, _ in COLUMNS)[key]
    lines = [f"| method ({head}) | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
    for name, m in results["methods"].items():
        cells = [fmt(m["categories"].get(c, {}).get(key), kind) for c in cats]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# the metrics in three groups of columns narrow enough for a book page (category_table(..., columns=GROUP))
ACCURACY_COLUMNS = ("nme", "nme_io", "auc", "failure", "lost_tracks", "lost_frames")
STABILITY_COLUMNS = ("dnme", "accel", "jitter_ratio", "static_spread", "lag")
SHAPE_COLUMNS = ("identity_spread", "expression_error", "landmark3d_error", "frames", "videos")


def category_table(results: dict, category: str, columns: Sequence[str] | None = None) -> str:
    """Markdown: every metric (or only the metric keys ``columns``, in :data:`COLUMNS` order) of every method on
    one category."""
    if columns is not None:
        unknown = set(columns) - {k for k, _, _ in COLUMNS}
        if unknown:
            raise ValueError(f"unknown metric columns {sorted(unknown)}; known: {[k for k, _, _ in COLUMNS]}")
    cols = [c for c in COLUMNS if columns is None or c[0] in columns]
    lines = ["| method | " + " | ".join(h for _, h, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for name, m in results["methods"].items():
        row = m["categories"].get(category)
        if row is not None:
            lines.append(f"| {name} | " + " | ".join(fmt(row.get(k), kd) for k, _, kd in cols) + " |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    meta = results.get("meta", {})
    parts = ["# Evaluation under the tracking protocol", ""]
    if meta:
        parts += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in meta.items() if not isinstance(v, dict)]
        parts.append("")
    parts += ["## NME (%) by category, the paper's layout", "", paper_table(results), "",
              "Paper (real 300VW, BFM, MTCNN first frame): " + ", ".join(f"{c} {v}%" for c, v in PAPER_NME.items())
              + ". Numbers on Synth300VW with the teaching 3DMM are not comparable with these.", ""]
    for c in _categories(results):
        parts += [f"## Category {c}: every metric", "", category_table(results, c), ""]
    parts += ["## Per video", ""]
    vid_cols = [c for c in COLUMNS if c[0] != "videos"]
    parts += ["| method | video | category | " + " | ".join(h for _, h, _ in vid_cols) + " |",
              "|---|---|---|" + "---|" * len(vid_cols)]
    for name, m in results["methods"].items():
        for vid, row in m["videos"].items():
            parts.append(f"| {name} | {vid} | {row.get('category', '')} | "
                         + " | ".join(fmt(row.get(k), kd) for k, _, kd in vid_cols) + " |")
    return "\n".join(parts) + "\n"


def csv_text(results: dict) -> str:
    """CSV: one line per (method, category) and per (method, video); raw fractions (not %)."""
    buf = io.StringIO()
    keys = [k for k, _, _ in COLUMNS]
    w = csv.writer(buf)
    w.writerow(["method", "level", "name", "category"] + keys)
    for name, m in results["methods"].items():
        for c, row in m["categories"].items():
            w.writerow([name, "category", c, c] + ["" if row.get(k) is None else row.get(k) for k in keys])
        for vid, row in m["videos"].items():
            w.writerow([name, "video", vid, row.get("category", "")]
                       + ["" if row.get(k) is None else row.get(k) for k in keys])
    return buf.getvalue()


def ced_figure(results: dict, threshold: float = 0.08):
    """Cumulative error distribution of per-frame NME (bbox), one panel per category, one curve per method (the
    course's line styles, :func:`tdd_lite.style.method_line`), and one legend for all panels below them, where it
    covers no curve (each method's AUC per category is in :func:`category_table`)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from . import style

    cats = _categories(results)
    methods = list(results["methods"])
    fig, axes = plt.subplots(1, len(cats), figsize=(max(4.2 * len(cats), 8.0), 4.4), squeeze=False, sharey=True)
    x = np.linspace(0, threshold, 200)
    handles: dict[str, Any] = {}
    for ax, c in zip(axes[0], cats):
        for i, name in enumerate(methods):
            e = np.asarray(results["methods"][name].get("frame_nme", {}).get(c, []), float)
            if e.size:
                (line,) = ax.plot(100 * x, (e[None, :] <= x[:, None]).mean(1), lw=1.6, label=name,
                                  **style.method_line(name, i))
                handles.setdefault(name, line)
        ax.set_title(f"category {c}")
        ax.set_ylim(0, 1)
        ax.set_xlim(0, 100 * threshold)
        ax.set_xlabel("NME (bbox) %")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of frames")
    rows = math.ceil(len(handles) / 3) if handles else 0
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07 * rows, 1, 1))
    return fig


def write_report(results: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv``, ``report.json`` and ``ced.png`` into ``out`` (each atomically)."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "json": out / "report.json", "ced": out / "ced.png"}
    atomic_write(paths["md"], markdown(results))
    atomic_write(paths["csv"], csv_text(results))
    atomic_write(paths["json"], json.dumps(results, indent=1, sort_keys=False, default=float) + "\n")
    fig = ced_figure(results)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(paths["ced"], buf.getvalue())
    return paths


# (key, header, kind) of the Table 2 analogue: accuracy, motion, smoothness, delay, robustness
TABLE2_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("nme", "NME %", "pct"), ("dnme", "dNME %", "pct"), ("jitter_ratio", "jitter ratio", "num"),
    ("lag", "lag (frames)", "num"), ("lost_tracks", "lost tracks", "int"),
)


def table2_rows(results: dict, methods: dict[str, str], fps: float | None = None) -> list[dict]:
    """Rows for :func:`table2_markdown` from one evaluation report: ``methods`` maps a report method name
    (``"tracking"``, ``"tracking + one-euro"``, ...) to the label the table shows. ``fps``: the tracker's
    frames/s (a stabiliser adds no measurable time)."""
    rows = []
    for name, label in methods.items():
        if name not in results["methods"]:
            raise KeyError(f"method {name!r} is not in the report (it has {sorted(results['methods'])})")
        rows.append({"label": label, "categories": results["methods"][name]["categories"], "fps": fps})
    return rows


def peer_rows(peers: dict) -> list[dict]:
    """Rows for :func:`table2_markdown` from ``tdd-lite peers``' ``peers.json`` (dlib, MediaPipe), frames/s over
    every frame each peer ran on."""
    rows = []
    for name, m in peers["methods"].items():
        cats = m["categories"]
        frames = sum(cats[c]["frames"] for c in cats)
        seconds = sum(cats[c]["seconds"] for c in cats)
        rows.append({"label": name, "categories": cats, "fps": frames / seconds if seconds else None})
    return rows


def table2_markdown(rows: list[dict], categories: tuple[str, ...] = ("A", "B", "C")) -> str:
    """The Table 2 analogue: one row per method, each cell ``A / B / C``; frames/s last.

    ``rows``: ``{"label", "categories": {CAT: metrics row (fractions, as in a report)}, "fps"}``.
    """
    head = "| method | " + " | ".join(f"{h} ({' / '.join(categories)})" for _, h, _ in TABLE2_COLUMNS)
    lines = [head + " | frames/s |", "|---|" + "---|" * (len(TABLE2_COLUMNS) + 1)]
    for r in rows:
        cells = []
        for key, _, kind in TABLE2_COLUMNS:
            cells.append(" / ".join(_fmt_short(r["categories"].get(c, {}).get(key), kind) for c in categories))
        fps = r.get("fps")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {'-' if fps is None else f'{fps:.1f}'} |")
    return "\n".join(lines)


def _fmt_short(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}"
    if kind == "int":  # a count; a mean of counts over seeds keeps one decimal
        return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
    return f"{value:.2f}"
