"""The package's layers (the book's *How the code is organised* page): every import in ``tdd_lite`` goes from a
layer to the same or a lower one, never up; every module is placed in a layer; no two modules import each other,
directly or round a longer cycle; and ``import tdd_lite`` loads nothing of Jupyter, otter or nbval.

Imports are read with :mod:`ast` from the source, not by importing it: top-level and function-local ``import``
and ``from ... import`` statements alike, relative imports resolved against the importing module's package, and
``importlib.import_module("tdd_lite....")`` with a constant name. ``from tdd_lite.data import detect`` is an
import of the module ``tdd_lite.data.detect``; ``from tdd_lite.track import Tracker`` one of ``tdd_lite.track``.

The checker is plain functions over ``{module name: (source, is_package)}``, so the last tests feed it a made-up
package with a violation and a cycle and check that both are caught.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = "tdd_lite"

# Layer of each module, by its name inside the package ("" is the package itself, whose __init__ imports nothing).
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("", "errors", "config", "files", "style", "commands"),
    1: ("camera", "morphable", "model_formats", "displacement", "discriminators", "losses", "network", "filters",
        "metrics", "render"),
    2: ("data", "data.pts", "data.vw300", "data.crops", "data.detect", "data.synth", "data.pairs", "video_io"),
    3: ("checkpoint", "train_config", "track", "reference", "evaluate", "report", "train"),
    4: ("experiments", "claims", "peers", "cli", "coursework", "viz", "widgets", "stream_explorer"),
}
LAYER_NAMES = {0: "L0 foundation", 1: "L1 model", 2: "L2 data", 3: "L3 engine", 4: "L4 applications"}
# Packages whose every module sits in the package's layer.
WHOLE_PACKAGES = ("coursework",)
# Inside L3: the tracker, the reference model and evaluation/reporting run without the trainer.
TRAINING = ("train", "train_config")
NOT_TRAINING = ("checkpoint", "track", "reference", "evaluate", "report")
# The one exception: a checkpoint stores the training configuration, so checkpoint.py reads its schema
# (train_config holds plain data and its checks, not the trainer).
ALLOWED = {("tdd_lite.checkpoint", "tdd_lite.train_config")}
# What `import tdd_lite` (or any of its modules) must not load: the notebook and coursework stack.
NOTEBOOK_STACK = ("jupyter", "otter", "nbval", "ipywidgets", "IPython")


@dataclass(frozen=True)
class Import:
    source: str  # importing module, full dotted name
    target: str  # imported module of the package, full dotted name (resolved)
    line: int
    text: str  # the statement as written


def layer_of(module: str) -> int | None:
    """The layer of a full module name of the package; ``None`` if it is in no layer. ``__main__`` modules are
    applications (L4) wherever they are."""
    rel = module[len(PACKAGE) + 1:] if module.startswith(PACKAGE + ".") else "" if module == PACKAGE else None
    if rel is None:
        return None
    if rel.split(".")[-1] == "__main__":
        return 4
    for pkg in WHOLE_PACKAGES:
        if rel == pkg or rel.startswith(pkg + "."):
            return next(n for n, mods in LAYERS.items() if pkg in mods)
    return next((n for n, mods in LAYERS.items() if rel in mods), None)


def read_package(root: Path = ROOT / PACKAGE) -> dict[str, tuple[str, bool]]:
    """``{full module name: (source, is_package)}`` for every ``.py`` file under ``root``."""
    out: dict[str, tuple[str, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path.read_text(encoding="utf-8"), is_pkg)
    return out


def imports_of(module: str, source: str, is_package: bool, modules: dict) -> list[Import]:
    """Every import of a package module in ``source`` (anywhere in the file: module level, functions, classes)."""
    tree = ast.parse(source, filename=module)
    lines = source.splitlines()
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def add(node: ast.AST, name: str) -> None:  # name: a module (for `from M import n`, M.n if that is one)
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            text = lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ""
            found.append(Import(module, name, node.lineno, text))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            for alias in node.names:
                sub = f"{stem}.{alias.name}"
                add(node, sub if sub in modules else stem)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "import_module"))):
            add(node, node.args[0].value)
    return found


def all_imports(modules: dict[str, tuple[str, bool]]) -> list[Import]:
    """Every import of the package's modules, once per (module, imported module, line)."""
    found = [imp for name, (src, is_pkg) in sorted(modules.items()) for imp in imports_of(name, src, is_pkg, modules)]
    return list({(i.source, i.target, i.line): i for i in found}.values())


def _where(imp: Import) -> str:
    return f"{imp.source} line {imp.line}: {imp.text}"


def unplaced(modules: dict) -> list[str]:
    return [f"{m}: in no layer (add it to LAYERS in tests/test_layers.py and to book/code_organisation.md)"
            for m in sorted(modules) if layer_of(m) is None]


def upward_imports(imports: list[Import], modules: dict) -> list[str]:
    """Imports from a lower layer to a higher one, of modules that do not exist, and of the trainer from the
    rest of L3."""
    out = []
    for imp in imports:
        src, tgt = layer_of(imp.source), layer_of(imp.target)
        if imp.target not in modules:
            out.append(f"{_where(imp)}  ->  {imp.target} does not exist")
        elif src is not None and tgt is not None and tgt > src:
            out.append(f"{_where(imp)}  ->  {imp.target} ({LAYER_NAMES[src]} imports {LAYER_NAMES[tgt]})")
        elif (imp.source.rpartition(".")[2] in NOT_TRAINING and imp.source.count(".") == 1
              and imp.target.rpartition(".")[2] in TRAINING and imp.target.count(".") == 1
              and (imp.source, imp.target) not in ALLOWED):
            out.append(f"{_where(imp)}  ->  {imp.target} (inside L3, {', '.join(NOT_TRAINING)} never import "
                       f"{' or '.join(TRAINING)})")
    return out


def cycles(imports: list[Import]) -> list[list[Import]]:
    """One cycle of imports for each strongly connected group of modules (Tarjan), as the imports that close it,
    shortest first found by breadth-first search inside the group."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.source != imp.target:
            graph.setdefault(imp.source, {}).setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []

    def strong(v: str) -> None:  # recursion depth is bounded by the number of modules (a few dozen)
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    out = []
    for group in sorted(groups):
        members, start = set(group), group[0]
        prev: dict[str, str] = {}
        queue, seen = [start], {start}
        while queue:  # shortest way from start back to start inside the group
            v = queue.pop(0)
            for w in sorted(graph.get(v, {})):
                if w == start:
                    path, u = [v], v
                    while u != start:
                        u = prev[u]
                        path.append(u)
                    path.reverse()
                    out.append([graph[a][b] for a, b in zip(path, path[1:] + [start])])
                    queue = []
                    break
                if w in members and w not in seen:
                    seen.add(w)
                    prev[w] = v
                    queue.append(w)
    return out


def describe_cycle(cycle: list[Import]) -> str:
    return " -> ".join([c.source for c in cycle] + [cycle[0].source]) + "  (" + "; ".join(map(_where, cycle)) + ")"


# ----------------------------------------------------------------------------------------------- the package
@pytest.fixture(scope="module")
def package():
    modules = read_package()
    return modules, all_imports(modules)


def test_every_module_is_in_a_layer(package):
    modules, _ = package
    missing = unplaced(modules)
    if missing:
        pytest.fail(f"{len(missing)} module(s) in no layer:\n  " + "\n  ".join(missing), pytrace=False)


def test_no_import_goes_up_a_layer(package):
    modules, imports = package
    bad = upward_imports(imports, modules)
    if bad:
        pytest.fail(f"{len(bad)} import(s) against the layers (a lower layer must not import a higher one):\n  "
                    + "\n  ".join(bad), pytrace=False)


def test_no_import_cycle(package):
    _, imports = package
    found = cycles(imports)
    if found:
        pytest.fail(f"{len(found)} import cycle(s) (one shortest cycle per group of modules that import each "
                    "other):\n  " + "\n  ".join(map(describe_cycle, found)), pytrace=False)


# A module's command protocol (``add_arguments``/``run``/``main``, see tdd_lite.commands) and its results as
# Markdown (``markdown``) are always called through the module (``track.run``, ``peers.markdown``).
PROTOCOL_NAMES = {"add_arguments", "run", "main", "markdown"}


def public_definitions(modules: dict) -> dict[str, list[str]]:
    """``{name: [modules]}`` of the public classes, functions and constants defined at a module's top level."""
    found: dict[str, list[str]] = {}
    for name, (source, _) in modules.items():
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            else:
                continue
            for n in names:
                if not n.startswith("_"):
                    found.setdefault(n, []).append(name)
    return found


def test_no_two_public_things_share_a_name(package):
    """One home per thing: a public name is defined in one module (others import it from there)."""
    modules, _ = package
    twice = {n: ms for n, ms in public_definitions(modules).items() if len(ms) > 1 and n not in PROTOCOL_NAMES}
    assert not twice, "defined in several modules: " + "; ".join(f"{n} in {', '.join(ms)}" for n, ms in twice.items())


def test_the_name_check_sees_a_duplicate():
    modules = {"p.a": ("X = 1\ndef f(): pass\n_private = 2\n", False),
               "p.b": ("X = 2\nclass f: pass\n_private = 3\n", False)}
    assert {n: ms for n, ms in public_definitions(modules).items() if len(ms) > 1} == {"X": ["p.a", "p.b"],
                                                                                       "f": ["p.a", "p.b"]}


def test_importing_the_package_loads_no_notebook_stack():
    """``import tdd_lite``, then every module of it (``__main__`` entry points aside), each in a fresh interpreter:
    neither may load Jupyter, otter, nbval, ipywidgets or IPython (the runtime install has none of them; the
    notebook helpers import ipywidgets only when called)."""
    names = sorted(m for m in read_package() if not m.endswith("__main__"))
    report = (f"import sys\nstack = {NOTEBOOK_STACK!r}\n"
              "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0].startswith(stack))))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    env["PYTHONPATH"] = str(ROOT)
    for what, script in ((PACKAGE, f"import {PACKAGE}\n"),
                         (f"its {len(names)} modules", "".join(f"import {m}\n" for m in names))):
        r = subprocess.run([sys.executable, "-c", script + report], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, f"importing {what}: {r.stderr[-3000:]}"
        loaded = r.stdout.split()
        assert not loaded, f"importing {what} loads {', '.join(loaded)}"


# ------------------------------------------------------------------------------------------ the checker itself
FAKE = {
    "tdd_lite": ("", True),
    "tdd_lite.errors": ("import os\n", False),
    "tdd_lite.config": ("from tdd_lite import errors\n", False),
    "tdd_lite.camera": ("import numpy\n\ndef f():\n    from .report import table  # upward, function-local\n",
                        False),
    "tdd_lite.data": ("", True),
    "tdd_lite.data.crops": ("from ..camera import project\nfrom tdd_lite.errors import UsageError\n", False),
    "tdd_lite.data.detect": ("from . import crops\n", False),
    "tdd_lite.track": ("from tdd_lite.data import detect\nfrom tdd_lite.train import step\n", False),
    "tdd_lite.train": ("from tdd_lite import track\n", False),
    "tdd_lite.evaluate": ("import tdd_lite.data.crops\n", False),
    "tdd_lite.report": ("", False),
    "tdd_lite.cli": ("import importlib\nimportlib.import_module('tdd_lite.trian')\n", False),
    "tdd_lite.coursework": ("", True),
    "tdd_lite.coursework.__main__": ("from tdd_lite.coursework import main\n", False),
    "tdd_lite.newthing": ("", False),
}


def test_checker_resolves_relative_and_submodule_imports():
    found = {(i.source, i.target, i.line) for i in all_imports(FAKE)}
    assert ("tdd_lite.data.detect", "tdd_lite.data.crops", 1) in found  # from . import crops
    assert ("tdd_lite.data.crops", "tdd_lite.camera", 1) in found  # from ..camera import project
    assert ("tdd_lite.camera", "tdd_lite.report", 4) in found  # function-local, relative
    assert ("tdd_lite.config", "tdd_lite.errors", 1) in found  # from tdd_lite import errors: the module
    assert ("tdd_lite.track", "tdd_lite.train", 2) in found  # from tdd_lite.train import step: the module
    assert ("tdd_lite.evaluate", "tdd_lite.data.crops", 1) in found  # import a.b.c
    assert not any(i.target == "numpy" or i.target == "os" for i in all_imports(FAKE))  # outside the package


def test_checker_catches_upward_imports_unknown_modules_and_unplaced_modules():
    bad = upward_imports(all_imports(FAKE), FAKE)
    assert any(b.startswith("tdd_lite.camera line 4: from .report import table") and "L1 model imports L3 engine"
               in b for b in bad), bad
    assert any(b.startswith("tdd_lite.track line 2:") and "never import train" in b for b in bad), bad
    assert any("tdd_lite.trian does not exist" in b for b in bad), bad
    # allowed: downward (crops -> camera, errors), within a layer (train -> track), __main__ -> its package
    assert not any(b.startswith(("tdd_lite.data.crops", "tdd_lite.train ", "tdd_lite.coursework")) for b in bad), bad
    assert len(bad) == 3, bad
    assert unplaced(FAKE) == ["tdd_lite.newthing: in no layer (add it to LAYERS in tests/test_layers.py and to "
                              "book/code_organisation.md)"]
    assert layer_of("tdd_lite.coursework.__main__") == 4 and layer_of("tdd_lite.data.__main__") == 4
    assert layer_of("tdd_lite") == 0 and layer_of("numpy") is None


def test_checker_finds_cycles():
    found = cycles(all_imports(FAKE))
    assert len(found) == 1, [describe_cycle(c) for c in found]
    assert [(c.source, c.target) for c in found[0]] == [("tdd_lite.track", "tdd_lite.train"),
                                                        ("tdd_lite.train", "tdd_lite.track")]
    text = describe_cycle(found[0])
    assert text.startswith("tdd_lite.track -> tdd_lite.train -> tdd_lite.track") and "line 2" in text, text
    # a longer cycle: a -> b -> c -> a, with a side branch that is no part of it
    longer = {"tdd_lite": ("", True), "tdd_lite.a": ("from tdd_lite import b\n", False),
              "tdd_lite.b": ("from tdd_lite import c\nfrom tdd_lite import d\n", False),
              "tdd_lite.c": ("def f():\n    import tdd_lite.a\n", False), "tdd_lite.d": ("", False)}
    (cyc,) = cycles(all_imports(longer))
    assert [c.source for c in cyc] == ["tdd_lite.a", "tdd_lite.b", "tdd_lite.c"]
    assert cycles(all_imports({k: v for k, v in longer.items() if k != "tdd_lite.c"})) == []
