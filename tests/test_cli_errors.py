"""Bad ``tdd-lite train`` / ``evaluate`` / top-level invocations: one line, exit 2 (usage) or 1 (data), no traceback.

Table-driven: one row per invocation (its arguments, environment, exit status and a phrase the error line must
contain). Rows in :data:`SUBPROCESS` run in a real subprocess (``tests/_cli.py``); the others call the same
entry point, ``tdd_lite.cli.main(argv)``, in this process (each subprocess costs seconds of imports).
``synth`` and ``check-data`` have their own tables (tests/test_synth.py, tests/test_vw300.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests._cli import ROOT, assert_one_line_error, run_cli
from tests.test_checkpoints_bad import build_run, in_process

NO_CUDA = not torch.cuda.is_available()


def _copy(src: Path, dst: Path, splits: object | None = None, raw_splits: str | None = None) -> Path:
    shutil.copytree(src, dst)
    if splits is not None:
        (dst / "splits.json").write_text(json.dumps(splits))
    if raw_splits is not None:
        (dst / "splits.json").write_text(raw_splits)
    return dst


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> SimpleNamespace:
    base = tmp_path_factory.mktemp("clierr")
    r = build_run(base)  # Synth300VW: train 001, A 002, B 003, C 004 (8 frames each); a 2-step smoke checkpoint
    p = SimpleNamespace(base=base, root=r.root, ckpt=r.ckpt, run_out=r.out, nope=base / "does-not-exist",
                        newout=base / "new-run", file=base / "a-file.txt", emptydir=base / "empty")
    p.file.write_text("not a folder\n")
    p.emptydir.mkdir()
    p.badroot = _copy(r.root, base / "bad-pts")  # one unreadable .pts in the training video
    (p.badroot / "001" / "annot" / "000003.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    p.nanroot = _copy(r.root, base / "nan-pts")  # every .pts of test video 002 holds NaN coordinates
    for f in (p.nanroot / "002" / "annot").glob("*.pts"):
        f.write_text("version: 1\nn_points: 68\n{\n" + "nan nan\n" * 68 + "}\n")
    p.nosplits = _copy(r.root, base / "no-splits", splits={})
    p.emptysplit = _copy(r.root, base / "empty-split", splits={"train": ["001"], "A": [], "B": ["003"], "C": ["004"]})
    p.badjson = _copy(r.root, base / "bad-json", raw_splits="{not json")
    return p


T, E = "train", "evaluate"
# (id, args, extra environment, exit status, phrase); {name} is replaced by the fixture's path of that name
ROWS = [
    # top level
    ("unknown-subcommand", ["bogus"], {}, 2, "invalid choice: 'bogus'"),
    ("unknown-top-option", ["--frobnicate"], {}, 2, "unrecognized arguments"),
    # train: arguments
    ("train-no-data", [T, "--config", "smoke"], {}, 2, "--data"),
    ("train-data-missing", [T, "--data", "{nope}", "--out", "{newout}"], {}, 1, "does not exist"),
    ("train-data-is-file", [T, "--data", "{file}", "--out", "{newout}"], {}, 1, "is a file"),
    ("train-steps-0", [T, "--data", "{root}", "--steps", "0"], {}, 2, "--steps"),
    ("train-steps-neg", [T, "--data", "{root}", "--steps", "-1"], {}, 2, "expected a whole number from 1"),
    ("train-steps-frac", [T, "--data", "{root}", "--steps", "1.5"], {}, 2, "not a whole number"),
    ("train-steps-abc", [T, "--data", "{root}", "--steps", "abc"], {}, 2, "not a whole number"),
    ("train-steps-huge", [T, "--data", "{root}", "--steps", "1000000000000"], {}, 2, "from 1 to 1000000000"),
    ("train-steps-empty", [T, "--data", "{root}", "--steps", ""], {}, 2, "not a whole number"),
    ("train-steps-no-value", [T, "--data", "{root}", "--steps"], {}, 2, "expected one argument"),
    ("train-workers-neg", [T, "--data", "{root}", "--workers", "-1"], {}, 2, "--workers"),
    ("train-workers-abc", [T, "--data", "{root}", "--workers", "abc"], {}, 2, "not a whole number"),
    ("train-workers-huge", [T, "--data", "{root}", "--workers", "1000"], {}, 2, "from 0 to 64"),
    ("train-unknown-config", [T, "--data", "{root}", "--config", "huge"], {}, 2, "invalid choice: 'huge'"),
    ("train-unknown-option", [T, "--data", "{root}", "--frobnicate"], {}, 2, "unrecognized arguments"),
    ("train-device-nonsense", [T, "--data", "{root}", "--device", "nonsense"], {}, 2, "not a device"),
    ("train-device-cuda", [T, "--config", "smoke", "--data", "{root}", "--out", "{newout}", "--device", "cuda"], {},
     2, "--device cuda: CUDA is not available"),
    ("train-env-device-cuda", [T, "--config", "smoke", "--data", "{root}", "--out", "{newout}"],
     {"TDD_DEVICE": "cuda"}, 2, "TDD_DEVICE=cuda: CUDA is not available"),
    ("train-env-device-banana", [T, "--config", "smoke", "--data", "{root}", "--out", "{newout}"],
     {"TDD_DEVICE": "banana"}, 2, "TDD_DEVICE=banana"),
    ("train-tdd-fast-typo", [T, "--config", "smoke", "--data", "{root}", "--out", "{newout}"],
     {"TDD_FAST": "ture"}, 2, "TDD_FAST='ture'"),
    # train: files and folders
    ("train-out-is-file", [T, "--config", "smoke", "--data", "{root}", "--out", "{file}"], {}, 1, "is a file"),
    ("train-resume-nothing", [T, "--config", "smoke", "--data", "{root}", "--out", "{newout}", "--resume"], {},
     1, "no checkpoint"),
    ("train-would-overwrite", [T, "--config", "smoke", "--data", "{root}", "--out", "{run_out}", "--steps", "2"], {},
     2, "pass --resume"),
    ("train-backbone-missing", [T, "--config", "smoke", "--data", "{root}", "--out", "{newout}",
                                "--backbone-weights", "{nope}"], {}, 1, "--backbone-weights"),
    ("train-empty-folder", [T, "--config", "smoke", "--data", "{emptydir}", "--out", "{newout}"], {},
     1, "split 'train'"),
    ("train-bad-pts", [T, "--config", "smoke", "--data", "{badroot}", "--out", "{newout}"], {}, 1, "check-data"),
    ("train-nan-pts-val", [T, "--config", "smoke", "--data", "{nanroot}", "--out", "{newout}"], {}, 1, "002"),
    ("train-splits-empty-object", [T, "--config", "smoke", "--data", "{nosplits}", "--out", "{newout}"], {},
     1, "splits.json: no splits"),
    ("train-splits-bad-json", [T, "--config", "smoke", "--data", "{badjson}", "--out", "{newout}"], {},
     1, "not valid JSON"),
    # evaluate: arguments
    ("eval-nothing", [E], {}, 2, "required: --data"),  # the checkpoint is optional (the shipped reference)
    ("eval-no-data", [E, "{ckpt}"], {}, 2, "--data"),
    ("eval-size-neg", [E, "{ckpt}", "--data", "{root}", "--size", "-5"], {}, 2, "--size"),
    ("eval-size-0", [E, "{ckpt}", "--data", "{root}", "--size", "0"], {}, 2, "crop size from 32 to 1024"),
    ("eval-size-abc", [E, "{ckpt}", "--data", "{root}", "--size", "abc"], {}, 2, "not a whole number"),
    ("eval-size-huge", [E, "{ckpt}", "--data", "{root}", "--size", "100000"], {}, 2, "crop size from 32 to 1024"),
    ("eval-size-frac", [E, "{ckpt}", "--data", "{root}", "--size", "1.5"], {}, 2, "not a whole number"),
    ("eval-max-frames-0", [E, "{ckpt}", "--data", "{root}", "--max-frames", "0"], {}, 2, "--max-frames"),
    ("eval-max-frames-neg", [E, "{ckpt}", "--data", "{root}", "--max-frames", "-1"], {}, 2, "whole number >= 1"),
    ("eval-max-frames-abc", [E, "{ckpt}", "--data", "{root}", "--max-frames", "abc"], {}, 2, "not a whole number"),
    ("eval-videos-and-all", [E, "{ckpt}", "--data", "{root}", "--videos", "002", "--all"], {}, 2, "not allowed with"),
    ("eval-splits-and-videos", [E, "{ckpt}", "--data", "{root}", "--splits", "A", "--videos", "002"], {},
     2, "not allowed with"),
    ("eval-splits-no-value", [E, "{ckpt}", "--data", "{root}", "--splits"], {}, 2, "expected at least one"),
    ("eval-mode-bogus", [E, "{ckpt}", "--data", "{root}", "--mode", "bogus"], {}, 2, "invalid choice: 'bogus'"),
    ("eval-device-cuda", [E, "{ckpt}", "--data", "{root}", "--device", "cuda"], {}, 2, "CUDA is not available"),
    ("eval-device-nonsense", [E, "{ckpt}", "--data", "{root}", "--device", "gpu0"], {}, 2, "not a device"),
    ("eval-env-device-cuda", [E, "{ckpt}", "--data", "{root}"], {"TDD_DEVICE": "cuda"}, 2, "TDD_DEVICE=cuda"),
    # evaluate: files, folders, selections
    ("eval-ckpt-missing", [E, "{nope}", "--data", "{root}"], {}, 1, "does not exist"),
    ("eval-data-missing", [E, "{ckpt}", "--data", "{nope}"], {}, 1, "not a directory"),
    ("eval-data-is-file", [E, "{ckpt}", "--data", "{file}"], {}, 1, "is a file"),
    ("eval-unknown-split", [E, "{ckpt}", "--data", "{root}", "--splits", "Z"], {}, 1, "unknown split 'Z'"),
    ("eval-video-missing", [E, "{ckpt}", "--data", "{root}", "--videos", "999"], {}, 1, "999"),
    ("eval-all-empty-folder", [E, "{ckpt}", "--data", "{emptydir}", "--all"], {}, 1, "no NNN/ video folders"),
    ("eval-empty-folder", [E, "{ckpt}", "--data", "{emptydir}"], {}, 1, "split 'A'"),
    ("eval-empty-split", [E, "{ckpt}", "--data", "{emptysplit}", "--splits", "A"], {}, 1, "empty"),
    ("eval-splits-empty-object", [E, "{ckpt}", "--data", "{nosplits}"], {}, 1, "splits.json: no splits"),
    ("eval-bad-pts", [E, "{ckpt}", "--data", "{badroot}", "--videos", "001", "--mode", "gt"], {}, 1, "check-data"),
    ("eval-nan-gt", [E, "{ckpt}", "--data", "{nanroot}", "--videos", "002", "--mode", "gt"], {}, 1, "002"),
    ("eval-nan-gt-skipped", [E, "{ckpt}", "--data", "{nanroot}", "--videos", "002", "--mode", "gt",
                             "--skip-bad-frames"], {}, 1, "002"),
]
# one of each kind in a real subprocess
SUBPROCESS = {"unknown-subcommand", "train-no-data", "train-data-missing", "train-steps-0", "train-device-cuda",
              "train-tdd-fast-typo", "train-bad-pts", "eval-nothing", "eval-size-neg", "eval-max-frames-0",
              "eval-unknown-split", "eval-video-missing", "eval-videos-and-all", "eval-nan-gt-skipped"}


def _fill(args: list[str], env: SimpleNamespace) -> list[str]:
    return [a.format(**vars(env)) if "{" in a else a for a in args]


def test_the_table_is_big_enough():
    assert len(ROWS) >= 40 and len({r[0] for r in ROWS}) == len(ROWS)
    assert SUBPROCESS <= {r[0] for r in ROWS}


@pytest.mark.parametrize("case_id, args, extra_env, code, phrase", ROWS, ids=[r[0] for r in ROWS])
def test_bad_invocation_is_one_line_error(env, capsys, monkeypatch, case_id, args, extra_env, code, phrase):
    if "cuda" in case_id and not NO_CUDA:
        pytest.skip("this machine has CUDA")
    argv = _fill(args, env)
    if case_id in SUBPROCESS:
        r = run_cli(*argv, cwd=env.base, env=extra_env)
    else:
        for k, v in extra_env.items():
            monkeypatch.setenv(k, v)
        if "TDD_DEVICE" not in extra_env:
            monkeypatch.delenv("TDD_DEVICE", raising=False)
        r = in_process(capsys, monkeypatch, env.base, *argv)
        if "TDD_FAST" in extra_env:  # in_process sets TDD_FAST=1: redo with the typo in place
            monkeypatch.setenv("TDD_FAST", extra_env["TDD_FAST"])
            r = _in_process_keep_env(capsys, monkeypatch, env.base, argv)
    prog = "tdd-lite" if argv[0] not in (T, E) else f"tdd-lite {argv[0]}"
    assert_one_line_error(r, code, phrase, prog=prog)
    assert not env.newout.exists(), "a failed invocation created its run folder"


def _in_process_keep_env(capsys, monkeypatch, cwd, argv):
    from tdd_lite import cli
    from tests._cli import Result

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    got = capsys.readouterr()
    return Result(int(code or 0), got.out, got.err)


def _module(name: str, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "TDD_DEBUG"}
    e.update({"TDD_FAST": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", name, *map(str, args)], env=e, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("module, args, code, phrase", [
    ("tdd_lite.train", ["--data", "{root}", "--steps", "0"], 2, "--steps"),
    ("tdd_lite.train", ["--data", "{nope}", "--out", "{newout}"], 1, "does not exist"),
    ("tdd_lite.evaluate", ["{ckpt}", "--data", "{root}", "--size", "-5"], 2, "--size"),
], ids=["train-steps-0", "train-data-missing", "evaluate-size-neg"])
def test_python_m_entry_points_give_the_same_one_line_errors(env, module, args, code, phrase):
    """``python -m tdd_lite.train`` is what torchrun runs: the same contract, under its own name."""
    from tests._cli import Result

    p = _module(module, *_fill(args, env))
    assert_one_line_error(Result(p.returncode, p.stdout, p.stderr), code, phrase, prog=f"python -m {module}")


@pytest.mark.parametrize("how", ["--debug", "TDD_DEBUG=1"])
def test_debug_shows_the_traceback(env, how):
    argv = ["train", "--config", "smoke", "--data", str(env.nope), "--out", str(env.newout)]
    if how == "--debug":
        r = run_cli(*argv, "--debug", cwd=env.base)
    else:
        r = run_cli(*argv, cwd=env.base, env={"TDD_DEBUG": "1"})
    assert r.code == 1 and r.has_traceback and "DataError" in r.err, r.text
    assert "tdd-lite train: error: --data" in r.err


def test_skip_bad_frames_trains_and_evaluates_where_the_default_refuses(env, capsys, monkeypatch):
    """``--skip-bad-frames`` has check-data's meaning in train and evaluate: the bad frame is skipped."""
    out = env.base / "skip-run"
    r = in_process(capsys, monkeypatch, env.base, "train", "--config", "smoke", "--data", env.badroot, "--out", out,
                   "--steps", "1", "--skip-bad-frames")
    assert r.code == 0 and not r.has_traceback, r.text
    r = in_process(capsys, monkeypatch, env.base, "evaluate", out / "checkpoint.pt", "--data", env.badroot,
                   "--videos", "001", "--mode", "gt", "--skip-bad-frames")
    assert r.code == 0 and "over 7 frames" in r.out, r.text  # 8 frames, one without a readable ground truth
    shutil.rmtree(out)
