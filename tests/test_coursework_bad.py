"""The coursework builder (`python -m tdd_lite.coursework`, what `make assignments` runs) with bad input, from the
user's side: exit status, one error line naming the path or notebook, and the instructor's files before and after.

One master (ex01) is copied into a temporary exercises folder (``--exercises``), so a build takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._cli import ROOT

PROG = "python -m tdd_lite.coursework"
MASTER = sorted((ROOT / "exercises").glob("ex01_*.ipynb"))[0]


def coursework(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TDD_DEBUG"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "tdd_lite.coursework", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def one_line_error(r: subprocess.CompletedProcess, code: int, phrase: str) -> str:
    text = r.stdout + r.stderr
    assert "Traceback" not in text, text
    assert r.returncode == code, f"exit {r.returncode}, expected {code}:\n{text}"
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error:"), r.stderr
    assert phrase in lines[0], f"{phrase!r} not in {lines[0]!r}"
    assert " | " not in lines[0], lines[0]  # not otter's traceback lines glued together
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".tdd_lite-output.json"}


@pytest.fixture
def exercises(tmp_path) -> Path:
    d = tmp_path / "exercises"
    d.mkdir()
    shutil.copy(MASTER, d / MASTER.name)
    return d


def _broken(exercises: Path, change) -> Path:
    nb = json.loads((exercises / MASTER.name).read_text())
    text = change(nb)
    (exercises / MASTER.name).write_text(text if isinstance(text, str) else json.dumps(nb))
    return exercises / MASTER.name


def _cell(nb: dict, head: str) -> dict:
    return next(c for c in nb["cells"] if "".join(c["source"]).lstrip().startswith(head))


BROKEN_MASTERS = {
    "truncated-json": (lambda nb: json.dumps(nb)[:4000], "not valid JSON"),
    "binary": (lambda nb: "\udcff", None),  # replaced below by bytes
    "not-a-notebook": (lambda nb: json.dumps([1, 2, 3]), "expected a Jupyter notebook"),
    "question-yaml": (lambda nb: _cell(nb, "# BEGIN QUESTION").update(
        source="# BEGIN QUESTION\nname: q1\npoints: [2\n"), "(# BEGIN QUESTION): not valid YAML at line"),
    "config-yaml": (lambda nb: _cell(nb, "# ASSIGNMENT CONFIG").update(source="# ASSIGNMENT CONFIG\nname: [ex01\n"),
                    "(# ASSIGNMENT CONFIG): not valid YAML"),
    "config-not-mapping": (lambda nb: _cell(nb, "# ASSIGNMENT CONFIG").update(source="# ASSIGNMENT CONFIG\n- a\n"),
                           "a YAML list; expected otter's key: value settings"),
    "end-solution-missing": (lambda nb: nb["cells"].remove(_cell(nb, "# END SOLUTION")),
                             "otter assign failed: AssignNotebookFormatException"),
}


@pytest.mark.parametrize("kind", [k for k in BROKEN_MASTERS if k != "binary"])
def test_a_broken_master_is_one_line_naming_the_notebook(kind, exercises, tmp_path):
    change, phrase = BROKEN_MASTERS[kind]
    master = _broken(exercises, change)
    r = coursework("assignments", tmp_path / "out", "--exercises", exercises)
    line = one_line_error(r, 1, phrase)
    assert str(master) in line
    assert not (tmp_path / "out").exists()  # nothing is made when a master is broken


def test_a_binary_master_is_one_line(exercises, tmp_path):
    (exercises / MASTER.name).write_bytes(bytes(range(256)) * 8)
    r = coursework("assignments", tmp_path / "out", "--exercises", exercises)
    one_line_error(r, 1, "not UTF-8 text; expected a Jupyter notebook")


def test_out_is_a_file(exercises, tmp_path):
    out = tmp_path / "grades.csv"
    out.write_text("student,points\nada,10\n")
    r = coursework("assignments", out, "--exercises", exercises)
    one_line_error(r, 2, "exists and is a file, not a folder")
    assert out.read_text() == "student,points\nada,10\n"


def test_out_under_a_file(exercises, tmp_path):
    (tmp_path / "notes").write_text("x")
    r = coursework("assignments", tmp_path / "notes" / "out", "--exercises", exercises)
    one_line_error(r, 1, "notes")
    assert (tmp_path / "notes").read_text() == "x"


def test_out_holding_the_instructors_files_is_refused(exercises, tmp_path):
    out = tmp_path / "course"
    (out / "ex01").mkdir(parents=True)
    (out / "ex01" / "graded_submissions.csv").write_text("ada,10\n")
    before = snapshot(out)
    r = coursework("assignments", out, "--exercises", exercises)
    one_line_error(r, 2, "holds files tdd-lite coursework assignments did not write ('ex01')")
    assert snapshot(out) == before


def test_out_is_a_symlink(exercises, tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    r = coursework("assignments", tmp_path / "link", "--exercises", exercises)
    one_line_error(r, 2, "is a symbolic link")


def test_exercises_folder_missing_or_empty(tmp_path):
    r = coursework("assignments", tmp_path / "out", "--exercises", tmp_path / "nope")
    one_line_error(r, 1, "no such folder; expected the folder of exercise master notebooks")
    (tmp_path / "empty").mkdir()
    r = coursework("assignments", tmp_path / "out", "--exercises", tmp_path / "empty")
    one_line_error(r, 1, "no exercise master notebooks")


def test_wrong_arguments_exit_2(tmp_path):
    r = coursework("assignment", tmp_path / "out")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "invalid choice" in r.stderr
    r = coursework("book-pages", "teacher")
    assert r.returncode == 2 and "invalid choice: 'teacher'" in r.stderr


def test_unwritable_parent_is_one_line(exercises, tmp_path):
    """We run as root, so permissions do not stop us: an immutable folder (chattr +i) stands in."""
    locked = tmp_path / "locked"
    locked.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(locked)]).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        r = coursework("assignments", locked / "out", "--exercises", exercises)
        one_line_error(r, 1, str(locked / "out"))
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)


@pytest.mark.slow
def test_a_rebuild_keeps_the_instructors_files_and_replaces_only_its_own(exercises, tmp_path):
    out = tmp_path / "course"
    r = coursework("assignments", out, "--exercises", exercises)
    assert r.returncode == 0, r.stderr
    first_zip = sorted((out / "ex01" / "autograder").glob("*.zip"))
    assert len(first_zip) == 1
    (out / "ex01" / "graded_submissions.csv").write_text("ada,10\nbob,7\n")
    (out / "ex01" / "student" / "feedback.md").write_text("see me\n")
    r = coursework("assignments", out, "--exercises", exercises)
    assert r.returncode == 0, r.stderr
    assert (out / "ex01" / "graded_submissions.csv").read_text() == "ada,10\nbob,7\n"
    assert (out / "ex01" / "student" / "feedback.md").read_text() == "see me\n"
    zips = sorted((out / "ex01" / "autograder").glob("*.zip"))
    assert len(zips) == 1 and zips != first_zip  # last build's timestamped zip replaced, not piled up
    # an instructor edits a generated notebook: the next build refuses and keeps the edit
    student = next((out / "ex01" / "student").glob("ex01_*.ipynb"))
    student.write_text(student.read_text().replace("Question 1", "Question One"))
    before = snapshot(out)
    r = coursework("assignments", out, "--exercises", exercises)
    one_line_error(r, 2, "ex01/student/ex01_morphable_model.ipynb was changed after")
    assert snapshot(out) == before


@pytest.mark.slow
def test_a_failed_book_pages_build_keeps_the_previous_pages(exercises, tmp_path):
    """book-pages builds beside the pages and swaps only on success (library call: the CLI writes book/)."""
    from tdd_lite.coursework import write_book_pages
    from tdd_lite.errors import DataError

    dest = tmp_path / "book" / "exercises"
    dest.parent.mkdir()
    pages = write_book_pages("student", dest=dest, folder=exercises)
    assert [p.name for p in pages] == [MASTER.name]
    before = snapshot(dest)
    _broken(exercises, BROKEN_MASTERS["end-solution-missing"][0])
    with pytest.raises(DataError, match="otter assign failed"):
        write_book_pages("instructor", dest=dest, folder=exercises)
    assert snapshot(dest) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["exercises"]  # no temporary folder left
