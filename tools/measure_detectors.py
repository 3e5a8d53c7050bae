"""First-frame detector hit rates (MTCNN vs Haar) on a 300VW-layout folder, per test category.

A hit is a detection whose box, mapped to our landmark-box convention, overlaps the ground-truth crop box with
IoU >= 0.5 (:func:`tdd_lite.data.detect.hit_rate`). Frames: each test video's first frame, and (``--every N``)
every N-th frame as a larger sample. Writes JSON to ``--out`` (atomically) and prints a table.

Run: ``.venv/bin/python tools/measure_detectors.py DATA --out results/tracking/detectors.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tdd_lite.data import detect, vw300
from tdd_lite.files import atomic_write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--every", type=int, default=30, help="also every N-th frame (default 30)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    splits = vw300.load_splits(args.data)
    out: dict = {"data": Path(args.data).name, "min_iou": 0.5, "every": args.every, "categories": {}}
    for cat in ("A", "B", "C"):
        seqs = [vw300.VideoSequence(Path(args.data) / v) for v in splits.get(cat, [])]
        first = [(s.frame(0), s.landmarks[0]) for s in seqs]
        many = [(s.frame(k), s.landmarks[k]) for s in seqs for k in range(0, len(s), args.every)]
        row = {}
        for mode in ("mtcnn", "haar"):
            row[mode] = {"first_frames": detect.hit_rate(first, mode), "every_n": detect.hit_rate(many, mode)}
        out["categories"][cat] = row
        print(f"{cat}: first frames  MTCNN {row['mtcnn']['first_frames']['hits']}/{len(first)}"
              f"  Haar {row['haar']['first_frames']['hits']}/{len(first)} (Haar fired on "
              f"{row['haar']['first_frames']['fired']}) | every {args.every}th frame  MTCNN "
              f"{row['mtcnn']['every_n']['hits']}/{len(many)}  Haar {row['haar']['every_n']['hits']}/{len(many)}"
              f" (Haar fired on {row['haar']['every_n']['fired']})")
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
