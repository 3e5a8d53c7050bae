"""Coursework: the graded exercises of the book, built with otter-grader from one master notebook per chapter.

Sources: ``exercises/exNN_*.ipynb`` (otter-grader *master* notebooks: statement, reference solution between
``# BEGIN SOLUTION`` / ``# END SOLUTION``, public tests and ``hidden: true`` tests). Everything else is generated:

* :func:`assign` runs ``otter assign`` (offline): ``student/`` (stubs, public tests only, ``grader.check("q1")``)
  and ``autograder/`` (solutions, every test, the ``*-autograder_*.zip`` that ``otter run`` grades with).
* :func:`write_book_pages` puts one page per exercise set into ``book/exercises/`` for the book: the student
  notebook (not executed) in the student edition, the solution notebook (executed, every check shown) in the
  instructor edition.
* :func:`run_tests` runs one question's otter tests in a namespace (the grader test uses it to show that every
  solution passes, every stub fails and each plausible wrong answer fails).

Command line: ``python -m tdd_lite.coursework assignments OUT`` and ``python -m tdd_lite.coursework book-pages
EDITION``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tdd_lite.errors import DataError, UsageError

ROOT = Path(__file__).resolve().parents[2]
EXERCISES = ROOT / "exercises"
BOOK_PAGES = ROOT / "book" / "exercises"
EDITIONS = ("student", "instructor")


def masters(folder: Path = EXERCISES) -> list[Path]:
    """The master notebooks ``exNN_*.ipynb``, in order."""
    found = sorted(Path(folder).glob("ex[0-9][0-9]_*.ipynb"))
    if not found:
        raise DataError(f"{folder}: no exercise master notebooks (exNN_*.ipynb)")
    return found


def assign(master: Path, out: Path) -> tuple[Path, Path]:
    """``otter assign MASTER OUT``: returns (student notebook, autograder folder). Replaces ``out`` whole."""
    master, out = Path(master).resolve(), Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "otter", "assign", "--no-pdfs", str(master), str(out)],
                          capture_output=True, text=True, env=env, cwd=master.parent)
    student = out / "student" / master.name
    if proc.returncode != 0 or not student.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DataError(f"{master.name}: otter assign failed: {' | '.join(tail)}")
    return student, out / "autograder"


def load(path: Path) -> dict:
    """A notebook as JSON."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def question_tests(notebook: Path) -> dict[str, dict]:
    """The otter test specs stored in a generated notebook's metadata (``{name: spec}``)."""
    meta = load(notebook).get("metadata", {}).get("otter", {})
    tests = meta.get("tests")
    if not isinstance(tests, dict) or not tests:
        raise DataError(f"{notebook}: no otter tests in the notebook metadata")
    return tests


def code_cells(notebook: Path) -> list[str]:
    """The code cells of a generated notebook, without otter's set-up and ``grader.check`` cells."""
    cells = []
    for cell in load(notebook)["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code" or "otter.Notebook(" in src or src.strip().startswith("grader.check"):
            continue
        cells.append(src)
    return cells


@dataclass
class Outcome:
    """The result of one question's tests: ``passed`` (every case), ``public_passed`` and the summary text."""

    passed: bool
    public_passed: bool
    summary: str


def run_tests(spec: dict, env: dict) -> Outcome:
    """Run one otter OK-format test spec against the namespace ``env`` (otter's own test runner)."""
    from otter.test_files.ok_test import OKTestFile

    test = OKTestFile.from_spec(spec)
    test.run(env)
    return Outcome(test.passed_all, test.passed_all_public, test.summary())


def execute(cells: list[str], cwd: Path | None = None) -> dict:
    """Execute code cells in one fresh namespace (like a kernel running the notebook top to bottom)."""
    env: dict = {"__name__": "__main__"}
    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        for src in cells:
            exec(compile(src, "<exercise cell>", "exec"), env)  # noqa: S102 - our own exercise notebooks
    finally:
        os.chdir(old)
    return env


def build_assignments(out: Path, folder: Path = EXERCISES) -> list[Path]:
    """Every exercise set into ``out/exNN/{student,autograder}``; returns the set folders."""
    out = Path(out)
    made = []
    for master in masters(folder):
        dest = out / master.stem.split("_", 1)[0]
        assign(master, dest)
        made.append(dest)
    return made


def write_book_pages(edition: str, dest: Path = BOOK_PAGES, folder: Path = EXERCISES) -> list[Path]:
    """The exercise pages of one edition into ``dest`` (generated; ``dest/.gitignore`` keeps them out of git).

    student: otter's student notebooks (stubs, public checks), not executed in the book.
    instructor: the solution notebooks, executed by the book so every ``grader.check`` shows its result.
    ``grading_notes.md`` (included by the page *For instructors*): ``exercises/grading_notes.md`` in the
    instructor edition, a one-line pointer in the student edition.
    """
    if edition not in EDITIONS:
        raise UsageError(f"edition {edition!r}: expected one of {EDITIONS}")
    dest = Path(dest)
    if dest.exists():
        marker = dest / ".gitignore"
        if not marker.exists():
            raise DataError(f"{dest} exists and was not made by tdd_lite.coursework (no .gitignore marker): "
                            "not replacing it")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / ".gitignore").write_text("# generated by tdd_lite.coursework.write_book_pages\n*\n")
    notes = Path(folder) / "grading_notes.md"
    (dest / "grading_notes.md").write_text(
        notes.read_text(encoding="utf-8") if edition == "instructor" and notes.exists()
        else "*The grading notes are in the instructor edition (`make book-instructor`).*\n", encoding="utf-8")
    pages = []
    with tempfile.TemporaryDirectory() as tmp:
        for master in masters(folder):
            student, autograder = assign(master, Path(tmp) / master.stem)
            src = student if edition == "student" else autograder / master.name
            nb = load(src)
            nb["metadata"]["mystnb"] = {"execution_mode": "off" if edition == "student" else "force"}
            page = dest / master.name
            page.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            pages.append(page)
    return pages


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tdd_lite.coursework", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("assignments", help="student notebooks and autograder zips into OUT/exNN/")
    a.add_argument("out", type=Path)
    b = sub.add_parser("book-pages", help="the exercise pages of the book for one edition")
    b.add_argument("edition", choices=EDITIONS)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "assignments":
            for d in build_assignments(args.out):
                zips = sorted((d / "autograder").glob("*.zip"))
                print(f"{d.name}: student/{d.name}*.ipynb, autograder/{zips[-1].name if zips else '(no zip)'}")
        else:
            pages = write_book_pages(args.edition)
            print(f"book/exercises: {len(pages)} {args.edition} pages")
    except (DataError, UsageError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    return 0
