"""Code fits the book's content column: no line of a notebook's or a graded set's code cell, nor of a code block in
the pages' Markdown, is longer than LIMIT characters (at the book's code font, book/css/tdd_book.css, 100 characters
fill the column of a 1280 px window; longer lines are cut off behind a scroll bar). Printed lines are measured in the
built pages by tests/test_browser.py."""

import json
import re

import pytest

from .conftest import ROOT

LIMIT = 100
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("ex[0-9][0-9]_*.ipynb"))
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


FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*(\{[^}]*\})?\s*([\w+-]*)\s*.*$")


def fenced_code_lines(text: str) -> list[str]:
    """The lines inside the Markdown code blocks of ``text`` (```` ```bash ```` or a bare ```` ``` ````), not
    the prose inside directive blocks (```` ```{dropdown} ````, which may hold a code block themselves)."""
    stack, out = [], []
    for line in text.splitlines():
        m = FENCE.match(line)
        if m and not (stack and stack[-1] == "code" and (m.group(2) or m.group(3))):
            if m.group(2):
                stack.append("directive")
            elif m.group(3):
                stack.append("code")
            elif stack:
                stack.pop()   # a bare fence closes the innermost block
            else:
                stack.append("code")
            continue
        if stack and stack[-1] == "code":
            out.append(line)
    return out


def markdown_sources():
    """(name, Markdown text) of every page's prose: the book's pages, the notebooks' Markdown cells and what
    the pages include (the reference model's card, the grading notes)."""
    for path in sorted((ROOT / "book").glob("*.md")) + [ROOT / "tdd_lite" / "assets" / "reference_g.md",
                                                         ROOT / "exercises" / "grading_notes.md"]:
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                yield f"{path.name} cell {cell.get('id')}", "".join(cell["source"])


def test_fenced_code_in_pages_fits_the_column():
    found = [(name, len(line), line.strip()[:60]) for name, text in markdown_sources()
             for line in fenced_code_lines(text) if len(line) > LIMIT]
    assert not found, f"code-block lines over {LIMIT} characters in the pages (where, length, start): {found}"


def test_fenced_code_lines_are_found():
    text = "x\n```bash\nshort\n" + "y" * 120 + "\n```\n```{dropdown} Answer\n" + "p" * 120 + "\n```python\n" \
           "inner\n```\n```\n"
    assert fenced_code_lines(text) == ["short", "y" * 120, "inner"]


def shown_exercise_lines(path):
    """(cell id, length, start) of the long lines of a graded set's master that reach a page: every code cell but
    otter's test cells (between the raw cells ``# BEGIN TESTS`` and ``# END TESTS``: they go into the notebook's
    metadata, never onto a page)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    found, in_tests = [], False
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "raw":
            head = src.strip().upper()
            in_tests = head.startswith("# BEGIN TESTS") or (in_tests and not head.startswith("# END TESTS"))
        elif cell["cell_type"] == "code" and not in_tests:
            found += [(cell.get("id"), len(line), line.strip()[:60]) for line in src.splitlines() if len(line) > LIMIT]
    return found


@pytest.mark.parametrize("path", EXERCISES, ids=[p.name for p in EXERCISES])
def test_exercise_code_lines_fit_the_column(path):
    """The graded sets' code cells (statement, stub and solution: shown in the two editions) fit as well."""
    found = shown_exercise_lines(path)
    assert not found, f"{path.name}: code lines over {LIMIT} characters (cell id, length, start): {found}"
