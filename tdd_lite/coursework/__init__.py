"""Coursework: the graded exercises of the book, built with otter-grader from one master notebook per chapter.

Sources: ``exercises/exNN_*.ipynb`` (otter-grader *master* notebooks: statement, reference solution between
``# BEGIN SOLUTION`` / ``# END SOLUTION``, public tests and ``hidden: true`` tests). Everything else is generated:

* :func:`assign` runs ``otter assign`` (offline): ``student/`` (stubs, public tests only, ``grader.check("q1")``)
  and ``autograder/`` (solutions, every test, the ``*-autograder_*.zip`` that ``otter run`` grades with).
* :func:`write_book_pages` puts one page per exercise set into ``book/exercises/`` for the book: the student
  notebook (not executed) in the student edition, the solution notebook (executed, every check shown) in the
  instructor edition; beside each page, ``exNN_*.zip`` (the student notebook with its public checks, to work on
  offline), linked from the page.
* Otter puts its set-up cell (``grader = otter.Notebook(...)``) first; :func:`title_first` moves it below the
  notebook's title, in every notebook :func:`assign` writes (it only has to run before the first ``grader.check``).
* :func:`run_tests` runs one question's otter tests in a namespace (the grader test uses it to show that every
  solution passes, every stub fails and each plausible wrong answer fails).

Command line: ``python -m tdd_lite.coursework assignments OUT`` and ``python -m tdd_lite.coursework book-pages
EDITION`` (``--exercises DIR``: another folder of masters). Nothing the instructor owns is replaced: ``OUT`` carries a
marker (``.tdd_lite-output.json``) listing the files the builder wrote; a rebuild replaces only those (a graded
``OUT/ex01/grades.csv`` stays), refuses to write over any other file, and an unmarked folder is used only when it
is empty or an earlier build with nothing added. ``book-pages`` builds into a temporary folder and swaps it in
only when every page is built, so a failed build keeps the previous pages. Errors are one line
(``python -m tdd_lite.coursework: error: ...``) naming the path or notebook; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tdd_lite.commands import ArgumentParser, guarded, pop_debug
from tdd_lite.errors import DataError, UsageError, require_module
from tdd_lite.files import check_writable, claim_folder, interrupt_cleanup, replace_own, write_file

ROOT = Path(__file__).resolve().parents[2]
EXERCISES = ROOT / "exercises"
BOOK_PAGES = ROOT / "book" / "exercises"
EDITIONS = ("student", "instructor")


def masters(folder: Path = EXERCISES) -> list[Path]:
    """The master notebooks ``exNN_*.ipynb``, in order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}; expected the folder "
                        "of exercise master notebooks (exNN_*.ipynb)")
    found = sorted(folder.glob("ex[0-9][0-9]_*.ipynb"))
    if not found:
        raise DataError(f"{folder}: no exercise master notebooks (exNN_*.ipynb)")
    return found


def require_course_tools() -> None:
    """Stop with one line naming the install (the ``course`` extra) when PyYAML or otter-grader is missing."""
    require_module("yaml", "pyyaml", "course", "python -m tdd_lite.coursework")
    require_module("otter", "otter-grader", "course", "python -m tdd_lite.coursework")


def check_master(master: Path) -> None:
    """What otter would fail on with a traceback, said in one line naming ``master``: not UTF-8 JSON, not a
    notebook, or a config cell (``# ASSIGNMENT CONFIG``, ``# BEGIN QUESTION``) that is not valid YAML."""
    import yaml

    master = Path(master)
    try:
        nb = json.loads(master.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{master}: not UTF-8 text; expected a Jupyter notebook (JSON)") from None
    except ValueError as e:
        raise DataError(f"{master}: not valid JSON ({e}); expected a Jupyter notebook") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) and "cell_type" in c and "source" in c
                                              for c in cells):
        raise DataError(f"{master}: no list of cells with 'cell_type' and 'source'; expected a Jupyter notebook")
    for k, cell in enumerate(cells, 1):
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else str(cell["source"])
        head = src.lstrip().split("\n", 1)[0].strip()
        if cell["cell_type"] == "raw" and head.upper() in ("# ASSIGNMENT CONFIG", "# BEGIN QUESTION"):
            try:
                conf = yaml.safe_load(src)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise DataError(f"{master}: cell {k} ({head}): not valid YAML"
                                f"{where} ({getattr(e, 'problem', None) or type(e).__name__}); expected otter's "
                                "key: value settings") from None
            if conf is not None and not isinstance(conf, dict):
                raise DataError(f"{master}: cell {k} ({head}): a YAML {type(conf).__name__}; expected otter's "
                                "key: value settings")


def otter_failure(text: str) -> str:
    """The exception otter ended with, as one line (``Name: message``), from its stderr; else its last line."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        m = re.match(r"^([A-Za-z_][\w.]*): (.*)$", lines[i])
        if m and m.group(1).split(".")[-1].endswith(("Error", "Exception", "Exit")):
            rest = [m.group(2).strip()] + [ln.strip() for ln in lines[i + 1:]
                                           if ln.strip() and set(ln.strip()) != {"^"}]
            return f"{m.group(1).split('.')[-1]}: {' '.join(x for x in rest if x)}"
    tail = [ln.strip() for ln in lines if ln.strip()]
    return tail[-1] if tail else "no message"


def is_init_cell(cell: dict) -> bool:
    """Otter's set-up cell (``import otter`` / ``grader = otter.Notebook(...)``)."""
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else str(cell["source"])
    return cell["cell_type"] == "code" and "otter.Notebook(" in src


def title_first(nb: dict) -> dict:
    """``nb`` with its title cell (the first markdown cell starting with a ``# `` heading) above otter's set-up
    cell, which otter writes as the first cell: on a page the title then comes first. The set-up cell moves to
    just below the title, so it still runs before any question's ``grader.check``. Unchanged when there is no
    set-up cell, no title, or the title already comes first."""
    cells = nb["cells"]
    init = next((i for i, c in enumerate(cells) if is_init_cell(c)), None)
    title = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                  and "".join(c["source"]).lstrip().startswith("# ")), None)
    if init is None or title is None or title < init:
        return nb
    out = dict(nb)
    rest = [c for i, c in enumerate(cells) if i != init]
    at = rest.index(cells[title]) + 1
    out["cells"] = rest[:at] + [cells[init]] + rest[at:]
    return out


_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # nbformat 4.5's rule for a cell id


def with_cell_ids(nb: dict) -> dict:
    """``nb`` as nbformat 4.5 with every cell's ``id`` present and unique (kept where it is valid and unused,
    ``cell-N`` otherwise). otter assign writes cells without ids; ``otter.Notebook`` then validates the notebook
    and nbformat prints a ``MissingIDFieldWarning`` (with the path of the venv) into the first cell's output."""
    seen: set[str] = set()
    cells = []
    for i, cell in enumerate(nb["cells"]):
        cid = cell.get("id")
        if not isinstance(cid, str) or not _CELL_ID.match(cid) or cid in seen:
            cid = next(c for c in (f"cell-{i}", *(f"cell-{i}-{k}" for k in range(1, len(nb["cells"]) + 2)))
                       if c not in seen)
        seen.add(cid)
        cells.append({**cell, "id": cid})
    return {**nb, "cells": cells, "nbformat": 4, "nbformat_minor": max(5, int(nb.get("nbformat_minor", 0)))}


def _tidy(path: Path) -> None:
    """The title above otter's set-up cell (:func:`title_first`) and cell ids (:func:`with_cell_ids`)."""
    nb = load(path)
    new = with_cell_ids(title_first(nb))
    if new != nb:
        path.write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def assign(master: Path, out: Path) -> tuple[Path, Path]:
    """``otter assign MASTER OUT``: returns (student notebook, autograder folder). ``out`` must not exist (a
    temporary folder: :func:`build_assignments` installs from it)."""
    master, out = Path(master).resolve(), Path(out).resolve()
    if out.exists():
        raise DataError(f"{out}: exists; otter assign writes into a new folder")
    check_master(master)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "otter", "assign", "--no-pdfs", str(master), str(out)],
                          capture_output=True, text=True, env=env, cwd=master.parent)
    student = out / "student" / master.name
    if proc.returncode != 0 or not student.exists():
        why = otter_failure(proc.stderr or proc.stdout) if proc.returncode != 0 else "it wrote no student notebook"
        raise DataError(f"{master}: otter assign failed: {why}")
    for nb in (student, out / "autograder" / master.name):
        if nb.exists():
            _tidy(nb)
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


ASSIGNMENTS_COMMAND = "coursework assignments"


def build_assignments(out: Path, folder: Path = EXERCISES) -> list[Path]:
    """Every exercise set into ``out/exNN/{student,autograder}``; returns the set folders.

    Every set is built (``otter assign``) into a temporary folder first, so a broken master changes nothing in
    ``out``. ``out`` is claimed with the output rule (:mod:`tdd_lite.files`): a new or empty folder, or one an
    earlier build marked. A rebuild deletes only the files the marker lists (e.g. last build's timestamped
    autograder zip) and writes the new ones; any other file (an instructor's ``ex01/grades.csv``) stays, and a
    file the build would have to write over that it did not write itself stops it before anything changes.
    """
    out = Path(out)
    found = masters(folder)
    claim_folder(out, ASSIGNMENTS_COMMAND, overwrite=True, dry_run=True)  # refuse before minutes of otter
    with tempfile.TemporaryDirectory(prefix="tdd-lite-assignments-") as tmp:
        files: dict[str, Path] = {}
        made = []
        for master in found:
            name = master.stem.split("_", 1)[0]
            assign(master, Path(tmp) / name)
            for f in sorted((Path(tmp) / name).rglob("*")):
                if f.is_file():
                    files[f.relative_to(tmp).as_posix()] = f
            made.append(out / name)
        claimed = claim_folder(out, ASSIGNMENTS_COMMAND, overwrite=True)
        with interrupt_cleanup(claimed):
            for rel in files:  # every destination checked before the first file is replaced
                check_writable(claimed, rel)
            replace_own(claimed, keep=files)
            for rel, src in files.items():
                write_file(claimed, rel, src.read_bytes())
    return made


ZIP_TIME = (2020, 1, 1, 0, 0, 0)   # a fixed time in the zip entries: the same set gives the same bytes


def student_zip(student_dir: Path, zip_path: Path, name: str) -> list[str]:
    """Everything otter wrote for the student (``student_dir``: the notebook, whose metadata holds the public
    checks, and a ``tests/`` folder when the set keeps its tests in files) into ``zip_path``, under one folder
    ``name/``; returns the names in the zip. The notebook runs ``grader.check`` offline from that folder."""
    files = sorted(f for f in Path(student_dir).rglob("*") if f.is_file())
    names = []
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in files:
            info = zipfile.ZipInfo(f"{name}/{f.relative_to(student_dir).as_posix()}", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, f.read_bytes())
            names.append(info.filename)
    return names


def download_cell(zip_name: str, notebook_name: str) -> dict:
    """The markdown cell below an exercise page's title: a link to the set's zip and how to run it locally."""
    return {"cell_type": "markdown", "metadata": {}, "source": [
        f"**Work on it on your machine:** {{download}}`{zip_name} <{zip_name}>` holds this notebook with its "
        "public checks (`grader.check` runs them offline). Unzip it, open "
        f"`{notebook_name}` in JupyterLab from an environment with this course's package and otter-grader "
        "installed (`make lab` in a copy of the course repository, or `pip install -e .` there), and run the "
        "cells from the top.\n"]}


def _with_download(nb: dict, cell: dict) -> dict:
    """``nb`` with ``cell`` right after its title cell (after the first cell when there is none)."""
    cells = nb["cells"]
    title = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                  and "".join(c["source"]).lstrip().startswith("# ")), 0)
    return dict(nb, cells=cells[:title + 1] + [cell] + cells[title + 1:])


def write_book_pages(edition: str, dest: Path = BOOK_PAGES, folder: Path = EXERCISES) -> list[Path]:
    """The exercise pages of one edition into ``dest`` (generated; ``dest/.gitignore`` keeps them out of git).

    student: otter's student notebooks (stubs, public checks), not executed in the book.
    instructor: the solution notebooks, executed by the book so every ``grader.check`` shows its result.
    Both: ``exNN_*.zip`` beside each page (:func:`student_zip`: the student notebook and its public checks; no
    solution in either edition), linked below the page's title (:func:`download_cell`; Sphinx copies the file
    into the site's ``_downloads/``, so the link is relative and works offline).
    ``grading_notes.md`` (included by the page *For instructors*): ``exercises/grading_notes.md`` in the
    instructor edition, a one-line pointer in the student edition.

    The pages are built into a temporary folder beside ``dest`` and swapped in only when all are built: a
    failed build (a broken master) leaves the previous pages as they were. ``dest`` is replaced only when it
    carries the ``.gitignore`` this function writes.
    """
    if edition not in EDITIONS:
        raise UsageError(f"edition {edition!r}: expected one of {EDITIONS}")
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise DataError(f"{dest}: not a folder (a file or a link); expected the book's exercise pages folder")
    if dest.exists() and not (dest / ".gitignore").is_file():
        raise DataError(f"{dest} exists and was not made by tdd_lite.coursework (no .gitignore marker): "
                        "not replacing it")
    found = masters(folder)
    if not dest.parent.is_dir():
        raise DataError(f"{dest.parent}: no such folder; expected the book folder that holds {dest.name}/")
    new = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    try:
        (new / ".gitignore").write_text("# generated by tdd_lite.coursework.write_book_pages\n*\n")
        notes = Path(folder) / "grading_notes.md"
        (new / "grading_notes.md").write_text(
            notes.read_text(encoding="utf-8") if edition == "instructor" and notes.exists()
            else "*The grading notes are in the instructor edition (`make book-instructor`).*\n", encoding="utf-8")
        pages = []
        with tempfile.TemporaryDirectory() as tmp:
            for master in found:
                student, autograder = assign(master, Path(tmp) / master.stem)
                src = student if edition == "student" else autograder / master.name
                zip_name = f"{master.stem}.zip"
                student_zip(student.parent, new / zip_name, master.stem)
                nb = with_cell_ids(_with_download(load(src), download_cell(zip_name, master.name)))
                nb["metadata"]["mystnb"] = {"execution_mode": "off" if edition == "student" else "force"}
                (new / master.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
                pages.append(dest / master.name)
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        if dest.exists():
            dest.rename(old)
        new.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(new, ignore_errors=True)  # gone already after a successful swap
    return pages


def main(argv: list[str] | None = None) -> int:
    prog = "python -m tdd_lite.coursework"
    argv, debug = pop_debug(sys.argv[1:] if argv is None else list(argv))
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=ArgumentParser)
    a = sub.add_parser("assignments", help="student notebooks and autograder zips into OUT/exNN/")
    a.add_argument("out", type=Path)
    b = sub.add_parser("book-pages", help="the exercise pages of the book for one edition")
    b.add_argument("edition", choices=EDITIONS)
    for p in (a, b):
        p.add_argument("--exercises", type=Path, default=EXERCISES, metavar="DIR",
                       help="folder of the master notebooks exNN_*.ipynb (default: the repository's exercises/)")
    args = parser.parse_args(argv)

    def go() -> int:
        require_course_tools()
        if args.cmd == "assignments":
            for d in build_assignments(args.out, args.exercises):
                zips = sorted((d / "autograder").glob("*.zip"))
                print(f"{d.name}: student/{d.name}*.ipynb, autograder/{zips[-1].name if zips else '(no zip)'}")
        else:
            pages = write_book_pages(args.edition, folder=args.exercises)
            print(f"book/exercises: {len(pages)} {args.edition} pages")
        return 0

    return guarded(prog, go, debug)
