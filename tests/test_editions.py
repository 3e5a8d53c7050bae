"""The two editions of the built book: the student edition holds no line of any reference solution (nor the
instructor-only grading notes); the instructor edition shows the solutions and their passing checks.

Needs the built books (``make book``, ``make book-instructor``); ``make test`` builds them and sets
``TDD_REQUIRE_BROWSER=1``, so that a missing book fails instead of skipping.
"""

from __future__ import annotations

import html
import html.parser
import json
import os
import re
import warnings
import zipfile

import nbformat
import pytest

from tdd_lite import coursework as cw

from .conftest import ROOT
from .test_exercises import _solution_lines

STUDENT = ROOT / "_build" / "html"
INSTRUCTOR = ROOT / "_build" / "instructor" / "html"
REQUIRED = os.environ.get("TDD_REQUIRE_BROWSER") == "1"


def _need(path) -> None:
    if not (path / "index.html").exists():
        (pytest.fail if REQUIRED else pytest.skip)(f"{path}/index.html missing: build the book first")


class _Text(html.parser.HTMLParser):
    """The visible text of a page, line by line (code blocks keep their lines)."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _lines(page) -> set[str]:
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return {line.strip() for line in html.unescape("".join(parser.parts)).splitlines() if line.strip()}


def _n_questions(master) -> int:
    return sum(c["cell_type"] == "raw" and "".join(c["source"]).startswith("# BEGIN QUESTION")
               for c in cw.load(master)["cells"])


def _all_solution_lines() -> set[str]:
    return set().union(*(_solution_lines(m) for m in cw.masters()))


def test_student_edition_contains_no_solution():
    _need(STUDENT)
    solutions = _all_solution_lines()
    assert len(solutions) > 40
    pages = sorted(p for p in STUDENT.rglob("*.html") if "_static" not in p.parts)
    leaks = {}
    for page in pages:
        raw = page.read_text(encoding="utf-8", errors="replace")
        hit = sorted(solutions & _lines(page))
        if hit or "BEGIN SOLUTION" in raw or "Grading notes (instructor edition only)" in raw:
            leaks[page.relative_to(STUDENT).as_posix()] = hit or ["marker"]
    assert not leaks, leaks
    # the copied sources and search index of the student edition hold no solution either
    sources = [p for p in (STUDENT / "_sources").rglob("*") if p.is_file()]
    text = "\n".join(p.read_text(errors="replace") for p in sources)
    text += (STUDENT / "searchindex.js").read_text(errors="replace")
    # the chapter notebooks teach some of the same code (e.g. 03's eq. 1 in one line): those lines are course text,
    # not a leak of the graded sets, so only lines found nowhere in notebooks/ count here
    taught = "\n".join(p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert not [s for s in solutions if s in text and s not in taught]
    ex = sorted((STUDENT / "book" / "exercises").glob("ex*.html"))
    assert len(ex) == len(cw.masters()) and all("grader.check" in p.read_text() for p in ex)


def test_instructor_edition_shows_solutions_and_passing_checks():
    _need(INSTRUCTOR)
    solutions = _all_solution_lines()
    for master in cw.masters():
        page = INSTRUCTOR / "book" / "exercises" / f"{master.stem}.html"
        assert page.exists(), page
        lines, raw = _lines(page), page.read_text()
        assert _solution_lines(master) <= lines | {s for s in solutions if s in raw}, master.name
        assert raw.count(" passed!") >= _n_questions(master), master.name   # otter: "q1 passed! ..."
        assert "Test case failed" not in raw, master.name
    assert "Grading notes (instructor edition only)" in (INSTRUCTOR / "book" / "for_instructors.html").read_text()


@pytest.mark.parametrize("edition", ["student", "instructor"])
def test_exercise_pages_title_first_and_a_working_download(edition):
    """Each exercise page opens with its title (otter's set-up cell below it) and links, relatively, to a zip in
    the built site holding the student notebook with its public checks (no solution line)."""
    root = STUDENT if edition == "student" else INSTRUCTOR
    _need(root)
    solutions = _all_solution_lines()
    for master in cw.masters():
        page = root / "book" / "exercises" / f"{master.stem}.html"
        raw = page.read_text(encoding="utf-8")
        body = raw[raw.index('<article'):]
        assert body.index("<h1") < body.index("Initialize Otter"), f"{page.name}: otter's cell above the title"
        links = re.findall(r'<a [^>]*href="([^"]+\.zip)"', raw)
        assert len(set(links)) == 1, f"{page.name}: zip links {links}"
        href = html.unescape(links[0])
        assert not re.match(r"^([a-z]+:|/)", href), f"{page.name}: {href} is not a relative link"
        target = (page.parent / href).resolve()
        assert target.is_file() and root.resolve() in target.parents, f"{page.name}: {href} not in the site"
        with zipfile.ZipFile(target) as z:
            assert z.namelist() == [f"{master.stem}/{master.name}"], z.namelist()
            nb = z.read(z.namelist()[0]).decode()
        assert '"tests"' in nb and "grader.check" in nb and "otter.Notebook(" in nb, master.name
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nbformat's MissingIDFieldWarning would be printed under otter's cell
            nbformat.validate(nbformat.reads(nb, as_version=4))
        assert "MissingIDFieldWarning" not in raw and "site-packages" not in raw, f"{page.name}: a warning printed"
        assert not [s for s in solutions if json.dumps(s)[1:-1] in nb], f"{target.name}: a solution line in the zip"
