"""The paper's claims at both scales, from the committed grids (maintainer script).

Reads ``results/ablation/summary.json`` (Table 3's grid, 400 steps from scratch), ``results/ablation-converged/
summary.json`` (the same 8 configurations fine-tuned from the converged reference G, plus our extension) and
``results/peers/peers.json`` (dlib, MediaPipe on the converged grid's frames), and writes under ``results/claims/``

* ``verdicts.md``: each of the four claims ruled at each scale (:func:`tdd_lite.claims.rule`);
* ``scales.md``: Table 3's tracking NME per configuration, both scales side by side;
* ``table2.md``: the Table 2 analogue at convergence (grid rows: mean over seeds) with the peers;
* ``verdicts.json``: the verdicts with their cells and evidence;
* ``effects.png``: every main effect the claims read, with its interval, both scales.

Usage: ``python tools/claims_results.py`` (after ``tdd-lite ablation ... --only-summary`` of both grids).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tdd_lite import claims, report  # noqa: E402
from tdd_lite.experiments import load_results  # noqa: E402
from tdd_lite.files import atomic_write  # noqa: E402

OUT = REPO / "results" / "claims"
GRIDS = {"400 steps, from scratch": REPO / "results" / "ablation",
         "converged (fine-tuned from the reference G)": REPO / "results" / "ablation-converged"}
PEERS = REPO / "results" / "peers" / "peers.json"


def _load(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"claims_results: error: {path.relative_to(REPO)} is missing (see its folder's README.md)")
    return json.loads(path.read_text())


def build() -> dict[Path, str | bytes]:
    """Every output file's content (text, or PNG bytes for the figure)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    summaries = {name: _load(folder / "summary.json") for name, folder in GRIDS.items()}
    verdicts = {name: claims.rule(s) for name, s in summaries.items()}
    converged = list(GRIDS)[-1]
    rows = claims.grid_table2_rows(summaries[converged], load_results(GRIDS[converged]))
    rows += report.peer_rows(_load(PEERS))
    fig = claims.effects_figure(summaries)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    return {OUT / "verdicts.md": claims.verdict_markdown(summaries),
            OUT / "scales.md": claims.scales_markdown(summaries),
            OUT / "table2.md": report.table2_markdown(rows) + "\n",
            OUT / "verdicts.json": json.dumps(verdicts, indent=1) + "\n", OUT / "effects.png": buf.getvalue()}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for path, data in build().items():
        atomic_write(path, data)
        print("wrote", path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
