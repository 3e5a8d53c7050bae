"""report.category_table's column groups (a table narrow enough for a book page) and the CED figure's one legend
below the panels (none inside a panel, where it would cover the curves)."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from tdd_lite import report  # noqa: E402


def _results():
    rng = np.random.default_rng(0)
    methods = {}
    for name in ("tracking", "tracking + centred", "GT crops"):
        cats = {c: {k: 0.05 for k, _, _ in report.COLUMNS} for c in ("A", "B")}
        methods[name] = {"categories": cats, "frame_nme": {c: list(rng.uniform(0, 0.1, 50)) for c in ("A", "B")}}
    return {"methods": methods}


def test_column_groups_cover_every_metric_once_and_subset_the_table():
    groups = report.ACCURACY_COLUMNS + report.STABILITY_COLUMNS + report.SHAPE_COLUMNS
    assert sorted(groups) == sorted(k for k, _, _ in report.COLUMNS)
    table = report.category_table(_results(), "A", report.STABILITY_COLUMNS)
    header = table.splitlines()[0]
    assert "dNME %" in header and "NME io %" not in header and header.count("|") == len(report.STABILITY_COLUMNS) + 2
    assert report.category_table(_results(), "A").splitlines()[0].count("|") == len(report.COLUMNS) + 2
    with pytest.raises(ValueError, match="unknown metric"):
        report.category_table(_results(), "A", ["nme", "speed"])


def test_ced_legend_sits_below_the_panels():
    import matplotlib.pyplot as plt

    fig = report.ced_figure(_results())
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["tracking", "tracking + centred", "GT crops"]
    fig.canvas.draw()
    legend_top = fig.legends[0].get_window_extent().y1
    assert all(legend_top <= ax.get_window_extent().y0 for ax in fig.axes)
    plt.close(fig)
