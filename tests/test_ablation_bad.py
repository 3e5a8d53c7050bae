"""`tdd-lite ablation` with bad input, from the user's side: the command as typed, its exit status, its last
line (one line, no traceback) and the files before and after (nothing the user owns changes).

Every case here fails before any training starts (checked from the files, in seconds); the one that trains
(a resumed grid folder whose summary.md the user edited) uses the `smoke` preset. ``test_the_table_is_broad``
counts the cases per kind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._cli import ROOT, assert_one_line_error, run_cli

COMMITTED = ROOT / "results" / "ablation"
PROG = "tdd-lite ablation"


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (symlinks as their target text), except the
    command's own output marker (its process id and 'running' flag change with every call)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.name == ".tdd_lite-output.json":
            continue
        if p.is_symlink():
            out[p.relative_to(folder).as_posix()] = "link:" + str(p.readlink())
        elif p.is_file():
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from tdd_lite.data.synth import generate

    base = tmp_path_factory.mktemp("ablation-data")
    ok = generate(base / "synth", videos=4, frames=20, size=(64, 64), seed=3, progress=False)
    tiny = generate(base / "tiny", videos=4, frames=3, size=(64, 64), seed=3, progress=False)  # 2 training pairs
    bad_meta = base / "bad-meta"
    shutil.copytree(ok, bad_meta)
    (bad_meta / "synth.json").write_text('{"seed": 3, "vid')
    nosplits = base / "nosplits"
    nosplits.mkdir()
    return {"ok": ok, "tiny": tiny, "bad_meta": bad_meta, "nosplits": nosplits}


def _committed_result(slug: str = "none-s0") -> dict:
    return json.loads((COMMITTED / "runs" / slug / "result.json").read_text())


def _put(out: Path, rel: str, content: str | bytes) -> None:
    p = out / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)


def _result_without(*keys: str) -> str:
    r = _committed_result()
    node = r
    for k in keys[:-1]:
        node = node[k]
    del node[keys[-1]]
    return json.dumps(r)


def _result_with(**changes) -> str:
    r = _committed_result()
    r.update(changes)
    return json.dumps(r)


def _result_metric(value) -> str:
    r = _committed_result()
    r["evaluation"]["methods"]["tracking"]["categories"]["A"]["nme"] = value
    return json.dumps(r)


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # after OUT; "{ok}" etc. name the data fixture folders
    code: int
    phrase: str
    setup: Callable[[Path], None] | None = None  # prepares OUT (the user's files)


def _files(rel_content: dict) -> Callable[[Path], None]:
    def setup(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        for rel, content in rel_content.items():
            _put(out, rel, content)
    return setup


def _marked_grid(rel_content: dict) -> Callable[[Path], None]:
    """A grid folder made by the command (its marker) plus the given files."""
    def setup(out: Path) -> None:
        from tdd_lite.files import claim_folder

        claim_folder(out, "ablation")
        _files(rel_content)(out)
    return setup


RUN = ("--train-data", "{ok}", "--eval-data", "{ok}", "--seeds", "0", "--configs", "none", "--jobs", "1",
       "--preset", "smoke", "--eval-frames", "5")
NONE_S0 = "runs/none-s0/result.json"

CASES = [
    # arguments (exit 2)
    Case("seed-overflow", ("--seeds", str(10**30)), 2, "--seeds: '1000000000000000000000000000000': expected a whole "
         "number from 0 to 4294967295"),
    Case("seed-negative", ("--seeds", "-1"), 2, "'-1': expected a whole number from 0"),
    Case("seed-word", ("--seeds", "one"), 2, "'one' is not a whole number"),
    Case("seed-fraction", ("--seeds", "1.5"), 2, "'1.5' is not a whole number"),
    Case("seeds-duplicate", RUN[:4] + ("--seeds", "0", "0", "--jobs", "2"), 2, "seed 0 given twice"),
    Case("configs-duplicate", RUN[:4] + ("--configs", "none", "none"), 2, "none given twice"),
    Case("configs-label-and-slug", RUN[:4] + ("--configs", "none", "Without all"), 2, "none given twice"),
    Case("configs-unknown", RUN[:4] + ("--configs", "bogus"), 2, "--configs bogus: expected short names"),
    Case("preset-unknown", RUN[:-4] + ("--preset", "bogus"), 2, "--preset bogus: expected one of"),
    Case("jobs-zero", RUN[:4] + ("--jobs", "0"), 2, "'0': expected a whole number from 1 to 256"),
    Case("threads-overflow", RUN[:4] + ("--threads", str(10**30)), 2, "expected a whole number from 1 to 256"),
    Case("steps-zero", RUN[:4] + ("--steps", "0"), 2, "expected a whole number from 1"),
    Case("eval-frames-negative", RUN[:4] + ("--eval-frames", "-5"), 2, "expected a whole number >= 1"),
    Case("no-data-options", ("--seeds", "0"), 2, "--train-data and --eval-data are required"),
    Case("unknown-option", RUN + ("--epochs", "3"), 2, "unrecognized arguments: --epochs 3"),
    # the output folder
    Case("out-is-a-file", RUN, 1, "is a file, expected a results folder",
         setup=lambda out: out.write_text("my thesis\n")),
    Case("user-summary-md", RUN, 2, "holds files tdd-lite ablation did not write ('summary.md')",
         setup=_files({"summary.md": "# my own notes\n"})),
    Case("user-folder-with-runs", RUN, 2, "did not write", setup=_files({"runs/notes.txt": "mine\n"})),
    Case("other-command-folder", RUN, 2, "was made by tdd-lite synth, not tdd-lite ablation",
         setup=lambda out: __import__("tdd_lite.files").files.claim_folder(out, "synth")),
    Case("marked-grid-user-file-at-output-name", RUN, 2, "summary.md: exists and was not written by tdd-lite",
         setup=_marked_grid({"summary.md": "# mine\n"})),
    # data folders
    Case("train-data-missing", ("--train-data", "{ok}/nope", "--eval-data", "{ok}", "--seeds", "0"), 1,
         "--train-data", ),
    Case("eval-data-not-300vw", ("--train-data", "{ok}", "--eval-data", "{nosplits}", "--seeds", "0"), 1,
         "--eval-data"),
    Case("eval-too-short-for-outliers", RUN, 1, "the outlier experiment needs windows of 25 annotated frames"),
    Case("train-smaller-than-a-batch", ("--train-data", "{tiny}",) + RUN[2:], 1,
         "2 training pairs, fewer than one batch of 4 (preset 'smoke')"),
    Case("synth-json-damaged", ("--train-data", "{bad_meta}",) + RUN[2:], 1, "synth.json: not valid JSON"),
    # grid.json in a grid folder (the record of earlier sessions)
    Case("grid-json-truncated", RUN, 1, "grid.json: not valid JSON",
         setup=_files({"grid.json": '{"sessions": ['})),
    Case("grid-json-list", RUN, 1, "grid.json: a JSON list; expected the JSON object", setup=_files(
        {"grid.json": "[1, 2, 3]"})),
    Case("grid-json-binary", RUN, 1, "grid.json: not UTF-8 text", setup=_files(
        {"grid.json": bytes(range(256)) * 4})),
    Case("grid-json-sessions-type", RUN, 1, "field 'sessions'", setup=_files({"grid.json": '{"sessions": 3}'})),
    Case("grid-json-wall-string", RUN, 1, "field 'wall_seconds'", setup=_files(
        {"grid.json": '{"sessions": [], "wall_seconds": "long"}'})),
    Case("grid-json-folder", RUN, 2, "did not write ('grid.json')", setup=lambda out: (
        out.mkdir(), (out / "grid.json").mkdir())),
    Case("grid-json-foreign-in-marked-folder", RUN, 2, "grid.json: exists and was not written by tdd-lite",
         setup=_marked_grid({"grid.json": "{}"})),
    Case("grid-json-other-command", RUN, 2, "did not write ('grid.json')",
         setup=_files({"grid.json": '{"command": "my-own-tool", "sessions": []}'})),
    # a run's result.json (never redone over: the user decides)
    Case("result-no-evaluation", RUN, 1, "none-s0/result.json: no 'evaluation.methods.tracking'",
         setup=_marked_grid({NONE_S0: _result_without("evaluation")})),
    Case("result-no-tracking", RUN, 1, "no 'evaluation.methods.tracking'",
         setup=_marked_grid({NONE_S0: _result_without("evaluation", "methods", "tracking")})),
    Case("result-no-categories", RUN, 1, "field 'evaluation.methods.tracking.categories': missing",
         setup=_marked_grid({NONE_S0: _result_without("evaluation", "methods", "tracking", "categories")})),
    Case("result-truncated", RUN, 1, "none-s0/result.json: not valid JSON", setup=_marked_grid(
        {NONE_S0: _result_with()[:500]})),
    Case("result-binary", RUN, 1, "result.json: not UTF-8 text", setup=_marked_grid({NONE_S0: b"\x89PNG\xff" * 50})),
    Case("result-list", RUN, 1, "result.json: a JSON list", setup=_marked_grid({NONE_S0: "[]"})),
    Case("result-seed-string", RUN, 1, "field 'seed': '0'", setup=_marked_grid({NONE_S0: _result_with(seed="0")})),
    Case("result-seed-overflow", RUN, 1, "field 'seed': 1000000000000000000000000000000",
         setup=_marked_grid({NONE_S0: _result_with(seed=10**30)})),
    Case("result-label-unknown", RUN, 1, "field 'label': 'With D_XX'",
         setup=_marked_grid({NONE_S0: _result_with(label="With D_XX")})),
    Case("result-in-wrong-folder", RUN, 1, "it is the result of run 'id-s0'",
         setup=_marked_grid({NONE_S0: _result_with(label="With D_ID")})),
    Case("result-metric-string", RUN, 1, "field 'evaluation.methods.tracking.categories.A'",
         setup=_marked_grid({NONE_S0: _result_metric("abc")})),
    Case("result-old-format", RUN, 1, "field 'format': 'tdd_lite.ablation/0'",
         setup=_marked_grid({NONE_S0: _result_with(format="tdd_lite.ablation/0")})),
    Case("result-outliers-broken", RUN, 1, "field 'outliers.increase'",
         setup=_marked_grid({NONE_S0: _result_with(outliers={"increase": {"none": {"blur": {"0": 1.0}}}})})),
    Case("result-is-a-folder", RUN, 1, "result.json: cannot read it", setup=lambda out: (
        __import__("tdd_lite.files").files.claim_folder(out, "ablation"),
        (out / "runs" / "none-s0" / "result.json").mkdir(parents=True))),
    # --only-summary
    Case("only-summary-empty", ("--only-summary",), 1, "no finished run", setup=_files({"runs/keep.txt": "x"})),
    Case("only-summary-grid-damaged", ("--only-summary",), 1, "grid.json: not valid JSON",
         setup=_marked_grid({NONE_S0: _result_with(), "grid.json": "{"})),
    Case("only-summary-only-bad-results", ("--only-summary",), 1, "no finished run (runs/*/result.json) (1 unusable: ",
         setup=_marked_grid({NONE_S0: "{"})),
]


def _resolve(args: tuple[str, ...], data: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in data.items()}) for a in args]


def test_the_table_is_broad():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    kinds = {c.id.split("-")[0] for c in CASES}
    assert kinds >= {"seed", "configs", "out", "user", "grid", "result", "only", "train"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_nothing_of_the_user_changes(case: Case, tmp_path, data):
    out = tmp_path / "grid"
    if case.setup:
        case.setup(out)
    before = snapshot(tmp_path)
    r = run_cli("ablation", out, *_resolve(case.args, data), timeout=120)
    assert_one_line_error(r, case.code, case.phrase, PROG)
    assert len([ln for ln in r.err.splitlines() if "error:" in ln]) == 1, r.err
    assert r.err.strip().splitlines()[-1].startswith(f"{PROG}: error:"), r.err
    assert snapshot(tmp_path) == before, "the command changed files although it refused"
    assert not list((tmp_path / "grid").glob("runs/*/checkpoint.pt")) if out.is_dir() else True


def _copy_committed_runs(out: Path, slugs=("none-s0", "id-s0")) -> None:
    for slug in slugs:
        (out / "runs" / slug).mkdir(parents=True)
        shutil.copy(COMMITTED / "runs" / slug / "result.json", out / "runs" / slug / "result.json")


@pytest.mark.skipif(not (COMMITTED / "grid.json").is_file(), reason="no committed grid")
def test_only_summary_names_each_result_it_leaves_out(tmp_path):
    """A truncated result.json is not silently dropped: one warning line names it; the others are summarised."""
    out = tmp_path / "grid"
    _copy_committed_runs(out, ("none-s0", "id-s0", "td-s0"))
    shutil.copy(COMMITTED / "grid.json", out / "grid.json")
    cut = out / "runs" / "td-s0" / "result.json"
    cut.write_text(cut.read_text()[:300])
    r = run_cli("ablation", out, "--only-summary")
    assert r.code == 0 and not r.has_traceback, r.text
    warnings = [ln for ln in r.err.splitlines() if "warning:" in ln]
    assert len(warnings) == 1 and "runs/td-s0/result.json: not valid JSON" in warnings[0], r.err
    assert "left out of the summary" in warnings[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["skipped"] and "td-s0" in summary["skipped"][0]
    assert cut.read_text() == (COMMITTED / "runs" / "td-s0" / "result.json").read_text()[:300]  # not touched


@pytest.mark.skipif(not (COMMITTED / "grid.json").is_file(), reason="no committed grid")
def test_a_committed_grid_folder_is_adopted_with_the_users_files_kept(tmp_path):
    """A grid folder from before the markers (like results/ablation): adopted, said so; the README and a note the
    user put there stay byte for byte; the summary is recomputed to the same bytes."""
    out = tmp_path / "ablation"
    shutil.copytree(COMMITTED, out, ignore=shutil.ignore_patterns("*.pt", ".tdd_lite-output.json"))
    (out / "my-notes.txt").write_text("seed 2 looked odd\n")
    before = snapshot(out)
    r = run_cli("ablation", out, "--only-summary")
    assert r.code == 0 and not r.has_traceback, r.text
    assert "adopted" in r.err and "before output markers" in r.err
    after = snapshot(out)
    assert (out / ".tdd_lite-output.json").is_file() and after == before
    # a second call: a marked folder, no adoption message
    r2 = run_cli("ablation", out, "--only-summary")
    assert r2.code == 0 and "adopted" not in r2.err, r2.text


@pytest.mark.slow
def test_a_grid_folder_with_the_summary_edited_by_the_user_is_not_overwritten(tmp_path, data):
    """Finish a tiny grid (smoke preset); the user edits summary.md; the next call refuses in one line and keeps
    the edit; the untouched grid resumes (nothing to do) and rewrites its own summary."""
    from tdd_lite.data.synth import generate

    long = generate(tmp_path / "long", videos=4, frames=114, size=(64, 64), seed=4, progress=False)
    out = tmp_path / "grid"
    args = ["--train-data", str(data["ok"]), "--eval-data", str(long), "--seeds", "0", "--configs", "none",
            "--jobs", "1", "--preset", "smoke", "--eval-frames", "5"]
    r = run_cli("ablation", out, *args, timeout=600)
    assert r.code == 0 and not r.has_traceback, r.text
    assert (out / "summary.md").is_file() and (out / ".tdd_lite-output.json").is_file()
    r = run_cli("ablation", out, *args, timeout=600)  # resumed: every run finished, the summary rewritten
    assert r.code == 0, r.text
    (out / "summary.md").write_text("# my reading of the grid\n")
    before = snapshot(tmp_path)
    r = run_cli("ablation", out, *args, timeout=600)
    assert_one_line_error(r, 2, "summary.md was changed after tdd-lite ablation wrote it", PROG)
    assert snapshot(tmp_path) == before
    r = run_cli("ablation", out, "--only-summary")
    assert_one_line_error(r, 2, "summary.md was changed after tdd-lite ablation wrote it", PROG)
    assert (out / "summary.md").read_text() == "# my reading of the grid\n"
