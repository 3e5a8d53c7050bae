"""The graded exercises (exercises/exNN_*.ipynb, otter-grader masters) grade what they claim to.

For every question of every set: the reference solution passes all its tests (public and hidden); the stub that
students get fails every single test case (so each case can fail); each plausible wrong answer in
exercises/wrong_answers.py fails; the student notebook carries no hidden test and no solution line. One set is
also run end to end the way a student and an instructor do: ``grader.check`` in a real kernel, offline, and
``otter run`` with the autograder zip.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import nbformat
import pytest

from tdd_lite import coursework as cw

from .conftest import ROOT

pytest.importorskip("otter")

MASTERS = cw.masters()
SETS = [m.stem.split("_", 1)[0] for m in MASTERS]


def _wrong_answers() -> dict:
    spec = importlib.util.spec_from_file_location("wrong_answers", ROOT / "exercises" / "wrong_answers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.WRONG


WRONG = _wrong_answers()


@pytest.fixture(scope="module")
def assigned(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    made = {}
    for master in MASTERS:
        name = master.stem.split("_", 1)[0]
        student, autograder = cw.assign(master, out / name)
        made[name] = (student, autograder / master.name, autograder)
    return made


def _solution_lines(master) -> set[str]:
    """Stripped lines between # BEGIN SOLUTION and # END SOLUTION in the master (the answer, not the stub)."""
    lines, inside = set(), False
    for cell in cw.load(master)["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            s = line.strip()
            if s == "# BEGIN SOLUTION":
                inside = True
            elif s == "# END SOLUTION":
                inside = False
            elif inside and len(s) >= 12 and not s.startswith("#"):
                lines.add(s)
    return lines


def test_every_set_has_at_least_two_questions_with_hidden_tests(assigned):
    counts = {}
    for name, (student, solution, _) in assigned.items():
        full, public = cw.question_tests(solution), cw.question_tests(student)
        counts[name] = len(full)
        assert len(full) >= 2, f"{name}: {len(full)} questions"
        for q, spec in full.items():
            cases = [c for s in spec["suites"] for c in s["cases"]]
            assert any(c["hidden"] for c in cases), f"{name} {q}: no hidden test"
            assert any(not c["hidden"] for c in cases), f"{name} {q}: no public test"
            pub = [c for s in public[q]["suites"] for c in s["cases"]]
            assert pub and not any(c["hidden"] for c in pub), f"{name} {q}: the student notebook carries hidden tests"
            assert all(c.get("failure_message") for c in pub), f"{name} {q}: a public test without a message"
    assert set(counts) == {f"ex0{i}" for i in range(1, 9)}, counts
    print("questions per set:", counts, "total", sum(counts.values()))


def test_every_set_is_a_page_of_the_book():
    """Each master has its page in _toc.yml (only_build_toc_files: a set missing there never reaches the book)."""
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    missing = [m.stem for m in MASTERS if f"file: book/exercises/{m.stem}\n" not in toc]
    assert not missing, f"_toc.yml lists no page for {missing} (add '- file: book/exercises/NAME' under Graded)"


@pytest.mark.parametrize("name", SETS)
def test_solutions_pass_stubs_and_wrong_answers_fail(assigned, name):
    student, solution, autograder = assigned[name]
    tests = cw.question_tests(solution)
    sol_env = cw.execute(cw.code_cells(solution), cwd=autograder)
    stub_env = cw.execute(cw.code_cells(student), cwd=student.parent)
    assert set(WRONG[name]) == set(tests), f"{name}: wrong answers for {sorted(WRONG[name])}, questions {sorted(tests)}"
    n_cases = n_wrong = 0
    for q, spec in tests.items():
        ok = cw.run_tests(spec, dict(sol_env))
        assert ok.passed, f"{name} {q}: the reference solution fails:\n{ok.summary}"
        # the stub fails every single case, public and hidden: each test can fail
        for s_i, suite in enumerate(spec["suites"]):
            for c_i, case in enumerate(suite["cases"]):
                one = copy.deepcopy(spec)
                one["suites"] = [dict(suite, cases=[case])]
                assert not cw.run_tests(one, dict(stub_env)).passed, f"{name} {q}: case {s_i}.{c_i} passes on the stub"
                n_cases += 1
        assert WRONG[name][q], f"{name} {q}: no wrong answer listed"
        for what, code in WRONG[name][q]:
            env = dict(sol_env)
            exec(compile(code, f"<wrong answer {name} {q}>", "exec"), env)  # noqa: S102
            res = cw.run_tests(spec, env)
            assert not res.passed, f"{name} {q}: the wrong answer '{what}' passes every test"
            n_wrong += 1
    print(f"{name}: {len(tests)} solutions pass; {n_cases} cases fail on the stubs; {n_wrong} wrong answers fail")


def test_public_failure_messages_do_not_show_the_solution(assigned):
    """What a student sees on a failed check (the public cases' code and messages) holds no solution line."""
    for master in MASTERS:
        name = master.stem.split("_", 1)[0]
        student = assigned[name][0]
        shown = json.dumps(cw.question_tests(student))
        leaked = [line for line in _solution_lines(master) if line in shown]
        assert not leaked, f"{name}: solution lines in the public tests: {leaked}"


def test_student_notebooks_hold_no_solution_line(assigned):
    for master in MASTERS:
        name = master.stem.split("_", 1)[0]
        student = assigned[name][0]
        lines = {line.strip() for src in cw.code_cells(student) for line in src.splitlines()}
        text = student.read_text()
        leaked = sorted(s for s in _solution_lines(master) if s in lines or json.dumps(s)[1:-1] in text)
        assert not leaked, f"{name}: solution lines in the student notebook: {leaked}"
        assert "BEGIN SOLUTION" not in text and "hidden" not in json.dumps(cw.question_tests(student)).replace(
            '"hidden": false', "")


def _is_title(cell) -> bool:
    return cell["cell_type"] == "markdown" and "".join(cell["source"]).startswith("# ")


def test_title_comes_before_otters_set_up_cell(assigned):
    """Handed-out and solution notebooks open with their title; otter's set-up cell follows it and still runs
    before every ``grader.check``."""
    for student, solution, _ in assigned.values():
        for nb in (student, solution):
            cells = cw.load(nb)["cells"]
            inits = [i for i, c in enumerate(cells) if cw.is_init_cell(c)]
            checks = [i for i, c in enumerate(cells) if "".join(c["source"]).strip().startswith("grader.check")]
            assert _is_title(cells[0]), f"{nb.name}: the first cell is not the title"
            assert inits == [1], f"{nb.name}: otter's set-up cell at {inits}, expected right below the title"
            assert checks and min(checks) > inits[0], nb.name


def test_title_first_moves_only_the_set_up_cell():
    init = {"cell_type": "code", "source": ['import otter\n', 'grader = otter.Notebook("x.ipynb")']}
    title = {"cell_type": "markdown", "source": ["# Title\n", "text"]}
    other = [{"cell_type": "code", "source": [f"x = {i}"]} for i in range(3)]
    nb = {"cells": [init, title, *other], "metadata": {"k": 1}}
    out = cw.title_first(nb)
    assert out["cells"] == [title, init, *other] and out["metadata"] == {"k": 1}
    assert nb["cells"][0] is init                       # the input is not changed
    assert cw.title_first(out) is out                   # already in order
    no_title = {"cells": [init, *other]}
    assert cw.title_first(no_title) is no_title
    late = {"cells": [other[0], init, other[1], title, other[2]]}
    assert cw.title_first(late)["cells"] == [other[0], other[1], title, init, other[2]]


def _valid_with_ids(pages: list[Path]) -> None:
    """The instructor pages run ``otter.Notebook`` in the book: a cell without an id there (the download cell, say)
    makes nbformat print a MissingIDFieldWarning, with the venv's path, under otter's set-up cell."""
    for page in pages:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nbformat.validate(nbformat.reads(page.read_text(), as_version=4))


def test_book_pages_student_edition_has_no_solution(tmp_path, assigned):
    pages = cw.write_book_pages("student", tmp_path / "pages")
    assert len(pages) == len(MASTERS)
    for master, page in zip(MASTERS, pages):
        text = page.read_text()
        leaked = [s for s in _solution_lines(master) if json.dumps(s)[1:-1] in text]
        assert not leaked, f"{page.name}: {leaked}"
        assert json.loads(text)["metadata"]["mystnb"]["execution_mode"] == "off"
        # the title, then the download line, then otter's set-up cell
        cells = json.loads(text)["cells"]
        assert _is_title(cells[0]) and cw.is_init_cell(cells[2]), page.name
        assert f"{{download}}`{master.stem}.zip <{master.stem}.zip>`" in "".join(cells[1]["source"]), page.name
        # the zip beside the page: the handed-out student notebook (public checks in its metadata), no solution
        with zipfile.ZipFile(page.with_suffix(".zip")) as z:
            assert z.namelist() == [f"{master.stem}/{master.name}"], z.namelist()
            inside = z.read(f"{master.stem}/{master.name}").decode()
        student = assigned[master.stem.split("_", 1)[0]][0]
        def no_ids(cells):   # otter gives the cells new random ids on every run
            return [{k: v for k, v in c.items() if k != "id"} for c in cells]

        assert no_ids(json.loads(inside)["cells"]) == no_ids(cw.load(student)["cells"]), page.name
        tests = cw.question_tests(student)
        assert json.loads(inside)["metadata"]["otter"]["tests"] == tests and len(tests) >= 2
        assert not [s for s in _solution_lines(master) if json.dumps(s)[1:-1] in inside], page.name
    _valid_with_ids(pages)
    inst = cw.write_book_pages("instructor", tmp_path / "pages")  # replaces its own folder
    assert all(any(json.dumps(s)[1:-1] in p.read_text() for s in _solution_lines(m)) for m, p in zip(MASTERS, inst))
    _valid_with_ids(inst)
    (tmp_path / "other").mkdir()
    with pytest.raises(cw.DataError, match="not made by"):
        cw.write_book_pages("student", tmp_path / "other")
    with pytest.raises(cw.UsageError):
        cw.write_book_pages("teacher", tmp_path / "pages")


@pytest.mark.slow
def test_grader_check_in_a_kernel_offline_and_otter_run(assigned, tmp_path):
    """A student's ``grader.check`` in a real kernel (no network needed), and the instructor's ``otter run``."""
    student, solution, autograder = assigned["ex03"]
    env = dict(os.environ, no_proxy="*", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    outputs = {}
    for label, nb in (("stub", student), ("solution", solution)):
        out = tmp_path / f"{label}.ipynb"
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(nb),
                        "--output", str(out)], check=True, capture_output=True, cwd=nb.parent, env=env, timeout=300)
        cells = json.loads(out.read_text())["cells"]
        outputs[label] = [json.dumps(c.get("outputs", [])) for c in cells
                          if c["cell_type"] == "code" and "".join(c["source"]).startswith("grader.check")]
    assert len(outputs["stub"]) == 2 and all("failed" in o for o in outputs["stub"]), outputs["stub"]
    assert all("All test cases passed" in o for o in outputs["solution"]), outputs["solution"]
    zips = sorted(autograder.glob("*-autograder_*.zip"))
    assert zips, "otter assign wrote no autograder zip"
    for label, nb, expect in (("stub", student, 0.0), ("solution", solution, 3.0)):
        res = tmp_path / f"run-{label}"
        res.mkdir()
        subprocess.run([sys.executable, "-m", "otter", "run", "-a", str(zips[-1]), "-o", str(res), str(nb)],
                       check=True, capture_output=True, env=env, timeout=300)
        scores = {t["name"]: t.get("score") for t in json.loads((res / "results.json").read_text())["tests"]}
        got = sum(v for k, v in scores.items() if k.startswith("q") and v is not None)
        assert got == pytest.approx(expect), (label, scores)


@pytest.mark.slow
def test_downloaded_zip_runs_grader_check_offline(assigned, tmp_path):
    """The zip of a book page, unzipped on its own: its notebook runs top to bottom in a kernel, offline; each
    ``grader.check`` fails on the stubs and passes once the reference solutions are typed into the same cells."""
    pages = cw.write_book_pages("student", tmp_path / "pages")
    page = next(p for p in pages if p.name.startswith("ex03"))
    with zipfile.ZipFile(page.with_suffix(".zip")) as z:
        z.extractall(tmp_path / "reader")
    folder = tmp_path / "reader" / page.stem
    stub = folder / page.name
    solved_cells = cw.load(assigned["ex03"][1])["cells"]
    nb = cw.load(stub)
    assert [c["cell_type"] for c in nb["cells"]] == [c["cell_type"] for c in solved_cells]
    solved = dict(nb, cells=[dict(c, source=s["source"]) for c, s in zip(nb["cells"], solved_cells)])
    (folder / "solved.ipynb").write_text(json.dumps(solved))
    env = dict(os.environ, no_proxy="*", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    outputs = {}
    for label, path in (("stub", stub), ("solved", folder / "solved.ipynb")):
        out = tmp_path / f"{label}-run.ipynb"
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", path.name,
                        "--output", str(out)], check=True, capture_output=True, cwd=folder, env=env, timeout=300)
        cells = json.loads(out.read_text())["cells"]
        outputs[label] = [json.dumps(c.get("outputs", [])) for c in cells
                          if c["cell_type"] == "code" and "".join(c["source"]).startswith("grader.check")]
    assert len(outputs["stub"]) == 2 and all("failed" in o for o in outputs["stub"]), outputs["stub"]
    assert len(outputs["solved"]) == 2, outputs["solved"]
    assert all("All test cases passed" in o for o in outputs["solved"]), outputs["solved"]


def test_bad_coursework_input_is_a_clear_error(tmp_path):
    with pytest.raises(cw.DataError, match="no exercise master notebooks"):
        cw.masters(tmp_path)
    broken = tmp_path / "ex99_broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(cw.DataError, match="ex99_broken.ipynb: not valid JSON"):  # checked before otter runs
        cw.assign(broken, tmp_path / "out")
    with pytest.raises(SystemExit) as exc:
        cw.main(["book-pages", "teacher"])
    assert exc.value.code == 2
    plain = tmp_path / "plain.ipynb"
    plain.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(cw.DataError, match="no otter tests"):
        cw.question_tests(plain)


def test_assign_takes_a_relative_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # `make assignments` passes _build/assignments, relative to the repository
    student, autograder = cw.assign(MASTERS[0], Path("rel") / "ex")
    assert student.resolve() == (tmp_path / "rel" / "ex" / "student" / MASTERS[0].name)
    assert any(autograder.glob("*-autograder_*.zip"))
    assert not (MASTERS[0].parent / "rel").exists()


def test_with_cell_ids_gives_every_cell_a_unique_valid_id():
    """otter assign writes cells without ids; the pages and zips carry nbformat 4.5 ids (valid ones kept)."""
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# t"},
             {"cell_type": "code", "metadata": {}, "source": "1", "outputs": [], "execution_count": None,
              "id": "keep-me"},
             {"cell_type": "code", "metadata": {}, "source": "2", "outputs": [], "execution_count": None,
              "id": "keep-me"},                     # a duplicate
             {"cell_type": "markdown", "metadata": {}, "source": "x", "id": "bad id!"},      # not nbformat's charset
             {"cell_type": "markdown", "metadata": {}, "source": "y", "id": "cell-0"}]      # clashes with a new one
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 4}
    out = cw.with_cell_ids(nb)
    ids = [c["id"] for c in out["cells"]]
    assert ids[1] == "keep-me" and len(set(ids)) == len(ids), ids
    assert [c["source"] for c in out["cells"]] == [c["source"] for c in cells]
    assert "id" not in cells[0] and out["nbformat_minor"] == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbformat.validate(nbformat.from_dict(out))
    with pytest.raises(nbformat.warnings.MissingIDFieldWarning):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nbformat.validate(nbformat.from_dict({**nb, "nbformat_minor": 5}))  # the ids as they came: invalid
