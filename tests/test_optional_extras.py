"""The runtime install (``pip install .``) carries no notebook or course toolchain: what needs one of the extras
says in one line which to install. A missing package is simulated in a subprocess (``sys.modules[name] = None``
makes every import of it fail, whatever this venv has); with the package present the same call works."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests._cli import ROOT


def _run(code: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TDD_DEBUG"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(TDD_FAST="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    script = "".join(f"import sys; sys.modules[{m!r}] = None\n" for m in block) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


EXPLORER = """
    from tdd_lite.errors import UsageError
    from tdd_lite.widgets import FaceExplorer
    try:
        FaceExplorer()
    except UsageError as e:
        print("ERR", e)
    else:
        print("OK")
"""


@pytest.mark.slow
def test_explorer_without_ipywidgets_names_the_book_extra():
    r = _run(EXPLORER, block=("ipywidgets",))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERR the interactive explorers needs ipywidgets"), r.stdout
    assert 'pip install ".[book]"' in lines[0]


@pytest.mark.slow
def test_explorer_with_ipywidgets_builds():
    pytest.importorskip("ipywidgets")
    r = _run(EXPLORER)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr


@pytest.mark.parametrize("missing, package", [("yaml", "pyyaml"), ("otter", "otter-grader")])
def test_coursework_without_its_tools_is_one_line_exit_2(tmp_path, missing, package):
    r = _run(f"""
        import sys
        from tdd_lite.coursework import main
        sys.exit(main(["assignments", {str(tmp_path / 'out')!r}]))
    """, block=(missing,))
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"needs {package}, which is not installed" in err[0], r.stderr
    assert 'pip install ".[course]"' in err[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_module_missing_inside_an_installed_package_is_not_blamed_on_the_extra():
    """require_module only translates the absence of the module asked for (or of its parent package); a module
    that is there but lacks one of its own imports keeps its own error."""
    r = _run("""
        from tdd_lite.errors import UsageError, require_module
        try:
            require_module("tdd_lite.track", "x", "book", "this")   # present, but tqdm (its import) is not
        except ModuleNotFoundError as e:
            print("RAW", e.name)
        try:
            require_module("tdd_lite.no_such_module_here", "x", "book", "this")
        except UsageError as e:
            print("ONE LINE", e)
    """, block=("tqdm",))
    assert r.returncode == 0, r.stdout + r.stderr
    expected = ['RAW tqdm.auto',
                'ONE LINE this needs x, which is not installed: pip install ".[book]" from the repository '
                '(or pip install x)']
    assert r.stdout.strip().splitlines() == expected, r.stdout
