"""tdd_lite.claims: verdicts computed from grids whose effects are known by construction (an additive model of
each discriminator's effect plus seed noise, put through tdd_lite.experiments.summarize)."""

import json

import numpy as np
import pytest

from tdd_lite import claims as C
from tdd_lite import experiments as ex
from tdd_lite.evaluate import GT_CROPS

D_FLAGS = {"D_ID": "id", "D_ED": "ed", "D_TD": "td"}


def _grid(folder, effect: dict[str, dict[str, float]], seeds=(0, 1, 2), noise=0.002, outliers=None):
    """Every Table 3 row x seed: metric = base + sum of the effects of the row's discriminators + noise.
    ``effect[D][metric]`` per discriminator; metrics nme, dnme, jitter_ratio, identity_spread, expression_error.
    Only a metric some discriminator moves gets noise: an untouched one has every main effect exactly 0."""
    base = {"nme": 0.05, "dnme": 0.02, "jitter_ratio": 3.0, "identity_spread": 2.0, "expression_error": 4.0}
    rng = np.random.default_rng(0)
    moved = {k for e in effect.values() for k, v in e.items() if v}
    for label, slug in ex.SLUGS.items():
        has = [d for d, f in D_FLAGS.items() if f in slug.split("-")]
        for s in seeds:
            cats = {}
            for c in ex.CATEGORIES:
                cats[c] = {k: v + sum(effect.get(d, {}).get(k, 0.0) for d in has)
                           + (noise * rng.standard_normal() if k in moved else 0.0) for k, v in base.items()}
            r = {"format": ex.RESULT_FORMAT, "label": label, "seed": s, "slug": ex.run_slug(label, s),
                 "evaluation": {"meta": {}, "methods": {"tracking": {"categories": cats, "videos": {}},
                                                         GT_CROPS: {"categories": cats, "videos": {}}}}}
            if outliers and label in (ex.BASELINE, ex.FULL):
                r["outliers"] = outliers[(label, s)]
            path = folder / "runs" / ex.run_slug(label, s) / ex.RESULT_NAME
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(r))
    return json.loads(json.dumps(ex.summarize(folder)))


def _outlier_result(raw_t: float, centred_prev: float, filters=("none", "centred")):
    inc = {f: {k: {str(o): 0.0 for o in ex.OFFSETS} for k in ex.CORRUPTIONS} for f in filters}
    for k in ex.CORRUPTIONS:
        inc["none"][k]["0"] = raw_t
        if "centred" in inc:
            inc["centred"][k]["-1"] = centred_prev
    return {"samples": 4, "increase": inc}


def _outliers(raw_t, centred_prev, full_t):
    """Per-seed outlier results (a little seed noise, so that the intervals are finite)."""
    return {(label, s): _outlier_result(t + 0.001 * s, c + 0.001 * s * (c != 0), f)
            for s in (0, 1, 2) for label, t, c, f in ((ex.BASELINE, raw_t, centred_prev, ("none", "centred")),
                                                       (ex.FULL, full_t, 0.0, ("none", "one-euro")))}


def test_every_discriminator_helping_everywhere_is_holds(tmp_path):
    good = {d: {"nme": -0.01, "jitter_ratio": -0.5, "dnme": -0.005, "identity_spread": -0.5,
                "expression_error": -0.5} for d in D_FLAGS}
    r = C.rule(_grid(tmp_path, good, outliers=_outliers(0.10, 0.02, 0.04)))
    assert [r[c]["verdict"] for c in (1, 2, 3, 4)] == ["holds"] * 4
    assert r[1]["cells"].count("lower") == 12


def test_discriminators_that_hurt_are_contradicted_and_no_effect_is_not_shown(tmp_path):
    bad = {d: {"nme": +0.01, "identity_spread": +0.5, "expression_error": +0.5} for d in D_FLAGS}
    r = C.rule(_grid(tmp_path / "bad", bad))
    assert r[1]["verdict"] == "contradicted" and r[4]["verdict"] == "contradicted"
    assert r[2]["verdict"] == "not shown"  # jitter and dNME untouched: every interval straddles zero
    assert r[3]["verdict"] is None  # no outlier runs in this grid
    mixed = {"D_TD": {"nme": -0.01}}  # only D_TD helps
    assert C.rule(_grid(tmp_path / "mixed", mixed))[1]["verdict"] == "partly"


def test_outlier_claim_needs_the_spreading_and_the_fix(tmp_path):
    assert C.rule(_grid(tmp_path / "a", {}, outliers=_outliers(0.10, 0.0, 0.04)))[3]["verdict"] == "not shown"
    assert C.rule(_grid(tmp_path / "b", {}, outliers=_outliers(0.10, 0.02, 0.12)))[3]["verdict"] == "contradicted"
    same = C.rule(_grid(tmp_path / "c", {}, outliers=_outliers(0.10, 0.02, 0.10)))[3]
    assert same["verdict"] == "not shown" and same["cells"] == ["unclear"] * len(ex.CORRUPTIONS)


@pytest.mark.parametrize("cells, want", [
    (["lower"] * 3, "holds"), (["lower", "unclear", "higher"], "not shown"), (["lower", "lower", "higher"], "partly"),
    (["higher", "unclear"], "contradicted"), (["unclear"] * 3, "not shown")])
def test_count_verdict(cells, want):
    assert C.count_verdict(cells) == want


def test_tables_put_the_scales_side_by_side(tmp_path):
    a = _grid(tmp_path / "a", {"D_TD": {"nme": -0.01}})
    b = _grid(tmp_path / "b", {"D_TD": {"nme": +0.01}})
    md = C.scales_markdown({"400 steps": a, "converged": b})
    full_a = a["table3"][ex.FULL]["tracking"]["A"]["nme"]
    assert f"{100 * full_a['mean']:.2f} ± {100 * full_a['std']:.2f}" in md
    assert md.count("\n") == 2 + len(ex.SLUGS)
    v = C.verdict_markdown({"400 steps": a, "converged": b})
    assert v.splitlines()[2].startswith("| 1. ") and "**partly**" in v.splitlines()[2]
    assert "**contradicted**" in v.splitlines()[2]


def test_grid_table2_rows_are_the_seed_means_with_mean_speed(tmp_path):
    from tdd_lite.report import table2_markdown

    summary = _grid(tmp_path, {"D_TD": {"jitter_ratio": -1.0}})
    summary["table2"] = [{"config": ex.BASELINE, "filter": "none", "categories": {
        "A": {"nme": {"mean": 0.031}, "lost_tracks": {"mean": 4 / 3}}}}]
    results = [{"label": ex.BASELINE, "evaluation": {"meta": {"tracking_fps": f}}} for f in (10.0, 14.0)]
    rows = C.grid_table2_rows(summary, results, " (converged)")
    assert rows == [{"label": "no discriminator, raw (converged)", "fps": 12.0,
                     "categories": {"A": {"nme": 0.031, "lost_tracks": 4 / 3}}}]
    md = table2_markdown(rows)
    assert "| no discriminator, raw (converged) | 3.10 / - / - |" in md and "1.3 / - / -" in md and "| 12.0 |" in md
