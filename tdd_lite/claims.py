"""The paper's four comparative claims, ruled from an ablation grid's summary (:func:`tdd_lite.experiments.summarize`)
so that notebook 08 and the reproduction page state a verdict the numbers give, at every scale a grid was run.

Every verdict reads 95% t intervals over seeds (a cell is *lower* when the whole interval is below zero, *higher*
when it is above, *unclear* otherwise) and counts cells:

=====  ===================================================  ==================================================
claim  what the paper says                                  cells read (tracking protocol, categories A/B/C)
=====  ===================================================  ==================================================
1      Table 3: every discriminator lowers the NME; all     main effect of D_ID, D_ED, D_TD on NME (9 cells) and
       three together are best                              "all three" minus "Without all", paired (3 cells)
2      Table 2: the method is steadier over time            main effect of D_TD on the jitter ratio and dNME (6)
3      Section 5: a local average spreads an outlier to     the centred average's increase at t-1 (above 0?),
       its neighbours; the method does not                  all three minus none at t, paired (4 corruptions)
4      D_ID and D_ED separate identity from expression      main effect of D_ID on the identity spread and of
                                                            D_ED on the expression error (6 cells)
=====  ===================================================  ==================================================

Verdicts: **holds** (every cell lower), **partly** (some lower, fewer higher), **not shown** (no cell
distinguishable from zero, or as many lower as higher), **contradicted** (more cells higher than lower).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
from scipy import stats

from tdd_lite.data.vw300 import CATEGORIES
from tdd_lite.viz import panel_grid

CLAIMS = {
    1: "Table 3: every discriminator lowers the NME, and all three together are best",
    2: "Table 2: the method is steadier over time (D_TD lowers the jitter ratio and dNME)",
    3: "Section 5: a local average spreads an outlier to its neighbours; the method fixes it without spreading",
    4: "D_ID and D_ED separate identity from expression (steadier identity, truer expression)",
}
VERDICTS = ("holds", "partly", "not shown", "contradicted")
FULL, BASELINE = "With D_ID, D_ED, D_TD", "Without all"


def interval_verdict(ci: tuple[float, float] | list[float]) -> str:
    """``lower`` / ``higher`` when the whole 95% interval is below / above zero, else ``unclear``."""
    lo, hi = ci
    return "lower" if hi < 0 else "higher" if lo > 0 else "unclear"


def count_verdict(cells: list[str]) -> str:
    """The claim's verdict from its cells (each ``lower``, ``higher`` or ``unclear``; lower = as claimed)."""
    lower, higher = cells.count("lower"), cells.count("higher")
    if cells and lower == len(cells):
        return "holds"
    if higher > lower:
        return "contradicted"
    if lower > higher:
        return "partly"
    return "not shown"


def _fmt_ci(cell: dict, scale: float) -> str:
    return f"{scale * cell['mean']:+.2f} [{scale * cell['ci95'][0]:+.2f}, {scale * cell['ci95'][1]:+.2f}]"


def _effect_cells(summary: dict, d: str, key: str, scale: float, unit: str) -> tuple[list[str], str]:
    cells = summary.get("effects", {}).get(d, {}).get(key, {})
    got = [interval_verdict(cells[c]["ci95"]) for c in CATEGORIES if c in cells]
    text = f"{d} on {unit}: " + " / ".join(_fmt_ci(cells[c], scale) if c in cells else "—" for c in CATEGORIES)
    return got, text


def rule(summary: dict) -> dict[int, dict]:
    """``{claim: {"verdict", "cells", "evidence"}}`` for the four claims of :data:`CLAIMS`; a claim whose cells the
    summary lacks (a grid without all 8 rows, no outlier runs) gets ``"verdict": None``."""
    out: dict[int, dict] = {}
    # claim 1: main effects on NME + the full method against none, paired
    cells, evidence = [], []
    for d in ("D_ID", "D_ED", "D_TD"):
        got, text = _effect_cells(summary, d, "nme", 100, "NME (points)")
        cells += got
        evidence.append(text)
    paired = summary.get("paired", {}).get(FULL, {}).get("tracking", {})
    cells += [interval_verdict(paired[c]["ci95"]) for c in CATEGORIES if c in paired]
    if paired:
        evidence.append("all three minus none, NME (points): " + " / ".join(
            _fmt_ci({"mean": paired[c]["mean"], "ci95": paired[c]["ci95"]}, 100) if c in paired else "—"
            for c in CATEGORIES))
    out[1] = {"cells": cells, "evidence": evidence}
    # claim 2: D_TD's main effect on the jitter ratio and dNME
    cells, evidence = [], []
    for key, scale, unit in (("jitter_ratio", 1, "jitter ratio"), ("dnme", 100, "dNME (points)")):
        got, text = _effect_cells(summary, "D_TD", key, scale, unit)
        cells += got
        evidence.append(text)
    out[2] = {"cells": cells, "evidence": evidence}
    # claim 3: the outlier experiment (means over windows and seeds)
    out[3] = _rule_outliers(summary.get("outliers", {}))
    # claim 4: D_ID on identity spread, D_ED on expression error
    cells, evidence = [], []
    for d, key in (("D_ID", "identity_spread"), ("D_ED", "expression_error")):
        got, text = _effect_cells(summary, d, key, 1, key.replace("_", " ") + " (mm)")
        cells += got
        evidence.append(text)
    out[4] = {"cells": cells, "evidence": evidence}
    for c in (1, 2, 4):
        need = 12 if c == 1 else 6
        out[c]["verdict"] = count_verdict(out[c]["cells"]) if len(out[c]["cells"]) == need else None
    return out


def _t_interval(values: list[float]) -> tuple[float, float]:
    """95% t interval of the mean of ``values`` (infinite with fewer than 2)."""
    a = np.asarray(values, np.float64)
    if len(a) < 2:
        return (-math.inf, math.inf)
    half = float(stats.t.ppf(0.975, len(a) - 1)) * float(a.std(ddof=1)) / math.sqrt(len(a))
    return (float(a.mean()) - half, float(a.mean()) + half)


def _rule_outliers(outliers: dict) -> dict:
    """Claim 3 from the outlier table, per corruption, over seeds: the centred average moves frame t-1 (its increase
    there has a 95% interval above 0: the spreading), and the full method's increase at t minus the plain G's,
    seed by seed, has an interval below 0 (the method itself fixes the outlier frame)."""
    centred, raw, full = outliers.get(f"{BASELINE} + centred"), outliers.get(BASELINE), outliers.get(FULL)
    if not (centred and raw and full):
        return {"verdict": None, "cells": [], "evidence": []}
    kinds = [k for k in centred if k in raw and k in full]
    spreads, cells, fix_text = [], [], []
    for k in kinds:
        spreads.append(interval_verdict(_t_interval(centred[k]["-1"]["values"])) == "higher")
        a, b = full[k]["0"]["values"], raw[k]["0"]["values"]
        d = [x - y for x, y in zip(a, b)] if len(a) == len(b) else []
        ci = _t_interval(d)
        cells.append(interval_verdict(ci))
        fix_text.append(f"{k} {100 * float(np.mean(d)) if d else float('nan'):+.2f} "
                        f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]")
    evidence = ["centred average, increase at t-1 (points): " + " / ".join(
                    f"{k} {100 * centred[k]['-1']['mean']:+.2f}" for k in kinds),
                "increase at t, all three minus none (points, paired over seeds): " + " / ".join(fix_text)]
    verdict = count_verdict(cells) if any(spreads) else "not shown"
    return {"verdict": verdict, "cells": cells, "evidence": evidence, "spreads": spreads}


def verdict_markdown(summaries: dict[str, dict]) -> str:
    """A Markdown table: one row per claim, one verdict column per grid (``{"400 steps": summary, ...}``)."""
    ruled = {name: rule(s) for name, s in summaries.items()}
    lines = ["| claim | " + " | ".join(summaries) + " |", "|---|" + "---|" * len(summaries)]
    for c, text in CLAIMS.items():
        lines.append(f"| {c}. {text} | " + " | ".join(
            f"**{r[c]['verdict']}**" if r[c]["verdict"] else "—" for r in ruled.values()) + " |")
    return "\n".join(lines) + "\n"


def scales_markdown(summaries: dict[str, dict], method: str = "tracking") -> str:
    """Table 3's NME (%) per configuration at every scale side by side: mean ± std over seeds, per category."""
    names = list(summaries)
    labels: list[str] = []
    for s in summaries.values():
        labels += [lb for lb in s["table3"] if lb not in labels]
    head = "| configuration | " + " | ".join(f"{n}: A / B / C" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    for lb in labels:
        cells = []
        for s in summaries.values():
            row = s["table3"].get(lb, {}).get(method, {})
            cells.append(" / ".join(f"{100 * row[c]['nme']['mean']:.2f} ± {100 * row[c]['nme']['std']:.2f}"
                                    if c in row and "nme" in row[c] else "—" for c in CATEGORIES))
        lines.append(f"| {lb} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# the Table 2 analogue of a grid: (configuration, stabiliser, label)
TABLE2_LABELS = ((BASELINE, "none", "no discriminator, raw"),
                 (BASELINE, "centred", "no discriminator + centred average"),
                 (BASELINE, "one-euro", "no discriminator + One Euro"),
                 (BASELINE, "kalman", "no discriminator + Kalman"),
                 (FULL, "none", "all three discriminators, raw"),
                 (FULL, "one-euro", "all three + One Euro"))


def grid_table2_rows(summary: dict, results: list[dict] | None = None, suffix: str = "") -> list[dict]:
    """Rows for :func:`tdd_lite.report.table2_markdown` from a grid summary: each metric's mean over seeds;
    frames/s the mean of the runs' tracking speed when ``results`` (:func:`tdd_lite.experiments.load_results`)
    are given. ``suffix`` is appended to every label (e.g. the grid's scale)."""
    by_key = {(r["config"], r["filter"]): r["categories"] for r in summary["table2"]}
    rows = []
    for config, flt, label in TABLE2_LABELS:
        cats = by_key.get((config, flt))
        if not cats:
            continue
        fps = None
        if results:
            speeds = [r["evaluation"]["meta"].get("tracking_fps") for r in results if r["label"] == config]
            speeds = [v for v in speeds if v]
            fps = float(np.mean(speeds)) if speeds else None
        rows.append({"label": label + suffix, "fps": fps,
                     "categories": {c: {k: v["mean"] for k, v in cells.items()} for c, cells in cats.items()}})
    return rows


# the forest plot: (panel title, [(discriminator, metric key, scale to the unit shown)], x label)
EFFECT_PANELS = (
    ("claim 1: NME", [("D_ID", "nme", 100), ("D_ED", "nme", 100), ("D_TD", "nme", 100)], "points"),
    ("claim 2: stability (D_TD)", [("D_TD", "jitter_ratio", 1), ("D_TD", "dnme", 100)], "ratio / points"),
    ("claim 4: disentanglement", [("D_ID", "identity_spread", 1), ("D_ED", "expression_error", 1)], "mm"),
)
# Okabe-Ito colours and distinct markers: a scale is told apart by colour *and* shape
SCALE_STYLES = (("#0072B2", "o"), ("#D55E00", "s"), ("#009E73", "^"), ("#CC79A7", "D"))


def effects_figure(summaries: dict[str, dict]):
    """Every main effect the claims read, with its 95% interval over seeds, one marker per grid (scale): left of
    the zero line = the discriminator lowers the metric, as the paper claims; an interval across it = not shown."""
    fig, grid, axes = panel_grid(len(EFFECT_PANELS), width=9, row_height=3.4, extra_height=0.5)
    n = len(summaries)
    for ax, (title, items, unit) in zip(axes, EFFECT_PANELS):
        labels = [f"{d} {key.replace('_', ' ')} {c}" for d, key, _ in items for c in CATEGORIES]
        y = np.arange(len(labels))[::-1].astype(float)
        for i, (name, s) in enumerate(summaries.items()):
            colour, marker = SCALE_STYLES[i % len(SCALE_STYLES)]
            off = (i - (n - 1) / 2) * 0.25
            k = 0
            for d, key, scale in items:
                cells = s.get("effects", {}).get(d, {}).get(key, {})
                for c in CATEGORIES:
                    if c in cells:
                        m, (lo, hi) = scale * cells[c]["mean"], cells[c]["ci95"]
                        lo, hi = scale * lo, scale * hi
                        lo, hi = max(lo, m - 50), min(hi, m + 50)  # an infinite interval (1 seed) drawn clipped
                        ax.errorbar(m, y[k] + off, xerr=[[m - lo], [hi - m]], fmt=marker, color=colour, ms=4,
                                    capsize=2, lw=1, label=name if k == 0 else None)
                    k += 1
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_yticks(y, labels, fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"main effect ({unit}); < 0 = as claimed", fontsize=9)
        ax.tick_params(axis="x", labelsize=9)
    handles, names = axes[0].get_legend_handles_labels()
    if grid.size > len(EFFECT_PANELS):  # the empty slot of the grid holds the legend
        slot = grid.ravel()[len(EFFECT_PANELS)]
        slot.set_visible(True)
        slot.axis("off")
        slot.legend(handles, [textwrap.fill(m, 26) for m in names], loc="center", fontsize=10, frameon=False,
                    title="grid (scale)", title_fontsize=10)
        fig.tight_layout()
    else:
        fig.legend(handles, names, loc="upper center", ncol=n, fontsize=10, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return fig
