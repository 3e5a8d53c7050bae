"""Assemble the reference model's committed results from the evaluation reports (maintainer script).

Reads ``results/reference/full/report.json`` (the shipped G, all three discriminators), ``results/reference/
no-d/report.json`` (the same recipe without discriminators) and ``results/peers/peers.json`` (dlib, MediaPipe
on the same frames), and writes

* ``results/reference/table2.md``: the Table 2 analogue (NME, dNME, jitter ratio, lag, lost tracks, frames/s);
* ``results/reference/summary.json``: the numbers the model card and the book quote, with the checks of the
  converged-model issue (thresholds) evaluated;
* ``tdd_lite/assets/reference_g.md``: the model card, from ``--card-template`` with every ``{key}`` filled
  from that summary (so the card cannot disagree with the reports).

Usage: ``python tools/reference_results.py [--runs FULL_RUN NOD_RUN]`` (the run folders give the training
curves' last validation and the training time; optional).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tdd_lite import report  # noqa: E402
from tdd_lite.evaluate import GT_CROPS  # noqa: E402
from tdd_lite.files import atomic_write  # noqa: E402

OUT = REPO / "results" / "reference"
CATS = ("A", "B", "C")
# the converged-model issue's thresholds for the reference (tracking protocol, untuned set)
THRESHOLDS = {"nme": {"A": 1.5, "B": 2.5, "C": 5.0}, "tracking_over_gt": 1.3, "jitter_A": 2.0}


def _load(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"reference_results: error: {path.relative_to(REPO)} is missing (run the evaluations first: "
                         f"see results/reference/README.md)")
    return json.loads(path.read_text())


def _write(path: Path, text: str) -> None:
    atomic_write(path, text)


def summarise(full: dict, nod: dict, peers: dict) -> dict:
    gt, tr = full["methods"][GT_CROPS]["categories"], full["methods"]["tracking"]["categories"]
    nod_gt, nod_tr = nod["methods"][GT_CROPS]["categories"], nod["methods"]["tracking"]["categories"]
    dlib = peers["methods"]["dlib (per frame)"]["categories"]
    s = {"categories": {}}
    for c in CATS:
        s["categories"][c] = {
            "tracking_nme": 100 * tr[c]["nme"], "gt_crops_nme": 100 * gt[c]["nme"],
            "tracking_over_gt": tr[c]["nme"] / gt[c]["nme"], "lost_tracks": tr[c]["lost_tracks"],
            "jitter_ratio": tr[c]["jitter_ratio"], "dnme": 100 * tr[c]["dnme"], "lag": tr[c]["lag"],
            "identity_spread_mm": tr[c]["identity_spread"], "expression_error_mm": tr[c]["expression_error"],
            "one_euro_nme": 100 * full["methods"]["tracking + one-euro"]["categories"][c]["nme"],
            "one_euro_jitter_ratio": full["methods"]["tracking + one-euro"]["categories"][c]["jitter_ratio"],
            "nod_tracking_nme": 100 * nod_tr[c]["nme"], "nod_gt_crops_nme": 100 * nod_gt[c]["nme"],
            "nod_jitter_ratio": nod_tr[c]["jitter_ratio"], "nod_lost_tracks": nod_tr[c]["lost_tracks"],
            "nod_identity_spread_mm": nod_tr[c]["identity_spread"],
            "nod_expression_error_mm": nod_tr[c]["expression_error"],
            "dlib_nme": 100 * dlib[c]["nme"],
            "frames": tr[c]["frames"], "videos": tr[c]["videos"],
        }
    cat = s["categories"]
    s["checks"] = {
        **{f"nme_{c}<={THRESHOLDS['nme'][c]}": cat[c]["tracking_nme"] <= THRESHOLDS["nme"][c] for c in CATS},
        **{f"tracking<=1.3xGT_{c}": cat[c]["tracking_over_gt"] <= THRESHOLDS["tracking_over_gt"] for c in CATS},
        "no_lost_tracks_A_B": cat["A"]["lost_tracks"] == 0 and cat["B"]["lost_tracks"] == 0,
        "jitter_A<=2": cat["A"]["jitter_ratio"] <= THRESHOLDS["jitter_A"],
        **{f"nme<=dlib_{c}": cat[c]["tracking_nme"] <= cat[c]["dlib_nme"] for c in CATS},
    }
    s["fps"] = {"reference": full["meta"]["tracking_fps"], "no_d": nod["meta"]["tracking_fps"]}
    return s


def table2(full: dict, nod: dict, peers: dict) -> str:
    rows = report.table2_rows(full, {"tracking": "reference G (D_ID + D_ED + D_TD), raw",
                                     "tracking + one-euro": "reference G + One Euro"},
                              fps=full["meta"]["tracking_fps"])
    rows += report.table2_rows(nod, {"tracking": "same recipe without discriminators, raw",
                                     "tracking + centred": "without discriminators + centred average (look-ahead 1)",
                                     "tracking + one-euro": "without discriminators + One Euro",
                                     "tracking + kalman": "without discriminators + Kalman"},
                               fps=nod["meta"]["tracking_fps"])
    rows += report.peer_rows(peers)
    return report.table2_markdown(rows) + "\n"


def build(runs: list[str] | None = None, card_template: Path = REPO / "tools" / "reference_card.md.in"
          ) -> dict[Path, str]:
    """The three outputs (path -> text) from the committed reports (and the run folders, if given; otherwise
    the training numbers already in ``summary.json``)."""
    full, nod = _load(OUT / "full" / "report.json"), _load(OUT / "no-d" / "report.json")
    peers = _load(REPO / "results" / "peers" / "peers.json")
    s = summarise(full, nod, peers)
    if runs:
        for key, run in zip(("reference", "no_d"), runs):
            recs = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines() if x.strip()]
            last = [r for r in recs if "val_nme_A" in r][-1]
            s.setdefault("training", {})[key] = {
                "steps": last["step"], "train_wall_s": last["train_wall_s"], "train_cpu_s": last["train_cpu_s"],
                "val_gt_crops": {c: last[f"val_nme_{c}"] for c in CATS}}
    elif (OUT / "summary.json").is_file():
        s["training"] = json.loads((OUT / "summary.json").read_text()).get("training", {})
    t2 = table2(full, nod, peers)
    flat = {f"{c}_{k}": v for c, row in s["categories"].items() for k, v in row.items()}
    flat.update({f"fps_{k}": v for k, v in s["fps"].items()})
    for who, t in s.get("training", {}).items():
        flat.update({f"{who}_{k}": v for k, v in t.items() if not isinstance(v, dict)})
        flat[f"{who}_train_wall_min"] = t["train_wall_s"] / 60
        flat[f"{who}_train_cpu_min"] = t["train_cpu_s"] / 60
        flat.update({f"{who}_val_{c}": v for c, v in t["val_gt_crops"].items()})
    card = Path(card_template).read_text().format(
        **{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in flat.items()}, table2=t2.strip())
    return {OUT / "table2.md": t2, OUT / "summary.json": json.dumps(s, indent=1) + "\n",
            REPO / "tdd_lite" / "assets" / "reference_g.md": card}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs=2, metavar=("FULL_RUN", "NOD_RUN"), default=None,
                   help="the training run folders (metrics.jsonl): last validation, training time")
    p.add_argument("--card-template", default=str(REPO / "tools" / "reference_card.md.in"))
    args = p.parse_args()
    outputs = build(args.runs, Path(args.card_template))
    for path, text in outputs.items():
        _write(path, text)
    print(json.dumps(json.loads(outputs[OUT / "summary.json"])["checks"], indent=1))
    print("wrote", ", ".join(str(p.relative_to(REPO)) for p in outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
