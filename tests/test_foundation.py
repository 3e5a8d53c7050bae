"""The product's foundation: packaging, the two environments, the run-mode switch, notebook conventions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tdd_lite import config

from .conftest import NOTEBOOKS, ROOT, venv_bin

NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _req_name(spec: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+\-]+)\s*", spec)
    assert m, f"not pinned with ==: {spec!r}"
    return m.group(1).lower().replace("_", "-"), m.group(2)


def test_environment_yml_mirrors_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = py["optional-dependencies"]
    wanted = dict(_req_name(s) for s in py["dependencies"] + extras["book"] + extras["course"] + extras["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = dict(_req_name(s) for s in pip)
    assert have == wanted, f"environment.yml and pyproject differ: {set(have.items()) ^ set(wanted.items())}"


def test_torch_is_the_pinned_build():
    import torch
    import torchvision

    assert torch.__version__.split("+")[0] == "2.14.1"
    assert torchvision.__version__.split("+")[0] == "0.29.1"


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("ON", True), ("0", False),
                                            ("", False), ("no", False)])
def test_fast_mode_values(monkeypatch, value, expected):
    monkeypatch.setenv("TDD_FAST", value)
    assert config.fast_mode() is expected


def test_fast_mode_unset_is_full_run(monkeypatch):
    monkeypatch.delenv("TDD_FAST", raising=False)
    assert config.fast_mode() is False


def test_fast_mode_typo_raises(monkeypatch):
    monkeypatch.setenv("TDD_FAST", "ture")
    with pytest.raises(ValueError, match="TDD_FAST"):
        config.fast_mode()


def test_pick_device_refuses_missing_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert config.pick_device().type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        config.pick_device("cuda")


def test_speed_knob_is_read_in_one_place():
    """Only tdd_lite/config.py reads TDD_FAST; notebooks and modules call fast_mode()."""
    offenders = []
    for path in list((ROOT / "tdd_lite").rglob("*.py")) + NOTEBOOK_FILES:
        if path.name == "config.py" and path.parent.name == "tdd_lite":
            continue
        text = path.read_text()
        if re.search(r"environ(\.get)?\s*[\[(]\s*['\"]TDD_FAST", text) or "getenv(\"TDD_FAST" in text:
            offenders.append(path.relative_to(ROOT))
    assert not offenders, f"read TDD_FAST directly instead of tdd_lite.config.fast_mode(): {offenders}"


def test_console_script_help():
    out = subprocess.run([venv_bin("tdd-lite"), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for cmd in ("synth", "check-data", "train"):
        assert cmd in out.stdout


# ---------------------------------------------------------------- notebooks


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _src(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks_numbered_in_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOK_FILES]
    assert numbers and numbers == list(range(len(numbers)))


def test_toc_lists_every_notebook_in_order_and_every_file_exists():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for f in files:
        assert any((ROOT / (f + ext)).exists() for ext in (".md", ".ipynb")), f"_toc.yml names missing {f}"
    listed = [f for f in files if f.startswith("notebooks/")]
    assert listed == [f"notebooks/{p.stem}" for p in NOTEBOOK_FILES]


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_stored_without_outputs(path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name} cell {i}"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_structure(path):
    cells = _cells(path)
    first = _src(cells[0])
    assert cells[0]["cell_type"] == "markdown" and first.startswith("# ")
    for phrase in ("What you'll do", "What you'll learn", "What you'll need"):
        assert phrase in first, f"{path.name}: first cell lacks {phrase!r}"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "describe_run()" in _src(code[0]), f"{path.name}: first code cell must print describe_run()"
    assert any(re.search(r"^\s*assert\b", _src(c), re.M) for c in code), f"{path.name} asserts nothing"
    tail = "\n".join(_src(c) for c in cells[-3:] if c["cell_type"] == "markdown")
    for phrase in ("## Summary", "## Exercises", "On your own", "In practice", "Further reading"):
        assert phrase in tail, f"{path.name}: closing cells lack {phrase!r}"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_imports_the_library(path):
    code = "\n".join(_src(c) for c in _cells(path) if c["cell_type"] == "code")
    assert re.search(r"^\s*(from tdd_lite|import tdd_lite)", code, re.M)


# ------------------------------------------------ a failing cell must fail the build and nbval


BROKEN_CELL = "raise RuntimeError('deliberately broken cell')"


def _tiny_notebook(path: Path, source: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Tiny"),
                                         nbformat.v4.new_code_cell("x = 1 + 1"), nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _tiny_book(tmp: Path, source: str) -> Path:
    """A copy of the real book configuration around one notebook whose last cell is ``source``."""
    book = tmp / "book"
    (book / "notebooks").mkdir(parents=True)
    (book / "book").mkdir()
    for name in ("vendor", "css", "_ext", "images", "references.bib"):   # what _config.yml refers to
        (book / "book" / name).symlink_to(ROOT / "book" / name)
    (book / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    (book / "book" / "intro.md").write_text("# Intro\n\nA tiny copy of the book.\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/tiny\n")
    _tiny_notebook(book / "notebooks" / "tiny.ipynb", source)
    return book


def _build(book: Path) -> subprocess.CompletedProcess:
    # The same command as `make book`.
    return subprocess.run([venv_bin("jupyter-book"), "build", str(book), "--path-output", str(book),
                           "-W", "--keep-going"], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_broken_cell_fails_the_book_build_and_a_good_one_passes(tmp_path):
    good = _build(_tiny_book(tmp_path / "good", "print('fine')"))
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    assert (tmp_path / "good" / "book" / "_build" / "html" / "index.html").exists()
    bad = _build(_tiny_book(tmp_path / "bad", BROKEN_CELL))
    assert bad.returncode != 0
    assert "deliberately broken cell" in bad.stdout + bad.stderr


@pytest.mark.slow
def test_broken_cell_fails_nbval_and_a_good_one_passes(tmp_path):
    def nbval(source: str, name: str) -> subprocess.CompletedProcess:
        nb = tmp_path / f"{name}.ipynb"
        _tiny_notebook(nb, source)
        # The same command as `make nbval`.
        return subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:xdist", "-q",
                               "-p", "no:cacheprovider", str(nb)], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)

    ok = nbval("print('fine')", "good")
    assert ok.returncode == 0, ok.stdout[-2000:]
    bad = nbval(BROKEN_CELL, "bad")
    assert bad.returncode != 0 and "deliberately broken cell" in bad.stdout


def test_animation_html_loads_nothing_from_another_host():
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    from tdd_lite.viz import animation_html

    fig, ax = plt.subplots(figsize=(1, 1), dpi=20)
    (line,) = ax.plot([0, 1])
    anim = FuncAnimation(fig, lambda i: (line,), frames=2)
    raw = anim.to_jshtml()
    html = animation_html(anim)
    plt.close(fig)
    assert "https://" in raw  # matplotlib's player links a CDN stylesheet: the reason for the helper
    assert "https://" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "<script" in html and "fa-backward-fast" in html and "fa-fast-backward" not in html


@pytest.mark.slow
def test_make_lab_starts_jupyterlab_as_this_user(tmp_path):
    """`make lab` starts a JupyterLab server (as root too: the recipe adds --allow-root when uid is 0)."""
    import os
    import signal
    import time

    if shutil.which("make") is None:
        pytest.skip("no make")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.Popen(["make", "--no-print-directory", "lab",
                             "LAB_ARGS=--no-browser --ServerApp.port=0 --ServerApp.ip=127.0.0.1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out, started = [], False
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "is running at" in line or "http://127.0.0.1:" in line:
                started = True
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    text = "".join(out)
    assert started, text[-3000:]
    assert "Running as root is not recommended. Use --allow-root to bypass" not in text


def test_make_lab_says_why_a_venv_it_cannot_run_is_of_no_use(tmp_path):
    """A .venv whose python this user may not run (made by root from root's private pyenv, seen by a normal
    user) gives a message naming the interpreter and the remedy, not "bad interpreter: Permission denied"."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/nonexistent/python3.11\n")   # no execute bit: nobody may run it
    (venv / "bin" / "python").chmod(0o644)
    (venv / "pyvenv.cfg").write_text("home = /root/.pyenv/versions/3.11.7/bin\n"
                                     "executable = /root/.pyenv/versions/3.11.7/bin/python3.11\n")
    (venv / ".installed-course").touch()   # newer than pyproject.toml and the Makefile: no install is attempted
    proc = subprocess.run(["make", "--no-print-directory", "lab", f"VENV={venv}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "cannot run for" in text and "/root/.pyenv/versions/3.11.7/bin/python3.11" in text, text
    assert "git clone" in text and "make lab" in text, text
    assert "jupyter lab notebooks" not in text and "Permission denied" not in text, text
