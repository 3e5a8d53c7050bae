"""The ablation grid (tdd_lite.experiments): planning, the statistics against closed forms, the outlier
experiment's causality, and that the committed tables are the ones the committed per-run files give."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tdd_lite import experiments as ex
from tdd_lite.data.synth import generate
from tdd_lite.errors import DataError, UsageError
from tdd_lite.evaluate import GT_CROPS
from tdd_lite.morphable import load_teaching_model
from tdd_lite.network import AlignmentNet

from ._figures import COLUMN_PX, smallest_text_px

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "ablation"
# both committed grids: 400 steps from scratch, and the fine-tunes of the converged reference G
GRIDS = [COMMITTED, ROOT / "results" / "ablation-converged"]


# ------------------------------------------------------------------------------------------------ planning
def test_plan_is_seed_major_with_the_untrained_floor_first():
    runs = ex.plan([0, 1, 2])
    assert runs[0] == {"label": ex.UNTRAINED, "seed": 0}
    assert len(runs) == 1 + 8 * 3
    assert [r["label"] for r in runs[1:9]] == list(ex.SLUGS)
    assert {r["seed"] for r in runs[1:9]} == {0}
    assert ex.plan([5], ["none", "With D_TD"], untrained=False) == [
        {"label": "Without all", "seed": 5}, {"label": "With D_TD", "seed": 5}]


def test_unknown_configuration_is_a_usage_error_naming_it():
    with pytest.raises(UsageError, match="--configs bogus"):
        ex.plan([0], ["none", "bogus"])


def test_run_configs_switch_exactly_the_named_discriminators():
    cfg = ex.run_config("With D_ID, D_TD", 4)
    assert (cfg.use_id, cfg.use_ed, cfg.use_td, cfg.seed, cfg.name) == (True, False, True, 4, ex.PRESET)
    assert ex.run_config(ex.UNTRAINED, 0).enabled == ()
    assert ex.run_config("Without all", 0, steps=7).steps == 7


def test_a_finetune_grid_starts_every_run_from_the_given_weights(tmp_path):
    """--preset/--init-from: the run's G starts from the file (its weights move by at most Adam's step bound),
    the config records which weights, the untrained row is left out; a run from scratch lands far away."""
    from tdd_lite.checkpoint import CHECKPOINT_NAME
    from tdd_lite.reference import SHIPPED_PATH
    from tdd_lite.train import _init_weights
    from tdd_lite.train_config import get_config

    start = AlignmentNet.for_model(load_teaching_model())
    ref = SHIPPED_PATH  # the shipped reference G, the start of the converged grid
    state, sha = _init_weights(ref)
    data = generate(tmp_path / "data", videos=4, frames=114, size=(96, 96), seed=3, progress=False)
    out = tmp_path / "grid"
    ex.run_grid(out, data, data, seeds=[0], configs=["none"], jobs=1, preset="smoke", init_from=ref,
                eval_frames=20, progress=False)
    r = ex.load_results(out)
    assert [x["label"] for x in r] == [ex.BASELINE]  # no untrained row for a fine-tune grid
    assert r[0]["config"]["init_from"] == sha and r[0]["config"]["name"] == "smoke"
    grid = json.loads((out / "grid.json").read_text())
    assert grid["init_from"] == {"file": ref.name, "weights": sha}
    cfg = get_config("smoke")
    # Adam moves a weight by at most ~lr (1 - beta1) / sqrt(1 - beta2) = 3.16 lr per step
    bound = cfg.steps * cfg.lr * 3.2
    g = torch.load(out / "runs" / "none-s0" / CHECKPOINT_NAME, weights_only=True)["G"]
    drift = max(float((g[k].float() - state[k]).abs().max()) for k, _ in start.named_parameters())
    assert drift <= bound, drift
    # the same grid from scratch (another folder): G starts elsewhere, far beyond that bound
    ex.run_grid(tmp_path / "scratch", data, data, seeds=[0], configs=["none"], jobs=1, preset="smoke",
                eval_frames=20, progress=False)
    g0 = torch.load(tmp_path / "scratch" / "runs" / "none-s0" / CHECKPOINT_NAME, weights_only=True)["G"]
    assert max(float((g0[k].float() - state[k]).abs().max()) for k, _ in start.named_parameters()) > 10 * bound


# ------------------------------------------------------------------------------------------------ statistics
def _fake_result(folder: Path, label: str, seed: int, nme: dict[str, float], extra: dict | None = None):
    cats = {c: {"nme": v, "dnme": v / 10, "jitter_ratio": 2.0, "lag": 0.0, "lost_tracks": 0,
                "identity_spread": 1.0 + seed, "expression_error": 3.0} for c, v in nme.items()}
    methods = {"tracking": {"categories": cats, "videos": {}},
               GT_CROPS: {"categories": {c: {"nme": v / 2} for c, v in nme.items()}, "videos": {}}}
    for name, vals in (extra or {}).items():
        methods[name] = {"categories": {c: {"nme": v} for c, v in vals.items()}, "videos": {}}
    r = {"format": ex.RESULT_FORMAT, "label": label, "seed": seed, "slug": ex.run_slug(label, seed),
         "evaluation": {"meta": {}, "methods": methods}}
    path = folder / "runs" / ex.run_slug(label, seed) / ex.RESULT_NAME
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(r))


def test_summary_statistics_match_closed_forms(tmp_path):
    base = {0: 0.10, 1: 0.12, 2: 0.11}
    diffs = {0: -0.01, 1: -0.02, 2: -0.03}  # mean -0.02, sample sd 0.01
    for s in base:
        _fake_result(tmp_path, "Without all", s, {"A": base[s]}, extra={"tracking + centred": {"A": base[s] + 1}})
        _fake_result(tmp_path, "With D_TD", s, {"A": base[s] + diffs[s]})
    (tmp_path / "runs" / "junk").mkdir()
    (tmp_path / "runs" / "junk" / ex.RESULT_NAME).write_text("{not json")  # an interrupted write: ignored
    s = ex.summarize(tmp_path)
    cell = s["table3"]["Without all"]["tracking"]["A"]["nme"]
    assert cell["mean"] == pytest.approx(0.11) and cell["std"] == pytest.approx(0.01) and cell["n"] == 3
    p = s["paired"]["With D_TD"]["tracking"]["A"]
    assert p["mean"] == pytest.approx(-0.02) and p["improved"] == 3
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert p["ci95"] == pytest.approx([-0.02 - half, -0.02 + half])
    assert s["paired"]["With D_TD"][GT_CROPS]["A"]["mean"] == pytest.approx(-0.01)
    t2 = {(r["config"], r["filter"]): r for r in s["table2"]}
    assert t2[("Without all", "centred")]["categories"]["A"]["nme"]["mean"] == pytest.approx(1.11)
    assert t2[(ex.FULL, "none")]["categories"] == {}  # no full-method run: an empty row, not an invented one
    md = ex.markdown(s)
    assert "| With D_TD | 9.00 ± 1.00 |" in md and "-2.00 [" in md and "3/3" in md


def test_main_effects_recover_an_additive_model(tmp_path):
    # NME = 0.1 + 0.01 * seed - 0.004 [D_ID] - 0.002 [D_ED] + 0.003 [D_TD]: each main effect is its coefficient
    coef = {"D_ID": -0.004, "D_ED": -0.002, "D_TD": 0.003}
    for seed in (0, 1, 2):
        for label in ex.SLUGS:
            v = 0.1 + 0.01 * seed + sum(c for d, c in coef.items() if d in label)
            _fake_result(tmp_path, label, seed, {"A": v, "B": v + 0.05, "C": v * 2 - 0.1})
    eff = ex.summarize(tmp_path)["effects"]
    for d, c in coef.items():
        for cat, scale in (("A", 1), ("B", 1), ("C", 2)):
            e = eff[d]["nme"][cat]
            assert e["mean"] == pytest.approx(scale * c) and e["seeds"] == [0, 1, 2]
            assert e["ci95"] == pytest.approx([scale * c, scale * c], abs=1e-12)  # no seed-to-seed variation
        # identity spread = 1 + seed in every configuration: no effect
        assert eff[d]["identity_spread"]["A"]["mean"] == pytest.approx(0.0)
    assert "## Main effects" in ex.markdown(ex.summarize(tmp_path))


def test_summary_of_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no finished run"):
        ex.summarize(tmp_path)


def test_grid_refuses_a_folder_without_splits(tmp_path):
    with pytest.raises(DataError, match="--train-data .*splits.json"):
        ex.run_grid(tmp_path / "out", tmp_path, tmp_path)


# ------------------------------------------------------------------------------------------------ outliers
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "s", videos=4, frames=20, size=(96, 96), seed=5,
                    progress=False)


def test_corruptions_change_the_frame_and_shift_does_not(tiny):
    from tdd_lite.data.vw300 import load_split

    seq = load_split(tiny, "A")[0]
    frame = next(iter(seq.frames()))
    for kind in ("occluder", "blur", "flash"):
        assert not np.array_equal(ex.corrupt_frame(frame, kind, seq.landmarks[0]), frame), kind
    assert np.array_equal(ex.corrupt_frame(frame, "shift", seq.landmarks[0]), frame)
    with pytest.raises(UsageError, match="corruption 'rain'"):
        ex.corrupt_frame(frame, "rain", seq.landmarks[0])


def test_outlier_experiment_is_causal_except_for_the_centred_average(tiny):
    torch.manual_seed(0)
    model = load_teaching_model()
    net = AlignmentNet.for_model(model).eval()
    from tdd_lite.data.vw300 import load_split

    vids = [load_split(tiny, "A")[0].name]
    r = ex.outlier_experiment(net, model, tiny, vids, 32, filters=("none", "centred", "one-euro"),
                              positions=(8,), half=5, corruptions=("flash", "shift"))
    assert r["samples"] == 1
    inc = r["increase"]
    for f in ("none", "one-euro"):  # causal: frames before t are the same stream
        for kind in ("flash", "shift"):
            assert all(inc[f][kind][str(o)] == 0.0 for o in (-3, -2, -1)), (f, kind)
    # the crop of frame t is a quarter side off: the estimate at t must get worse
    assert inc["none"]["shift"]["0"] > 0
    # the centred 3-frame average pulls t's change into t-1 (and nothing earlier)
    assert inc["centred"]["shift"]["-1"] != 0.0
    assert inc["centred"]["shift"]["-2"] == 0.0


# ------------------------------------------------------------------------------------------------ committed
needs_results = pytest.mark.skipif(not (COMMITTED / "summary.json").is_file(), reason="no committed grid")
each_grid = pytest.mark.parametrize("folder", GRIDS, ids=[g.name for g in GRIDS])


@each_grid
def test_committed_grid_is_complete(folder):
    if not (folder / "summary.json").is_file():
        pytest.skip(f"no committed grid in {folder.name}")
    results = ex.load_results(folder)
    seeds: dict[str, set] = {}
    for r in results:
        seeds.setdefault(r["label"], set()).add(r["seed"])
        for cat in ex.CATEGORIES:
            assert cat in r["evaluation"]["methods"]["tracking"]["categories"], (r["slug"], cat)
    for label in ex.SLUGS:  # the 8 configurations of Table 3, 3 seeds each: >= 24 runs
        assert len(seeds.get(label, ())) >= 3, label
    grid = json.loads((folder / "grid.json").read_text())
    assert grid["command"].startswith("tdd-lite ablation") and grid["revision"] and grid["wall_seconds"] > 0
    assert grid["machine"]["cores"]


def _close(a, b, path="summary"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float | int):
        # float sums may differ in the last bits between CPUs (SIMD width): 1e-9 relative is far below the
        # 2-decimal tables and far above rounding noise
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isinf(a) and a == b), path
    else:
        assert a == b, path


@each_grid
def test_committed_tables_are_the_ones_the_committed_runs_give(folder):
    if not (folder / "summary.json").is_file():
        pytest.skip(f"no committed grid in {folder.name}")
    committed = json.loads((folder / "summary.json").read_text())
    recomputed = json.loads(json.dumps(ex.summarize(folder)))  # through JSON, as written
    _close(recomputed, committed)
    grid = json.loads((folder / "grid.json").read_text())
    assert (folder / "summary.md").read_text() == ex.markdown(committed, grid)


CLAIMS = ROOT / "results" / "claims"


@pytest.mark.skipif(not (CLAIMS / "verdicts.md").is_file(), reason="no committed verdicts")
def test_committed_verdicts_are_the_ones_both_grids_give():
    """results/claims/ (tools/claims_results.py) against a fresh build from the committed summaries: the text
    files exactly, the verdicts' numbers within float noise; the figure is only checked to be a PNG."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("claims_results", ROOT / "tools" / "claims_results.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for path, data in tool.build().items():
        assert path.is_file(), f"{path.name} is not committed (python tools/claims_results.py)"
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        elif path.suffix == ".json":
            _close(json.loads(data), json.loads(path.read_text()), path.name)
        else:
            assert path.read_text() == data, f"{path.name} is not what the committed grids give"


# ------------------------------------------------------------------------------------------------ the built book
BOOK = ROOT / "_build" / "html"


@needs_results
@pytest.mark.parametrize("page", ["notebooks/08_ablation_and_stabilisers.html", "book/reproduction.html"])
def test_the_built_book_shows_the_committed_tables(page):
    import os

    if not (BOOK / "index.html").exists():
        (pytest.fail if os.environ.get("TDD_REQUIRE_BROWSER") == "1" else pytest.skip)("build the book first")
    text = (BOOK / page).read_text(encoding="utf-8")
    summary = json.loads((COMMITTED / "summary.json").read_text())
    none_a = summary["table3"][ex.BASELINE]["tracking"]["A"]["nme"]
    assert text.count("<table") >= 6, f"{page}: result tables not rendered as tables"
    assert "| configuration |" not in text, f"{page}: a Markdown table printed as text"
    assert f"{100 * none_a['mean']:.2f} ± {100 * none_a['std']:.2f}" in text, f"{page}: not the committed numbers"


def test_a_section_as_a_caption_keeps_its_table_and_drops_the_heading():
    text = "intro\n## Table 3 analogue: NME %\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## Disentanglement (x)\n\nz\n"
    full = ex.section(text, "table3")
    cap = ex.section(text, "table3", caption=True)
    assert full.startswith("## Table 3 analogue") and cap.startswith("**Table 3 analogue: NME %**")
    assert "##" not in cap and cap.splitlines()[1:] == full.splitlines()[1:]


def test_outlier_figure_legend_below_and_error_bars_side_by_side():
    """The committed converged grid's outlier figure: the legend sits under the panels (not beside them, where it
    shrank the panels), and at each offset the series stand apart so their error bars do not overlap."""
    import matplotlib.pyplot as plt

    summary = json.loads((ROOT / "results" / "ablation-converged" / "summary.json").read_text())
    fig = ex.outlier_figure(summary)
    try:
        fig.canvas.draw()
        legend = fig.legends[0].get_window_extent()
        panels = [ax.get_window_extent() for ax in fig.axes]
        assert legend.y1 <= min(p.y0 for p in panels), "legend overlaps the panels"
        assert legend.x0 >= 0 and legend.x1 <= fig.bbox.x1, "legend cut off"
        for ax in fig.axes:
            xs = [np.asarray(c.lines[0].get_xdata(), float) for c in ax.containers]  # each errorbar's data line
            assert len(xs) >= 2
            gaps = np.diff(np.sort(np.stack(xs), axis=0), axis=0)  # per offset, the distance between neighbours
            assert gaps.min() > 0.05, f"{ax.get_title()}: two series at the same x"
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", ["table3", "outliers", "disentanglement", "effects"])
def test_notebook_08_figures_readable_at_the_column_width(name):
    """Notebook 08's figures had 7-8 pt labels on 11-inch figures: about 7 px in the column. Every label, tick and
    legend entry must be drawn at 10 px or more."""
    import matplotlib.pyplot as plt

    from tdd_lite import claims

    grids = {g: json.loads((ROOT / "results" / g / "summary.json").read_text())
             for g in ("ablation", "ablation-converged")}
    make = {"table3": lambda: ex.table3_figure(grids["ablation-converged"]),
            "outliers": lambda: ex.outlier_figure(grids["ablation-converged"]),
            "disentanglement": lambda: ex.disentanglement_figure(grids["ablation-converged"]),
            "effects": lambda: claims.effects_figure({   # the names notebook 08 and tools/claims_results.py use
                "400 steps, from scratch": grids["ablation"],
                "converged (fine-tuned from the reference G)": grids["ablation-converged"]})}
    fig = make[name]()
    try:
        px, text = smallest_text_px(fig)
        assert px >= 10, f"{name}: {text!r} drawn at {px:.1f} px in a {COLUMN_PX} px column"
        renderer = fig.canvas.get_renderer()
        legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        for box in [lg.get_window_extent(renderer) for lg in legends]:  # nothing cut off at the figure's edge
            assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y0 >= 0 and box.y1 <= fig.bbox.y1, name
    finally:
        plt.close(fig)
