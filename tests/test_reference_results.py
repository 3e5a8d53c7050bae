"""The committed reference results agree with themselves: the model card, the Table 2 analogue and summary.json
are what tools/reference_results.py makes from the committed evaluation reports, and the time-to-accuracy
curves are the training logs' validation records (the ones the card quotes)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("reference_results", ROOT / "tools" / "reference_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_card_table2_and_summary_are_rendered_from_the_committed_reports():
    for path, text in _tool().build().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} differs from what the reports give"


def test_summary_checks_follow_from_the_numbers():
    s = json.loads((ROOT / "results" / "reference" / "summary.json").read_text())
    cats = s["categories"]
    for c, limit in (("A", 1.5), ("B", 2.5), ("C", 5.0)):
        assert s["checks"][f"nme_{c}<={limit}"] == (cats[c]["tracking_nme"] <= limit)
        assert s["checks"][f"nme<=dlib_{c}"] == (cats[c]["tracking_nme"] <= cats[c]["dlib_nme"])
        assert cats[c]["tracking_over_gt"] == pytest.approx(cats[c]["tracking_nme"] / cats[c]["gt_crops_nme"])
    assert s["checks"]["jitter_A<=2"] == (cats["A"]["jitter_ratio"] <= 2.0)


def test_time_to_accuracy_curves_match_the_card():
    curves = json.loads((ROOT / "results" / "time_to_accuracy" / "curves.json").read_text())["curves"]
    assert set(curves) == {"fast", "reference", "reference, no discriminators"}
    for name, curve in curves.items():
        cpu = [r["train_cpu_s"] for r in curve]
        assert cpu == sorted(cpu) and curve[0]["step"] == 0, name
        assert all(r[c] > 0 for r in curve for c in "ABC")
    s = json.loads((ROOT / "results" / "reference" / "summary.json").read_text())
    last = curves["reference"][-1]
    assert last["step"] == s["training"]["reference"]["steps"]
    for c in "ABC":
        assert last[c] == pytest.approx(s["training"]["reference"]["val_gt_crops"][c])
    assert (ROOT / "results" / "time_to_accuracy" / "curve.png").stat().st_size > 10_000
