"""Code fits the book's content column: no line of a notebook's code cell is longer than LIMIT characters (at the
book's code font, about 100 characters fill the column; longer lines are clipped or scroll)."""

import json

import pytest

from .conftest import ROOT

LIMIT = 100
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PENDING: set[str] = set()


def long_lines(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(cell.get("id"), len(line), line.strip()[:60]) for cell in nb["cells"] if cell["cell_type"] == "code"
            for line in "".join(cell["source"]).splitlines() if len(line) > LIMIT]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_code_lines_fit_the_column(path):
    if path.name in PENDING:
        pytest.xfail(f"{path.name}: lines not wrapped yet")
    found = long_lines(path)
    assert not found, f"{path.name}: code lines over {LIMIT} characters (cell id, length, start): {found}"
